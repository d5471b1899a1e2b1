//! The mapping report: per layer weights, MACs per inference, arrays, rows and columns used and
//! utilisation; per array occupancy; totals. Printed as a table and serialised to `mapping.json`.

use super::lower::Lowering;
use crate::net::spec::{CellKind, NetFile};
use crate::net::NetworkIr;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub name: String,
    pub kind: String,
    pub in_shape: String,
    pub out_shape: String,
    /// Weights + biases.
    pub params: usize,
    pub weights: usize,
    pub biases: usize,
    pub macs: usize,
    pub arrays: Vec<usize>,
    pub rows_used: usize,
    pub cols_used: usize,
    pub cells: usize,
    pub tiles: usize,
    pub parts: usize,
    pub replicas: usize,
    /// Cells used ÷ cells of the arrays the layer touches.
    pub utilisation: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArrayReport {
    pub index: usize,
    pub cells_used: usize,
    pub utilisation: f64,
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MappingReport {
    pub network: String,
    pub input: String,
    pub output: String,
    pub arrays: usize,
    pub rows: usize,
    pub cols: usize,
    pub cell: CellKind,
    pub pairs: usize,
    pub layers: Vec<LayerReport>,
    pub array_use: Vec<ArrayReport>,
    pub total_params: usize,
    pub total_weights: usize,
    pub total_biases: usize,
    pub total_macs: usize,
    pub total_cells: usize,
    pub arrays_used: usize,
    /// Cells used ÷ cells of all arrays.
    pub utilisation: f64,
}

impl MappingReport {
    pub fn new(file: &NetFile, ir: &NetworkIr, low: &Lowering) -> MappingReport {
        let array_cells = low.rows * low.cols;
        let mut layers = Vec::new();
        for l in &ir.layers {
            let m = low.matrix(&l.name);
            let (mut arrays, mut rows, mut cols) =
                (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
            let (mut cells, mut tiles, mut parts, mut replicas) = (0, 0, 0, 0);
            if let Some(m) = m {
                for t in &m.tiles {
                    arrays.insert(t.array);
                    rows.extend((t.row0..t.row0 + t.n_rows).map(|r| (t.array, r)));
                    cols.extend((t.col0..t.col0 + t.n_cols).map(|c| (t.array, c)));
                }
                cells = m.cells();
                tiles = m.tiles.len();
                parts = m.parts();
                replicas = m.replicas;
            }
            let util = if arrays.is_empty() {
                0.0
            } else {
                cells as f64 / (arrays.len() * array_cells) as f64
            };
            layers.push(LayerReport {
                name: l.name.clone(),
                kind: l.kind.keyword().to_string(),
                in_shape: l.in_shape.to_string(),
                out_shape: l.out_shape.to_string(),
                params: l.params(),
                weights: l.weights,
                biases: l.biases,
                macs: l.macs,
                arrays: arrays.into_iter().collect(),
                rows_used: rows.len(),
                cols_used: cols.len(),
                cells,
                tiles,
                parts,
                replicas,
                utilisation: util,
            });
        }
        let mut array_use = Vec::new();
        for a in 0..low.arrays {
            let mut used = 0;
            let mut names = Vec::new();
            for m in &low.matrices {
                let c: usize = m
                    .tiles
                    .iter()
                    .filter(|t| t.array == a)
                    .map(|t| t.n_rows * t.n_cols)
                    .sum();
                if c > 0 {
                    used += c;
                    names.push(m.layer.clone());
                }
            }
            array_use.push(ArrayReport {
                index: a,
                cells_used: used,
                utilisation: used as f64 / array_cells as f64,
                layers: names,
            });
        }
        let total_cells: usize = layers.iter().map(|l| l.cells).sum();
        MappingReport {
            network: ir.name.clone(),
            input: ir.input.to_string(),
            output: ir.output().to_string(),
            arrays: low.arrays,
            rows: low.rows,
            cols: low.cols,
            cell: file.hardware.cell,
            pairs: file.mapping.pairs,
            total_params: ir.params(),
            total_weights: layers.iter().map(|l| l.weights).sum(),
            total_biases: layers.iter().map(|l| l.biases).sum(),
            total_macs: ir.macs(),
            total_cells,
            arrays_used: low.arrays_used().len(),
            utilisation: total_cells as f64 / (low.arrays * array_cells) as f64,
            layers,
            array_use,
        }
    }

    /// The report as a plain-text table (stable: used by snapshot tests).
    pub fn table(&self) -> String {
        let mut s = String::new();
        let cell = match self.cell {
            CellKind::Passive => "passive",
            CellKind::OneT1R => "1T1R",
        };
        let _ = writeln!(
            s,
            "network {}: input {} -> output {}; {} array(s) of {}x{} {} cells, {} pair(s) per weight",
            self.network, self.input, self.output, self.arrays, self.rows, self.cols, cell, self.pairs
        );
        let _ = writeln!(
            s,
            "{:<10} {:<8} {:>9} {:>9} {:>8} {:>6} {:>9} {:>8} {:>5} {:>5} {:>6} {:>6}",
            "layer",
            "type",
            "in",
            "out",
            "weights",
            "bias",
            "MACs",
            "arrays",
            "rows",
            "cols",
            "cells",
            "util"
        );
        for l in &self.layers {
            let arrays = if l.arrays.is_empty() {
                "-".to_string()
            } else {
                compact(&l.arrays)
            };
            let (rows, cols, cells, util) = if l.tiles == 0 {
                ("-".into(), "-".into(), "-".into(), "-".into())
            } else {
                (
                    l.rows_used.to_string(),
                    l.cols_used.to_string(),
                    l.cells.to_string(),
                    format!("{:.1}%", 100.0 * l.utilisation),
                )
            };
            let _ = writeln!(
                s,
                "{:<10} {:<8} {:>9} {:>9} {:>8} {:>6} {:>9} {:>8} {:>5} {:>5} {:>6} {:>6}",
                l.name,
                l.kind,
                l.in_shape,
                l.out_shape,
                if l.params == 0 {
                    "-".to_string()
                } else {
                    l.weights.to_string()
                },
                if l.params == 0 {
                    "-".to_string()
                } else {
                    l.biases.to_string()
                },
                if l.macs == 0 {
                    "-".to_string()
                } else {
                    l.macs.to_string()
                },
                arrays,
                rows,
                cols,
                cells,
                util
            );
        }
        let _ = writeln!(
            s,
            "{:<10} {:<8} {:>9} {:>9} {:>8} {:>6} {:>9} {:>8} {:>5} {:>5} {:>6} {:>6}",
            "total",
            "",
            "",
            "",
            self.total_weights,
            self.total_biases,
            self.total_macs,
            format!("{}/{}", self.arrays_used, self.arrays),
            "",
            "",
            self.total_cells,
            format!("{:.1}%", 100.0 * self.utilisation)
        );
        let _ = writeln!(
            s,
            "parameters: {} ({} weights + {} biases)",
            self.total_params, self.total_weights, self.total_biases
        );
        for a in &self.array_use {
            let _ = writeln!(
                s,
                "array {:>2}: {:>6} of {} cells ({:.1}%) {}",
                a.index,
                a.cells_used,
                self.rows * self.cols,
                100.0 * a.utilisation,
                if a.layers.is_empty() {
                    "unused".to_string()
                } else {
                    a.layers.join(", ")
                }
            );
        }
        s
    }
}

/// `[0,1,2,5]` → `0-2,5`.
fn compact(v: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", v[i], v[j])
        } else {
            v[i].to_string()
        });
        i = j + 1;
    }
    out.join(",")
}
