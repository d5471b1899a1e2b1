//! `netc program NET [--weights W] --out CHIP [--algorithm oneshot|write-verify|pulses] [--seed S]`:
//! program every array of the compiled network into a chip (`crate::device::chip`) with the
//! declared device, print and write a report (`report.json` in the chip directory) and plots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::device::{DeviceError, DeviceSpec};

pub use crate::device::program::Algorithm;

/// Program every array of a compiled network into a chip.
#[derive(Debug, Clone, clap::Args)]
pub struct ProgramArgs {
    /// The `.net` file.
    pub net: PathBuf,
    /// Trained weights (`model.json` of `netc train`); without it, the mapper's seeded initial weights.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Chip directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Default: oneshot for analogue 1T1R arrays (`levels 0`), else write-verify.
    #[arg(long, value_enum)]
    pub algorithm: Option<Algorithm>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProgramCmdError {
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error(transparent)]
    Mapping(#[from] crate::mapping::MappingError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Nn(#[from] crate::nn::NnError),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

/// Per-layer summary of a programming run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LayerReport {
    pub layer: String,
    pub cells: usize,
    pub pulses_mean: f64,
    pub pulses_max: u32,
    /// Mean |G_achieved − G_target| / (G_max − G_min).
    pub error_mean_rel_window: f64,
    pub error_max_rel_window: f64,
    pub failures: usize,
    /// Σ pulses × pulse width (cells written one after another).
    pub programming_time_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProgramReport {
    pub network: String,
    pub algorithm: Algorithm,
    pub seed: u64,
    pub arrays: usize,
    pub cells: usize,
    pub layers: Vec<LayerReport>,
    pub wall_time_seconds: f64,
}

/// One programmed cell: (matrix index, target G, achieved G, pulses, failed, array).
type CellRecord = (usize, f64, f64, u32, bool, usize);

#[allow(clippy::needless_range_loop)] // cells indexed across parallel per-cell vectors
pub fn run(a: &ProgramArgs) -> Result<(), ProgramCmdError> {
    let t0 = std::time::Instant::now();
    let text = std::fs::read_to_string(&a.net).map_err(|e| ProgramCmdError::Io {
        path: a.net.display().to_string(),
        message: e.to_string(),
    })?;
    let (file, ir) = crate::net::load(&a.net)?;
    let lowering = crate::mapping::lower(&file, &ir)?;
    let hw = &file.hardware;
    let weights = match &a.weights {
        Some(p) => {
            let wf: crate::nn::model::WeightsFile = crate::nn::train::read_json(p)?;
            let model = crate::nn::model::Model::from_weights_file(&wf)?;
            crate::nn::from_net::compiler_weights(&model, &ir)?
        }
        None => crate::mapping::weights::WeightsFile::init(&ir, a.seed),
    };
    let programmed =
        crate::mapping::weights::program(&lowering, hw, file.mapping.weight_scale, &weights)?;
    let spec = crate::device::program::device_of(hw);
    let algorithm = crate::device::program::choose_algorithm(hw, a.algorithm)
        .map_err(|e| ProgramCmdError::Usage(e.to_string()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let span = spec.g_max_siemens - spec.g_min_siemens;
    let total: usize = programmed
        .arrays
        .iter()
        .map(|x| x.owner.iter().filter(|o| o.is_some()).count())
        .sum();
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} cells ({eta})")
            .expect("static template"),
    );
    bar.set_message(format!("programming ({algorithm:?})"));
    let (chip, writes) = crate::device::program::program_network(
        &ir.name,
        &text,
        hw,
        &spec,
        &programmed,
        algorithm,
        a.seed,
        &mut rng,
        &bar,
    )?;
    // per cell (layer, target, achieved, pulses, failed, array): the cells that hold weights
    let mut cells: Vec<CellRecord> = Vec::new();
    for w in &writes {
        let arr = &programmed.arrays[w.array];
        if let Some(mi) = arr.owner[w.cell] {
            let st = &chip.arrays[w.array];
            cells.push((
                mi,
                arr.g_siemens[w.cell],
                st.g_siemens[w.cell],
                st.pulses[w.cell],
                w.failed,
                arr.index,
            ));
        }
    }
    bar.finish_and_clear();
    // per-layer report
    let mut by_layer: BTreeMap<String, Vec<&CellRecord>> = BTreeMap::new();
    for cell in &cells {
        by_layer
            .entry(lowering.matrices[cell.0].layer.clone())
            .or_default()
            .push(cell);
    }
    let layers: Vec<LayerReport> = by_layer
        .into_iter()
        .map(|(layer, cs)| {
            let n = cs.len().max(1) as f64;
            let errs: Vec<f64> = cs.iter().map(|c| (c.2 - c.1).abs() / span).collect();
            let pulses: u64 = cs.iter().map(|c| c.3 as u64).sum();
            LayerReport {
                layer,
                cells: cs.len(),
                pulses_mean: pulses as f64 / n,
                pulses_max: cs.iter().map(|c| c.3).max().unwrap_or(0),
                error_mean_rel_window: errs.iter().sum::<f64>() / n,
                error_max_rel_window: errs.iter().cloned().fold(0.0, f64::max),
                failures: cs.iter().filter(|c| c.4).count(),
                programming_time_seconds: pulses as f64 * spec.pulse_width_seconds,
            }
        })
        .collect();
    let report = ProgramReport {
        network: ir.name.clone(),
        algorithm,
        seed: a.seed,
        arrays: chip.arrays.len(),
        cells: cells.len(),
        layers,
        wall_time_seconds: t0.elapsed().as_secs_f64(),
    };
    chip.save(&a.out)?;
    let json = serde_json::to_string_pretty(&report).expect("plain data");
    crate::mapping::write_atomic(&a.out.join("report.json"), json.as_bytes())?;
    plots(&a.out, &cells, &spec).map_err(|e| ProgramCmdError::Io {
        path: a.out.display().to_string(),
        message: e.to_string(),
    })?;
    println!(
        "{}: {} cells on {} arrays, {:?}, seed {}",
        report.network, report.cells, report.arrays, algorithm, a.seed
    );
    println!(
        "{:<10} {:>7} {:>11} {:>10} {:>14} {:>13} {:>9} {:>12}",
        "layer",
        "cells",
        "pulses mean",
        "pulses max",
        "error mean %W",
        "error max %W",
        "failures",
        "prog. time"
    );
    for l in &report.layers {
        println!(
            "{:<10} {:>7} {:>11.2} {:>10} {:>14.3} {:>13.3} {:>9} {:>10.3e} s",
            l.layer,
            l.cells,
            l.pulses_mean,
            l.pulses_max,
            100.0 * l.error_mean_rel_window,
            100.0 * l.error_max_rel_window,
            l.failures,
            l.programming_time_seconds
        );
    }
    println!(
        "wrote {} (chip.json, array_*/…npy, report.json, target_vs_achieved.png, pulse_histogram.png, error_map_*.png) in {:.2} s",
        a.out.display(),
        report.wall_time_seconds
    );
    Ok(())
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Target vs achieved conductance, pulse-count histogram, error map per array (PNG).
fn plots(dir: &Path, cells: &[CellRecord], spec: &DeviceSpec) -> PlotResult {
    let us = 1e6;
    let (lo, hi) = (spec.g_min_siemens * us, spec.g_max_siemens * us);
    let pad = 0.05 * (hi - lo);
    {
        let p = dir.join("target_vs_achieved.png");
        crate::atomic::write_via(&p, |t| -> PlotResult {
            let area = BitMapBackend::new(t, (640, 600)).into_drawing_area();
            area.fill(&WHITE)?;
            let mut ch = ChartBuilder::on(&area)
                .caption("target vs achieved conductance", ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d(lo - pad..hi + pad, lo - pad..hi + pad)?;
            ch.configure_mesh()
                .x_desc("target G (µS)")
                .y_desc("achieved G (µS)")
                .draw()?;
            ch.draw_series(LineSeries::new(vec![(lo, lo), (hi, hi)], &BLACK))?;
            ch.draw_series(cells.iter().map(|c| {
                Circle::new(
                    (c.1 * us, c.2 * us),
                    2,
                    if c.4 {
                        RED.filled()
                    } else {
                        BLUE.mix(0.4).filled()
                    },
                )
            }))?;
            area.present()?;
            Ok(())
        })?;
    }
    {
        let p = dir.join("pulse_histogram.png");
        crate::atomic::write_via(&p, |t| -> PlotResult {
            let area = BitMapBackend::new(t, (640, 400)).into_drawing_area();
            area.fill(&WHITE)?;
            let max = cells.iter().map(|c| c.3).max().unwrap_or(0).max(1);
            let bins = 40u32.min(max + 1);
            let width = (max + 1).div_ceil(bins);
            let mut counts = vec![0u32; bins as usize];
            for c in cells {
                counts[((c.3 / width) as usize).min(bins as usize - 1)] += 1;
            }
            let top = *counts.iter().max().unwrap_or(&1) as f64 * 1.1;
            let mut ch = ChartBuilder::on(&area)
                .caption("pulses per cell", ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d(0.0..((bins * width) as f64), 0.0..top)?;
            ch.configure_mesh()
                .x_desc("pulses")
                .y_desc("cells")
                .draw()?;
            ch.draw_series(counts.iter().enumerate().map(|(b, n)| {
                let x0 = (b as u32 * width) as f64;
                Rectangle::new(
                    [(x0, 0.0), (x0 + width as f64, *n as f64)],
                    BLUE.mix(0.6).filled(),
                )
            }))?;
            area.present()?;
            Ok(())
        })?;
    }
    // error map per array: mean |error| per cell position of the cells the array holds
    let arrays: std::collections::BTreeSet<usize> = cells.iter().map(|c| c.5).collect();
    for a in arrays {
        let errs: Vec<f64> = cells
            .iter()
            .filter(|c| c.5 == a)
            .map(|c| (c.2 - c.1) * us)
            .collect();
        let p = dir.join(format!("error_map_{a}.png"));
        crate::atomic::write_via(&p, |t| -> PlotResult {
            let area = BitMapBackend::new(t, (640, 300)).into_drawing_area();
            area.fill(&WHITE)?;
            let m = errs.iter().map(|e| e.abs()).fold(1e-9, f64::max);
            let mut ch = ChartBuilder::on(&area)
                .caption(
                    format!("array {a}: G error per programmed cell (µS, ±{m:.2})"),
                    ("sans-serif", 16),
                )
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(55)
                .build_cartesian_2d(0.0..errs.len().max(1) as f64, -m * 1.1..m * 1.1)?;
            ch.configure_mesh()
                .x_desc("cell (programming order)")
                .draw()?;
            ch.draw_series(
                errs.iter()
                    .enumerate()
                    .map(|(k, e)| Circle::new((k as f64, *e), 1, BLUE.filled())),
            )?;
            area.present()?;
            Ok(())
        })?;
    }
    Ok(())
}
