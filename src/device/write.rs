//! Write operations solved at circuit level.
//!
//! **Compliance-controlled SET of a 1T1R line (S1).** Seed 001, Methods "Basic 1T1R operations":
//! "to program a selected row, all bit lines were floating, except the selected one, which was
//! grounded. Each word line was assigned a different voltage on the basis of the targeted
//! conductance. All memristor TE lines were biased with the same V_SET". In S1's array the gates
//! (word lines) and the top electrodes run along one direction and the transistor sources (bit
//! lines) along the other, which is netc's 1T1R convention with S1's "word lines" = netc's gate
//! lines (parallel to netc rows) and S1's "bit lines" = netc columns. So S1's "row" programmed in
//! parallel is a netc **column** j: every netc row (top electrode) driven at V_SET, gate line i at
//! its own voltage, column j grounded through its sense end, the other columns floating. Each cell
//! of column j gets its own gate voltage, as the paper requires, with no change of geometry.
//!
//! During SET the memristor is held at its switching voltage V_m while the filament forms
//! (DEVICES.md), so the circuit is: V_SET driver → word-line wire → V_m (a source: its current is
//! the cell's compliance current) → level-1 NMOS (declared W/L and card) → bit-line wire → ground.
//! The floating columns carry no current at DC except what the differences of word-line drops push
//! through them; they are left out of the bias circuit (so a word line's current is this column's
//! cell current alone and the word line up to column j is one series resistance). The bias circuit
//! is emitted as a SPICE netlist ([`set_netlist`]); [`compliance_currents`] solves the same circuit
//! directly as a ladder ([`super::set_bias`], checked against the general solver on the netlist),
//! and ngspice's `.op` of the netlist is the test's reference.
//!
//! **Verify reads and read-back** go through the crossbar engine's small-signal array (wires,
//! access transistor channel, sense): one row driven at V_read, the others and every column at
//! 0 V, as S1 reads its array one row per time step (Methods). [`write_verify`] pulses one cell
//! and reads it through the array after every pulse.

use std::fmt::Write as _;

use faer::Mat;
use rand::Rng;
use serde::Serialize;

use super::{DeviceError, DeviceParams, DeviceSpec};
use crate::xbar::{CellKind, Crossbar, Engine, SolveOptions};

fn num(x: f64) -> String {
    format!("{x:e}")
}

fn mos_of(xb: &Crossbar) -> Result<&crate::circuit::mos1::Mos1, DeviceError> {
    match &xb.cell {
        CellKind::OneT1R { mos, .. } => Ok(mos),
        other => Err(DeviceError::Param(format!(
            "a compliance-controlled SET needs 1T1R cells, this array has {} cells",
            other.name()
        ))),
    }
}

/// The checks of a column's SET bias (1T1R cells, column in range, one finite gate per row).
fn check_set_bias<'a>(
    xb: &'a Crossbar,
    j: usize,
    v_gate_v: &[f64],
    v_set_v: f64,
    v_m_v: f64,
) -> Result<&'a crate::circuit::mos1::Mos1, DeviceError> {
    let mos = mos_of(xb)?;
    xb.validate()
        .map_err(|e| DeviceError::Circuit(e.to_string()))?;
    if j >= xb.cols {
        return Err(DeviceError::Param(format!(
            "column {j} is outside the {}×{} array",
            xb.rows, xb.cols
        )));
    }
    if v_gate_v.len() != xb.rows {
        return Err(DeviceError::Param(format!(
            "{} gate voltages for {} rows",
            v_gate_v.len(),
            xb.rows
        )));
    }
    if !(v_set_v.is_finite() && v_m_v.is_finite() && v_gate_v.iter().all(|v| v.is_finite())) {
        return Err(DeviceError::Param("bias voltages must be finite".into()));
    }
    Ok(mos)
}

/// The SET bias circuit of column `j` of a 1T1R array: every row's top electrode at `v_set_v`, gate
/// line i at `v_gate_v[i]`, memristors held at `v_m_v`, column j grounded. The compliance current of
/// cell (i, j) is `i(vm_<i>)`.
pub fn set_netlist(
    xb: &Crossbar,
    j: usize,
    v_gate_v: &[f64],
    v_set_v: f64,
    v_m_v: f64,
) -> Result<String, DeviceError> {
    let mos = check_set_bias(xb, j, v_gate_v, v_set_v, v_m_v)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "* netc compliance-SET bias: column {j} of a {}x{} 1T1R array, V_SET = {v_set_v} V, V_m = {v_m_v} V",
        xb.rows, xb.cols
    );
    let m = &mos.model;
    let _ = writeln!(s, "{}", crate::xbar::emit::model_card("nacc", m));
    // a zero resistance is a 0 V source (exact in both solvers), not a tiny resistor
    let link = |s: &mut String, name: &str, a: &str, b: &str, r: f64| {
        if r > 0.0 {
            let _ = writeln!(s, "r{name} {a} {b} {}", num(r));
        } else {
            let _ = writeln!(s, "v{name} {a} {b} DC 0");
        }
    };
    let r_row = xb.r_driver_ohm + (j as f64 + 1.0) * xb.r_word_ohm;
    for (i, vg) in v_gate_v.iter().enumerate() {
        let _ = writeln!(s, "vset_{i} top_{i} 0 DC {}", num(v_set_v));
        link(
            &mut s,
            &format!("row_{i}"),
            &format!("top_{i}"),
            &format!("w_{i}"),
            r_row,
        );
        let _ = writeln!(s, "vm_{i} w_{i} m_{i} DC {}", num(v_m_v));
        let _ = writeln!(s, "vg_{i} g_{i} 0 DC {}", num(*vg));
        let _ = writeln!(
            s,
            "m_{i} m_{i} g_{i} b_{i} 0 nacc W={} L={}",
            num(mos.w_m),
            num(mos.l_m)
        );
        if i + 1 < xb.rows {
            link(
                &mut s,
                &format!("bit_{i}"),
                &format!("b_{i}"),
                &format!("b_{}", i + 1),
                xb.r_bit_ohm,
            );
        }
    }
    link(
        &mut s,
        "sense",
        &format!("b_{}", xb.rows - 1),
        "0",
        xb.r_bit_ohm + xb.r_sense_ohm,
    );
    let _ = writeln!(s, ".op\n.end");
    Ok(s)
}

/// Solve a SET bias netlist with netc's general solver; the compliance current of every row (A).
pub fn solve_set_netlist(netlist: &str, rows: usize) -> Result<Vec<f64>, DeviceError> {
    let nl = crate::spice::parse_str(netlist, "set_bias.cir")
        .map_err(|e| DeviceError::Circuit(e.to_string()))?;
    let res = crate::solver::run(&nl).map_err(|e| DeviceError::Circuit(e.to_string()))?;
    let op = res
        .into_iter()
        .find_map(|a| match a {
            crate::solver::AnalysisResult::Op { values } => Some(values),
            _ => None,
        })
        .ok_or_else(|| DeviceError::Circuit("no operating point".into()))?;
    (0..rows)
        .map(|i| {
            op.get(&format!("i(vm_{i})"))
                .copied()
                .ok_or_else(|| DeviceError::Circuit(format!("no current i(vm_{i})")))
        })
        .collect()
}

/// The solved compliance current (A) of every cell of column `j` during a SET with gates `v_gate_v`:
/// the bias circuit of [`set_netlist`] solved as a ladder ([`super::set_bias`]), or, should its
/// Newton not settle, that netlist through the general solver.
pub fn compliance_currents(
    xb: &Crossbar,
    j: usize,
    v_gate_v: &[f64],
    v_set_v: f64,
    v_m_v: f64,
) -> Result<Vec<f64>, DeviceError> {
    let mos = check_set_bias(xb, j, v_gate_v, v_set_v, v_m_v)?;
    let geo = super::set_bias::LadderGeometry {
        r_row_ohm: xb.r_driver_ohm + (j as f64 + 1.0) * xb.r_word_ohm,
        r_bit_ohm: xb.r_bit_ohm,
        r_end_ohm: xb.r_bit_ohm + xb.r_sense_ohm,
    };
    if let Some(i_cc) = super::set_bias::solve_ladder(mos, geo, v_gate_v, v_set_v, v_m_v) {
        return Ok(i_cc);
    }
    // Newton on the ladder did not settle: the general solver (source stepping, limiting) on the
    // same circuit as text
    let text = set_netlist(xb, j, v_gate_v, v_set_v, v_m_v)?;
    solve_set_netlist(&text, xb.rows)
}

/// Result of a one-shot programmed column.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    pub col: usize,
    pub v_gate_v: Vec<f64>,
    pub compliance_current_a: Vec<f64>,
    pub g_before_siemens: Vec<f64>,
    pub g_after_siemens: Vec<f64>,
    /// Where each cell's SET is aimed before programming noise: the law's conductance at the
    /// solved compliance current and the gate used, in the device's window (stuck devices at their
    /// value; NaN for a mis-written device).
    pub g_aimed_siemens: Vec<f64>,
    /// Cells whose aimed conductance misses the target by more than 5 % of the window: the target
    /// lies outside what the gate range (or the device's own window, or its fault) can reach. The
    /// programming noise is not a failure of the write: one-shot programming is blind. Set by
    /// [`SetReport::mark_unreachable`] when the targets are known (all false until then).
    pub unreachable: Vec<bool>,
}

impl SetReport {
    /// Mark the rows whose aim misses `g_target_siemens[i]` by more than 5 % of the window (a
    /// mis-written device, whose aim is random, is judged by where it landed).
    pub fn mark_unreachable(&mut self, spec: &DeviceSpec, g_target_siemens: &[f64]) {
        let tolerance_siemens = 0.05 * (spec.g_max_siemens - spec.g_min_siemens);
        self.unreachable = (0..self.g_aimed_siemens.len())
            .map(|i| {
                let t = g_target_siemens.get(i).copied().unwrap_or(f64::NAN);
                let a = self.g_aimed_siemens[i];
                let got = if a.is_nan() {
                    self.g_after_siemens[i]
                } else {
                    a
                };
                let miss = (got - t).abs();
                miss.is_nan() || miss > tolerance_siemens
            })
            .collect();
    }
}

/// Most column solves the gate search of the empirical SET law takes.
const MAX_GATE_SOLVES: usize = 40;

/// Gate voltages for target conductances. With S1's linear rule the gate follows from the rule
/// (bounded to the gate range); with the empirical law G = I_cc/V_m the gates are found on the
/// solved circuit: a square-law first guess, then Newton steps on each row's solved I_cc
/// (dI/dV_g from the saturation law) until every current is within 1e-4 of its target or its gate
/// is at a bound.
pub fn gates_for_targets(
    spec: &DeviceSpec,
    xb: &Crossbar,
    j: usize,
    g_target_siemens: &[f64],
) -> Result<Vec<f64>, DeviceError> {
    let (lo, hi) = (spec.v_gate_min_v, spec.v_gate_max_v);
    if let super::SetLaw::LinearGate { .. } = spec.set_law {
        return Ok(g_target_siemens.iter().map(|g| spec.gate_for(*g)).collect());
    }
    let mos = mos_of(xb)?;
    let m = &mos.model;
    let beta = m.kp_a_per_v2 * mos.w_m / (mos.l_m - 2.0 * m.ld_m);
    let i_target: Vec<f64> = g_target_siemens.iter().map(|g| g * spec.v_m_v).collect();
    let mut vg = gates_square_law(spec, xb, g_target_siemens)?;
    // Newton on each row's solved current with the saturation slope dI/dV_g = β·(V_g − V_t), the
    // overdrive floored at the target's own (a cell in cutoff carries no current, so its measured
    // slope says nothing). The rows are coupled through the shared bit line (every cell's current
    // raises the sources above it), so the row-wise steps are repeated until every current is
    // within 1e-4 of its target or its gate sits at a bound (at most MAX_GATE_SOLVES solves).
    for _ in 0..MAX_GATE_SOLVES {
        let i_cc = compliance_currents(xb, j, &vg, spec.v_set_v, spec.v_m_v)?;
        let mut done = true;
        for k in 0..vg.len() {
            let ov_target = (2.0 * i_target[k] / beta).sqrt();
            let ov = (vg[k] - m.vto_v).max(ov_target).max(0.05);
            let next = (vg[k] + (i_target[k] - i_cc[k]) / (beta * ov)).clamp(lo, hi);
            let settled = (i_cc[k] - i_target[k]).abs() <= 1e-4 * i_target[k].abs()
                || (next == vg[k] && (next == lo || next == hi));
            done &= settled;
            vg[k] = next;
        }
        if done {
            break;
        }
    }
    Ok(vg)
}

/// The controller's open-loop gate voltages for target conductances: the linear rule (S1), or for
/// the empirical law G = I_cc/V_m the transistor's saturation law I = β/2·(V_g − V_t)² with the
/// source at 0 V (no circuit solve; the SET itself then solves the column, so wire drops and the
/// transistor's real operating point decide what is achieved). Bounded to the gate range.
pub fn gates_square_law(
    spec: &DeviceSpec,
    xb: &Crossbar,
    g_target_siemens: &[f64],
) -> Result<Vec<f64>, DeviceError> {
    let (lo, hi) = (spec.v_gate_min_v, spec.v_gate_max_v);
    if let super::SetLaw::LinearGate { .. } = spec.set_law {
        return Ok(g_target_siemens.iter().map(|g| spec.gate_for(*g)).collect());
    }
    let mos = mos_of(xb)?;
    let m = &mos.model;
    let beta = m.kp_a_per_v2 * mos.w_m / (mos.l_m - 2.0 * m.ld_m);
    Ok(g_target_siemens
        .iter()
        .map(|g| (m.vto_v + (2.0 * g * spec.v_m_v / beta).sqrt()).clamp(lo, hi))
        .collect())
}

/// One-shot program column `j` the way S1 does: full RESET of the column's cells, then one SET
/// of all of them in parallel, each with its own gate voltage. `g` is the array's true
/// conductance state (row-major), `params` each cell's own device parameters; the array `xb`
/// provides the geometry (its conductances are not used during SET: the memristors are held at
/// V_m).
#[allow(clippy::too_many_arguments)]
pub fn oneshot_column<R: Rng>(
    spec: &DeviceSpec,
    xb: &Crossbar,
    j: usize,
    g: &mut [f64],
    params: &[DeviceParams],
    g_target_siemens: &[f64],
    rng: &mut R,
) -> Result<SetReport, DeviceError> {
    if g_target_siemens.len() != xb.rows {
        return Err(DeviceError::Param(format!(
            "one-shot column: {} targets for {} rows",
            g_target_siemens.len(),
            xb.rows
        )));
    }
    let vg = gates_for_targets(spec, xb, j, g_target_siemens)?;
    let all = vec![true; xb.rows];
    let mut rep = oneshot_column_gates(spec, xb, j, g, params, &vg, &all, true, rng)?;
    rep.mark_unreachable(spec, g_target_siemens);
    Ok(rep)
}

/// One-shot SET of the cells of column `j` selected by `write[i]`, with the given gate voltages
/// (S1's in-situ update: the gates come from the training rule, not from a target). The selected
/// cells are fully RESET, then SET in parallel; the compliance currents are solved with every
/// row's gate as given (unselected rows keep their state: they are neither RESET nor SET). The
/// report lists every row; unselected rows show their unchanged conductance.
///
/// With S1's linear rule (`set_law linear_gate`) the achieved conductance follows from the gate
/// alone; `solve_compliance = false` then skips the bias-circuit solve (the report's currents are
/// NaN). The empirical law always solves it (its G is I_cc/V_m).
#[allow(clippy::too_many_arguments)]
pub fn oneshot_column_gates<R: Rng>(
    spec: &DeviceSpec,
    xb: &Crossbar,
    j: usize,
    g: &mut [f64],
    params: &[DeviceParams],
    v_gate_v: &[f64],
    write: &[bool],
    solve_compliance: bool,
    rng: &mut R,
) -> Result<SetReport, DeviceError> {
    let (r, c) = (xb.rows, xb.cols);
    if g.len() != r * c || params.len() != r * c || v_gate_v.len() != r || write.len() != r {
        return Err(DeviceError::Param(format!(
            "one-shot column: {} conductances, {} devices, {} gates, {} flags for a {r}×{c} array",
            g.len(),
            params.len(),
            v_gate_v.len(),
            write.len()
        )));
    }
    if j >= c {
        return Err(DeviceError::Param(format!(
            "column {j} is outside the {r}×{c} array"
        )));
    }
    let before: Vec<f64> = (0..r).map(|i| g[i * c + j]).collect();
    let vg: Vec<f64> = v_gate_v
        .iter()
        .map(|v| v.clamp(spec.v_gate_min_v, spec.v_gate_max_v))
        .collect();
    let linear_rule = matches!(spec.set_law, super::SetLaw::LinearGate { .. });
    let i_cc = if solve_compliance || !linear_rule {
        compliance_currents(xb, j, &vg, spec.v_set_v, spec.v_m_v)?
    } else {
        vec![f64::NAN; r]
    };
    let mut after = Vec::with_capacity(r);
    let mut aimed = Vec::with_capacity(r);
    for i in 0..r {
        let k = i * c + j;
        if write[i] {
            // S1: a full RESET, then the compliance-limited SET (whose result does not depend on
            // the state the RESET left, except for stuck devices, which ignore both)
            g[k] = spec.reset(&params[k], g[k]);
            g[k] = spec.set_from_compliance(&params[k], i_cc[i], vg[i], rng);
        }
        after.push(g[k]);
        let a = spec.aimed(&params[k], spec.set_law_g(i_cc[i], vg[i]));
        aimed.push(a.unwrap_or(f64::NAN));
    }
    Ok(SetReport {
        col: j,
        v_gate_v: vg,
        compliance_current_a: i_cc,
        g_before_siemens: before,
        g_after_siemens: after,
        g_aimed_siemens: aimed,
        unreachable: vec![false; r],
    })
}

/// Read a whole array back as the hardware does: row i alone driven at `v_read_v` (the others and
/// every column at 0 V), all column currents sensed; `G_read[i][j] = I_j / V_read`. Solved on the
/// engine's small-signal array (one factor, R right-hand sides).
pub fn read_back(xb: &Crossbar, v_read_v: f64) -> Result<Vec<f64>, DeviceError> {
    let r = xb.rows;
    let inputs = Mat::<f64>::from_fn(r, r, |a, b| if a == b { v_read_v } else { 0.0 });
    let out = small_signal_infer(xb, &inputs)?;
    Ok((0..r * xb.cols)
        .map(|k| out[(k / xb.cols, k % xb.cols)] / v_read_v)
        .collect())
}

/// Outputs of the small-signal (linearised at 0 V) array with virtual-ground sensing: for linear
/// arrays the exact outputs; for 1T1R cells the memristor in series with the channel conductance.
fn small_signal_infer(xb: &Crossbar, inputs: &Mat<f64>) -> Result<Mat<f64>, DeviceError> {
    let circ = |x: crate::xbar::XbarError| DeviceError::Circuit(x.to_string());
    let mut lin = xb.clone();
    lin.g_siemens =
        crate::xbar::network::linearized_cell_g(xb, crate::xbar::eval::GMIN_JUNCTION_SIEMENS);
    lin.cell = CellKind::Linear;
    lin.sense = crate::xbar::SenseKind::VirtualGround;
    let mut le = Engine::new(&lin, SolveOptions::default()).map_err(circ)?;
    le.infer(inputs.as_ref()).map_err(circ)
}

/// Per-cell result of a write-verify.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VerifyOutcome {
    pub pulses: usize,
    pub g_target_siemens: f64,
    pub g_read_siemens: f64,
    pub g_true_siemens: f64,
    /// Relative error of the final read against the target.
    pub error_rel: f64,
    pub converged: bool,
}

/// Closed-loop write-verify of cell (i, j): read through the array, apply one SET or RESET pulse in
/// the needed direction, read again, stop inside the verify window or at the pulse limit
/// (S5 Methods; S4's tolerance). The pulses have the fixed amplitude of their polarity, or follow
/// the declared amplitude ramp ([`super::VerifyRamp`], S4). The read is the cell's row driven at
/// V_read, every other line at 0 V, the column current over V_read (what the hardware's verify
/// measures, wires and sneak paths included). Updates `xb.g_siemens` (the true state) and `pulses` in place. For many cells
/// of one array, [`ArrayVerifier`] prepares the array once.
#[allow(clippy::too_many_arguments)]
pub fn write_verify<R: Rng>(
    spec: &DeviceSpec,
    params: &DeviceParams,
    xb: &mut Crossbar,
    i: usize,
    j: usize,
    g_target_siemens: f64,
    pulses: &mut u32,
    rng: &mut R,
) -> Result<VerifyOutcome, DeviceError> {
    let reader = CellReader::new(xb, i, j, spec.verify.v_read_v)?;
    let k = i * xb.cols + j;
    Ok(verify_cell(
        spec,
        params,
        &reader,
        &mut xb.g_siemens[k],
        g_target_siemens,
        pulses,
        rng,
    ))
}

/// The write-verify loop of one cell whose read is `reader`: `g_siemens` is the cell's true
/// conductance (updated in place), `pulses` its pulse counter. A loop that pulsed at least once stops on its
/// last read and the fresh state then relaxes ([`DeviceSpec::relaxed`]); `converged` and
/// `g_read_siemens` are the loop's last read, `g_true_siemens` the state after the relaxation.
pub fn verify_cell<R: Rng>(
    spec: &DeviceSpec,
    params: &DeviceParams,
    reader: &CellReader,
    g_siemens: &mut f64,
    g_target_siemens: f64,
    pulses: &mut u32,
    rng: &mut R,
) -> VerifyOutcome {
    let read = |g: f64, rng: &mut R| -> f64 { spec.read(reader.g_read(g), rng) };
    if let super::Fault::Miswritten = params.fault {
        // a mis-writing device lands anywhere in its window whatever the loop aims at (S5's
        // deliberately mis-written weights): one write, not verified into place
        let g = spec.land(params, g_target_siemens, rng);
        *g_siemens = g;
        *pulses += 1;
        let g_read = read(g, rng);
        return VerifyOutcome {
            pulses: 1,
            g_target_siemens,
            g_read_siemens: g_read,
            g_true_siemens: g,
            error_rel: (g_read - g_target_siemens).abs() / g_target_siemens.abs().max(1e-30),
            converged: false,
        };
    }
    let mut g = *g_siemens;
    let mut g_read = read(g, rng);
    let mut n = 0usize;
    // (polarity of the last pulse, its index in the current run of that polarity): the ramp's
    // position (`verify { ramp_… }`); without a ramp every pulse has the fixed amplitude
    let mut run: Option<(bool, usize)> = None;
    while !spec.within(g_read, g_target_siemens) && n < spec.verify.max_pulses {
        let up = g_read < g_target_siemens;
        let k = match run {
            Some((last_up, k)) if last_up == up => k + 1,
            // the first pulse, or the read crossed the target: the ramp restarts
            _ => 0,
        };
        run = Some((up, k));
        let amplitude_v = match &spec.verify.ramp {
            Some(ramp) => ramp.amplitude_v(up, k),
            None => spec.v_pulse_fixed(up),
        };
        let v = if up { amplitude_v } else { -amplitude_v };
        g = spec.pulses(params, g, if up { 1 } else { -1 }, v, rng);
        n += 1;
        g_read = read(g, rng);
    }
    let converged = spec.within(g_read, g_target_siemens);
    if n > 0 {
        // the loop has stopped on its last read; the fresh state then relaxes (`relax_sigma`)
        g = spec.relaxed(params, g, rng);
    }
    *g_siemens = g;
    *pulses += n as u32;
    VerifyOutcome {
        pulses: n,
        g_target_siemens,
        g_read_siemens: g_read,
        g_true_siemens: g,
        error_rel: (g_read - g_target_siemens).abs() / g_target_siemens.abs().max(1e-30),
        converged,
    }
}

/// Verify reads of one array, prepared once. The small-signal network, its symbolic analysis and
/// a numeric factor are built once; cells written since that factor are a low-rank change of it,
/// `A = A_F + U·D·Uᵀ` (one column `u = e_p − e_q` per changed cell, D their conductance changes),
/// taken into account exactly by the Woodbury identity, and the factor is renewed after
/// [`ArrayVerifier::MAX_RANK`] changed cells. Each cell's reader then costs two solves with the
/// factor (the read input, and a unit current between the cell's two nodes) and a small dense
/// correction, and Sherman–Morrison gives the read as an exact linear-fractional function of that
/// cell's conductance (see [`CellReader`]). Arrays whose cells are tied to a source (zero wire
/// resistance) use three solves of the array per cell on one kept engine instead.
pub struct ArrayVerifier {
    xb: Crossbar,
    lin: crate::xbar::linear::LinearSystem,
    tia_g: f64,
    gmin: f64,
    v_read_v: f64,
    /// Every cell has both ends on unknowns (wires on both lines): the Woodbury path applies.
    all_free: bool,
    /// Output functional of each column: (unknown, coefficient) of the wires into it.
    terms: Vec<Vec<(usize, f64)>>,
    /// Linear cell conductances the factor was made with (empty: no factor yet).
    g_factor: Vec<f64>,
    /// Cells changed since the factor: (cell, p, q, A_F⁻¹·u).
    changed: Vec<(usize, usize, usize, Vec<f64>)>,
    /// A_F⁻¹·u of the last cell read (its column once it has changed).
    last_w: Option<(usize, Vec<f64>)>,
    /// For cells tied to a source: an engine on the stand-in, built on first need.
    probe: Option<Engine>,
}

impl ArrayVerifier {
    /// Changed cells tracked before the factor is renewed.
    pub const MAX_RANK: usize = 24;

    pub fn new(xb: &Crossbar, v_read_v: f64) -> Result<ArrayVerifier, DeviceError> {
        use crate::xbar::network::Node;
        let circ = |x: crate::xbar::XbarError| DeviceError::Circuit(x.to_string());
        xb.validate().map_err(circ)?;
        if !(v_read_v.is_finite() && v_read_v != 0.0) {
            return Err(DeviceError::Param(format!(
                "the verify read needs a finite non-zero voltage, got {v_read_v}"
            )));
        }
        let lin_xb = small_signal_stand_in(xb);
        let net = crate::xbar::Network::new(&lin_xb, &crate::xbar::Topology::inference(&lin_xb))
            .map_err(circ)?;
        let tia_g = lin_xb.sense.small_signal_g_siemens();
        let gmin = SolveOptions::default().gmin_siemens;
        let lin =
            crate::xbar::linear::LinearSystem::assemble(net, lin_xb.g_siemens.clone(), tia_g, gmin);
        let all_free = lin
            .net
            .w
            .iter()
            .zip(&lin.net.b)
            .all(|(a, b)| matches!((a, b), (Node::Free(_), Node::Free(_))));
        let mut terms = vec![Vec::new(); xb.cols];
        let mut sourced = false;
        for (col, node, coef) in lin.output_terms() {
            match node {
                Node::Free(t) => terms[col].push((t as usize, coef)),
                _ => sourced = true,
            }
        }
        Ok(ArrayVerifier {
            xb: xb.clone(),
            lin,
            tia_g,
            gmin,
            v_read_v,
            all_free: all_free && !sourced,
            terms,
            g_factor: Vec::new(),
            changed: Vec::new(),
            last_w: None,
            probe: None,
        })
    }

    /// The reader of cell (i, j) with the array's memristors at `g_mem_siemens` (row-major).
    pub fn cell(
        &mut self,
        g_mem_siemens: &[f64],
        i: usize,
        j: usize,
    ) -> Result<CellReader, DeviceError> {
        use crate::xbar::network::Node;
        let circ = |x: crate::xbar::XbarError| DeviceError::Circuit(x.to_string());
        let (r, c) = (self.xb.rows, self.xb.cols);
        if i >= r || j >= c || g_mem_siemens.len() != r * c {
            return Err(DeviceError::Param(format!(
                "cell ({i}, {j}) with {} conductances for the {r}×{c} array",
                g_mem_siemens.len()
            )));
        }
        self.xb.g_siemens.copy_from_slice(g_mem_siemens);
        let k = i * c + j;
        let cell_g = crate::xbar::network::linearized_cell_g(
            &self.xb,
            crate::xbar::eval::GMIN_JUNCTION_SIEMENS,
        );
        let one_t1r = match &self.xb.cell {
            CellKind::OneT1R { mos, v_gate_v } => Some((mos.clone(), v_gate_v[i])),
            _ => None,
        };
        if !self.all_free {
            // a cell tied to a source (no wire between them): three solves of the stand-in on
            // one engine kept for the array
            if self.probe.is_none() {
                self.probe = Some(
                    Engine::new(&small_signal_stand_in(&self.xb), SolveOptions::default())
                        .map_err(circ)?,
                );
            }
            let e = self.probe.as_mut().expect("built above");
            let [a, b, cc] = probe_coefficients(e, &cell_g, i, j, self.v_read_v)?;
            return Ok(CellReader {
                a,
                b,
                c: cc,
                v_read_v: self.v_read_v,
                one_t1r,
            });
        }
        let nodes = |net: &crate::xbar::Network, t: usize| match (net.w[t], net.b[t]) {
            (Node::Free(p), Node::Free(q)) => (p as usize, q as usize),
            _ => unreachable!("all cells have both ends free"),
        };
        let n = self.lin.net.n_free;
        // the cells that differ from the factor: known columns, or new ones (one solve each)
        let mut renew = self.g_factor.is_empty();
        if !renew {
            for (t, (g_now, g_fac)) in cell_g.iter().zip(&self.g_factor).enumerate() {
                if g_now != g_fac && !self.changed.iter().any(|e| e.0 == t) {
                    if self.changed.len() >= Self::MAX_RANK {
                        renew = true;
                        break;
                    }
                    let (p, q) = nodes(&self.lin.net, t);
                    let w = match self.last_w.take() {
                        Some((lk, w)) if lk == t => w,
                        _ => {
                            let mut w = Mat::<f64>::zeros(n, 1);
                            w[(p, 0)] = 1.0;
                            w[(q, 0)] -= 1.0;
                            self.lin.solve_in_place(w.as_mut()).map_err(circ)?;
                            (0..n).map(|x| w[(x, 0)]).collect()
                        }
                    };
                    self.changed.push((t, p, q, w));
                }
            }
        }
        if renew {
            self.lin
                .update_cells(&cell_g, self.tia_g, self.gmin)
                .map_err(circ)?;
            self.g_factor.clone_from(&cell_g);
            self.changed.clear();
        }
        let (p, q) = nodes(&self.lin.net, k);
        let mut v_rows = Mat::<f64>::zeros(r, 1);
        v_rows[(i, 0)] = self.v_read_v;
        let y1 = self
            .lin
            .solve_rows(v_rows.as_ref(), &vec![0.0; c])
            .map_err(circ)?;
        let mut y2 = Mat::<f64>::zeros(n, 1);
        y2[(p, 0)] = 1.0;
        y2[(q, 0)] -= 1.0;
        self.lin.solve_in_place(y2.as_mut()).map_err(circ)?;
        let mut x0: Vec<f64> = (0..n).map(|x| y1[(x, 0)]).collect();
        let mut w: Vec<f64> = (0..n).map(|x| y2[(x, 0)]).collect();
        self.last_w = Some((k, w.clone()));
        // Woodbury: A⁻¹v = y − W·z with (I + D·UᵀW)·z = D·Uᵀy, y = A_F⁻¹v
        let m = self.changed.len();
        if m > 0 {
            let d: Vec<f64> = self
                .changed
                .iter()
                .map(|e| cell_g[e.0] - self.g_factor[e.0])
                .collect();
            let mut cap = vec![0.0; m * m];
            for (a, ea) in self.changed.iter().enumerate() {
                for (b, eb) in self.changed.iter().enumerate() {
                    cap[a * m + b] = d[a] * (eb.3[ea.1] - eb.3[ea.2]) + f64::from(a == b);
                }
            }
            for v in [&mut x0, &mut w] {
                let mut z: Vec<f64> = self
                    .changed
                    .iter()
                    .zip(&d)
                    .map(|(e, da)| da * (v[e.1] - v[e.2]))
                    .collect();
                solve_dense(&cap, m, &mut z).ok_or_else(|| {
                    DeviceError::Circuit(format!("verify read of cell ({i}, {j}) is degenerate"))
                })?;
                for (e, zb) in self.changed.iter().zip(&z) {
                    for (vx, wx) in v.iter_mut().zip(&e.3) {
                        *vx -= zb * wx;
                    }
                }
            }
        }
        // the read y = sᵀx; with the cell's conductance g0 + δ,
        // x(δ) = x0 − w·δ·uᵀx0 / (1 + δ·uᵀw)  (Sherman–Morrison, u = e_p − e_q)
        let (mut y0, mut sw) = (0.0, 0.0);
        for &(t, coef) in &self.terms[j] {
            y0 += coef * x0[t];
            sw += coef * w[t];
        }
        let ux = x0[p] - x0[q];
        let mm = w[p] - w[q];
        let g0 = cell_g[k];
        let kk = sw * ux;
        // 1 + m·(g − g0) = d0·(1 + (m/d0)·g); d0 > 0: m is the resistance seen by the cell with
        // itself in place, below 1/g0
        let d0 = 1.0 - mm * g0;
        if !(d0.is_finite() && d0 > 0.0 && mm.is_finite() && kk.is_finite()) {
            return Err(DeviceError::Circuit(format!(
                "verify read of cell ({i}, {j}) is degenerate"
            )));
        }
        Ok(CellReader {
            a: (y0 * d0 + kk * g0) / d0,
            b: (y0 * mm - kk) / d0,
            c: mm / d0,
            v_read_v: self.v_read_v,
            one_t1r,
        })
    }
}

/// Solve the dense m×m system `a·x = b` (row-major `a`) in place by Gaussian elimination with
/// partial pivoting; `None` when singular.
fn solve_dense(a: &[f64], m: usize, b: &mut [f64]) -> Option<()> {
    let mut a = a.to_vec();
    for col in 0..m {
        let piv =
            (col..m).max_by(|&x, &y| a[x * m + col].abs().total_cmp(&a[y * m + col].abs()))?;
        // also refuses a NaN pivot
        if a[piv * m + col].abs().partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return None;
        }
        if piv != col {
            for t in 0..m {
                a.swap(piv * m + t, col * m + t);
            }
            b.swap(piv, col);
        }
        for row in col + 1..m {
            let f = a[row * m + col] / a[col * m + col];
            if f != 0.0 {
                for t in col..m {
                    a[row * m + t] -= f * a[col * m + t];
                }
                b[row] -= f * b[col];
            }
        }
    }
    for row in (0..m).rev() {
        let mut s = b[row];
        for t in row + 1..m {
            s -= a[row * m + t] * b[t];
        }
        b[row] = s / a[row * m + row];
    }
    b.iter().all(|x| x.is_finite()).then_some(())
}

/// The linear stand-in the verify reads solve: 1T1R cells as the memristor in series with the
/// channel conductance at 0 V, the columns into virtual grounds (a TIA's input node is one).
fn small_signal_stand_in(xb: &Crossbar) -> Crossbar {
    let mut lin = xb.clone();
    lin.sense = crate::xbar::SenseKind::VirtualGround;
    if !xb.cell.is_linear() {
        lin.g_siemens =
            crate::xbar::network::linearized_cell_g(xb, crate::xbar::eval::GMIN_JUNCTION_SIEMENS);
        lin.cell = CellKind::Linear;
    }
    lin
}

/// The verify read of one cell as a function of that cell's conductance, exact for the linear
/// (small-signal) array: changing one cell is a rank-one change `δ·u·uᵀ` of the nodal matrix
/// (u = e_word − e_bit of the cell), so by Sherman–Morrison the read current is a linear-fractional
/// function `I(g) = (a + b·g)/(1 + c·g)` of the cell's conductance. The three coefficients come
/// from three solves of the array (at three conductances of the cell); every read during the
/// write-verify of that cell is then O(1) instead of a new factorisation.
pub struct CellReader {
    a: f64,
    b: f64,
    c: f64,
    v_read_v: f64,
    one_t1r: Option<(crate::circuit::mos1::Mos1, f64)>,
}

impl CellReader {
    pub fn new(
        xb: &Crossbar,
        i: usize,
        j: usize,
        v_read_v: f64,
    ) -> Result<CellReader, DeviceError> {
        let (r, c) = (xb.rows, xb.cols);
        if i >= r || j >= c {
            return Err(DeviceError::Param(format!(
                "cell ({i}, {j}) is outside the {r}×{c} array"
            )));
        }
        let circ = |x: crate::xbar::XbarError| DeviceError::Circuit(x.to_string());
        // the small-signal stand-in
        let lin = small_signal_stand_in(xb);
        let one_t1r = match &xb.cell {
            CellKind::OneT1R { mos, v_gate_v } => Some((mos.clone(), v_gate_v[i])),
            _ => None,
        };
        let mut e = Engine::new(&lin, SolveOptions::default()).map_err(circ)?;
        let [a, b, cc] = probe_coefficients(&mut e, &lin.g_siemens, i, j, v_read_v)?;
        Ok(CellReader {
            a,
            b,
            c: cc,
            v_read_v,
            one_t1r,
        })
    }

    /// The read conductance (measured current / V_read) when the cell's memristor is at `g_mem`.
    pub fn g_read(&self, g_mem: f64) -> f64 {
        let g = match &self.one_t1r {
            // memristor in series with the channel conductance at 0 V, as the linearisation does
            Some((mos, vg)) => {
                let gmin = crate::xbar::eval::GMIN_JUNCTION_SIEMENS;
                let g_ch = mos.eval([0.0, *vg, 0.0, 0.0], gmin).g_siemens[0][0]
                    .max(gmin)
                    .max(1e-15);
                g_mem * g_ch / (g_mem + g_ch)
            }
            None => g_mem,
        };
        (self.a + self.b * g) / (1.0 + self.c * g) / self.v_read_v
    }
}

/// The coefficients (a, b, c) of the read `y(g) = (a + b·g)/(1 + c·g)` of cell (i, j) from three
/// solves of the linear stand-in (conductances `lin_g`) with the cell at three conductances.
fn probe_coefficients(
    e: &mut Engine,
    lin_g: &[f64],
    i: usize,
    j: usize,
    v_read_v: f64,
) -> Result<[f64; 3], DeviceError> {
    let circ = |x: crate::xbar::XbarError| DeviceError::Circuit(x.to_string());
    let (r, c) = (e.crossbar().rows, e.crossbar().cols);
    let k = i * c + j;
    let g0 = lin_g[k];
    let probes = [g0.max(1e-9), 2.0 * g0.max(1e-9), 4.0 * g0.max(1e-9)];
    let mut input = Mat::<f64>::zeros(1, r);
    input[(0, i)] = v_read_v;
    let mut ys = [0.0; 3];
    let mut gs = lin_g.to_vec();
    for (t, gp) in probes.iter().enumerate() {
        gs[k] = *gp;
        e.set_conductances(&gs).map_err(circ)?;
        ys[t] = e.infer(input.as_ref()).map_err(circ)?[(0, j)];
    }
    // y(1 + c·g) = a + b·g at three points: a linear 3×3 system in (a, b, c)
    let m = [
        [1.0, probes[0], -ys[0] * probes[0]],
        [1.0, probes[1], -ys[1] * probes[1]],
        [1.0, probes[2], -ys[2] * probes[2]],
    ];
    solve3(m, ys).ok_or_else(|| {
        DeviceError::Circuit(format!("verify read of cell ({i}, {j}) is degenerate"))
    })
}

/// Solve a 3×3 system by Cramer's rule (well-conditioned here: three distinct probe points).
fn solve3(m: [[f64; 3]; 3], y: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&m);
    if d == 0.0 || !d.is_finite() {
        return None;
    }
    let mut out = [0.0; 3];
    for (col, o) in out.iter_mut().enumerate() {
        let mut mm = m;
        for row in 0..3 {
            mm[row][col] = y[row];
        }
        *o = det(&mm) / d;
    }
    Some(out)
}

/// Result of a pulse train on a passive array.
#[derive(Debug, Clone, Serialize)]
pub struct PulseTrainReport {
    pub row: usize,
    pub col: usize,
    pub pulses: i64,
    /// Solved voltage across the selected cell (V).
    pub v_selected_v: f64,
    /// Largest |voltage| across an unselected cell (V).
    pub v_disturb_max_v: f64,
    pub g_before_siemens: f64,
    pub g_after_siemens: f64,
    /// Unselected cells whose conductance changed (half-select disturb).
    pub disturbed_cells: usize,
}

/// `n` identical pulses (n > 0 SET at `v_pulse`, n < 0 RESET at `v_pulse_reset`) on cell (i, j) of a
/// passive array with the unselected lines at V/2 or V/3: the array is solved under that bias
/// (wires and every cell), and every cell — selected and half-selected — receives the pulses at
/// its own solved voltage; the device law and its switching threshold decide who moves, so
/// half-select disturb is a result. The bias is solved once per train (the cells' changes during
/// the train shift the voltages only through the wires' drops).
#[allow(clippy::too_many_arguments)]
pub fn pulse_train<R: Rng>(
    spec: &DeviceSpec,
    params: &[DeviceParams],
    xb: &mut Crossbar,
    i: usize,
    j: usize,
    n: i64,
    scheme: crate::xbar::Scheme,
    pulses: &mut [u32],
    rng: &mut R,
) -> Result<PulseTrainReport, DeviceError> {
    if params.len() != xb.g_siemens.len() || pulses.len() != xb.g_siemens.len() {
        return Err(DeviceError::Param(
            "one device and one pulse counter per cell".into(),
        ));
    }
    let v = spec.v_pulse_signed(n >= 0);
    let (res, _) = crate::xbar::program(xb, i, j, v, scheme, &SolveOptions::default())
        .map_err(|e| DeviceError::Circuit(e.to_string()))?;
    let sel = i * xb.cols + j;
    let before = xb.g_siemens[sel];
    let mut disturbed = 0;
    for (k, v_cell) in res.v_cell_v.iter().enumerate() {
        let g0 = xb.g_siemens[k];
        // a cell sees the pulse with the polarity of the voltage across it
        let n_cell = if *v_cell >= 0.0 { n.abs() } else { -n.abs() };
        let g1 = spec.pulses(&params[k], g0, n_cell, *v_cell, rng);
        if spec.reaches_threshold(&params[k], *v_cell) {
            pulses[k] += n.unsigned_abs() as u32;
        }
        if k != sel && g1 != g0 {
            disturbed += 1;
        }
        xb.g_siemens[k] = g1;
    }
    Ok(PulseTrainReport {
        row: i,
        col: j,
        pulses: n,
        v_selected_v: res.v_selected_v,
        v_disturb_max_v: res.v_disturb_max_v,
        g_before_siemens: before,
        g_after_siemens: xb.g_siemens[sel],
        disturbed_cells: disturbed,
    })
}
