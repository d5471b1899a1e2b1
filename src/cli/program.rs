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

use crate::device::chip::{network_hash, ArrayState, Chip, Manifest, CHIP_FORMAT};
use crate::device::write::{oneshot_column, verify_cell, ArrayVerifier};
use crate::device::{DeviceError, DeviceSpec};
use crate::net::spec::CellKind as NetCell;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// RESET, then one compliance-limited SET per column with per-row gates (1T1R only; S1).
    Oneshot,
    /// Closed loop: pulse, read through the array, stop in the window or at the pulse limit (S4, S5).
    WriteVerify,
    /// Open loop: the number of pulses the nominal device needs, applied blind.
    Pulses,
}

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
    pub programming_time_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProgramReport {
    pub network: String,
    pub algorithm: Algorithm,
    pub seed: u64,
    pub arrays: usize,
    pub cells: usize,
    pub layers: Vec<LayerReport>,
    pub wall_time_s: f64,
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
    let spec = hw
        .device
        .clone()
        .unwrap_or_else(|| DeviceSpec::ideal(hw.g_min_s, hw.g_max_s));
    let one_t1r = hw.cell == NetCell::OneT1R;
    let algorithm = match a.algorithm {
        Some(Algorithm::Oneshot) if !one_t1r => {
            return Err(ProgramCmdError::Usage(
                "one-shot compliance SET needs 1T1R cells; use write-verify or pulses".into(),
            ))
        }
        Some(x) => x,
        // analogue 1T1R arrays are set one-shot (S1, S3); multi-level ones by write-verify (S5)
        None if one_t1r && hw.levels == 0 => Algorithm::Oneshot,
        None => Algorithm::WriteVerify,
    };
    let span = spec.g_max_s - spec.g_min_s;
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
    // the arrays are independent: programmed in parallel, each with its own random stream derived
    // from the seed and the array's index, so the chip does not depend on the thread count
    let per_array = |(ai, arr): (usize, &crate::mapping::weights::ArrayConductances)| -> Result<(ArrayState, Vec<CellRecord>), ProgramCmdError> {
        let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
        rng.set_stream(ai as u64 + 1);
        let (r, c) = (arr.rows, arr.cols);
        let mut st = ArrayState::fresh(&spec, r, c, &mut rng);
        // the one lowering from hardware to circuit (crate::mapping::array)
        let mut xb = crate::mapping::crossbar(hw, r, c, &st.g_s)?;
        let mut failed = vec![false; r * c];
        match algorithm {
            Algorithm::Oneshot => {
                for j in 0..c {
                    if !(0..r).any(|i| arr.owner[i * c + j].is_some()) {
                        continue;
                    }
                    let targets: Vec<f64> = (0..r).map(|i| arr.g(i, j)).collect();
                    let rep =
                        oneshot_column(&spec, &xb, j, &mut st.g_s, &st.params, &targets, &mut rng)?;
                    for i in 0..r {
                        st.pulses[i * c + j] += 1;
                        if arr.owner[i * c + j].is_some() {
                            // a blind write fails where its aim misses: the target is out of reach
                            failed[i * c + j] = rep.unreachable[i];
                            bar.inc(1);
                        }
                    }
                }
            }
            Algorithm::WriteVerify => {
                let mut verifier = ArrayVerifier::new(&xb, spec.verify.v_read_v)?;
                for k in 0..r * c {
                    if arr.owner[k].is_none() {
                        continue;
                    }
                    let reader = verifier.cell(&xb.g_siemens, k / c, k % c)?;
                    let out = verify_cell(
                        &spec,
                        &st.params[k],
                        &reader,
                        &mut xb.g_siemens[k],
                        arr.g_s[k],
                        &mut st.pulses[k],
                        &mut rng,
                    );
                    failed[k] = !out.converged;
                    bar.inc(1);
                }
                st.g_s.clone_from(&xb.g_siemens);
            }
            Algorithm::Pulses => {
                let nominal = crate::device::DeviceParams::nominal(&spec);
                for k in 0..r * c {
                    if arr.owner[k].is_none() {
                        continue;
                    }
                    // count on the nominal, noise-free device, then apply blind to the real one
                    let (mut g, target) = (st.g_s[k], arr.g_s[k]);
                    let up = target > g;
                    let mut n = 0i64;
                    while n < spec.verify.max_pulses as i64 {
                        let next = spec.one_pulse(&nominal, g, up, 1.0);
                        if (next - target).abs() >= (g - target).abs() {
                            break;
                        }
                        g = next;
                        n += 1;
                    }
                    let v = if up { spec.v_pulse_v } else { -spec.v_pulse_v };
                    st.g_s[k] = spec.pulses(
                        &st.params[k],
                        st.g_s[k],
                        if up { n } else { -n },
                        v,
                        &mut rng,
                    );
                    st.pulses[k] += n as u32;
                    failed[k] = (st.g_s[k] - arr.g_s[k]).abs() / span > 0.05;
                    bar.inc(1);
                }
            }
        }
        let mut cells = Vec::new();
        for k in 0..r * c {
            if let Some(mi) = arr.owner[k] {
                cells.push((mi, arr.g_s[k], st.g_s[k], st.pulses[k], failed[k], arr.index));
            }
        }
        Ok((st, cells))
    };
    let done: Vec<(ArrayState, Vec<CellRecord>)> = programmed
        .arrays
        .par_iter()
        .enumerate()
        .map(per_array)
        .collect::<Result<_, _>>()?;
    let mut states = Vec::new();
    // per cell (layer, target, achieved, pulses, failed)
    let mut cells: Vec<CellRecord> = Vec::new();
    for (st, cs) in done {
        states.push(st);
        cells.extend(cs);
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
                programming_time_s: pulses as f64 * spec.pulse_width_s,
            }
        })
        .collect();
    let report = ProgramReport {
        network: ir.name.clone(),
        algorithm,
        seed: a.seed,
        arrays: states.len(),
        cells: cells.len(),
        layers,
        wall_time_s: t0.elapsed().as_secs_f64(),
    };
    let chip = Chip {
        manifest: Manifest {
            format: CHIP_FORMAT,
            netc_version: env!("CARGO_PKG_VERSION").into(),
            network: ir.name.clone(),
            network_sha256: network_hash(&text),
            hardware: serde_json::to_value(hw).map_err(|e| ProgramCmdError::Io {
                path: "hardware".into(),
                message: e.to_string(),
            })?,
            device: spec.clone(),
            seed: a.seed,
            now_s: 0.0,
            arrays: states.iter().map(|s| [s.rows, s.cols]).collect(),
        },
        arrays: states,
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
            l.programming_time_s
        );
    }
    println!(
        "wrote {} (chip.json, array_*/…npy, report.json, target_vs_achieved.png, pulse_histogram.png, error_map_*.png) in {:.2} s",
        a.out.display(),
        report.wall_time_s
    );
    Ok(())
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Target vs achieved conductance, pulse-count histogram, error map per array (PNG).
fn plots(dir: &Path, cells: &[CellRecord], spec: &DeviceSpec) -> PlotResult {
    let us = 1e6;
    let (lo, hi) = (spec.g_min_s * us, spec.g_max_s * us);
    let pad = 0.05 * (hi - lo);
    {
        let p = dir.join("target_vs_achieved.png");
        let area = BitMapBackend::new(&p, (640, 600)).into_drawing_area();
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
    }
    {
        let p = dir.join("pulse_histogram.png");
        let area = BitMapBackend::new(&p, (640, 400)).into_drawing_area();
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
        let area = BitMapBackend::new(&p, (640, 300)).into_drawing_area();
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
    }
    Ok(())
}
