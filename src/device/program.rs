//! Programming a compiled network's arrays: the one function that turns target conductances into
//! device writes, used by `netc program`, by the ex-situ transfer and by the in-situ updates
//! (`crate::insitu`).
//!
//! Three algorithms: one-shot compliance SET of a column (S1; 1T1R only), closed-loop write-verify
//! (S4, S5) and open-loop pulses (the count the nominal device needs, applied blind).

use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::chip::{network_hash, ArrayState, Chip, Manifest, CHIP_FORMAT};
use super::write::{gates_for_targets, oneshot_column_gates, verify_cell, ArrayVerifier};
use super::{DeviceError, DeviceParams, DeviceSpec};
use crate::mapping::weights::Programmed;
use crate::net::spec::{CellKind as NetCell, HardwareSpec};

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

/// The declared programming algorithm of a hardware block: one-shot for analogue 1T1R arrays
/// (`levels 0`; S1, S3), write-verify otherwise (S4, S5).
pub fn default_algorithm(hw: &HardwareSpec) -> Algorithm {
    if hw.cell == NetCell::OneT1R && hw.levels == 0 {
        Algorithm::Oneshot
    } else {
        Algorithm::WriteVerify
    }
}

/// The algorithm to use: `asked` (checked against the cell kind) or the declared one.
pub fn choose_algorithm(
    hw: &HardwareSpec,
    asked: Option<Algorithm>,
) -> Result<Algorithm, DeviceError> {
    match asked {
        Some(Algorithm::Oneshot) if hw.cell != NetCell::OneT1R => Err(DeviceError::Param(
            "one-shot compliance SET needs 1T1R cells; use write-verify or pulses".into(),
        )),
        Some(a) => Ok(a),
        None => Ok(default_algorithm(hw)),
    }
}

/// The device model of a hardware block (a noise-free ideal device when none is declared).
pub fn device_of(hw: &HardwareSpec) -> DeviceSpec {
    hw.device
        .clone()
        .unwrap_or_else(|| DeviceSpec::ideal(hw.g_min_siemens, hw.g_max_siemens))
}

/// What happened to one written cell.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CellWrite {
    pub array: usize,
    /// Row-major cell index in its array.
    pub cell: usize,
    pub g_target_siemens: f64,
    pub g_achieved_siemens: f64,
    /// Pulses this write used (one-shot: 1).
    pub pulses: u32,
    /// Write-verify ended outside its window.
    pub failed: bool,
}

/// Write the cells `select(array, k)` of `states` towards `targets[array][k]` (S) with
/// `algorithm`, at chip time `now_seconds` (each written cell's `t_written_seconds`). One-shot SET
/// finds the gates from the targets ([`gates_for_targets`]) and records them in `v_gate_v`.
/// Returns one record per written cell, in array then cell order; `bar` advances by one per cell.
#[allow(clippy::too_many_arguments)]
pub fn program_cells<R: Rng>(
    hw: &HardwareSpec,
    spec: &DeviceSpec,
    states: &mut [ArrayState],
    targets: &[Vec<f64>],
    select: &(dyn Fn(usize, usize) -> bool + Sync),
    algorithm: Algorithm,
    now_seconds: f64,
    rng: &mut R,
    bar: &ProgressBar,
) -> Result<Vec<CellWrite>, DeviceError> {
    if targets.len() != states.len() {
        return Err(DeviceError::Param(format!(
            "{} target arrays for {} chip arrays",
            targets.len(),
            states.len()
        )));
    }
    // The arrays are independent: written in parallel, each with its own random stream seeded
    // from `rng` in array order, so the result does not depend on the thread count.
    let seeds: Vec<u64> = states.iter().map(|_| rng.gen()).collect();
    let per_array = |(a, (st, tg)): (usize, (&mut ArrayState, &Vec<f64>))| {
        let mut rng = ChaCha8Rng::seed_from_u64(seeds[a]);
        let mut out = Vec::new();
        write_array(
            hw,
            spec,
            a,
            st,
            tg,
            select,
            algorithm,
            now_seconds,
            &mut rng,
            bar,
            &mut out,
        )?;
        Ok::<_, DeviceError>(out)
    };
    let per: Vec<Vec<CellWrite>> = states
        .par_iter_mut()
        .zip(targets.par_iter())
        .enumerate()
        .map(per_array)
        .collect::<Result<_, _>>()?;
    Ok(per.into_iter().flatten().collect())
}

/// [`program_cells`] for array `a`.
#[allow(clippy::too_many_arguments)]
fn write_array<R: Rng>(
    hw: &HardwareSpec,
    spec: &DeviceSpec,
    a: usize,
    st: &mut ArrayState,
    tg: &[f64],
    select: &(dyn Fn(usize, usize) -> bool + Sync),
    algorithm: Algorithm,
    now_seconds: f64,
    rng: &mut R,
    bar: &ProgressBar,
    out: &mut Vec<CellWrite>,
) -> Result<(), DeviceError> {
    {
        let (r, c) = (st.rows, st.cols);
        if tg.len() != r * c {
            return Err(DeviceError::Param(format!(
                "array {a}: {} targets for {r}×{c} cells",
                tg.len()
            )));
        }
        match algorithm {
            Algorithm::Oneshot => {
                let xb = crate::mapping::crossbar(hw, r, c, &st.g_siemens)
                    .map_err(|e| DeviceError::Circuit(e.to_string()))?;
                for j in 0..c {
                    let write: Vec<bool> = (0..r).map(|i| select(a, i * c + j)).collect();
                    if !write.iter().any(|w| *w) {
                        continue;
                    }
                    let col_targets: Vec<f64> = (0..r).map(|i| tg[i * c + j]).collect();
                    let vg = gates_for_targets(spec, &xb, j, &col_targets)?;
                    let mut rep = oneshot_column_gates(
                        spec,
                        &xb,
                        j,
                        &mut st.g_siemens,
                        &st.params,
                        &vg,
                        &write,
                        true,
                        rng,
                    )?;
                    rep.mark_unreachable(spec, &col_targets);
                    for i in (0..r).filter(|&i| write[i]) {
                        let k = i * c + j;
                        st.pulses[k] += 1;
                        st.t_written_seconds[k] = now_seconds;
                        st.v_gate_v[k] = vg[i].clamp(spec.v_gate_min_v, spec.v_gate_max_v);
                        out.push(CellWrite {
                            array: a,
                            cell: k,
                            g_target_siemens: tg[k],
                            g_achieved_siemens: st.g_siemens[k],
                            pulses: 1,
                            // a blind write fails where its aim misses: the target is out of reach
                            failed: rep.unreachable[i],
                        });
                        bar.inc(1);
                    }
                }
            }
            Algorithm::WriteVerify => {
                let xb = crate::mapping::crossbar(hw, r, c, &st.g_siemens)
                    .map_err(|e| DeviceError::Circuit(e.to_string()))?;
                // one verifier per array: the network and its factor are kept across cells, each
                // read a low-rank update of it (crate::device::write::ArrayVerifier)
                let mut verifier = ArrayVerifier::new(&xb, spec.verify.v_read_v)?;
                let mut g_now = st.g_siemens.clone();
                for k in (0..r * c).filter(|&k| select(a, k)) {
                    let before = st.pulses[k];
                    let reader = verifier.cell(&g_now, k / c, k % c)?;
                    let o = verify_cell(
                        spec,
                        &st.params[k],
                        &reader,
                        &mut g_now[k],
                        tg[k],
                        &mut st.pulses[k],
                        rng,
                    );
                    if o.pulses > 0 {
                        st.t_written_seconds[k] = now_seconds;
                    }
                    out.push(CellWrite {
                        array: a,
                        cell: k,
                        g_target_siemens: tg[k],
                        g_achieved_siemens: o.g_true_siemens,
                        pulses: st.pulses[k] - before,
                        failed: !o.converged,
                    });
                    bar.inc(1);
                }
                st.g_siemens.clone_from(&g_now);
            }
            Algorithm::Pulses => {
                let nominal = DeviceParams::nominal(spec);
                for k in (0..r * c).filter(|&k| select(a, k)) {
                    // count on the nominal, noise-free device, then apply blind to the real one
                    let (mut g, target) = (st.g_siemens[k], tg[k]);
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
                    let v = spec.v_pulse_signed(up);
                    st.g_siemens[k] = spec.pulses(
                        &st.params[k],
                        st.g_siemens[k],
                        if up { n } else { -n },
                        v,
                        rng,
                    );
                    st.pulses[k] += n as u32;
                    if n > 0 {
                        st.t_written_seconds[k] = now_seconds;
                    }
                    out.push(CellWrite {
                        array: a,
                        cell: k,
                        g_target_siemens: target,
                        g_achieved_siemens: st.g_siemens[k],
                        pulses: n as u32,
                        // open loop: a write more than 5 % of the window off its target failed
                        failed: (st.g_siemens[k] - target).abs()
                            > 0.05 * (spec.g_max_siemens - spec.g_min_siemens),
                    });
                    bar.inc(1);
                }
            }
        }
    }
    Ok(())
}

/// Fresh arrays for a compiled network (every device drawn from `spec`, in array order).
pub fn fresh_arrays<R: Rng>(
    spec: &DeviceSpec,
    programmed: &Programmed,
    rng: &mut R,
) -> Vec<ArrayState> {
    programmed
        .arrays
        .iter()
        .map(|a| ArrayState::fresh(spec, a.rows, a.cols, rng))
        .collect()
}

/// Program every used cell of a compiled network (`programmed`: the encoder's target
/// conductances) into fresh arrays drawn from `spec` with the seeded `rng`; the chip and one
/// record per programmed cell. `network_text` is the `.net` file's text (its hash goes into the
/// manifest).
#[allow(clippy::too_many_arguments)]
pub fn program_network<R: Rng>(
    network: &str,
    network_text: &str,
    hw: &HardwareSpec,
    spec: &DeviceSpec,
    programmed: &Programmed,
    algorithm: Algorithm,
    seed: u64,
    rng: &mut R,
    bar: &ProgressBar,
) -> Result<(Chip, Vec<CellWrite>), DeviceError> {
    let mut states = fresh_arrays(spec, programmed, rng);
    let targets: Vec<Vec<f64>> = programmed
        .arrays
        .iter()
        .map(|a| a.g_siemens.clone())
        .collect();
    // one-shot sets whole columns (S1 programs a line at once): every cell of a column that holds
    // a weight; the other algorithms write the cells that hold weights
    let owned = |a: usize, k: usize| {
        let arr = &programmed.arrays[a];
        match algorithm {
            Algorithm::Oneshot => {
                let j = k % arr.cols;
                (0..arr.rows).any(|i| arr.owner[i * arr.cols + j].is_some())
            }
            _ => arr.owner[k].is_some(),
        }
    };
    let writes = program_cells(
        hw,
        spec,
        &mut states,
        &targets,
        &owned,
        algorithm,
        0.0,
        rng,
        bar,
    )?;
    let chip = Chip {
        manifest: Manifest {
            format: CHIP_FORMAT,
            netc_version: env!("CARGO_PKG_VERSION").into(),
            network: network.into(),
            network_sha256: network_hash(network_text),
            hardware: serde_json::to_value(hw).map_err(|e| DeviceError::Chip(e.to_string()))?,
            device: spec.clone(),
            seed,
            now_seconds: 0.0,
            arrays: states.iter().map(|s| [s.rows, s.cols]).collect(),
            scale_weights: None,
        },
        arrays: states,
    };
    Ok((chip, writes))
}
