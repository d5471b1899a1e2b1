//! Inline cell kernels for the bulk solver: the KCL residual of a whole array for one input vector
//! without generic dispatch or allocation.
//!
//! The 1T1R cell is its memristor (linear, `g`) from the word node to the internal node `m`, in
//! series with a level-1 NMOS (drain `m`, gate on the row's gate line, source on the bit node,
//! bulk at ground). [`AccessNmos`] holds the transistor's constants and evaluates only what the
//! series combination needs: the drain current `i_d(v_m)` with `∂i_d/∂v_m` (channel in either
//! direction, cutoff/triode/saturation with channel-length modulation and body effect, the
//! bulk–drain junction with gmin) — the same equations as [`crate::circuit::mos1::Mos1::eval`]
//! (ngspice's `mos1load.c`), without the 4×4 conductance matrix and the bulk–source junction,
//! which do not enter the cell current. The internal node is solved by scalar Newton steps from a
//! warm start with the convergence test of [`Crossbar::one_t1r_current`]; a cell that does not
//! settle in those steps is handed to `one_t1r_current` itself (bracketed search), so every cell
//! current satisfies the same test.
//!
//! [`Kcl`] lays the array out as flat index arrays into one extended voltage vector
//! `[unknowns, row sources, column sources, ground]`, so the residual is three plain loops
//! (wires, cells, gmin) over structure-of-arrays data.
#![allow(clippy::needless_range_loop)] // parallel arrays indexed together

use crate::circuit::mos1::{Mos1, VT_300K_V};

use super::array::{CellKind, Crossbar, SenseKind};
use super::network::{Network, Node};
use super::rows::{converge_row, ConvergeScratch, Simd};
use crate::fastmath::exp_normal;

/// Newton steps on a cell's internal node before the bracketed fallback (as `one_t1r_current`).
pub(super) const CELL_NEWTON_STEPS: usize = 6;

/// Largest exponent argument used for junctions (ngspice's MAX_EXP_ARG, as `mos1`).
const MAX_EXP_ARG: f64 = 709.0;

/// The constants of a level-1 NMOS access transistor with its bulk at ground.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccessNmos {
    beta: f64,
    lambda: f64,
    /// `vto − γ·√φ` (ngspice's `tVbi` for an NMOS).
    tvbi: f64,
    gamma: f64,
    phi: f64,
    sqrt_phi: f64,
    is_a: f64,
    gmin_siemens: f64,
}

impl AccessNmos {
    /// `None` for a PMOS (the access transistor of a 1T1R cell is an NMOS).
    pub fn new(mos: &Mos1, gmin_siemens: f64) -> Option<AccessNmos> {
        if !mos.model.nmos {
            return None;
        }
        let m = &mos.model;
        let sqrt_phi = m.phi_v.sqrt();
        Some(AccessNmos {
            beta: mos.beta(),
            lambda: m.lambda_per_v,
            tvbi: m.vto_v - m.gamma_sqrt_v * sqrt_phi,
            gamma: m.gamma_sqrt_v,
            phi: m.phi_v,
            sqrt_phi,
            is_a: m.is_a,
            gmin_siemens,
        })
    }

    /// Threshold for a source-role bulk voltage `vbx` and its derivative.
    #[inline(always)]
    fn von(&self, vbx: f64) -> (f64, f64) {
        if self.gamma == 0.0 {
            return (self.tvbi, 0.0);
        }
        let (sarg, dsarg) = if vbx <= 0.0 {
            let s = (self.phi - vbx).sqrt();
            (s, -0.5 / s)
        } else {
            let s0 = self.sqrt_phi;
            let s = s0 - vbx / (s0 + s0);
            if s > 0.0 {
                (s, -1.0 / (s0 + s0))
            } else {
                (0.0, 0.0)
            }
        };
        (self.tvbi + self.gamma * sarg, self.gamma * dsarg)
    }

    /// Channel current with the source role at terminal x: (c, gm, gds, gmbs).
    #[inline(always)]
    fn channel(&self, vgx: f64, vdx: f64, vbx: f64) -> (f64, f64, f64, f64) {
        let (von, dvon) = self.von(vbx);
        let vgst = vgx - von;
        if vgst <= 0.0 {
            return (0.0, 0.0, 0.0, 0.0);
        }
        let beta = self.beta;
        let lambda = self.lambda;
        let betap = beta * (1.0 + lambda * vdx);
        let (c, gm, gds) = if vgst <= vdx {
            let c = betap * vgst * vgst * 0.5;
            (c, betap * vgst, lambda * beta * vgst * vgst * 0.5)
        } else {
            let c = betap * vdx * (vgst - 0.5 * vdx);
            (
                c,
                betap * vdx,
                betap * (vgst - vdx) + lambda * beta * vdx * (vgst - 0.5 * vdx),
            )
        };
        (c, gm, gds, -gm * dvon)
    }

    /// Current into the drain (A) at drain `vm`, gate `vg`, source `vb` (bulk 0 V), with its
    /// derivatives with respect to the drain and the source voltage.
    #[inline(always)]
    pub fn drain(&self, vm: f64, vg: f64, vb: f64) -> (f64, f64, f64) {
        let (ich, d_dm, d_db) = if vm - vb >= 0.0 {
            let (c, gm, gds, gmbs) = self.channel(vg - vb, vm - vb, -vb);
            (c, gds, -(gm + gds + gmbs))
        } else {
            let (c, gm, gds, gmbs) = self.channel(vg - vm, vb - vm, -vm);
            (-c, gm + gds + gmbs, -gds)
        };
        // bulk–drain junction (bulk at 0 V): current into the device at the bulk, out at the drain
        let vbx = -vm;
        let (cj, gj) = if vbx <= -3.0 * VT_300K_V {
            (self.gmin_siemens * vbx - self.is_a, self.gmin_siemens)
        } else {
            // vbx > −3·V_T here: the argument lies in (−3, MAX_EXP_ARG]
            let e = exp_normal((vbx / VT_300K_V).min(MAX_EXP_ARG));
            (
                self.is_a * (e - 1.0) + self.gmin_siemens * vbx,
                self.is_a * e / VT_300K_V + self.gmin_siemens,
            )
        };
        (ich - cj, d_dm + gj, d_db)
    }

    /// The threshold and its derivative as [`Self::von`], branch-free (for `drain_select`).
    #[inline(always)]
    fn von_select(&self, vbx: f64) -> (f64, f64) {
        let s_neg = (self.phi - vbx).max(0.0).sqrt();
        let ds_neg = -0.5 / s_neg;
        let s0 = self.sqrt_phi;
        let s_pos = s0 - vbx / (s0 + s0);
        let ds_pos = -1.0 / (s0 + s0);
        let pos_on = s_pos > 0.0;
        let neg = vbx <= 0.0;
        let sarg = if neg {
            s_neg
        } else if pos_on {
            s_pos
        } else {
            0.0
        };
        let dsarg = if neg {
            ds_neg
        } else if pos_on {
            ds_pos
        } else {
            0.0
        };
        let no_body = self.gamma == 0.0;
        let von = if no_body {
            self.tvbi
        } else {
            self.tvbi + self.gamma * sarg
        };
        let dvon = if no_body { 0.0 } else { self.gamma * dsarg };
        (von, dvon)
    }

    /// [`Self::drain`] without branches, for the row kernels of [`super::rows`]: both channel
    /// directions, every region and both junction branches are computed and the right values
    /// selected (a loop over cells of this body vectorises). The selected values are computed by
    /// the same operations in the same order as `drain`'s: equal bit for bit (tested). The
    /// discarded branches are kept finite and normal where cheap (square root of a clamped
    /// argument, the exponential's argument clamped to its range).
    #[inline(always)]
    pub fn drain_select(&self, vm: f64, vg: f64, vb: f64) -> (f64, f64, f64) {
        self.drain_select_as::<true>(vm, vg, vb)
    }

    /// Whether the body effect is on (`γ ≠ 0`).
    pub fn has_body_effect(&self) -> bool {
        self.gamma != 0.0
    }

    /// [`Self::drain_select`]; with `BODY = false` the threshold's body-effect terms (a square
    /// root and two divisions per cell) are not computed, which is exact when `γ = 0` (the
    /// caller's promise: [`Self::has_body_effect`] false) — `drain` returns `tvbi` and 0 then.
    #[inline(always)]
    pub fn drain_select_as<const BODY: bool>(&self, vm: f64, vg: f64, vb: f64) -> (f64, f64, f64) {
        if !BODY {
            debug_assert!(self.gamma == 0.0);
        }
        let fwd = vm - vb >= 0.0;
        let vgx = if fwd { vg - vb } else { vg - vm };
        let vdx = if fwd { vm - vb } else { vb - vm };
        let vbx = if fwd { -vb } else { -vm };
        // threshold (von) and its derivative, as `von`
        let (von, dvon) = if BODY {
            self.von_select(vbx)
        } else {
            (self.tvbi, 0.0)
        };
        // channel, as `channel`
        let vgst = vgx - von;
        let cut = vgst <= 0.0;
        let beta = self.beta;
        let lambda = self.lambda;
        let betap = beta * (1.0 + lambda * vdx);
        let sat = vgst <= vdx;
        let c_sat = betap * vgst * vgst * 0.5;
        let gm_sat = betap * vgst;
        let gds_sat = lambda * beta * vgst * vgst * 0.5;
        let c_tri = betap * vdx * (vgst - 0.5 * vdx);
        let gm_tri = betap * vdx;
        let gds_tri = betap * (vgst - vdx) + lambda * beta * vdx * (vgst - 0.5 * vdx);
        let c = if cut {
            0.0
        } else if sat {
            c_sat
        } else {
            c_tri
        };
        let gm = if cut {
            0.0
        } else if sat {
            gm_sat
        } else {
            gm_tri
        };
        let gds = if cut {
            0.0
        } else if sat {
            gds_sat
        } else {
            gds_tri
        };
        let gmbs = if cut { 0.0 } else { -gm * dvon };
        let ich = if fwd { c } else { -c };
        let d_dm = if fwd { gds } else { gm + gds + gmbs };
        let d_db = if fwd { -(gm + gds + gmbs) } else { -gds };
        // bulk–drain junction, as `drain`
        let vbj = -vm;
        let off = vbj <= -3.0 * VT_300K_V;
        // min then max, not clamp: a NaN argument becomes MAX_EXP_ARG as in `drain`
        #[allow(clippy::manual_clamp)]
        let e = exp_normal((vbj / VT_300K_V).min(MAX_EXP_ARG).max(-700.0));
        let cj_on = self.is_a * (e - 1.0) + self.gmin_siemens * vbj;
        let gj_on = self.is_a * e / VT_300K_V + self.gmin_siemens;
        let cj = if off {
            self.gmin_siemens * vbj - self.is_a
        } else {
            cj_on
        };
        let gj = if off { self.gmin_siemens } else { gj_on };
        (ich - cj, d_dm + gj, d_db)
    }

    /// The 1T1R cell current (A, word → bit) for memristor conductance `g`, word node `vw`, bit
    /// node `vb` and gate `vg`, with the internal node `vm` (warm start in, solution out); `None`
    /// when Newton does not settle in a few steps (then use [`Crossbar::one_t1r_current`]).
    #[inline(always)]
    pub fn cell_current(&self, g: f64, vw: f64, vb: f64, vg: f64, vm: &mut f64) -> Option<f64> {
        let mut v = *vm;
        if !v.is_finite() {
            return None;
        }
        for _ in 0..CELL_NEWTON_STEPS {
            let (id, gdd, _) = self.drain(v, vg, vb);
            let fv = g * (vw - v) - id;
            let dfv = -g - gdd;
            // the test `|fv/dfv| ≤ 1e-14·(1 + |v|)` of `one_t1r_current`, without the division
            // (dfv ≤ −g < 0 is finite whenever the operating point is)
            if fv.abs() <= 1e-14 * (1.0 + v.abs()) * dfv.abs() {
                *vm = v;
                return Some(g * (vw - v));
            }
            let step = fv / dfv;
            if !step.is_finite() {
                return None;
            }
            v -= step;
        }
        None
    }

    /// As [`Self::cell_current`], with the derivatives of the current with respect to `vw` and
    /// `vb` (implicit through the internal node): `(i, ∂i/∂vw, ∂i/∂vb)`.
    #[inline(always)]
    pub fn cell_current_jac(
        &self,
        g: f64,
        vw: f64,
        vb: f64,
        vg: f64,
        vm: &mut f64,
    ) -> Option<(f64, f64, f64)> {
        let mut v = *vm;
        if !v.is_finite() {
            return None;
        }
        for _ in 0..CELL_NEWTON_STEPS {
            let (id, gdd, gds) = self.drain(v, vg, vb);
            let fv = g * (vw - v) - id;
            let dfv = -g - gdd;
            if fv.abs() <= 1e-14 * (1.0 + v.abs()) * dfv.abs() {
                *vm = v;
                let den = g + gdd;
                let dvm_dvw = g / den;
                let dvm_dvb = -gds / den;
                return Some((g * (vw - v), g * (1.0 - dvm_dvw), -g * dvm_dvb));
            }
            let step = fv / dfv;
            if !step.is_finite() {
                return None;
            }
            v -= step;
        }
        None
    }
}

/// The cell law of an array, resolved once.
#[derive(Debug, Clone)]
enum Law {
    Linear,
    Sinh { k_per_v: f64 },
    OneT1R { mos: AccessNmos, v_gate_v: Vec<f64> },
}

/// Per 1T1R cell (row-major), the memristor's share of the cell voltage in the small-signal
/// divider `g / (g + g_ch)` (channel conductance at zero drain–source bias): the warm start of
/// the internal node. Empty for other cells.
pub(super) fn small_signal_divider(xb: &Crossbar) -> Vec<f64> {
    let CellKind::OneT1R { mos, v_gate_v } = &xb.cell else {
        return Vec::new();
    };
    let (r, c) = (xb.rows, xb.cols);
    let gmin = super::eval::GMIN_JUNCTION_SIEMENS;
    let mut out = Vec::with_capacity(r * c);
    for i in 0..r {
        let gch = mos.eval([0.0, v_gate_v[i], 0.0, 0.0], gmin).g_siemens[0][0];
        for j in 0..c {
            let g = xb.g_siemens[i * c + j];
            out.push(g / (g + gch.max(gmin)));
        }
    }
    out
}

/// An array's KCL residual as flat index arrays over the extended voltage vector
/// `[x (n unknowns), v_row (R), v_col (C), 0]` (see the module docs). Only for virtual-ground
/// sensing (amplifier sense nodes are left to [`super::newton::NewtonProblem::residual`]).
#[derive(Debug, Clone)]
pub struct Kcl {
    n: usize,
    rows: usize,
    cols: usize,
    wire_a: Vec<u32>,
    wire_b: Vec<u32>,
    wire_g: Vec<f64>,
    cell_w: Vec<u32>,
    cell_b: Vec<u32>,
    /// Memristor (or cell) conductances, row-major.
    cell_g: Vec<f64>,
    /// 1T1R: `g/(g + g_ch)` per cell, g_ch the channel conductance at zero drain–source bias
    /// (the internal node's place on the small-signal divider: the start of its Newton).
    divider: Vec<f64>,
    law: Law,
    gmin_siemens: f64,
    /// The array (for the bracketed fallback of a 1T1R cell).
    xb: Crossbar,
    /// Which copy of the row kernels runs (AVX2 + FMA when the CPU has them).
    simd: Simd,
}

/// Per-thread scratch of [`Kcl::residual`].
#[derive(Debug, Clone, Default)]
pub struct KclScratch {
    ext: Vec<f64>,
    f_ext: Vec<f64>,
    /// 1T1R: one row's terminal voltages, currents, settled flags and convergence scratch.
    row_w: Vec<f64>,
    row_b: Vec<f64>,
    row_i: Vec<f64>,
    row_ok: Vec<bool>,
    conv: ConvergeScratch,
}

impl Kcl {
    /// `None` when the array has amplifier sensing or a PMOS access transistor.
    pub fn new(xb: &Crossbar, net: &Network, gmin_siemens: f64) -> Option<Kcl> {
        if !matches!(xb.sense, SenseKind::VirtualGround) {
            return None;
        }
        let law = match &xb.cell {
            CellKind::Linear => Law::Linear,
            CellKind::Sinh { k_per_v } => Law::Sinh { k_per_v: *k_per_v },
            CellKind::OneT1R { mos, v_gate_v } => Law::OneT1R {
                mos: AccessNmos::new(mos, super::eval::GMIN_JUNCTION_SIEMENS)?,
                v_gate_v: v_gate_v.clone(),
            },
        };
        let n = net.n_free;
        let (r, c) = (net.rows, net.cols);
        let idx = |node: Node| -> u32 {
            (match node {
                Node::Free(k) => k as usize,
                Node::Row(i) => n + i as usize,
                Node::Col(j) => n + r + j as usize,
                Node::Ground => n + r + c,
            }) as u32
        };
        Some(Kcl {
            divider: small_signal_divider(xb),
            n,
            rows: r,
            cols: c,
            wire_a: net.wires.iter().map(|e| idx(e.a)).collect(),
            wire_b: net.wires.iter().map(|e| idx(e.b)).collect(),
            wire_g: net.wires.iter().map(|e| e.g_siemens).collect(),
            cell_w: net.w.iter().map(|&a| idx(a)).collect(),
            cell_b: net.b.iter().map(|&b| idx(b)).collect(),
            cell_g: xb.g_siemens.clone(),
            law,
            gmin_siemens,
            xb: xb.clone(),
            simd: Simd::detect(),
        })
    }

    /// The same residual with the given copy of the row kernels (the tests compare copies).
    pub fn with_simd(mut self, simd: Simd) -> Kcl {
        self.simd = simd;
        self
    }

    /// Whether the cells carry an internal node (1T1R).
    pub fn has_internal(&self) -> bool {
        matches!(self.law, Law::OneT1R { .. })
    }

    /// 1T1R internal nodes on the small-signal divider between their terminals (`vm`: one per
    /// cell): `v_b + (v_w − v_b)·g/(g + g_ch)`.
    pub fn internal_start(&self, x: &[f64], v_row: &[f64], v_col: &[f64], vm: &mut [f64]) {
        let (n, r) = (self.n, self.rows);
        let volt = |e: u32| -> f64 {
            let e = e as usize;
            if e < n {
                x[e]
            } else if e < n + r {
                v_row[e - n]
            } else if e < n + r + self.cols {
                v_col[e - n - r]
            } else {
                0.0
            }
        };
        for (k, m) in vm.iter_mut().enumerate() {
            let (vw, vb) = (volt(self.cell_w[k]), volt(self.cell_b[k]));
            *m = vb + (vw - vb) * self.divider[k];
        }
    }

    /// KCL residual (sum of currents leaving each unknown, A) into `f` for the unknowns `x`
    /// with row sources `v_row` and column sources `v_col`; `vm` the 1T1R internal nodes (warm
    /// start in, solution out; empty for other cells). Returns the largest branch current (A),
    /// as [`super::newton::NewtonProblem::residual`] does.
    pub fn residual(
        &self,
        s: &mut KclScratch,
        x: &[f64],
        v_row: &[f64],
        v_col: &[f64],
        f: &mut [f64],
        vm: &mut [f64],
    ) -> f64 {
        let (n, r, c) = (self.n, self.rows, self.cols);
        let len = n + r + c + 1;
        let KclScratch {
            ext,
            f_ext: fe,
            row_w,
            row_b,
            row_i,
            row_ok,
            conv,
        } = s;
        ext.resize(len, 0.0);
        fe.resize(len, 0.0);
        ext[..n].copy_from_slice(&x[..n]);
        ext[n..n + r].copy_from_slice(&v_row[..r]);
        ext[n + r..n + r + c].copy_from_slice(&v_col[..c]);
        ext[n + r + c] = 0.0;
        fe.iter_mut().for_each(|v| *v = 0.0);
        let mut scale = 0.0f64;
        for ((&a, &b), &g) in self.wire_a.iter().zip(&self.wire_b).zip(&self.wire_g) {
            let i = g * (ext[a as usize] - ext[b as usize]);
            scale = scale.max(i.abs());
            fe[a as usize] += i;
            fe[b as usize] -= i;
        }
        match &self.law {
            Law::Linear => {
                for k in 0..self.cell_g.len() {
                    let (a, b) = (self.cell_w[k] as usize, self.cell_b[k] as usize);
                    let i = self.cell_g[k] * (ext[a] - ext[b]);
                    scale = scale.max(i.abs());
                    fe[a] += i;
                    fe[b] -= i;
                }
            }
            Law::Sinh { k_per_v } => {
                for k in 0..self.cell_g.len() {
                    let (a, b) = (self.cell_w[k] as usize, self.cell_b[k] as usize);
                    let i = self.cell_g[k] * (k_per_v * (ext[a] - ext[b])).sinh() / k_per_v;
                    scale = scale.max(i.abs());
                    fe[a] += i;
                    fe[b] -= i;
                }
            }
            Law::OneT1R { mos, v_gate_v } => {
                // a row at a time: gather its terminal voltages, converge its cells in
                // lockstep (vectorised, `super::rows`; the same answers as `cell_current`),
                // the bracketed fallback for the cells that did not settle, then scatter
                row_w.resize(c, 0.0);
                row_b.resize(c, 0.0);
                row_i.resize(c, 0.0);
                row_ok.resize(c, false);
                for row in 0..r {
                    let vg = v_gate_v[row];
                    let q = row * c..(row + 1) * c;
                    for (j, k) in q.clone().enumerate() {
                        row_w[j] = ext[self.cell_w[k] as usize];
                        row_b[j] = ext[self.cell_b[k] as usize];
                    }
                    converge_row(
                        self.simd,
                        mos,
                        vg,
                        &self.cell_g[q.clone()],
                        row_w,
                        row_b,
                        &mut vm[q.clone()],
                        row_i,
                        row_ok,
                        conv,
                    );
                    for (j, k) in q.enumerate() {
                        let (a, b) = (self.cell_w[k] as usize, self.cell_b[k] as usize);
                        let i = if row_ok[j] {
                            row_i[j]
                        } else {
                            self.fallback(k, row_w[j], row_b[j], &mut vm[k])
                        };
                        scale = scale.max(i.abs());
                        fe[a] += i;
                        fe[b] -= i;
                    }
                }
            }
        }
        if self.gmin_siemens > 0.0 {
            for (fp, xp) in fe[..n].iter_mut().zip(x) {
                *fp += self.gmin_siemens * xp;
            }
        }
        f[..n].copy_from_slice(&fe[..n]);
        scale
    }

    /// The generic 1T1R cell (bracketed search) for a cell the inline Newton did not settle.
    #[cold]
    fn fallback(&self, k: usize, vw: f64, vb: f64, vm: &mut f64) -> f64 {
        super::eval::cell_current(&self.xb, k, vw, vb, vm).0
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::array::{default_access_mos, Crossbar};
    use super::AccessNmos;

    /// The inline cell against the generic one (full `Mos1::eval` and its Newton/bracket) over
    /// random operating points in every region: same current, same derivatives.
    #[test]
    fn inline_cell_equals_generic_cell() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for gamma in [0.0, 0.45] {
            let mut mos = default_access_mos();
            mos.model.gamma_sqrt_v = gamma;
            let k = AccessNmos::new(&mos, 1e-12).expect("nmos");
            for _ in 0..20_000 {
                let g = rng.gen_range(1e-6..1e-3);
                let vw = rng.gen_range(-3.0..3.0);
                let vb = rng.gen_range(-0.5..0.5);
                let vg = rng.gen_range(0.0..5.0);
                let guess = if rng.gen_bool(0.5) {
                    0.5 * (vw + vb)
                } else {
                    vb
                };
                let (i0, dw0, db0, m0) =
                    Crossbar::one_t1r_current(&mos, g, vw, vb, vg, guess, 1e-12);
                let mut m = guess;
                let Some((i, dw, db)) = k.cell_current_jac(g, vw, vb, vg, &mut m) else {
                    continue; // the caller falls back to the generic cell
                };
                let close = |a: f64, b: f64, s: f64| (a - b).abs() <= 1e-9 * b.abs().max(s) + 1e-20;
                assert!(close(i, i0, 1e-9), "i {i} vs {i0} at {vw} {vb} {vg}");
                assert!(close(m, m0, 1.0), "vm {m} vs {m0}");
                assert!(close(dw, dw0, g * 1e-6), "dw {dw} vs {dw0}");
                assert!(close(db, db0, g * 1e-6), "db {db} vs {db0}");
                let mut m2 = guess;
                assert_eq!(k.cell_current(g, vw, vb, vg, &mut m2), Some(i));
            }
        }
    }
}
