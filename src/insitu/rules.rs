//! The papers' rules that turn an optimiser step into device writes.
//!
//! Every rule starts from the same conductance change per cell: a weight change ΔW of slot
//! element e becomes ΔG = scale·ΔW per pair (scale = the frozen siemens per weight unit of its
//! matrix; a bias split over several rows shares it), split equally and oppositely on the pair,
//! +ΔG/2 on g⁺ and −ΔG/2 on g⁻ (S1, Methods: "same magnitude, opposite sign"). Then:
//!
//! * [`Rule::Gate`] (S1, S2): ΔV_gate = R_vg·ΔG added to each cell's last gate voltage, clamped
//!   to [V_g,min, V_g,max]; the changed cells of a column are RESET and SET in one shot with those
//!   gates ([`crate::device::write::oneshot_column_gates`]: compliance currents solved, the set
//!   law and programming noise decide the achieved G).
//! * [`Rule::OneShotTarget`] (S3): gate-controlled SET aimed at G + ΔG (each cell's last gate moved
//!   by the square-law gate difference between G + ΔG and G,
//!   [`crate::device::write::gates_square_law`]; the SET solves the column's compliance
//!   currents, which decide G); stuck devices never move.
//! * [`Rule::Manhattan`] (S4): one fixed-amplitude pulse per changed cell in the sign of its ΔG,
//!   V/2 biasing solved on the array ([`crate::device::write::pulse_train`]); no verify.
//! * [`Rule::Threshold`] (S5): weights whose |ΔG| < threshold are skipped; the others are
//!   written to G ± ΔG/2 by write-verify through the one programming function
//!   ([`crate::device::program::program_cells`], verify reads by
//!   [`crate::device::write::ArrayVerifier`]).
//! * [`Rule::WriteVerify`]: write-verify of every changed cell (other networks).

use indicatif::ProgressBar;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{CellMap, InsituError, Setup};
use crate::device::chip::{ArrayState, Chip};
use crate::device::program::{program_cells, Algorithm};
use crate::device::write::{gates_square_law, oneshot_column_gates, pulse_train};
use crate::device::{DeviceError, DeviceSpec, SetLaw};
use crate::net::spec::{CellKind as NetCell, HardwareSpec, Optimizer as NetOptimizer};
use crate::nn::matrix::Matrix;
use crate::nn::optim::{Optimizer, OptimizerSpec};

/// How an update is written into the devices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Rule {
    /// S1/S2: new gate = last gate + R_vg·ΔG (clamped), RESET + one-shot SET.
    Gate { r_vg_v_per_siemens: f64 },
    /// S3: gate-controlled SET aimed at G + ΔG.
    OneShotTarget,
    /// S4: one pulse per changed cell in the sign of its ΔG (V/2 scheme).
    Manhattan,
    /// S5: |ΔG| below the threshold skipped, the rest written by write-verify.
    Threshold { threshold_siemens: f64 },
    /// Write-verify of every changed cell.
    WriteVerify,
}

/// What one update wrote.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct UpdateStats {
    pub cells_written: u64,
    pub pulses: u64,
    /// Weights whose update was below the threshold (S5).
    pub skipped: u64,
}

impl Rule {
    /// The rule of a run: the optimiser (Manhattan, threshold) or the hardware and set law.
    pub fn of(setup: &Setup) -> Result<Rule, InsituError> {
        let hw = &setup.file.hardware;
        Ok(match setup.net_optimizer {
            NetOptimizer::Manhattan { .. } => Rule::Manhattan,
            NetOptimizer::Threshold {
                threshold_siemens, ..
            } => Rule::Threshold { threshold_siemens },
            _ if hw.cell == NetCell::OneT1R && hw.levels == 0 => match setup.spec.set_law {
                SetLaw::LinearGate {
                    r_vg_v_per_siemens, ..
                } => Rule::Gate { r_vg_v_per_siemens },
                SetLaw::Empirical => Rule::OneShotTarget,
            },
            _ => Rule::WriteVerify,
        })
    }

    /// The optimiser's weight updates (not applied) for a mini-batch of `batch` samples. The
    /// threshold rule's optimiser is plain SGD on the batch's SUM of per-image updates, as S5's
    /// Methods write it (eq. 1: ΔW = η·Σᵢ Vᵢ·δᵢ over the batch of 100 images; our gradients are
    /// batch means, so the step is η·batch·mean): its threshold is applied to ΔG in siemens by
    /// [`Rule::apply`].
    pub fn deltas(
        &self,
        opt: &mut Optimizer,
        weights: &[Matrix],
        grads: &[Matrix],
        batch: usize,
    ) -> Result<Vec<Matrix>, InsituError> {
        if let OptimizerSpec::Threshold { lr, .. } = opt.spec {
            let mut sgd = Optimizer::new(OptimizerSpec::Sgd {
                lr: lr * batch.max(1) as f64,
                momentum: 0.0,
            });
            return Ok(sgd.deltas(weights, grads)?);
        }
        Ok(opt.deltas(weights, grads)?)
    }

    /// Write the updates `deltas` (weight units, per slot) into `chip` (slots with
    /// `trainable[id]` false are left alone). `scale_siemens[id]`: siemens per weight unit of slot
    /// `id`'s pairs.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        hw: &HardwareSpec,
        spec: &DeviceSpec,
        chip: &mut Chip,
        map: &CellMap,
        scale_siemens: &[f64],
        deltas: &[Matrix],
        trainable: &[bool],
        rng: &mut ChaCha8Rng,
    ) -> Result<UpdateStats, InsituError> {
        let mut stats = UpdateStats::default();
        let mut dg: Vec<Vec<f64>> = chip
            .arrays
            .iter()
            .map(|a| vec![0.0; a.g_siemens.len()])
            .collect();
        let mut touched: Vec<Vec<bool>> = chip
            .arrays
            .iter()
            .map(|a| vec![false; a.g_siemens.len()])
            .collect();
        for (id, d) in deltas.iter().enumerate() {
            if !trainable.get(id).copied().unwrap_or(false) {
                continue;
            }
            let cells = map.slots.get(id).ok_or_else(|| {
                InsituError::Usage(format!("update for slot {id}, the chip maps none"))
            })?;
            for (e, &dw) in d.data.iter().enumerate() {
                if dw == 0.0 || !dw.is_finite() {
                    continue;
                }
                let dg_pair = scale_siemens[id] * dw;
                if let Rule::Threshold { threshold_siemens } = self {
                    if dg_pair.abs() < *threshold_siemens {
                        stats.skipped += 1;
                        continue;
                    }
                }
                for c in &cells[e] {
                    dg[c.array][c.cell] += c.sign * c.share * dg_pair / 2.0;
                    touched[c.array][c.cell] = true;
                }
            }
        }
        let now_seconds = chip.manifest.now_seconds;
        // targets stay inside the operating window the mapping uses: S5's devices saturate at
        // 25 µS, above the 20 µS top state, and an update must not aim past the window the
        // weights are decoded in
        let (lo, hi) = operating_window(spec, hw);
        if matches!(self, Rule::Threshold { .. } | Rule::WriteVerify) {
            // Write-verify goes through the one programming function: every array's verify reads
            // share one prepared network and factor (ArrayVerifier), arrays run in parallel,
            // each from its own random stream drawn from `rng` in array order.
            let targets: Vec<Vec<f64>> = chip
                .arrays
                .iter()
                .enumerate()
                .map(|(a, st)| {
                    st.g_siemens
                        .iter()
                        .zip(&dg[a])
                        .map(|(g, d)| (g + d).clamp(lo, hi))
                        .collect()
                })
                .collect();
            let select = |a: usize, k: usize| touched[a][k];
            let writes = program_cells(
                hw,
                spec,
                &mut chip.arrays,
                &targets,
                &select,
                Algorithm::WriteVerify,
                now_seconds,
                rng,
                &ProgressBar::hidden(),
            )?;
            stats.cells_written += writes.len() as u64;
            stats.pulses += writes.iter().map(|w| w.pulses as u64).sum::<u64>();
            chip.manifest.now_seconds += stats.pulses as f64 * spec.pulse_width_seconds;
            return Ok(stats);
        }
        for (a, st) in chip.arrays.iter_mut().enumerate() {
            let (r, c) = (st.rows, st.cols);
            if !touched[a].iter().any(|t| *t) {
                continue;
            }
            let circ = |e: crate::mapping::MappingError| DeviceError::Circuit(e.to_string());
            let mut xb = crate::mapping::crossbar(hw, r, c, &st.g_siemens).map_err(circ)?;
            match *self {
                Rule::Gate { r_vg_v_per_siemens } => {
                    for j in 0..c {
                        let write: Vec<bool> = (0..r).map(|i| touched[a][i * c + j]).collect();
                        if !write.iter().any(|w| *w) {
                            continue;
                        }
                        let vg: Vec<f64> = (0..r)
                            .map(|i| {
                                let k = i * c + j;
                                let last = last_gate(spec, st.v_gate_v[k], st.g_siemens[k]);
                                if write[i] {
                                    new_gate(spec, last, r_vg_v_per_siemens, dg[a][k])
                                } else {
                                    last
                                }
                            })
                            .collect();
                        set_column(
                            spec,
                            &xb,
                            st,
                            j,
                            &vg,
                            &write,
                            false,
                            now_seconds,
                            &mut stats,
                            rng,
                        )?;
                    }
                }
                Rule::OneShotTarget => {
                    for j in 0..c {
                        let write: Vec<bool> = (0..r).map(|i| touched[a][i * c + j]).collect();
                        if !write.iter().any(|w| *w) {
                            continue;
                        }
                        let targets: Vec<f64> = (0..r)
                            .map(|i| {
                                let k = i * c + j;
                                (st.g_siemens[k] + if write[i] { dg[a][k] } else { 0.0 })
                                    .clamp(lo, hi)
                            })
                            .collect();
                        // The controller moves each cell's LAST gate by the square-law gate
                        // difference between its target and its present conductance, one solved
                        // SET per column. The last gate already produced the present state through
                        // the real column (wire drop, shared bit line), so that bias cancels in the
                        // difference; absolute open-loop square-law gates land systematically low
                        // and, rewritten every update, walked the whole array to g_min.
                        let now: Vec<f64> = (0..r).map(|i| st.g_siemens[i * c + j]).collect();
                        let v_target = gates_square_law(spec, &xb, &targets)?;
                        let v_now = gates_square_law(spec, &xb, &now)?;
                        let vg: Vec<f64> = (0..r)
                            .map(|i| {
                                let k = i * c + j;
                                if st.v_gate_v[k] > 0.0 {
                                    (st.v_gate_v[k] + v_target[i] - v_now[i])
                                        .clamp(spec.v_gate_min_v, spec.v_gate_max_v)
                                } else {
                                    v_target[i]
                                }
                            })
                            .collect();
                        set_column(
                            spec,
                            &xb,
                            st,
                            j,
                            &vg,
                            &write,
                            true,
                            now_seconds,
                            &mut stats,
                            rng,
                        )?;
                    }
                }
                Rule::Manhattan => {
                    for k in (0..r * c).filter(|&k| touched[a][k] && dg[a][k] != 0.0) {
                        let n = if dg[a][k] > 0.0 { 1 } else { -1 };
                        let before: u64 = st.pulses.iter().map(|p| *p as u64).sum();
                        pulse_train(
                            spec,
                            &st.params,
                            &mut xb,
                            k / c,
                            k % c,
                            n,
                            crate::xbar::Scheme::Half,
                            &mut st.pulses,
                            rng,
                        )?;
                        let after: u64 = st.pulses.iter().map(|p| *p as u64).sum();
                        st.t_written_seconds[k] = now_seconds;
                        stats.cells_written += 1;
                        stats.pulses += after - before;
                    }
                    st.g_siemens.clone_from(&xb.g_siemens);
                }
                // written above, through program_cells, before this loop
                Rule::Threshold { .. } | Rule::WriteVerify => {}
            }
        }
        // the chip's clock advances by the programming time (cells written one after another)
        chip.manifest.now_seconds += stats.pulses as f64 * spec.pulse_width_seconds;
        Ok(stats)
    }
}

/// One-shot SET of the rows `write` of column `j` with the gates `vg` (RESET first, compliance
/// solved when `solve_compliance`), and the bookkeeping of every written cell: its gate (bounded
/// to the gate range), pulse count and write time.
#[allow(clippy::too_many_arguments)]
fn set_column(
    spec: &DeviceSpec,
    xb: &crate::xbar::Crossbar,
    st: &mut ArrayState,
    j: usize,
    vg: &[f64],
    write: &[bool],
    solve_compliance: bool,
    now_seconds: f64,
    stats: &mut UpdateStats,
    rng: &mut ChaCha8Rng,
) -> Result<(), DeviceError> {
    oneshot_column_gates(
        spec,
        xb,
        j,
        &mut st.g_siemens,
        &st.params,
        vg,
        write,
        solve_compliance,
        rng,
    )?;
    for i in (0..st.rows).filter(|&i| write[i]) {
        let k = i * st.cols + j;
        st.v_gate_v[k] = vg[i].clamp(spec.v_gate_min_v, spec.v_gate_max_v);
        st.pulses[k] += 1;
        st.t_written_seconds[k] = now_seconds;
        stats.cells_written += 1;
        stats.pulses += 1;
    }
    Ok(())
}

/// A cell's last SET gate voltage; a cell never set one-shot gets the gate the linear rule gives
/// for its present conductance.
pub fn last_gate(spec: &DeviceSpec, v_gate_v: f64, g_siemens: f64) -> f64 {
    if v_gate_v > 0.0 {
        v_gate_v
    } else {
        spec.gate_for(g_siemens)
    }
}

/// S1's rule: the new SET gate is the last one plus R_vg·ΔG, bounded to the gate range.
pub fn new_gate(spec: &DeviceSpec, last_v: f64, r_vg_v_per_siemens: f64, dg_siemens: f64) -> f64 {
    (last_v + r_vg_v_per_siemens * dg_siemens).clamp(spec.v_gate_min_v, spec.v_gate_max_v)
}

/// The conductance window the mapping decodes weights in (the hardware block's g_min..g_max),
/// narrowed by the device's own; the device's window when the two do not overlap.
pub(crate) fn operating_window(spec: &DeviceSpec, hw: &HardwareSpec) -> (f64, f64) {
    match (
        spec.g_min_siemens.max(hw.g_min_siemens),
        spec.g_max_siemens.min(hw.g_max_siemens),
    ) {
        (lo, hi) if lo < hi => (lo, hi),
        _ => (spec.g_min_siemens, spec.g_max_siemens),
    }
}
