//! The compliance-SET bias circuit of one 1T1R column, solved directly.
//!
//! The circuit is the one [`super::write::set_netlist`] emits (see [`super::write`]): row i is
//! V_SET → series resistance r_row (driver + word-line wire up to column j) → node w_i → the V_m
//! source → drain m_i = w_i − V_m of the level-1 NMOS (gate at V_g,i, bulk at ground) → source on
//! bit-line node b_i; the bit line is a chain of r_bit segments, its last node grounded through
//! r_bit + r_sense. That is a ladder: each w_i touches only b_i, and b_i only its neighbours, so
//! Newton's linear system is tridiagonal in the bit-line nodes once each row's w_i is eliminated
//! (a 1×1 Schur complement per row). One Newton step costs O(rows); the general solver would
//! build, order and factor a sparse system from the netlist text for every column and every step
//! of the gate search. Same device equations as the general solver ([`Mos1::eval`], junction
//! gmin [`GMIN_JUNCTION_SIEMENS`]); the test `set_bias_ladder_equals_general_solver` checks the two
//! agree to 1e-9 and ngspice is checked against the netlist in `tests/it/device_circuit.rs`.

use crate::circuit::mos1::Mos1;
use crate::xbar::eval::GMIN_JUNCTION_SIEMENS;

/// Newton steps before giving up (the caller then solves the netlist with the general solver).
const MAX_STEPS: usize = 100;
/// Largest change of any node voltage in one Newton step (V): a damped start from the all-off
/// guess, the device equations being strongly nonlinear around threshold.
const MAX_STEP_V: f64 = 0.5;

/// The series resistances of a column's SET bias (Ω; 0 = a short, as the netlist's 0 V source).
#[derive(Debug, Clone, Copy)]
pub struct LadderGeometry {
    /// V_SET driver to the cell: driver resistance plus the word line up to the column.
    pub r_row_ohm: f64,
    /// One bit-line segment between adjacent rows.
    pub r_bit_ohm: f64,
    /// The last row's bit-line node to ground (its segment plus the sense resistance).
    pub r_end_ohm: f64,
}

/// Compliance current (A, into each drain) of every row, or `None` when Newton does not settle.
pub fn solve_ladder(
    mos: &Mos1,
    geo: LadderGeometry,
    v_gate_v: &[f64],
    v_set_v: f64,
    v_m_v: f64,
) -> Option<Vec<f64>> {
    let rows = v_gate_v.len();
    if rows == 0 {
        return Some(Vec::new());
    }
    let gmin = GMIN_JUNCTION_SIEMENS;
    let LadderGeometry {
        r_row_ohm,
        r_bit_ohm,
        r_end_ohm,
    } = geo;
    if !(r_row_ohm >= 0.0 && r_bit_ohm >= 0.0 && r_end_ohm >= 0.0) {
        return None;
    }
    // bit-line nodes: one per row, or a single node when the segments are shorts
    let nb = if r_bit_ohm > 0.0 { rows } else { 1 };
    let node = |i: usize| if r_bit_ohm > 0.0 { i } else { 0 };
    let g_link = if r_bit_ohm > 0.0 {
        1.0 / r_bit_ohm
    } else {
        0.0
    };
    // the last node is held at 0 V when its path to ground is a short
    let grounded = r_end_ohm == 0.0;
    let g_end = if grounded { 0.0 } else { 1.0 / r_end_ohm };
    let w_free = r_row_ohm > 0.0;
    let g_row = if w_free { 1.0 / r_row_ohm } else { 0.0 };

    let mut w = vec![v_set_v; rows];
    let mut b = vec![0.0; nb];
    let (mut diag, mut lower, mut upper, mut rhs) =
        (vec![0.0; nb], vec![0.0; nb], vec![0.0; nb], vec![0.0; nb]);
    // per row: −F_w/J_ww and J_wb/J_ww, to recover δw after the bit-line solve
    let mut w_off = vec![0.0; rows];
    let mut w_gain = vec![0.0; rows];
    let mut dw = vec![0.0; if w_free { rows } else { 0 }];
    let mut c_scratch = vec![0.0; nb];
    for _ in 0..MAX_STEPS {
        // bit-line KCL (currents into each node) and its Jacobian, wires first
        for k in 0..nb {
            let mut f = 0.0;
            let mut d = 0.0;
            if k > 0 {
                f += g_link * (b[k - 1] - b[k]);
                d -= g_link;
            }
            if k + 1 < nb {
                f += g_link * (b[k + 1] - b[k]);
                d -= g_link;
            }
            if k + 1 == nb {
                f -= g_end * b[k];
                d -= g_end;
            }
            rhs[k] = -f;
            diag[k] = d;
            lower[k] = if k > 0 { g_link } else { 0.0 };
            upper[k] = if k + 1 < nb { g_link } else { 0.0 };
        }
        for i in 0..rows {
            let k = node(i);
            let e = mos.eval([w[i] - v_m_v, v_gate_v[i], b[k], 0.0], gmin);
            // current into b from the transistor's source terminal: −i_a[2]
            rhs[k] -= -e.i_a[2];
            diag[k] += -e.g_siemens[2][2];
            if w_free {
                // KCL at w: g_row·(V_SET − w) − i_d = 0
                let f_w = g_row * (v_set_v - w[i]) - e.i_a[0];
                let j_ww = -g_row - e.g_siemens[0][0];
                let j_wb = -e.g_siemens[0][2];
                let j_bw = -e.g_siemens[2][0];
                // δw = (−F_w − J_wb·δb)/J_ww, folded into the bit-line row
                w_off[i] = -f_w / j_ww;
                w_gain[i] = -j_wb / j_ww;
                rhs[k] -= j_bw * w_off[i];
                diag[k] += j_bw * w_gain[i];
            }
        }
        if grounded {
            let k = nb - 1;
            diag[k] = 1.0;
            lower[k] = 0.0;
            rhs[k] = 0.0;
            if k > 0 {
                // the neighbour's coupling multiplies δb_k = 0
                upper[k - 1] = 0.0;
            }
        }
        thomas(&lower, &diag, &upper, &mut rhs, &mut c_scratch)?;
        let db = &rhs;
        let mut dmax = db.iter().fold(0.0f64, |m, d| m.max(d.abs()));
        for i in 0..dw.len() {
            dw[i] = w_off[i] + w_gain[i] * db[node(i)];
            dmax = dmax.max(dw[i].abs());
        }
        if !dmax.is_finite() {
            return None;
        }
        let scale = if dmax > MAX_STEP_V {
            MAX_STEP_V / dmax
        } else {
            1.0
        };
        for k in 0..nb {
            b[k] += scale * db[k];
        }
        for i in 0..dw.len() {
            w[i] += scale * dw[i];
        }
        let vmax = w.iter().chain(&b).fold(0.0f64, |m, v| m.max(v.abs()));
        if scale == 1.0 && dmax <= 1e-14 * vmax.max(1.0) {
            let i_cc = (0..rows)
                .map(|i| {
                    mos.eval([w[i] - v_m_v, v_gate_v[i], b[node(i)], 0.0], gmin)
                        .i_a[0]
                })
                .collect();
            return Some(i_cc);
        }
    }
    None
}

/// Solve a tridiagonal system in place (`rhs` becomes the solution; `c` is scratch of the same
/// length); `None` on a zero pivot.
fn thomas(
    lower: &[f64],
    diag: &[f64],
    upper: &[f64],
    rhs: &mut [f64],
    c: &mut [f64],
) -> Option<()> {
    let n = diag.len();
    let mut piv = diag[0];
    if piv == 0.0 || !piv.is_finite() {
        return None;
    }
    c[0] = upper[0] / piv;
    rhs[0] /= piv;
    for k in 1..n {
        piv = diag[k] - lower[k] * c[k - 1];
        if piv == 0.0 || !piv.is_finite() {
            return None;
        }
        c[k] = upper[k] / piv;
        rhs[k] = (rhs[k] - lower[k] * rhs[k - 1]) / piv;
    }
    for k in (0..n.saturating_sub(1)).rev() {
        rhs[k] -= c[k] * rhs[k + 1];
    }
    Some(())
}
