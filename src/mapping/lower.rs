//! Lowering: every logical weight matrix becomes tiles (row chunks × column chunks, times replicas)
//! placed as rectangles on the physical arrays.
//!
//! Physical layout inside a tile, for logical row `i` (weight input or bias row) and output `j`,
//! pair `k` (0..pairs) and sign `s` (0 = g⁺, 1 = g⁻):
//! - orientation `columns`: row `row0 + (i − in_start)`, column `col0 + (j − out_start)·2p + 2k + s`;
//! - orientation `rows`: row `row0 + (i − in_start)·2p + 2k + s` (g⁻ rows driven with −V),
//!   column `col0 + (j − out_start)`.
//!
//! Tiles in the same array never overlap; tiles that share rows share input lines (they are used
//! at different times, or with the same inputs, as in S3 and S5), tiles that share columns add
//! currents only when both are driven (S1's layers run one after another).

use super::MappingError;
use crate::net::spec::{NetFile, Orientation, Placement};
use crate::net::NetworkIr;
use serde::Serialize;

/// A rectangle of one array holding part of one matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tile {
    pub array: usize,
    pub row0: usize,
    pub col0: usize,
    /// Physical rows and columns.
    pub n_rows: usize,
    pub n_cols: usize,
    /// Logical rows `in_start .. in_start + in_len` (weight rows then bias rows).
    pub in_start: usize,
    pub in_len: usize,
    /// Logical outputs.
    pub out_start: usize,
    pub out_len: usize,
    /// Row-chunk index (partial sum number) and replica number.
    pub part: usize,
    pub replica: usize,
}

/// One crossbar-mapped matrix: a dense layer, the unrolled kernels of a conv layer, or the gate
/// kernels (input and recurrent) of a ConvLSTM.
#[derive(Debug, Clone, Serialize)]
pub struct MappedMatrix {
    pub layer: String,
    pub layer_index: usize,
    /// Weight rows (without bias rows).
    pub weight_rows: usize,
    /// Bias rows appended below the weight rows (0 when the layer has no bias).
    pub bias_rows: usize,
    pub cols: usize,
    pub pairs: usize,
    pub orientation: Orientation,
    /// Logical rows per row chunk (partial sums are added when there is more than one chunk).
    pub chunk_rows: usize,
    /// Logical outputs per column chunk.
    pub chunk_cols: usize,
    pub replicas: usize,
    pub tiles: Vec<Tile>,
}

impl MappedMatrix {
    /// Logical rows (weights + bias).
    pub fn logical_rows(&self) -> usize {
        self.weight_rows + self.bias_rows
    }

    /// Physical rows per logical row.
    pub fn row_factor(&self) -> usize {
        match self.orientation {
            Orientation::Columns => 1,
            Orientation::Rows => 2 * self.pairs,
        }
    }

    /// Physical columns per logical output.
    pub fn col_factor(&self) -> usize {
        match self.orientation {
            Orientation::Columns => 2 * self.pairs,
            Orientation::Rows => 1,
        }
    }

    /// Number of row chunks (partial sums).
    pub fn parts(&self) -> usize {
        self.logical_rows().div_ceil(self.chunk_rows)
    }

    /// Physical cells (all replicas).
    pub fn cells(&self) -> usize {
        self.tiles.iter().map(|t| t.n_rows * t.n_cols).sum()
    }
}

impl Tile {
    /// Physical `(row, col)` of logical cell `(i, j)`, pair `k`, sign `s` (0 = +, 1 = −) inside
    /// this tile. The caller must pass `i`, `j` inside the tile's ranges.
    pub fn cell(&self, m: &MappedMatrix, i: usize, j: usize, k: usize, s: usize) -> (usize, usize) {
        let (di, dj) = (i - self.in_start, j - self.out_start);
        match m.orientation {
            Orientation::Columns => (self.row0 + di, self.col0 + dj * 2 * m.pairs + 2 * k + s),
            Orientation::Rows => (self.row0 + di * 2 * m.pairs + 2 * k + s, self.col0 + dj),
        }
    }

    /// Physical rows driven by logical row `i` (inside the tile), with the sign of their
    /// voltage: one row per logical row for column-pair encoding, a `+`/`−` row per pair
    /// otherwise.
    pub fn input_rows(&self, m: &MappedMatrix, i: usize) -> Vec<(usize, f64)> {
        match m.orientation {
            Orientation::Columns => vec![(self.cell(m, i, self.out_start, 0, 0).0, 1.0)],
            Orientation::Rows => (0..m.pairs)
                .flat_map(|k| {
                    [
                        (self.cell(m, i, self.out_start, k, 0).0, 1.0),
                        (self.cell(m, i, self.out_start, k, 1).0, -1.0),
                    ]
                })
                .collect(),
        }
    }

    /// Physical columns read for logical output `j` (inside the tile), with the sign of their
    /// current.
    pub fn output_cols(&self, m: &MappedMatrix, j: usize) -> Vec<(usize, f64)> {
        match m.orientation {
            Orientation::Columns => (0..m.pairs)
                .flat_map(|k| {
                    [
                        (self.cell(m, self.in_start, j, k, 0).1, 1.0),
                        (self.cell(m, self.in_start, j, k, 1).1, -1.0),
                    ]
                })
                .collect(),
            Orientation::Rows => vec![(self.cell(m, self.in_start, j, 0, 0).1, 1.0)],
        }
    }

    pub fn contains(&self, i: usize, j: usize) -> bool {
        (self.in_start..self.in_start + self.in_len).contains(&i)
            && (self.out_start..self.out_start + self.out_len).contains(&j)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Lowering {
    pub arrays: usize,
    pub rows: usize,
    pub cols: usize,
    pub matrices: Vec<MappedMatrix>,
}

impl Lowering {
    pub fn matrix(&self, layer: &str) -> Option<&MappedMatrix> {
        self.matrices.iter().find(|m| m.layer == layer)
    }

    /// Arrays holding at least one tile.
    pub fn arrays_used(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .matrices
            .iter()
            .flat_map(|m| m.tiles.iter().map(|t| t.array))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Rectangle packer over a fixed set of arrays (bottom-left first fit, row-major candidates).
struct Packer {
    rows: usize,
    cols: usize,
    used: Vec<Vec<(usize, usize, usize, usize)>>, // (r0, c0, nr, nc)
}

impl Packer {
    fn new(n: usize, rows: usize, cols: usize) -> Packer {
        Packer {
            rows,
            cols,
            used: vec![Vec::new(); n],
        }
    }

    fn fits(&self, a: usize, r0: usize, c0: usize, nr: usize, nc: usize) -> bool {
        if r0 + nr > self.rows || c0 + nc > self.cols {
            return false;
        }
        self.used[a]
            .iter()
            .all(|&(r, c, h, w)| r0 >= r + h || r >= r0 + nr || c0 >= c + w || c >= c0 + nc)
    }

    /// Place an `nr × nc` rectangle on the first array ≥ `start` where it fits.
    fn place(&mut self, start: usize, nr: usize, nc: usize) -> Option<(usize, usize, usize)> {
        for a in start..self.used.len() {
            let mut cands = vec![(0, 0)];
            for &(r, c, h, w) in &self.used[a] {
                cands.extend([(r + h, c), (r, c + w), (r + h, 0), (0, c + w)]);
            }
            cands.sort_unstable();
            cands.dedup();
            if let Some(&(r0, c0)) = cands.iter().find(|&&(r0, c0)| self.fits(a, r0, c0, nr, nc)) {
                self.used[a].push((r0, c0, nr, nc));
                return Some((a, r0, c0));
            }
        }
        None
    }

    fn last_used(&self) -> Option<usize> {
        (0..self.used.len())
            .rev()
            .find(|&a| !self.used[a].is_empty())
    }
}

/// Plan of one matrix before placement.
struct Plan {
    index: usize,
    m: MappedMatrix,
    start: Option<usize>,
}

fn plans(file: &NetFile, ir: &NetworkIr) -> Result<Vec<Plan>, MappingError> {
    let hw = &file.hardware;
    let map = &file.mapping;
    let mut out = Vec::new();
    for (index, l) in ir.layers.iter().enumerate() {
        let Some(ms) = l.matrix else { continue };
        let lm = map.layer(&l.name);
        let bias_rows = if ms.bias { map.bias_rows } else { 0 };
        let mut m = MappedMatrix {
            layer: l.name.clone(),
            layer_index: index,
            weight_rows: ms.rows,
            bias_rows,
            cols: ms.cols,
            pairs: map.pairs,
            orientation: map.orientation,
            chunk_rows: 0,
            chunk_cols: 0,
            replicas: lm.map(|x| x.replicas).unwrap_or(1),
            tiles: vec![],
        };
        let (rf, cf) = (m.row_factor(), m.col_factor());
        let max_rows = hw.rows / rf;
        let max_cols = hw.cols / cf;
        if max_rows == 0 || max_cols == 0 {
            return Err(MappingError::DoesNotFit {
                span: l.span.clone(),
                layer: l.name.clone(),
                message: format!(
                    "one weight needs {rf} row(s) × {cf} column(s) (pairs {}, orientation {:?}) but an array is {}×{}; would fit with `pairs 1` or larger arrays",
                    map.pairs, map.orientation, hw.rows, hw.cols
                ),
            });
        }
        let rows = m.logical_rows();
        m.chunk_rows = match lm.and_then(|x| x.split_rows) {
            Some(n) => {
                if n > max_rows {
                    return Err(MappingError::DoesNotFit {
                        span: lm.map(|x| x.span.clone()).unwrap_or_else(|| l.span.clone()),
                        layer: l.name.clone(),
                        message: format!(
                            "`split_rows {n}` needs {} physical rows but an array has {}; at most `split_rows {max_rows}` would fit",
                            n * rf,
                            hw.rows
                        ),
                    });
                }
                n.min(rows)
            }
            None => rows.min(max_rows),
        };
        m.chunk_cols = m.cols.min(max_cols);
        out.push(Plan {
            index,
            m,
            start: lm.and_then(|x| x.array),
        });
    }
    Ok(out)
}

/// Place every tile of `plans` on `n_arrays` arrays. On failure returns the index of the plan
/// that did not fit.
fn place_all(
    plans: &mut [Plan],
    n_arrays: usize,
    rows: usize,
    cols: usize,
    placement: Placement,
) -> Result<(), usize> {
    let mut packer = Packer::new(n_arrays, rows, cols);
    for (pi, p) in plans.iter_mut().enumerate() {
        let m = &mut p.m;
        m.tiles.clear();
        let mut start = p.start.unwrap_or(0);
        if placement == Placement::PerLayer && p.start.is_none() {
            start = packer.last_used().map(|a| a + 1).unwrap_or(0);
        }
        let (rf, cf) = (m.row_factor(), m.col_factor());
        let rows_total = m.logical_rows();
        for replica in 0..m.replicas {
            for (part, in_start) in (0..rows_total).step_by(m.chunk_rows).enumerate() {
                let in_len = m.chunk_rows.min(rows_total - in_start);
                for out_start in (0..m.cols).step_by(m.chunk_cols) {
                    let out_len = m.chunk_cols.min(m.cols - out_start);
                    let (nr, nc) = (in_len * rf, out_len * cf);
                    let (array, row0, col0) = packer.place(start, nr, nc).ok_or(pi)?;
                    m.tiles.push(Tile {
                        array,
                        row0,
                        col0,
                        n_rows: nr,
                        n_cols: nc,
                        in_start,
                        in_len,
                        out_start,
                        out_len,
                        part,
                        replica,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Lower the network's weighted layers onto the hardware's arrays.
pub fn lower(file: &NetFile, ir: &NetworkIr) -> Result<Lowering, MappingError> {
    let hw = &file.hardware;
    let mut plans = plans(file, ir)?;
    if let Some(p) = plans
        .iter()
        .find(|p| p.start.is_some_and(|a| a >= hw.arrays))
    {
        let lm = file.mapping.layer(&p.m.layer);
        return Err(MappingError::DoesNotFit {
            span: lm.map(|x| x.span.clone()).unwrap_or_default(),
            layer: p.m.layer.clone(),
            message: format!(
                "`array {}` but the hardware has {} array(s) (numbered from 0)",
                p.start.unwrap_or(0),
                hw.arrays
            ),
        });
    }
    match place_all(
        &mut plans,
        hw.arrays,
        hw.rows,
        hw.cols,
        file.mapping.placement,
    ) {
        Ok(()) => {}
        Err(bad) => {
            // Say what would fit: the smallest array count that holds everything.
            let need = (hw.arrays + 1..=hw.arrays.max(1) * 64 + 64).find(|&n| {
                let mut trial: Vec<Plan> = plans
                    .iter()
                    .map(|p| Plan {
                        index: p.index,
                        m: p.m.clone(),
                        start: p.start,
                    })
                    .collect();
                place_all(&mut trial, n, hw.rows, hw.cols, file.mapping.placement).is_ok()
            });
            let p = &plans[bad];
            let l = &ir.layers[p.index];
            let m = &p.m;
            let cells = m.logical_rows() * m.row_factor() * m.cols * m.col_factor() * m.replicas;
            return Err(MappingError::DoesNotFit {
                span: l.span.clone(),
                layer: l.name.clone(),
                message: format!(
                    "needs {} logical rows × {} outputs = {} physical cells ({} replica(s), {} pair(s) per weight), in tiles of up to {}×{} cells, but the {} array(s) of {}×{} are full; {}",
                    m.logical_rows(),
                    m.cols,
                    cells,
                    m.replicas,
                    m.pairs,
                    m.chunk_rows * m.row_factor(),
                    m.chunk_cols * m.col_factor(),
                    hw.arrays,
                    hw.rows,
                    hw.cols,
                    match need {
                        Some(n) => format!("the network would fit on `arrays {n} x {}x{}`", hw.rows, hw.cols),
                        None => "it does not fit on any reasonable number of such arrays".to_string(),
                    }
                ),
            });
        }
    }
    Ok(Lowering {
        arrays: hw.arrays,
        rows: hw.rows,
        cols: hw.cols,
        matrices: plans.into_iter().map(|p| p.m).collect(),
    })
}
