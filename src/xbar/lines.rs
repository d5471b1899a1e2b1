//! Exact nonlinear arrays without factoring the 2-D network: Newton on the cell currents.
//!
//! Under inference bias (every row driven, every column into an ideal virtual ground, no gmin)
//! each word line is a resistor path held at its left end by its driver and each bit line a path
//! held at its bottom end by the virtual ground (conventions of [`super::array`]: the first
//! word-line segment, `r_driver + r_word`, sits between the driver and cell (i, 0); the last
//! bit-line segment, `r_bit + r_sense`, between cell (R−1, j) and the sense). Given the cell
//! currents `I` (word → bit) every node voltage follows in O(cells):
//!
//! ```text
//! V_w(i, j) = v_row(i) − Σ_{m ≤ j} s_w(m)·S(i, m),   S(i, m) = Σ_{j' ≥ m} I(i, j')
//! V_b(i, j) = v_col(j) + Σ_{m ≥ i} s_b(m)·P(m, j),   P(m, j) = Σ_{i' ≤ m} I(i', j)
//! ```
//!
//! i.e. `V_w = c_w − R_w·I`, `V_b = c_b + R_b·I` with `R_w`, `R_b` the (SPD) resistance matrices
//! of the paths. The array equations are then, per input vector, the nonlinear system in the
//! cell currents alone, `F(I) = I − f(V_w(I), V_b(I)) = 0`, `f` the cell law. Newton on it has
//! the Jacobian `J = 1 + A·R_w + B·R_b` (`A = ∂f/∂V_w ≥ 0`, `B = −∂f/∂V_b ≥ 0` diagonal), whose
//! eigenvalues lie in `[1, 1 + λ]` with `λ ≈ g·r·n²·0.4` summed over the two line directions (a
//! unit or two for the arrays of the papers): GMRES converges by a factor of several per
//! iteration, every product `J·v` being two prefix-sum sweeps over the cells — the 2-D network
//! is never factored. GMRES is right-preconditioned by the bit lines, `P = 1 + B·R_b` (block
//! diagonal, one shooting pass per line), which leaves the word lines' part of the spectrum. (`J` is not symmetric for 1T1R cells: the gate is held against
//! ground, not against the source, so `B ≠ A`.)
//!
//! For 1T1R cells the internal node `v_m` of every cell is a further unknown of the same Newton
//! iteration: each step makes one Newton step on the cell's internal node from where it stands
//! (`g·(v_w − v_m) = i_d(v_m, v_b)`, linearised), then moves `v_m` with the linear prediction of
//! the line voltages' change, so the whole iteration (currents and internal nodes) is Newton on
//! the extended system and converges quadratically; one drain-current evaluation per cell and
//! step. The start is `I = 0` (the first step is then the IR-drop correction of the zero-drop
//! currents), internal nodes on the small-signal divider.
//!
//! The stopping test is per-vector Newton's, evaluated on the node voltages: the last step below
//! `reltol·max(|x_new|, |x_old|) + vntol` on every unknown node, and the KCL residual at the
//! final node voltages, computed by [`Kcl::residual`] with fully converged cells (the inline
//! kernel, internal nodes warm-started from this iteration), below `reltol·scale·1e3 + abstol`.
//! A vector that does not pass in `SolveOptions::max_current_steps` steps (or meets a non-finite value) is reported
//! unsolved and the caller finishes it by the chord/Newton path of [`super::bulk`].
#![allow(clippy::needless_range_loop)] // parallel arrays indexed together

use super::array::{CellKind, Crossbar, SenseKind};
use super::kernel::{AccessNmos, Kcl, KclScratch};
use super::network::{Network, Node};
use super::newton::NewtonOptions;
use super::rows::{newton_row, NewtonRow, Simd};

/// Newton steps on the cell currents before a vector is handed back unsolved (the default of
/// `SolveOptions::max_current_steps`).
pub const MAX_OUTER: usize = 20;
/// GMRES basis size before a restart, and restarts per linear solve.
const KRYLOV_DIM: usize = 16;
const MAX_RESTARTS: usize = 6;
/// Inner (GMRES) tolerance relative to the outer residual (2-norms).
const INNER_RELTOL: f64 = 1e-4;
/// Word lines swept together (independent prefix sums: instruction-level parallelism).
const GROUP: usize = 8;
/// Largest array the line solver takes (cells); larger ones keep the chord path (its scratch is
/// ~40 vectors of cells per thread).
pub const MAX_CELLS: usize = 1 << 20;

#[derive(Debug, Clone)]
enum Law {
    Sinh { k_per_v: f64 },
    OneT1R { mos: AccessNmos, v_gate_v: Vec<f64> },
}

/// The array as paths held at one end (see the module docs), ready to solve vectors.
#[derive(Debug, Clone)]
pub struct LineSolver {
    rows: usize,
    cols: usize,
    n: usize,
    /// Word-line segment before cell (i, j), by j (Ω).
    seg_w_ohm: Vec<f64>,
    /// Bit-line segment below cell (i, j), by i (Ω).
    seg_b_ohm: Vec<f64>,
    g_siemens: Vec<f64>,
    law: Law,
    /// Per cell: the unknown index of its word / bit node (`u32::MAX`: a source node).
    w_free: Vec<u32>,
    b_free: Vec<u32>,
    /// 1T1R: the internal node's place on the small-signal divider (start).
    divider: Vec<f64>,
    kcl: Kcl,
    /// Which copy of the row kernels runs (AVX2 + FMA when the CPU has them).
    simd: Simd,
}

/// Per-thread scratch of [`LineSolver::solve`] (sized on first use, reused across vectors).
#[derive(Debug, Clone, Default)]
pub struct LineScratch {
    i_a: Vec<f64>,
    vm: Vec<f64>,
    vm_chk: Vec<f64>,
    vw: Vec<f64>,
    vb: Vec<f64>,
    vw_prev: Vec<f64>,
    vb_prev: Vec<f64>,
    a: Vec<f64>,
    b: Vec<f64>,
    dmw: Vec<f64>,
    dmb: Vec<f64>,
    rhs: Vec<f64>,
    delta: Vec<f64>,
    tw: Vec<f64>,
    tb: Vec<f64>,
    col: Vec<f64>,
    col_v: Vec<f64>,
    basis: Vec<f64>,
    /// Bit-line preconditioner: the homogeneous shooting solution per cell and at each
    /// column's sense end, and a work vector.
    pre_u1: Vec<f64>,
    pre_u1_end: Vec<f64>,
    pre_z: Vec<f64>,
    pre_ok: bool,
    f_node: Vec<f64>,
    ks: KclScratch,
}

/// What the solver did for one vector.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LineStats {
    /// Newton steps on the cell currents.
    pub outer: usize,
    /// GMRES iterations (products `J·v`) over all steps.
    pub krylov: usize,
    /// Thread time in the cell passes, in the final residual checks (converged cells), in
    /// GMRES and, of that, in its Gram–Schmidt orthogonalisation (s).
    pub cells_seconds: f64,
    pub check_seconds: f64,
    pub krylov_seconds: f64,
    pub orth_seconds: f64,
}

impl LineSolver {
    /// `None` when the array is not of the kind this solver handles: amplifier sensing, gmin to
    /// ground, linear cells (solved exactly by the linear engine), a PMOS access transistor, a
    /// network whose unknowns are not all cell nodes, or more than [`MAX_CELLS`] cells.
    pub fn new(xb: &Crossbar, net: &Network, gmin_siemens: f64) -> Option<LineSolver> {
        if gmin_siemens != 0.0
            || !matches!(xb.sense, SenseKind::VirtualGround)
            || !net.tia.is_empty()
        {
            return None;
        }
        let (r, c) = (xb.rows, xb.cols);
        if r * c > MAX_CELLS || net.w.len() != r * c || net.b.len() != r * c {
            return None;
        }
        let law = match &xb.cell {
            CellKind::Linear => return None,
            CellKind::Sinh { k_per_v } => Law::Sinh { k_per_v: *k_per_v },
            CellKind::OneT1R { mos, v_gate_v } => Law::OneT1R {
                mos: AccessNmos::new(mos, super::eval::GMIN_JUNCTION_SIEMENS)?,
                v_gate_v: v_gate_v.clone(),
            },
        };
        let kcl = Kcl::new(xb, net, 0.0)?;
        let mut seg_w_ohm = vec![xb.r_word_ohm; c];
        seg_w_ohm[0] = xb.r_driver_ohm + xb.r_word_ohm;
        let mut seg_b_ohm = vec![xb.r_bit_ohm; r];
        seg_b_ohm[r - 1] = xb.r_bit_ohm + xb.r_sense_ohm;
        let n = net.n_free;
        let free = |node: Node| match node {
            Node::Free(p) => p,
            _ => u32::MAX,
        };
        let w_free: Vec<u32> = net.w.iter().map(|&a| free(a)).collect();
        let b_free: Vec<u32> = net.b.iter().map(|&b| free(b)).collect();
        // every unknown must be a cell node (so the node voltages are the line voltages)
        let mut seen = vec![false; n];
        for &p in w_free.iter().chain(&b_free) {
            if p != u32::MAX {
                seen[p as usize] = true;
            }
        }
        if seen.iter().any(|s| !s) {
            return None;
        }
        let divider = super::kernel::small_signal_divider(xb);
        Some(LineSolver {
            rows: r,
            cols: c,
            n,
            seg_w_ohm,
            seg_b_ohm,
            g_siemens: xb.g_siemens.clone(),
            law,
            w_free,
            b_free,
            divider,
            kcl,
            simd: Simd::detect(),
        })
    }

    /// Number of unknown node voltages (the length of `x` in [`Self::solve`]).
    pub fn unknowns(&self) -> usize {
        self.n
    }

    /// Bytes of one thread's scratch.
    pub fn scratch_bytes(&self) -> usize {
        (self.rows * self.cols * (KRYLOV_DIM + 1 + 20) + 2 * self.n + 5 * self.cols) * 8
    }

    /// `vw = c_w − R_w·p`, `vb = c_b + R_b·p` over the cells (row-major), with `c_w` the row
    /// sources and `c_b` the column sources (zero when `None`).
    #[allow(clippy::too_many_arguments)]
    fn line_voltages(
        &self,
        p: &[f64],
        v_row: Option<&[f64]>,
        v_col: Option<&[f64]>,
        vw: &mut [f64],
        vb: &mut [f64],
        col: &mut [f64],
        col_v: &mut [f64],
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.simd.is_avx2() {
            // SAFETY: `is_avx2` holds only for a `Simd` from `Simd::detect`, which checked
            // with `is_x86_feature_detected!` that this CPU has AVX2 and FMA.
            unsafe { self.line_voltages_avx2(p, v_row, v_col, vw, vb, col, col_v) };
            return;
        }
        self.line_voltages_body(p, v_row, v_col, vw, vb, col, col_v)
    }

    /// [`Self::line_voltages`] compiled with AVX2 + FMA (same operations, same answers).
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    fn line_voltages_avx2(
        &self,
        p: &[f64],
        v_row: Option<&[f64]>,
        v_col: Option<&[f64]>,
        vw: &mut [f64],
        vb: &mut [f64],
        col: &mut [f64],
        col_v: &mut [f64],
    ) {
        self.line_voltages_body(p, v_row, v_col, vw, vb, col, col_v)
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn line_voltages_body(
        &self,
        p: &[f64],
        v_row: Option<&[f64]>,
        v_col: Option<&[f64]>,
        vw: &mut [f64],
        vb: &mut [f64],
        col: &mut [f64],
        col_v: &mut [f64],
    ) {
        let (r, c) = (self.rows, self.cols);
        // word lines, GROUP rows at a time: the suffix sums S (current through each segment,
        // starting from the row total) and the voltage drops accumulated from the driver
        // (the first sweep also sums the bit lines' column totals)
        col.iter_mut().for_each(|v| *v = 0.0);
        let mut i0 = 0;
        while i0 < r {
            let gsz = GROUP.min(r - i0);
            let mut s = [0.0f64; GROUP];
            let mut v = [0.0f64; GROUP];
            for j in 0..c {
                let mut cj = 0.0;
                for q in 0..gsz {
                    let pv = p[(i0 + q) * c + j];
                    s[q] += pv;
                    cj += pv;
                }
                col[j] += cj;
            }
            for q in 0..gsz {
                v[q] = v_row.map_or(0.0, |vr| vr[i0 + q]);
            }
            for j in 0..c {
                let sw = self.seg_w_ohm[j];
                for q in 0..gsz {
                    let k = (i0 + q) * c + j;
                    v[q] -= sw * s[q];
                    vw[k] = v[q];
                    s[q] -= p[k];
                }
            }
            i0 += gsz;
        }
        // bit lines: from the sense end upwards (P(m, j) = column total − rows below)
        match v_col {
            Some(vc) => col_v.copy_from_slice(&vc[..c]),
            None => col_v.iter_mut().for_each(|v| *v = 0.0),
        }
        for i in (0..r).rev() {
            let sb = self.seg_b_ohm[i];
            let row = &p[i * c..(i + 1) * c];
            let out = &mut vb[i * c..(i + 1) * c];
            for (((cv, o), cl), pv) in col_v
                .iter_mut()
                .zip(out.iter_mut())
                .zip(col.iter_mut())
                .zip(row)
            {
                *cv += sb * *cl;
                *o = *cv;
                *cl -= pv;
            }
        }
    }

    /// `out = J·v = v + A·(R_w·v) + B·(R_b·v)`.
    fn apply_j(&self, s: &mut LineScratch, v: &[f64], out: &mut [f64]) {
        let LineScratch {
            tw,
            tb,
            col,
            col_v,
            a,
            b,
            ..
        } = s;
        self.line_voltages(v, None, None, tw, tb, col, col_v);
        for k in 0..v.len() {
            out[k] = v[k] - a[k] * tw[k] + b[k] * tb[k];
        }
    }

    /// Set up the bit-line preconditioner `P = 1 + B·R_b` for the present `B` (after a cell
    /// pass): `P` is block diagonal, one bit line per block, and `P·y = z` on one line is the
    /// line with its cells as conductances `B` to ground, solved by shooting from the top end
    /// (`u = R_b·y` the line voltages, `y = z − B·u`, `u` at the sense end zero). This stores the
    /// homogeneous solution (`u = 1` at the top, `z = 0`); [`Self::precond`] adds the particular
    /// one. Disabled (identity) when the shooting is not finite.
    fn precond_setup(&self, s: &mut LineScratch) {
        #[cfg(target_arch = "x86_64")]
        if self.simd.is_avx2() {
            // SAFETY: `is_avx2` holds only for a `Simd` from `Simd::detect`, which checked
            // with `is_x86_feature_detected!` that this CPU has AVX2 and FMA.
            unsafe { self.precond_setup_avx2(s) };
            return;
        }
        self.precond_setup_body(s)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn precond_setup_avx2(&self, s: &mut LineScratch) {
        self.precond_setup_body(s)
    }

    #[inline(always)]
    fn precond_setup_body(&self, s: &mut LineScratch) {
        let (r, c) = (self.rows, self.cols);
        let LineScratch {
            pre_u1,
            pre_u1_end,
            col,
            b,
            pre_ok,
            ..
        } = s;
        pre_u1_end.iter_mut().for_each(|v| *v = 1.0);
        col.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..r {
            let sb = self.seg_b_ohm[i];
            for k in 0..c {
                let q = i * c + k;
                let u = pre_u1_end[k];
                pre_u1[q] = u;
                col[k] -= b[q] * u;
                pre_u1_end[k] = u - sb * col[k];
            }
        }
        *pre_ok = precond_enabled() && pre_u1_end.iter().all(|u| u.is_finite() && *u > 0.0);
    }

    /// `y = P⁻¹·z` with the bit-line preconditioner of [`Self::precond_setup`] (`y = z` when it
    /// is disabled).
    fn precond(&self, s: &mut LineScratch, z: &[f64], y: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if self.simd.is_avx2() {
            // SAFETY: `is_avx2` holds only for a `Simd` from `Simd::detect`, which checked
            // with `is_x86_feature_detected!` that this CPU has AVX2 and FMA.
            unsafe { self.precond_avx2(s, z, y) };
            return;
        }
        self.precond_body(s, z, y)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn precond_avx2(&self, s: &mut LineScratch, z: &[f64], y: &mut [f64]) {
        self.precond_body(s, z, y)
    }

    #[inline(always)]
    fn precond_body(&self, s: &mut LineScratch, z: &[f64], y: &mut [f64]) {
        let (r, c) = (self.rows, self.cols);
        let LineScratch {
            pre_u1,
            pre_u1_end,
            col,
            col_v,
            b,
            pre_ok,
            ..
        } = s;
        if !*pre_ok {
            y.copy_from_slice(z);
            return;
        }
        // particular solution (u = 0 at the top): col_v the line voltage, col the current
        // summed from the top; y holds the voltage at each cell meanwhile
        col.iter_mut().for_each(|v| *v = 0.0);
        col_v.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..r {
            let sb = self.seg_b_ohm[i];
            for k in 0..c {
                let q = i * c + k;
                let u = col_v[k];
                y[q] = u;
                col[k] += z[q] - b[q] * u;
                col_v[k] = u - sb * col[k];
            }
        }
        // the top voltage that makes the sense end zero: u = u0 + α·u1
        for k in 0..c {
            col_v[k] = -col_v[k] / pre_u1_end[k];
        }
        for i in 0..r {
            for k in 0..c {
                let q = i * c + k;
                y[q] = z[q] - b[q] * (y[q] + col_v[k] * pre_u1[q]);
            }
        }
    }

    /// GMRES (restarted, right-preconditioned by the bit lines, [`Self::precond`]: the
    /// spectrum of `J·P⁻¹ = 1 + A·R_w·P⁻¹` is that of the word lines alone, their resistance
    /// being the smaller part on the arrays of the papers) for `J·delta = rhs` to
    /// `‖rhs − J·delta‖₂ ≤ tol` (true residuals); returns the iterations and the thread time
    /// of the orthogonalisation (s).
    fn gmres(&self, s: &mut LineScratch, tol: f64) -> (usize, f64) {
        let m = self.rows * self.cols;
        let mut basis = std::mem::take(&mut s.basis);
        let mut delta = std::mem::take(&mut s.delta);
        let rhs = std::mem::take(&mut s.rhs);
        let mut z = std::mem::take(&mut s.pre_z);
        delta.iter_mut().for_each(|v| *v = 0.0);
        let mut h = [[0.0f64; KRYLOV_DIM]; KRYLOV_DIM + 1];
        let mut cs = [0.0f64; KRYLOV_DIM];
        let mut sn = [0.0f64; KRYLOV_DIM];
        let mut gv = [0.0f64; KRYLOV_DIM + 1];
        let mut y = [0.0f64; KRYLOV_DIM];
        let mut iters = 0;
        let mut orth_seconds = 0.0;
        for restart in 0..MAX_RESTARTS {
            // r = rhs − J·delta into basis vector 0
            {
                let (v0, rest) = basis.split_at_mut(m);
                if restart == 0 {
                    v0.copy_from_slice(&rhs);
                } else {
                    let w = &mut rest[..m];
                    self.apply_j(s, &delta, w);
                    for k in 0..m {
                        v0[k] = rhs[k] - w[k];
                    }
                }
            }
            let beta = norm2(&basis[..m]);
            if beta.is_nan() || beta <= tol {
                break;
            }
            basis[..m].iter_mut().for_each(|v| *v /= beta);
            gv.iter_mut().for_each(|v| *v = 0.0);
            gv[0] = beta;
            let mut done = 0;
            let mut converged = false;
            for j in 0..KRYLOV_DIM {
                let (head, tail) = basis.split_at_mut((j + 1) * m);
                let w = &mut tail[..m];
                self.precond(s, &head[j * m..(j + 1) * m], &mut z);
                self.apply_j(s, &z, w);
                // modified Gram–Schmidt
                let t_o = std::time::Instant::now();
                let mut hcol = [0.0f64; KRYLOV_DIM + 1];
                let hn = gram_schmidt(self.simd, head, w, j, &mut hcol);
                for i in 0..=j {
                    h[i][j] = hcol[i];
                }
                h[j + 1][j] = hn;
                if hn > 0.0 {
                    w.iter_mut().for_each(|v| *v /= hn);
                }
                orth_seconds += t_o.elapsed().as_secs_f64();
                for i in 0..j {
                    let t = cs[i] * h[i][j] + sn[i] * h[i + 1][j];
                    h[i + 1][j] = -sn[i] * h[i][j] + cs[i] * h[i + 1][j];
                    h[i][j] = t;
                }
                let rr = h[j][j].hypot(h[j + 1][j]);
                let (c0, s0) = if rr > 0.0 {
                    (h[j][j] / rr, h[j + 1][j] / rr)
                } else {
                    (1.0, 0.0)
                };
                cs[j] = c0;
                sn[j] = s0;
                h[j][j] = rr;
                h[j + 1][j] = 0.0;
                gv[j + 1] = -s0 * gv[j];
                gv[j] *= c0;
                iters += 1;
                done = j + 1;
                if gv[j + 1].abs() <= tol || hn == 0.0 {
                    converged = true;
                    break;
                }
            }
            for i in (0..done).rev() {
                let mut acc = gv[i];
                for l in i + 1..done {
                    acc -= h[i][l] * y[l];
                }
                y[i] = if h[i][i] != 0.0 { acc / h[i][i] } else { 0.0 };
            }
            // delta += P⁻¹·(V·y) (the vector after the last used one is free now)
            z.iter_mut().for_each(|v| *v = 0.0);
            for i in 0..done {
                let vi = &basis[i * m..(i + 1) * m];
                for (d, v) in z.iter_mut().zip(vi) {
                    *d += y[i] * v;
                }
            }
            let upd = &mut basis[done * m..(done + 1) * m];
            self.precond(s, &z, upd);
            for (d, u) in delta.iter_mut().zip(upd.iter()) {
                *d += u;
            }
            if converged {
                break;
            }
        }
        s.basis = basis;
        s.delta = delta;
        s.rhs = rhs;
        s.pre_z = z;
        (iters, orth_seconds)
    }

    /// One Newton pass over the cells at the line voltages in the scratch: the cell currents
    /// `f` (into `rhs` as `f − I`), the derivatives `A`, `B` and, for 1T1R, one Newton step on
    /// every internal node with its sensitivities to the line voltages. Returns false on a
    /// non-finite value.
    fn cells(&self, s: &mut LineScratch) -> bool {
        let c = self.cols;
        let mut finite = true;
        match &self.law {
            Law::Sinh { k_per_v } => {
                let kk = *k_per_v;
                for k in 0..self.g_siemens.len() {
                    let g = self.g_siemens[k];
                    let x = kk * (s.vw[k] - s.vb[k]);
                    let f = g * x.sinh() / kk;
                    let d = g * x.cosh();
                    s.a[k] = d;
                    s.b[k] = d;
                    s.rhs[k] = f - s.i_a[k];
                    finite &= f.is_finite() && d.is_finite();
                }
            }
            Law::OneT1R { mos, v_gate_v } => {
                // a row at a time (one gate voltage), vectorised (`super::rows`)
                for (row, &vg) in v_gate_v.iter().enumerate() {
                    let q = row * c..(row + 1) * c;
                    finite &= newton_row(
                        self.simd,
                        mos,
                        vg,
                        NewtonRow {
                            g: &self.g_siemens[q.clone()],
                            vw: &s.vw[q.clone()],
                            vb: &s.vb[q.clone()],
                            i_a: &s.i_a[q.clone()],
                            vm: &mut s.vm[q.clone()],
                            dmw: &mut s.dmw[q.clone()],
                            dmb: &mut s.dmb[q.clone()],
                            a: &mut s.a[q.clone()],
                            b: &mut s.b[q.clone()],
                            rhs: &mut s.rhs[q],
                        },
                    );
                }
            }
        }
        finite
    }

    /// Solve one input vector (`v_row`: R, `v_col`: C). On success the unknown node voltages are
    /// in `x` (n) and the statistics returned; `None` when the vector did not pass the stopping
    /// test in `max_steps` steps or met a non-finite value.
    pub fn solve(
        &self,
        s: &mut LineScratch,
        v_row: &[f64],
        v_col: &[f64],
        x: &mut [f64],
        opts: &NewtonOptions,
        max_steps: usize,
    ) -> Option<LineStats> {
        let m = self.rows * self.cols;
        let is_1t1r = matches!(self.law, Law::OneT1R { .. });
        for buf in [
            &mut s.i_a,
            &mut s.vw,
            &mut s.vb,
            &mut s.vw_prev,
            &mut s.vb_prev,
            &mut s.a,
            &mut s.b,
            &mut s.rhs,
            &mut s.delta,
            &mut s.tw,
            &mut s.tb,
            &mut s.pre_u1,
            &mut s.pre_z,
        ] {
            buf.resize(m, 0.0);
        }
        s.pre_u1_end.resize(self.cols, 0.0);
        if is_1t1r {
            for buf in [&mut s.vm, &mut s.vm_chk, &mut s.dmw, &mut s.dmb] {
                buf.resize(m, 0.0);
            }
        }
        s.col.resize(self.cols, 0.0);
        s.col_v.resize(self.cols, 0.0);
        s.basis.resize((KRYLOV_DIM + 1) * m, 0.0);
        s.f_node.resize(self.n, 0.0);
        s.i_a.iter_mut().for_each(|v| *v = 0.0);
        let mut stats = LineStats::default();
        let mut scale = 0.0f64;
        for outer in 0..=max_steps {
            self.line_voltages(
                &s.i_a,
                Some(v_row),
                Some(v_col),
                &mut s.vw,
                &mut s.vb,
                &mut s.col,
                &mut s.col_v,
            );
            if outer == 0 && is_1t1r {
                for k in 0..m {
                    s.vm[k] = s.vb[k] + (s.vw[k] - s.vb[k]) * self.divider[k];
                }
            }
            if outer > 0 && self.step_ok(s, opts) {
                // the stopping test on the node voltages, with fully converged cells
                for k in 0..m {
                    if self.w_free[k] != u32::MAX {
                        x[self.w_free[k] as usize] = s.vw[k];
                    }
                    if self.b_free[k] != u32::MAX {
                        x[self.b_free[k] as usize] = s.vb[k];
                    }
                }
                s.vm_chk.copy_from_slice(&s.vm);
                let t_c = std::time::Instant::now();
                let sc =
                    self.kcl
                        .residual(&mut s.ks, x, v_row, v_col, &mut s.f_node, &mut s.vm_chk);
                scale = scale.max(sc);
                let norm = s.f_node.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                stats.check_seconds += t_c.elapsed().as_secs_f64();
                if norm.is_finite() && norm <= opts.reltol * scale * 1e3 + opts.abstol_a {
                    return Some(stats);
                }
            }
            if outer == max_steps {
                break;
            }
            let t_c = std::time::Instant::now();
            if !self.cells(s) {
                return None;
            }
            self.precond_setup(s);
            stats.cells_seconds += t_c.elapsed().as_secs_f64();
            stats.outer += 1;
            let fnorm = norm2(&s.rhs);
            if !fnorm.is_finite() {
                return None;
            }
            let floor = 1e-6 * (opts.reltol * scale * 1e3 + opts.abstol_a);
            let t_k = std::time::Instant::now();
            let (iters, orth_seconds) = self.gmres(s, (INNER_RELTOL * fnorm).max(floor));
            stats.krylov += iters;
            stats.orth_seconds += orth_seconds;
            stats.krylov_seconds += t_k.elapsed().as_secs_f64();
            if s.delta.iter().any(|d| !d.is_finite()) {
                return None;
            }
            if is_1t1r {
                // the internal nodes follow the line voltages' change (linearised)
                let LineScratch {
                    delta,
                    tw,
                    tb,
                    col,
                    col_v,
                    ..
                } = s;
                self.line_voltages(delta, None, None, tw, tb, col, col_v);
                for k in 0..m {
                    s.vm[k] += s.dmw[k] * s.tw[k] + s.dmb[k] * s.tb[k];
                }
            }
            for k in 0..m {
                s.i_a[k] += s.delta[k];
            }
            std::mem::swap(&mut s.vw, &mut s.vw_prev);
            std::mem::swap(&mut s.vb, &mut s.vb_prev);
        }
        None
    }

    /// Newton's step test between the node voltages of the last two iterates.
    fn step_ok(&self, s: &LineScratch, opts: &NewtonOptions) -> bool {
        let ok = |new: f64, old: f64| {
            (new - old).abs() <= opts.reltol * new.abs().max(old.abs()) + opts.vntol_v
        };
        for k in 0..s.vw.len() {
            if (self.w_free[k] != u32::MAX && !ok(s.vw[k], s.vw_prev[k]))
                || (self.b_free[k] != u32::MAX && !ok(s.vb[k], s.vb_prev[k]))
            {
                return false;
            }
        }
        true
    }
}

/// Modified Gram–Schmidt of `w` against the first `j + 1` basis vectors in `head` (each of
/// `w.len()` entries): the coefficients into `hcol`, `w` orthogonalised; returns `‖w‖₂` after it.
fn gram_schmidt(
    simd: Simd,
    head: &[f64],
    w: &mut [f64],
    j: usize,
    hcol: &mut [f64; KRYLOV_DIM + 1],
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if simd.is_avx2() {
        // SAFETY: `is_avx2` holds only for a `Simd` from `Simd::detect`, which checked with
        // `is_x86_feature_detected!` that this CPU has AVX2 and FMA.
        return unsafe { gram_schmidt_avx2(head, w, j, hcol) };
    }
    let _ = simd;
    gram_schmidt_body(head, w, j, hcol)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gram_schmidt_avx2(
    head: &[f64],
    w: &mut [f64],
    j: usize,
    hcol: &mut [f64; KRYLOV_DIM + 1],
) -> f64 {
    gram_schmidt_body(head, w, j, hcol)
}

#[inline(always)]
fn gram_schmidt_body(
    head: &[f64],
    w: &mut [f64],
    j: usize,
    hcol: &mut [f64; KRYLOV_DIM + 1],
) -> f64 {
    let m = w.len();
    for i in 0..=j {
        let vi = &head[i * m..(i + 1) * m];
        let hij = dot(w, vi);
        hcol[i] = hij;
        for (wk, vk) in w.iter_mut().zip(vi) {
            *wk -= hij * vk;
        }
    }
    norm2(w)
}

/// The bit-line preconditioner is on unless `NETC_XBAR_LINES_PRECOND=0` (a measurement switch:
/// the same answers to the stopping test, unpreconditioned GMRES; read once per process).
fn precond_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("NETC_XBAR_LINES_PRECOND").map_or(true, |v| v != "0"))
}

#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    // four partial sums: vectorisable, and the same order whatever the thread
    let mut acc = [0.0f64; 4];
    let (ca, ra) = a.split_at(a.len() / 4 * 4);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(4).zip(cb.chunks_exact(4)) {
        for q in 0..4 {
            acc[q] += x[q] * y[q];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

#[inline(always)]
fn norm2(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::array::{default_access_mos, CellKind, Crossbar, SenseKind};
    use super::super::network::{Network, Topology};
    use super::super::newton::NewtonOptions;
    use super::super::rows::Simd;
    use super::{LineScratch, LineSolver};

    /// The whole cell-current Newton with the AVX2 copies of the kernels (when the CPU has
    /// them) and with the baseline copies: the same node voltages bit for bit, the same steps.
    #[test]
    fn avx2_and_baseline_solves_are_bit_identical() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let (r, c) = (19, 13);
        let mut mos = default_access_mos();
        mos.model.gamma_sqrt_v = 0.45;
        let xb = Crossbar {
            rows: r,
            cols: c,
            g_siemens: (0..r * c).map(|_| rng.gen_range(1e-6..1e-4)).collect(),
            cell: CellKind::OneT1R {
                mos,
                v_gate_v: (0..r).map(|_| rng.gen_range(1.5..3.5)).collect(),
            },
            r_word_ohm: 2.5,
            r_bit_ohm: 2.5,
            r_driver_ohm: 1.0,
            r_sense_ohm: 0.5,
            sense: SenseKind::VirtualGround,
        };
        let net = Network::new(&xb, &Topology::inference(&xb)).expect("network");
        let wide = LineSolver::new(&xb, &net, 0.0).expect("line solver");
        if !wide.simd.is_avx2() {
            eprintln!(
                "lines: no AVX2 + FMA on this CPU (or NETC_XBAR_SIMD=sse2): nothing to compare"
            );
            return;
        }
        let mut base = wide.clone();
        base.simd = Simd::baseline();
        base.kcl = base.kcl.with_simd(Simd::baseline());
        let opts = NewtonOptions::default();
        let v_col = vec![0.0; c];
        let (mut s1, mut s2) = (LineScratch::default(), LineScratch::default());
        let n = wide.unknowns();
        let mut solved = 0;
        for _ in 0..5 {
            let v_row: Vec<f64> = (0..r).map(|_| rng.gen_range(-0.2..0.8)).collect();
            let (mut x1, mut x2) = (vec![0.0; n], vec![0.0; n]);
            let a = wide.solve(&mut s1, &v_row, &v_col, &mut x1, &opts, 20);
            let b = base.solve(&mut s2, &v_row, &v_col, &mut x2, &opts, 20);
            let (Some(a), Some(b)) = (a, b) else {
                assert_eq!(
                    a.is_some(),
                    b.is_some(),
                    "one copy solved, the other did not"
                );
                continue;
            };
            solved += 1;
            assert_eq!((a.outer, a.krylov), (b.outer, b.krylov));
            for (p, q) in x1.iter().zip(&x2) {
                assert_eq!(p.to_bits(), q.to_bits(), "{p} vs {q}");
            }
        }
        assert!(solved >= 4, "{solved} of 5 vectors solved");
    }
}
