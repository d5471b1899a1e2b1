//! Nonlinear arrays (sinh cells, 1T1R cells, saturating amplifiers): Newton per input vector,
//! starting from the solution of the linearized array, over the network's fixed pattern. The
//! symbolic analysis is shared; every worker owns its values, factor and scratch.
#![allow(clippy::needless_range_loop)] // parallel arrays indexed together

use faer::{Mat, Par};

use super::array::{CellKind, Crossbar, SenseKind};
use super::eval::{cell_current, tia_output};
use super::factor::{FactorKind, Numeric, Symbolic};
use super::network::{Network, Node};
use super::XbarError;

/// Convergence controls (ngspice's test: `|Δx| ≤ reltol·max(|x_new|, |x_old|) + vntol` on every
/// unknown, and the KCL residual below `reltol·(current scale) + abstol`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewtonOptions {
    pub reltol: f64,
    pub vntol_v: f64,
    pub abstol_a: f64,
    pub max_iter: usize,
    /// Start from the factorization of the previous vector solved with the same workspace.
    pub reuse_factor: bool,
}

impl Default for NewtonOptions {
    fn default() -> Self {
        NewtonOptions {
            reltol: 1e-10,
            vntol_v: 1e-12,
            abstol_a: 1e-15,
            max_iter: 100,
            reuse_factor: true,
        }
    }
}

/// What Newton did for one vector.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NewtonStats {
    pub iterations: usize,
    pub residual_a: f64,
    pub factorizations: usize,
}

/// The parts of a nonlinear problem shared by all workers.
pub struct NewtonProblem<'a> {
    pub xb: &'a Crossbar,
    pub net: &'a Network,
    pub symbolic: Symbolic,
    /// Constant part of the Jacobian (wires, gmin).
    base_values: Vec<f64>,
    gmin: f64,
}

/// One worker's state.
pub struct NewtonWorkspace {
    values: Vec<f64>,
    values_trial: Vec<f64>,
    has_factor: bool,
    f: Vec<f64>,
    f_trial: Vec<f64>,
    dx: Vec<f64>,
    x_trial: Vec<f64>,
    vm: Vec<f64>,
    vm_trial: Vec<f64>,
    numeric: Numeric,
}

impl<'a> NewtonProblem<'a> {
    /// The factorization the Jacobian needs (1T1R Jacobians are not symmetric).
    pub fn factor_kind(xb: &Crossbar) -> FactorKind {
        match xb.cell {
            CellKind::OneT1R { .. } => FactorKind::Lu,
            _ => FactorKind::Cholesky,
        }
    }

    /// Set up, reusing `symbolic` (of `factor_kind(xb)` over `net`) when given.
    pub fn new(
        xb: &'a Crossbar,
        net: &'a Network,
        symbolic: Option<Symbolic>,
        gmin: f64,
    ) -> Result<Self, XbarError> {
        let symbolic = match symbolic {
            Some(s) => s,
            None => Symbolic::new(net, Self::factor_kind(xb))?,
        };
        let mut base_values = vec![0.0; net.pattern.row_idx().len()];
        for e in &net.wires {
            net.stamp_g(&mut base_values, e.a, e.b, e.g_siemens);
        }
        for p in 0..net.n_free as u32 {
            base_values[net.slot(p, p)] += gmin;
        }
        Ok(NewtonProblem {
            xb,
            net,
            symbolic,
            base_values,
            gmin,
        })
    }

    pub fn workspace(&self) -> Result<NewtonWorkspace, XbarError> {
        let n = self.net.n_free;
        let cells = if matches!(self.xb.cell, CellKind::OneT1R { .. }) {
            self.xb.rows * self.xb.cols
        } else {
            0
        };
        Ok(NewtonWorkspace {
            values: self.base_values.clone(),
            values_trial: self.base_values.clone(),
            has_factor: false,
            f: vec![0.0; n],
            f_trial: vec![0.0; n],
            dx: vec![0.0; n],
            x_trial: vec![0.0; n],
            vm: vec![0.0; cells],
            vm_trial: vec![0.0; cells],
            numeric: Numeric::new(&self.symbolic, n, 1, Par::Seq)?,
        })
    }

    /// KCL residual (sum of currents leaving each unknown node, A) into `f`, and optionally the
    /// Jacobian into `values`. Returns the largest branch-current magnitude (for the tolerance).
    pub(super) fn residual(
        &self,
        x: &[f64],
        v_row: &[f64],
        v_col: &[f64],
        f: &mut [f64],
        vm: &mut [f64],
        mut jac: Option<&mut [f64]>,
    ) -> f64 {
        let net = self.net;
        f.iter_mut().for_each(|v| *v = 0.0);
        if let Some(j) = jac.as_deref_mut() {
            j.copy_from_slice(&self.base_values);
        }
        let mut scale: f64 = 0.0;
        for e in &net.wires {
            let va = Network::voltage(e.a, x, v_row, v_col);
            let vb = Network::voltage(e.b, x, v_row, v_col);
            let i = e.g_siemens * (va - vb);
            scale = scale.max(i.abs());
            if let Node::Free(p) = e.a {
                f[p as usize] += i;
            }
            if let Node::Free(q) = e.b {
                f[q as usize] -= i;
            }
        }
        if self.gmin > 0.0 {
            for (fp, xp) in f.iter_mut().zip(x) {
                *fp += self.gmin * xp;
            }
        }
        let is_1t1r = !vm.is_empty();
        let mut dummy = 0.0;
        for k in 0..net.w.len() {
            let (a, b) = (net.w[k], net.b[k]);
            let va = Network::voltage(a, x, v_row, v_col);
            let vb = Network::voltage(b, x, v_row, v_col);
            let m = if is_1t1r { &mut vm[k] } else { &mut dummy };
            let (i, dw, db) = cell_current(self.xb, k, va, vb, m);
            scale = scale.max(i.abs());
            if let Node::Free(p) = a {
                f[p as usize] += i;
            }
            if let Node::Free(q) = b {
                f[q as usize] -= i;
            }
            if let Some(j) = jac.as_deref_mut() {
                if let Node::Free(p) = a {
                    j[net.slot(p, p)] += dw;
                    if let Node::Free(q) = b {
                        j[net.slot(p, q)] += db;
                    }
                }
                if let Node::Free(q) = b {
                    j[net.slot(q, q)] -= db;
                    if let Node::Free(p) = a {
                        j[net.slot(q, p)] -= dw;
                    }
                }
            }
        }
        if let SenseKind::Tia { r_f_ohm, .. } = self.xb.sense {
            for &(_, s) in &net.tia {
                let vs = x[s as usize];
                let (vo, dvo) = tia_output(self.xb.sense, vs);
                let i = (vs - vo) / r_f_ohm;
                scale = scale.max(i.abs());
                f[s as usize] += i;
                if let Some(j) = jac.as_deref_mut() {
                    j[net.slot(s, s)] += (1.0 - dvo) / r_f_ohm;
                }
            }
        }
        scale
    }

    /// The trial point `x + λ·dx` into the workspace's trial buffers, with its residual (and
    /// Jacobian values); returns the residual's scale.
    fn trial(
        &self,
        ws: &mut NewtonWorkspace,
        x: &[f64],
        lambda: f64,
        v_row: &[f64],
        v_col: &[f64],
    ) -> f64 {
        for ((t, xv), d) in ws.x_trial.iter_mut().zip(x).zip(&ws.dx) {
            *t = xv + lambda * d;
        }
        ws.vm_trial.copy_from_slice(&ws.vm);
        self.residual(
            &ws.x_trial,
            v_row,
            v_col,
            &mut ws.f_trial,
            &mut ws.vm_trial,
            Some(&mut ws.values_trial),
        )
    }

    /// Newton from the start point in `x` (overwritten by the solution).
    ///
    /// With `opts.reuse_factor`, a factorization left in the workspace by a previous vector is
    /// tried first (chord steps); it is refreshed at the current point as soon as a step fails to
    /// reduce the residual or contracts it by less than a factor 4, after which the iteration is
    /// plain damped Newton. The converged answer satisfies the same tolerance either way.
    pub fn solve(
        &self,
        ws: &mut NewtonWorkspace,
        x: &mut [f64],
        v_row: &[f64],
        v_col: &[f64],
        opts: &NewtonOptions,
    ) -> Result<NewtonStats, XbarError> {
        let n = self.net.n_free;
        if n == 0 {
            return Ok(NewtonStats::default());
        }
        // 1T1R internal nodes start between their terminals.
        if !ws.vm.is_empty() {
            self.internal_start(x, v_row, v_col, &mut ws.vm);
        }
        let norm = |f: &[f64]| f.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let mut scale = self.residual(x, v_row, v_col, &mut ws.f, &mut ws.vm, Some(&mut ws.values));
        let mut fnorm = norm(&ws.f);
        // `fresh`: the factor in the workspace is the Jacobian at the current x.
        let mut fresh = false;
        if !(opts.reuse_factor && ws.has_factor) {
            ws.numeric.factor(self.net, &ws.values)?;
            ws.has_factor = true;
            fresh = true;
        }
        let mut factorizations = usize::from(fresh);
        for it in 1..=opts.max_iter {
            for (d, f) in ws.dx.iter_mut().zip(&ws.f) {
                *d = -f;
            }
            ws.numeric
                .solve(faer::MatMut::from_column_major_slice_mut(&mut ws.dx, n, 1))?;
            if ws.dx.iter().any(|d| !d.is_finite()) {
                return Err(XbarError::Numeric("Newton step is not finite".into()));
            }
            // Trial step (halved while the residual grows, with a fresh Jacobian only).
            let mut lambda = 1.0;
            let mut accepted = false;
            let mut fn_trial = f64::INFINITY;
            for _ in 0..30 {
                let sc = self.trial(ws, x, lambda, v_row, v_col);
                fn_trial = norm(&ws.f_trial);
                if fn_trial.is_finite()
                    && (fn_trial <= fnorm * (1.0 + 1e-12) || fn_trial <= opts.abstol_a)
                {
                    scale = scale.max(sc);
                    accepted = true;
                    break;
                }
                if !fresh {
                    break;
                }
                lambda *= 0.5;
            }
            if !accepted && !fresh {
                // The old factor does not help here: refactor at x and retry.
                ws.numeric.factor(self.net, &ws.values)?;
                factorizations += 1;
                fresh = true;
                continue;
            }
            if !accepted {
                // Take the full step anyway (the residual may rise before it falls).
                let sc = self.trial(ws, x, 1.0, v_row, v_col);
                scale = scale.max(sc);
                fn_trial = norm(&ws.f_trial);
            }
            let mut converged = true;
            for (xo, xn) in x.iter().zip(&ws.x_trial) {
                let tol = opts.reltol * xo.abs().max(xn.abs()) + opts.vntol_v;
                if (xn - xo).abs() > tol {
                    converged = false;
                    break;
                }
            }
            let slow = fn_trial > 0.25 * fnorm;
            x.copy_from_slice(&ws.x_trial);
            std::mem::swap(&mut ws.vm, &mut ws.vm_trial);
            std::mem::swap(&mut ws.f, &mut ws.f_trial);
            std::mem::swap(&mut ws.values, &mut ws.values_trial);
            fnorm = fn_trial;
            if converged && fnorm <= opts.reltol * scale * 1e3 + opts.abstol_a {
                return Ok(NewtonStats {
                    iterations: it,
                    residual_a: fnorm,
                    factorizations,
                });
            }
            fresh = false;
            if slow || !opts.reuse_factor {
                ws.numeric.factor(self.net, &ws.values)?;
                factorizations += 1;
                fresh = true;
            }
        }
        Err(XbarError::NoConvergence {
            iterations: opts.max_iter,
            residual_a: fnorm,
        })
    }

    /// The 1T1R internal node voltages after the last `solve` with this workspace.
    pub fn internal_voltages(ws: &NewtonWorkspace) -> &[f64] {
        &ws.vm
    }

    /// 1T1R internal node voltages halfway between their terminals (`vm`: one per cell), the
    /// start both Newton and the bulk solver use.
    pub(super) fn internal_start(&self, x: &[f64], v_row: &[f64], v_col: &[f64], vm: &mut [f64]) {
        for (k, m) in vm.iter_mut().enumerate() {
            let va = Network::voltage(self.net.w[k], x, v_row, v_col);
            let vb = Network::voltage(self.net.b[k], x, v_row, v_col);
            *m = 0.5 * (va + vb);
        }
    }

    /// Conductance from every unknown to ground (S).
    pub(super) fn gmin_siemens(&self) -> f64 {
        self.gmin
    }

    /// True for 1T1R cells (which carry an internal node per cell).
    pub(super) fn has_internal(&self) -> bool {
        matches!(self.xb.cell, CellKind::OneT1R { .. })
    }
}

/// Starting points for Newton: the linearized array solved for every vector (columns of `v_rows`).
pub fn linear_start(
    lin: &mut super::linear::LinearSystem,
    v_rows: faer::MatRef<'_, f64>,
    v_col: &[f64],
) -> Result<Mat<f64>, XbarError> {
    lin.solve_rows(v_rows, v_col)
}
