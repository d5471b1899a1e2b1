//! Linear arrays: after the driven nodes are folded into the right-hand side the nodal matrix is
//! symmetric positive definite; it is factored once (sparse Cholesky, nested-dissection ordering)
//! and then solves any number of right-hand sides together. The exact effective weight matrix `T`
//! (`I = Tᵀ·V`) costs min(R, C) solves.

use faer::{Mat, MatRef, Par};

use super::array::{Crossbar, SenseKind};
use super::factor::{FactorKind, Numeric, Symbolic};
use super::network::{Network, Node};
use super::XbarError;

/// Largest dense block of right-hand sides kept at once (bytes).
const RHS_BLOCK_BYTES: usize = 256 << 20;

/// A linear network (cells replaced by conductances) with its factorization.
pub struct LinearSystem {
    pub net: Network,
    /// Conductance of each cell (S), row-major.
    pub cell_g: Vec<f64>,
    /// Matrix values over `net.pattern`.
    pub values: Vec<f64>,
    /// Source couplings: free node, known node, conductance.
    pub src: Vec<(u32, Node, f64)>,
    pub symbolic: Option<Symbolic>,
    numeric: Option<Numeric>,
}

impl LinearSystem {
    /// Assemble and factor. `tia_g` is the linear conductance from each TIA sense node to ground
    /// (`(1 + A)/R_f` for the small-signal amplifier); `gmin` goes from every unknown to ground.
    pub fn new(
        net: Network,
        cell_g: Vec<f64>,
        tia_g: f64,
        gmin: f64,
        par: Par,
    ) -> Result<LinearSystem, XbarError> {
        let mut s = Self::assemble(net, cell_g, tia_g, gmin);
        s.factorize(None, par)?;
        Ok(s)
    }

    /// Assemble the matrix and source couplings without factoring (for the iterative solver).
    pub fn assemble(net: Network, cell_g: Vec<f64>, tia_g: f64, gmin: f64) -> LinearSystem {
        let mut values = vec![0.0; net.pattern.row_idx().len()];
        let mut src = Vec::new();
        let mut add = |a: Node, b: Node, g: f64, values: &mut [f64]| {
            net.stamp_g(values, a, b, g);
            match (a, b) {
                (Node::Free(p), k) | (k, Node::Free(p))
                    if !matches!(k, Node::Free(_) | Node::Ground) =>
                {
                    src.push((p, k, g));
                }
                _ => {}
            }
        };
        for e in &net.wires {
            add(e.a, e.b, e.g_siemens, &mut values);
        }
        for (k, &g) in cell_g.iter().enumerate() {
            add(net.w[k], net.b[k], g, &mut values);
        }
        for &(_, s) in &net.tia {
            values[net.slot(s, s)] += tia_g;
        }
        if gmin > 0.0 {
            for p in 0..net.n_free as u32 {
                values[net.slot(p, p)] += gmin;
            }
        }
        LinearSystem {
            net,
            cell_g,
            values,
            src,
            symbolic: None,
            numeric: None,
        }
    }

    /// Factor (sparse Cholesky), reusing `symbolic` when given (same network).
    pub fn factorize(&mut self, symbolic: Option<Symbolic>, par: Par) -> Result<(), XbarError> {
        let trace = std::env::var_os("NETC_XBAR_TRACE").is_some();
        let t0 = std::time::Instant::now();
        let symbolic = match symbolic {
            Some(s) => s,
            None => Symbolic::new(&self.net, FactorKind::Cholesky)?,
        };
        let t1 = std::time::Instant::now();
        let mut numeric = Numeric::new(&symbolic, self.net.n_free, 1, par)?;
        if self.net.n_free > 0 {
            numeric.factor(&self.net, &self.values)?;
        }
        if trace {
            eprintln!(
                "xbar: n = {}, nnz(A) = {}, nnz(L) = {}, symbolic {:.3} s, numeric {:.3} s",
                self.net.n_free,
                self.values.len(),
                symbolic.factor_nnz(),
                (t1 - t0).as_secs_f64(),
                t1.elapsed().as_secs_f64()
            );
        }
        self.symbolic = Some(symbolic);
        self.numeric = Some(numeric);
        Ok(())
    }

    /// True once factored.
    pub fn numeric_ready(&self) -> bool {
        self.numeric.is_some()
    }

    fn numeric(&mut self) -> Result<&mut Numeric, XbarError> {
        self.numeric
            .as_mut()
            .ok_or_else(|| XbarError::Numeric("linear system used before factorization".into()))
    }

    /// The array's linear system for its own (linear) cells and sensing.
    pub fn for_array(xb: &Crossbar, net: Network, gmin: f64, par: Par) -> Result<Self, XbarError> {
        if !xb.cell.is_linear() {
            return Err(XbarError::Invalid(
                "the linear solver needs linear cells; use the Newton solver".into(),
            ));
        }
        let tia_g = match xb.sense {
            SenseKind::Tia { gain, r_f_ohm, .. } => (1.0 + gain) / r_f_ohm,
            SenseKind::VirtualGround => 0.0,
        };
        LinearSystem::new(net, xb.g_siemens.clone(), tia_g, gmin, par)
    }

    /// Right-hand side for source values `v_row`, `v_col`, written into `out` (length n).
    pub fn rhs_into(&self, v_row: &[f64], v_col: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|v| *v = 0.0);
        for &(p, k, g) in &self.src {
            out[p as usize] += g * Network::voltage(k, &[], v_row, v_col);
        }
    }

    /// Solve for many row-voltage vectors at once (columns of `v_rows`, R × k) with the column
    /// sources at `v_col`; returns the unknowns, n × k.
    pub fn solve_rows(
        &mut self,
        v_rows: MatRef<'_, f64>,
        v_col: &[f64],
    ) -> Result<Mat<f64>, XbarError> {
        let n = self.net.n_free;
        let k = v_rows.ncols();
        let mut x = Mat::<f64>::zeros(n, k);
        let mut vr = vec![0.0; v_rows.nrows()];
        let mut col = vec![0.0; n];
        for t in 0..k {
            for (i, v) in vr.iter_mut().enumerate() {
                *v = v_rows[(i, t)];
            }
            self.rhs_into(&vr, v_col, &mut col);
            for (p, v) in col.iter().enumerate() {
                x[(p, t)] = *v;
            }
        }
        if n > 0 {
            self.numeric()?.solve(x.as_mut())?;
        }
        check_finite(x.as_ref())?;
        Ok(x)
    }

    /// Solve in place for a prepared right-hand side block (n × k).
    pub fn solve_in_place(&mut self, rhs: faer::MatMut<'_, f64>) -> Result<(), XbarError> {
        if self.net.n_free > 0 {
            self.numeric()?.solve(rhs)?;
        }
        Ok(())
    }

    /// Output functionals of the virtual-ground columns: `I_j = Σ coef·x + Σ coef·v_row`, as
    /// (column, node, coefficient) terms (column sources at 0 V).
    pub(crate) fn output_terms(&self) -> Vec<(usize, Node, f64)> {
        let mut t = Vec::new();
        for e in &self.net.wires {
            if let Node::Col(j) = e.b {
                t.push((j as usize, e.a, e.g_siemens));
            }
            if let Node::Col(j) = e.a {
                t.push((j as usize, e.b, e.g_siemens));
            }
        }
        for (k, &g) in self.cell_g.iter().enumerate() {
            if let Node::Col(j) = self.net.b[k] {
                t.push((j as usize, self.net.w[k], g));
            }
        }
        t
    }

    /// The exact effective weight matrix `T` (R × C, row-major) with `I = Tᵀ·V` for the column
    /// currents into virtual grounds, built with min(R, C) solves (direct when R ≤ C, adjoint
    /// otherwise; the matrix is symmetric so both use the same factor).
    pub fn effective_weights(&mut self) -> Result<Mat<f64>, XbarError> {
        let (r, c) = (self.net.rows, self.net.cols);
        let n = self.net.n_free;
        let terms = self.output_terms();
        let mut t = Mat::<f64>::zeros(r, c);
        // Direct terms (output coupled to a row source without unknowns in between).
        for &(j, node, g) in &terms {
            if let Node::Row(i) = node {
                t[(i as usize, j)] += g;
            }
        }
        if n == 0 {
            return Ok(t);
        }
        let block = (RHS_BLOCK_BYTES / (8 * n)).clamp(1, 256);
        if r <= c {
            // X = A⁻¹ E, one column per row source; T[i, j] = Σ_terms coef·X[node, i].
            let mut i0 = 0;
            while i0 < r {
                let nb = block.min(r - i0);
                let mut x = Mat::<f64>::zeros(n, nb);
                for &(p, k, g) in &self.src {
                    if let Node::Row(i) = k {
                        let i = i as usize;
                        if i >= i0 && i < i0 + nb {
                            x[(p as usize, i - i0)] += g;
                        }
                    }
                }
                self.numeric()?.solve_columns_parallel(x.as_mut())?;
                check_finite(x.as_ref())?;
                for &(j, node, g) in &terms {
                    if let Node::Free(p) = node {
                        for b in 0..nb {
                            t[(i0 + b, j)] += g * x[(p as usize, b)];
                        }
                    }
                }
                i0 += nb;
            }
        } else {
            // Y = A⁻¹ Oᵀ, one column per output; T[i, j] = Σ_src g·Y[p, j].
            let mut j0 = 0;
            while j0 < c {
                let nb = block.min(c - j0);
                let mut y = Mat::<f64>::zeros(n, nb);
                for &(j, node, g) in &terms {
                    if let Node::Free(p) = node {
                        if j >= j0 && j < j0 + nb {
                            y[(p as usize, j - j0)] += g;
                        }
                    }
                }
                self.numeric()?.solve_columns_parallel(y.as_mut())?;
                check_finite(y.as_ref())?;
                for &(p, k, g) in &self.src {
                    if let Node::Row(i) = k {
                        for b in 0..nb {
                            t[(i as usize, j0 + b)] += g * y[(p as usize, b)];
                        }
                    }
                }
                j0 += nb;
            }
        }
        Ok(t)
    }
}

impl LinearSystem {
    /// Signed combinations of the effective weights: `M[i, k] = Σ_{(j, τ) ∈ combos[k]} τ·T[i, j]`
    /// (R × K), e.g. the differential outputs `I(c⁺) − I(c⁻)` of a layer, with one adjoint solve
    /// per combination instead of min(R, C) for the whole of `T`.
    pub fn combined_weights(
        &mut self,
        combos: &[Vec<(usize, f64)>],
    ) -> Result<Mat<f64>, XbarError> {
        let r = self.net.rows;
        let n = self.net.n_free;
        let k = combos.len();
        let terms = self.output_terms();
        // column j's terms, to expand a combination
        let mut by_col: Vec<Vec<(Node, f64)>> = vec![Vec::new(); self.net.cols];
        for &(j, node, g) in &terms {
            by_col[j].push((node, g));
        }
        let mut m = Mat::<f64>::zeros(r, k);
        for (kk, combo) in combos.iter().enumerate() {
            for &(j, tau) in combo {
                for &(node, g) in &by_col[j] {
                    if let Node::Row(i) = node {
                        m[(i as usize, kk)] += tau * g;
                    }
                }
            }
        }
        if n == 0 || k == 0 {
            return Ok(m);
        }
        let block = (RHS_BLOCK_BYTES / (8 * n)).clamp(1, 256);
        let mut k0 = 0;
        while k0 < k {
            let nb = block.min(k - k0);
            let mut y = Mat::<f64>::zeros(n, nb);
            for b in 0..nb {
                for &(j, tau) in &combos[k0 + b] {
                    for &(node, g) in &by_col[j] {
                        if let Node::Free(p) = node {
                            y[(p as usize, b)] += tau * g;
                        }
                    }
                }
            }
            self.numeric()?.solve_columns_parallel(y.as_mut())?;
            check_finite(y.as_ref())?;
            for &(p, src_node, g) in &self.src {
                if let Node::Row(i) = src_node {
                    for b in 0..nb {
                        m[(i as usize, k0 + b)] += g * y[(p as usize, b)];
                    }
                }
            }
            k0 += nb;
        }
        Ok(m)
    }
}

/// Reject NaN or infinite results (sparse LU does not report zero pivots).
pub fn check_finite(m: MatRef<'_, f64>) -> Result<(), XbarError> {
    for j in 0..m.ncols() {
        for i in 0..m.nrows() {
            if !m[(i, j)].is_finite() {
                return Err(XbarError::Numeric(
                    "the solution is not finite (singular circuit: a floating node?)".into(),
                ));
            }
        }
    }
    Ok(())
}
