//! Linear arrays: after the driven nodes are folded into the right-hand side the nodal matrix is
//! symmetric positive definite; it is factored once (sparse Cholesky, nested-dissection ordering)
//! (on first use) and then solves any number of right-hand sides together.
//!
//! The exact effective weight matrix `T` (`I = Tᵀ·V`) comes, in order of preference, from the
//! Schur complement of every unknown onto the sources by a multifrontal elimination along the
//! array's geometry ([`super::frontal`], when no factor of the whole exists), from the trailing
//! block of the whole factor (the unknowns tied to sources ordered last: `T = Eᵀ·S⁻¹·O` there),
//! or from min(R, C) solves.

use std::sync::Arc;

use faer::{Mat, MatRef, Par};

use super::array::Crossbar;
use super::factor::{FactorKind, Numeric, Symbolic};
use super::frontal::FrontalPlan;
use super::network::{Network, Node};
use super::XbarError;

/// Largest dense block of right-hand sides kept at once (bytes).
const RHS_BLOCK_BYTES: usize = 256 << 20;

/// A linear network (cells replaced by conductances) with its factorization.
pub struct LinearSystem {
    /// The network (shared with the engine that built it).
    pub net: Arc<Network>,
    /// Conductance of each cell (S), row-major.
    pub cell_g: Vec<f64>,
    /// Matrix values over `net.pattern`.
    pub values: Vec<f64>,
    /// Source couplings: free node, known node, conductance.
    pub src: Vec<(u32, Node, f64)>,
    pub symbolic: Option<Symbolic>,
    numeric: Option<Numeric>,
    /// The numeric factor no longer matches `values` (a new conductance state): refactored on
    /// the next solve.
    stale: bool,
    /// Parallelism of the factorization and solves.
    pub par: Par,
    /// The multifrontal plan for effective weights without a whole factor (built on first use;
    /// `Some(None)`: not applicable).
    frontal: Option<Option<FrontalPlan>>,
    /// The plan with some rows grounded ([`Self::combined_weights_of_rows`]), for the row mask
    /// it was built for (read rows `true`).
    frontal_rows: Option<(Vec<bool>, Option<FrontalPlan>)>,
    /// Restamping a new conductance state: built on the first update.
    restamp: Option<Restamp>,
}

/// What stays fixed across conductance states (wires, amplifiers, gmin) and where each cell's
/// conductance goes, so that a new state is a copy and four additions per cell.
struct Restamp {
    tia_g: f64,
    gmin: f64,
    fixed_values: Vec<f64>,
    fixed_src: Vec<(u32, Node, f64)>,
    /// Per cell: value slots (p,p), (q,q), (p,q), (q,p) (`usize::MAX`: absent).
    cell_slots: Vec<[usize; 4]>,
    /// Cells tied to a source: (cell, free node, source node).
    cell_src: Vec<(usize, u32, Node)>,
}

impl Restamp {
    fn new(net: &Network, tia_g: f64, gmin: f64) -> Restamp {
        let zeros = vec![0.0; net.w.len()];
        let (fixed_values, fixed_src) = LinearSystem::stamp(net, &zeros, tia_g, gmin);
        let fixed_src = fixed_src.into_iter().filter(|e| e.2 != 0.0).collect();
        let none = usize::MAX;
        let mut cell_slots = Vec::with_capacity(net.w.len());
        let mut cell_src = Vec::new();
        for (k, (&a, &b)) in net.w.iter().zip(&net.b).enumerate() {
            cell_slots.push(match (a, b) {
                (Node::Free(p), Node::Free(q)) => [
                    net.slot(p, p),
                    net.slot(q, q),
                    net.slot(p, q),
                    net.slot(q, p),
                ],
                (Node::Free(p), _) | (_, Node::Free(p)) => [net.slot(p, p), none, none, none],
                _ => [none; 4],
            });
            match (a, b) {
                (Node::Free(p), k2) | (k2, Node::Free(p))
                    if !matches!(k2, Node::Free(_) | Node::Ground) =>
                {
                    cell_src.push((k, p, k2));
                }
                _ => {}
            }
        }
        Restamp {
            tia_g,
            gmin,
            fixed_values,
            fixed_src,
            cell_slots,
            cell_src,
        }
    }

    fn apply(&self, cell_g: &[f64], values: &mut Vec<f64>, src: &mut Vec<(u32, Node, f64)>) {
        values.clear();
        values.extend_from_slice(&self.fixed_values);
        for (sl, &g) in self.cell_slots.iter().zip(cell_g) {
            if sl[0] != usize::MAX {
                values[sl[0]] += g;
            }
            if sl[1] != usize::MAX {
                values[sl[1]] += g;
                values[sl[2]] -= g;
                values[sl[3]] -= g;
            }
        }
        src.clear();
        src.extend_from_slice(&self.fixed_src);
        src.extend(self.cell_src.iter().map(|&(k, p, n)| (p, n, cell_g[k])));
    }
}

impl LinearSystem {
    /// Assemble and factor. `tia_g` is the linear conductance from each TIA sense node to ground
    /// (`(1 + A)/R_f` for the small-signal amplifier); `gmin` goes from every unknown to ground.
    pub fn new(
        net: impl Into<Arc<Network>>,
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
    pub fn assemble(
        net: impl Into<Arc<Network>>,
        cell_g: Vec<f64>,
        tia_g: f64,
        gmin: f64,
    ) -> LinearSystem {
        let net = net.into();
        let (values, src) = Self::stamp(&net, &cell_g, tia_g, gmin);
        LinearSystem {
            net,
            cell_g,
            values,
            src,
            symbolic: None,
            numeric: None,
            stale: false,
            par: Par::Seq,
            frontal: None,
            frontal_rows: None,
            restamp: None,
        }
    }

    /// Use `plan` (built for this system's network) for effective weights instead of planning
    /// on first use.
    pub fn set_frontal_plan(&mut self, plan: FrontalPlan) {
        self.frontal = Some(Some(plan));
    }

    /// A new conductance state of the same network: restamp; the factor is redone on the next
    /// solve, keeping the symbolic analysis and the numeric workspace.
    pub fn update_cells(&mut self, cell_g: &[f64], tia_g: f64, gmin: f64) -> Result<(), XbarError> {
        if cell_g.len() != self.cell_g.len() {
            return Err(XbarError::Invalid(format!(
                "{} cell conductances for {} cells",
                cell_g.len(),
                self.cell_g.len()
            )));
        }
        self.cell_g.copy_from_slice(cell_g);
        if !matches!(&self.restamp, Some(r) if r.tia_g == tia_g && r.gmin == gmin) {
            self.restamp = Some(Restamp::new(&self.net, tia_g, gmin));
        }
        let r = self.restamp.as_ref().expect("built above");
        r.apply(&self.cell_g, &mut self.values, &mut self.src);
        self.stale = true;
        Ok(())
    }

    fn stamp(
        net: &Network,
        cell_g: &[f64],
        tia_g: f64,
        gmin: f64,
    ) -> (Vec<f64>, Vec<(u32, Node, f64)>) {
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
        (values, src)
    }

    /// Factor (sparse Cholesky), reusing `symbolic` when given (same network).
    pub fn factorize(&mut self, symbolic: Option<Symbolic>, par: Par) -> Result<(), XbarError> {
        let trace = super::trace();
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
        self.stale = false;
        self.par = par;
        Ok(())
    }

    /// True when a factor of the current values exists.
    pub fn numeric_ready(&self) -> bool {
        self.numeric.is_some() && !self.stale
    }

    /// The factor of the current values, computed (or redone) on first use.
    fn numeric(&mut self) -> Result<&mut Numeric, XbarError> {
        match self.numeric.as_mut() {
            None => self.factorize(self.symbolic.clone(), self.par)?,
            Some(nu) if self.stale => {
                if self.net.n_free > 0 {
                    nu.factor(&self.net, &self.values)?;
                }
                self.stale = false;
            }
            Some(_) => {}
        }
        Ok(self.numeric.as_mut().expect("factored above"))
    }

    /// The array's linear system for its own (linear) cells and sensing.
    pub fn for_array(
        xb: &Crossbar,
        net: impl Into<Arc<Network>>,
        gmin: f64,
        par: Par,
    ) -> Result<Self, XbarError> {
        if !xb.cell.is_linear() {
            return Err(XbarError::Invalid(
                "the linear solver needs linear cells; use the Newton solver".into(),
            ));
        }
        let tia_g = xb.sense.small_signal_g_siemens();
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

    /// [`LinearSystem::solve_in_place`] with the columns split over the rayon threads (many
    /// right-hand sides on a factor too small for parallel supernodes).
    pub fn solve_in_place_parallel(&mut self, rhs: faer::MatMut<'_, f64>) -> Result<(), XbarError> {
        if self.net.n_free > 0 {
            self.numeric()?.solve_columns_parallel(rhs)?;
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
    /// currents into virtual grounds: from the boundary Schur complement when the array's
    /// structure allows, else with min(R, C) solves (direct when R ≤ C, adjoint otherwise; the
    /// matrix is symmetric so both use the same factor).
    pub fn effective_weights(&mut self) -> Result<Mat<f64>, XbarError> {
        let (r, c) = (self.net.rows, self.net.cols);
        let unit: Vec<Vec<(usize, f64)>> = (0..c).map(|j| vec![(j, 1.0)]).collect();
        self.weights(&unit, r <= c, None)
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
        self.weights(combos, false, None)
    }

    /// [`Self::combined_weights`] of the rows `read[i]` only, the other rows' sources held at
    /// 0 V: the same circuit as driving them at 0 V, so the read rows' weights are the same (to
    /// rounding); the other rows' are zero. The multifrontal elimination then keeps only the
    /// read rows as terminals (a plan per row mask, built on first use), which is what makes
    /// rows that are never driven free.
    pub fn combined_weights_of_rows(
        &mut self,
        combos: &[Vec<(usize, f64)>],
        read: &[bool],
    ) -> Result<Mat<f64>, XbarError> {
        check_row_mask(read, self.net.rows)?;
        let mask = if read.iter().all(|&b| b) {
            None
        } else {
            Some(read)
        };
        self.weights(combos, false, mask)
    }

    /// [`Self::combined_weights`]: from the multifrontal Schur complement onto the sources when
    /// no factor of the whole exists yet ([`Self::frontal_weights`]), else from the trailing block
    /// of the whole factor ([`Self::tail_weights`]), else by solves: one direct solve per row
    /// source when `direct`, one adjoint solve per combination otherwise.
    fn weights(
        &mut self,
        combos: &[Vec<(usize, f64)>],
        direct: bool,
        read: Option<&[bool]>,
    ) -> Result<Mat<f64>, XbarError> {
        let mut w = self.all_weights(combos, direct, read)?;
        if let Some(read) = read {
            zero_unread_rows(&mut w, read);
        }
        Ok(w)
    }

    /// [`Self::weights`] before the unread rows are zeroed (the multifrontal path leaves them
    /// zero already; the other paths compute them).
    fn all_weights(
        &mut self,
        combos: &[Vec<(usize, f64)>],
        direct: bool,
        read: Option<&[bool]>,
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
        if !self.numeric_ready() {
            if let Some(tw) = self.frontal_weights(combos, &by_col, read)? {
                return Ok(m + tw);
            }
        }
        let outs: Vec<Vec<(u32, f64)>> = combos
            .iter()
            .map(|combo| {
                let mut o = Vec::new();
                for &(j, tau) in combo {
                    for &(node, g) in &by_col[j] {
                        if let Node::Free(p) = node {
                            o.push((p, tau * g));
                        }
                    }
                }
                o
            })
            .collect();
        self.numeric()?;
        if let Some(tw) = self.tail_weights(&outs)? {
            return Ok(m + tw);
        }
        if direct {
            self.direct_weights(&outs, &mut m)?;
        } else {
            self.adjoint_weights(&outs, &mut m)?;
        }
        Ok(m)
    }
}

impl LinearSystem {
    /// `m[i, k] += e_iᵀ·A⁻¹·o_k` (see [`Self::adjoint_weights`]) by one solve per row source,
    /// in blocks of rows.
    fn direct_weights(
        &mut self,
        outs: &[Vec<(u32, f64)>],
        m: &mut Mat<f64>,
    ) -> Result<(), XbarError> {
        let (n, r) = (self.net.n_free, self.net.rows);
        let block = (RHS_BLOCK_BYTES / (8 * n)).clamp(1, 256);
        for i0 in (0..r).step_by(block) {
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
            for (k, out) in outs.iter().enumerate() {
                for &(p, g) in out {
                    for b in 0..nb {
                        m[(i0 + b, k)] += g * x[(p as usize, b)];
                    }
                }
            }
        }
        Ok(())
    }

    /// `m[i, k] += e_iᵀ·A⁻¹·o_k` for the row-source couplings `e_i` and the output functionals
    /// `outs[k]` (unknown, coefficient) by one adjoint solve per output, in blocks of columns.
    fn adjoint_weights(
        &mut self,
        outs: &[Vec<(u32, f64)>],
        m: &mut Mat<f64>,
    ) -> Result<(), XbarError> {
        let n = self.net.n_free;
        let block = (RHS_BLOCK_BYTES / (8 * n)).clamp(1, 256);
        for (k0, chunk) in (0..).step_by(block).zip(outs.chunks(block)) {
            let mut y = Mat::<f64>::zeros(n, chunk.len());
            for (b, out) in chunk.iter().enumerate() {
                for &(p, g) in out {
                    y[(p as usize, b)] += g;
                }
            }
            self.numeric()?.solve_columns_parallel(y.as_mut())?;
            check_finite(y.as_ref())?;
            for &(p, src_node, g) in &self.src {
                if let Node::Row(i) = src_node {
                    for b in 0..chunk.len() {
                        m[(i as usize, k0 + b)] += g * y[(p as usize, b)];
                    }
                }
            }
        }
        Ok(())
    }

    /// The source-to-source Schur complement `S` (the sources as terminals, every unknown
    /// eliminated): with `B` the couplings of the unknowns to the sources, `S = −Bᵀ·A⁻¹·B` off
    /// its diagonal, and the current into column source j for unit volts on row source i is
    /// `e_iᵀ·A⁻¹·o_j = −S[col j, row i]` (`e_i = −B_row i`, `o_j = −B_col j`: the output
    /// functional of a virtual-ground column is its coupling to its source). `None` when the
    /// plan does not apply or a column's output is not exactly its source coupling.
    fn frontal_weights(
        &mut self,
        combos: &[Vec<(usize, f64)>],
        by_col: &[Vec<(Node, f64)>],
        read: Option<&[bool]>,
    ) -> Result<Option<Mat<f64>>, XbarError> {
        let trace = super::trace();
        let t0 = std::time::Instant::now();
        let plan = match read {
            None => {
                if self.frontal.is_none() {
                    self.frontal = Some(FrontalPlan::new(&self.net));
                }
                self.frontal.as_ref().and_then(|p| p.as_ref())
            }
            Some(mask) => {
                if !matches!(&self.frontal_rows, Some((m, _)) if m == mask) {
                    self.frontal_rows = Some((
                        mask.to_vec(),
                        FrontalPlan::with_row_terminals(&self.net, mask),
                    ));
                }
                self.frontal_rows.as_ref().and_then(|(_, p)| p.as_ref())
            }
        };
        let Some(plan) = plan else {
            return Ok(None);
        };
        let (n, r) = (self.net.n_free, self.net.rows);
        let Some(tv) = plan.terminal_values(&self.src, n, r) else {
            return Ok(None);
        };
        // each column's output functional must be minus its source coupling
        let mut couplings_of_col = vec![0usize; by_col.len()];
        for &(_, t) in &plan.term_pairs {
            if let Some(j) = (t as usize).checked_sub(n + r) {
                couplings_of_col[j] += 1;
            }
        }
        for (j, terms) in by_col.iter().enumerate() {
            let t = (n + r + j) as u32;
            let mut count = 0;
            for &(node, g) in terms {
                let Node::Free(p) = node else { continue };
                let Ok(at) = plan.term_pairs.binary_search(&(p, t)) else {
                    return Ok(None);
                };
                if (tv[at] + g).abs() > 1e-12 * g.abs() {
                    return Ok(None);
                }
                count += 1;
            }
            if couplings_of_col[j] != count {
                return Ok(None);
            }
        }
        let t1 = std::time::Instant::now();
        let s = plan.row_col_block(&self.values, &tv)?;
        let n_rows = plan.root_row_terminals();
        let mut w = Mat::<f64>::zeros(r, combos.len());
        for (k, combo) in combos.iter().enumerate() {
            for &(j, tau) in combo {
                let cj = plan.tail_pos[r + j];
                if cj == u32::MAX {
                    continue; // a column coupled to nothing reads no current
                }
                for i in 0..r {
                    let ri = plan.tail_pos[i];
                    if ri != u32::MAX {
                        w[(i, k)] -= tau * s[(cj as usize - n_rows, ri as usize)];
                    }
                }
            }
        }
        check_finite(w.as_ref())?;
        if trace {
            let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_secs_f64() * 1e3;
            eprintln!(
                "xbar: frontal plan and couplings {:.2} ms ({} fronts, ~{:.1}M multiply-adds), Schur complement onto {} sources and T {:.2} ms",
                ms(t0, t1),
                plan.n_fronts(),
                plan.work() / 1e6,
                plan.tail.len(),
                ms(t1, std::time::Instant::now())
            );
        }
        Ok(Some(w))
    }

    /// `M[i, k] = e_iᵀ·A⁻¹·o_k` (R × K) for the row-source couplings `e_i` and the output
    /// functionals `outs[k]` (unknown, coefficient), from the trailing block of the factor when
    /// every coupling and functional lives on the last elimination positions (the source-coupled
    /// unknowns are ordered last, see [`super::factor::MAX_TAIL`]): two dense triangular solves
    /// and a product of the size of the array's boundary, instead of one sparse solve per output.
    /// `None` when the ordering does not allow it (the caller solves instead).
    fn tail_weights(&mut self, outs: &[Vec<(u32, f64)>]) -> Result<Option<Mat<f64>>, XbarError> {
        let n = self.net.n_free;
        let r = self.net.rows;
        let Some(pos) = self.symbolic.as_ref().and_then(|s| s.positions()) else {
            return Ok(None);
        };
        let row_src = self.src.iter().filter_map(|&(p, k, g)| match k {
            Node::Row(i) => Some((p, i as usize, g)),
            _ => None,
        });
        let first = row_src
            .clone()
            .map(|(p, _, _)| p)
            .chain(outs.iter().flatten().map(|&(p, _)| p))
            .map(|p| pos[p as usize] as usize)
            .min()
            .unwrap_or(n);
        let m = n - first;
        if m > super::factor::MAX_TAIL {
            return Ok(None);
        }
        let Some(l22) = self.numeric.as_ref().and_then(|nu| nu.trailing_factor(m)) else {
            return Ok(None);
        };
        let mut e = Mat::<f64>::zeros(m, r);
        for (p, i, g) in row_src {
            e[(pos[p as usize] as usize - first, i)] += g;
        }
        let mut o = Mat::<f64>::zeros(m, outs.len());
        for (k, out) in outs.iter().enumerate() {
            for &(p, g) in out {
                o[(pos[p as usize] as usize - first, k)] += g;
            }
        }
        use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
        solve_lower_triangular_in_place(l22.as_ref(), e.as_mut(), Par::Seq);
        solve_lower_triangular_in_place(l22.as_ref(), o.as_mut(), Par::Seq);
        let w = e.transpose() * &o;
        check_finite(w.as_ref())?;
        Ok(Some(w))
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

/// A row mask (`read[i]`: row i's weights are wanted) must have one entry per row.
pub(super) fn check_row_mask(read: &[bool], rows: usize) -> Result<(), XbarError> {
    if read.len() != rows {
        return Err(XbarError::Invalid(format!(
            "a row mask of {} for an array of {rows} rows",
            read.len()
        )));
    }
    Ok(())
}

/// Zero the weights of the rows not `read` (rows held at 0 V).
pub(super) fn zero_unread_rows(w: &mut Mat<f64>, read: &[bool]) {
    for (i, _) in read.iter().enumerate().filter(|(_, &b)| !b) {
        for k in 0..w.ncols() {
            w[(i, k)] = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xbar::network::Topology;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn system(r: usize, c: usize, r_word: f64, seed: u64) -> LinearSystem {
        let mut s = unfactored(r, c, r_word, seed);
        s.factorize(None, Par::Seq).unwrap();
        s
    }

    fn unfactored(r: usize, c: usize, r_word: f64, seed: u64) -> LinearSystem {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let g: Vec<f64> = (0..r * c).map(|_| rng.gen_range(1e-6..1e-4)).collect();
        let mut xb = Crossbar::passive(r, c, g, 2.5).unwrap();
        xb.r_word_ohm = r_word;
        xb.r_driver_ohm = 5.0;
        xb.r_sense_ohm = 3.0;
        let net = Network::new(&xb, &Topology::inference(&xb)).unwrap();
        LinearSystem::assemble(net, xb.g_siemens.clone(), 0.0, 0.0)
    }

    /// `T` by one full sparse solve per row source, read at the outputs: the reference.
    fn t_by_solves(s: &mut LinearSystem) -> Mat<f64> {
        let (r, c, n) = (s.net.rows, s.net.cols, s.net.n_free);
        let mut t = Mat::<f64>::zeros(r, c);
        let terms = s.output_terms();
        for i in 0..r {
            let mut v = vec![0.0; r];
            v[i] = 1.0;
            let x = s.solve_rows(Mat::from_fn(r, 1, |k, _| v[k]).as_ref(), &vec![0.0; c]);
            let x = x.unwrap();
            assert_eq!(x.nrows(), n);
            for &(j, node, g) in &terms {
                t[(i, j)] += g * Network::voltage(
                    node,
                    x.col(0).try_as_col_major().unwrap().as_slice(),
                    &v,
                    &vec![0.0; c],
                );
            }
        }
        t
    }

    #[test]
    fn trailing_block_gives_the_exact_effective_weights() {
        for (r, c) in [(24, 16), (9, 31)] {
            let mut s = system(r, c, 2.5, 3);
            // the source-coupled unknowns are last: the tail path applies
            let n = s.net.n_free;
            let pos = s.symbolic.as_ref().unwrap().positions().unwrap().to_vec();
            let tail = s.net.source_coupled();
            assert_eq!(tail.len(), r + c);
            assert!(tail
                .iter()
                .all(|&p| pos[p as usize] as usize >= n - tail.len()));
            let outs: Vec<Vec<(u32, f64)>> = vec![vec![(tail[0], 1.0)]];
            assert!(s.tail_weights(&outs).unwrap().is_some());
            let t = s.effective_weights().unwrap();
            let reference = t_by_solves(&mut s);
            for i in 0..r {
                for j in 0..c {
                    let (a, b) = (t[(i, j)], reference[(i, j)]);
                    assert!((a - b).abs() <= 1e-12 * b.abs(), "T[{i},{j}] {a} vs {b}");
                }
            }
            // combinations are the same columns combined
            let combos = vec![vec![(0, 1.0), (1, -1.0)], vec![(c - 1, 2.0)]];
            let m = s.combined_weights(&combos).unwrap();
            for i in 0..r {
                let d0 = reference[(i, 0)] - reference[(i, 1)];
                assert!((m[(i, 0)] - d0).abs() <= 1e-10 * reference[(i, 0)].abs());
                assert!(
                    (m[(i, 1)] - 2.0 * reference[(i, c - 1)]).abs()
                        <= 1e-12 * reference[(i, c - 1)].abs()
                );
            }
        }
    }

    #[test]
    fn multifrontal_elimination_gives_the_exact_effective_weights() {
        // degenerate, thin and both cut directions, word and bit segments equal or not;
        // TIA-free virtual grounds
        let shapes = [
            (1, 1),
            (1, 7),
            (7, 1),
            (2, 3),
            (9, 31),
            (64, 40),
            (36, 72),
            (3, 150),
        ];
        for (k, (r, c)) in shapes.into_iter().enumerate() {
            let r_word = if k % 2 == 0 { 2.5 } else { 0.7 };
            let mut s = unfactored(r, c, r_word, 13);
            assert!(!s.numeric_ready());
            let t = s.effective_weights().unwrap();
            assert!(
                matches!(s.frontal, Some(Some(_))),
                "{r}×{c}: the multifrontal plan must apply"
            );
            assert!(
                !s.numeric_ready(),
                "no factor of the whole array was formed"
            );
            let reference = t_by_solves(&mut s); // factors the whole array
            let mut worst: f64 = 0.0;
            for i in 0..r {
                for j in 0..c {
                    let (a, b) = (t[(i, j)], reference[(i, j)]);
                    worst = worst.max((a - b).abs() / b.abs());
                }
            }
            assert!(
                worst < 1e-11,
                "{r}×{c}: worst relative difference {worst:e}"
            );
            // a new state: eliminate again (reusing the plan), same answers as a fresh system
            let mut fresh = unfactored(r, c, r_word, 14);
            s.update_cells(&fresh.cell_g.clone(), 0.0, 0.0).unwrap();
            let a = s.effective_weights().unwrap();
            let b = t_by_solves(&mut fresh);
            for i in 0..r {
                for j in 0..c {
                    assert!((a[(i, j)] - b[(i, j)]).abs() <= 1e-11 * b[(i, j)].abs());
                }
            }
        }
    }

    /// Rows held at 0 V instead of kept as terminals: the read rows' combined weights are those
    /// of full sparse solves of the whole array (every row a source, the others at 0 V), the
    /// unread rows' are zero, no factor of the whole is formed, and the unread rows are not
    /// terminals of the elimination. Masks: none read, the first rows, every other row, all
    /// but one, and all (the plain path).
    #[test]
    fn grounded_rows_give_the_read_rows_exact_weights() {
        for (r, c, seed) in [(9, 31, 3u64), (36, 20, 4), (5, 1, 6)] {
            let mut reference_sys = unfactored(r, c, 2.5, seed);
            let t = t_by_solves(&mut reference_sys);
            let combos: Vec<Vec<(usize, f64)>> = (0..c)
                .map(|j| vec![(j, 1.0), ((j + 1) % c, -0.5)])
                .collect();
            let masks: Vec<Vec<bool>> = vec![
                vec![false; r],
                (0..r).map(|i| i < r / 2 + 1).collect(),
                (0..r).map(|i| i % 2 == 1).collect(),
                (0..r).map(|i| i != r / 3).collect(),
                vec![true; r],
            ];
            for read in masks {
                let mut s = unfactored(r, c, 2.5, seed);
                let w = s.combined_weights_of_rows(&combos, &read).unwrap();
                assert!(
                    !s.numeric_ready(),
                    "no factor of the whole array was formed"
                );
                if read.iter().any(|&b| !b) {
                    let (_, plan) = s.frontal_rows.as_ref().unwrap();
                    let plan = plan.as_ref().expect("the grounded plan applies");
                    let n = s.net.n_free as u32;
                    let row_terminals = plan.tail.iter().filter(|&&t| t < n + r as u32).count();
                    assert_eq!(row_terminals, read.iter().filter(|&&b| b).count());
                }
                for (i, &rd) in read.iter().enumerate() {
                    for (k, combo) in combos.iter().enumerate() {
                        let want: f64 = if rd {
                            combo.iter().map(|&(j, tau)| tau * t[(i, j)]).sum()
                        } else {
                            0.0
                        };
                        let scale = combo
                            .iter()
                            .map(|&(j, tau)| (tau * t[(i, j)]).abs())
                            .sum::<f64>();
                        assert!(
                            (w[(i, k)] - want).abs() <= 1e-12 * scale,
                            "{r}×{c}, row {i} (read {rd}), combination {k}: {} vs {want}",
                            w[(i, k)]
                        );
                    }
                }
            }
            let mut s = unfactored(r, c, 2.5, seed);
            assert!(s
                .combined_weights_of_rows(&combos, &vec![true; r + 1])
                .is_err());
        }
    }

    #[test]
    fn merged_word_lines_fall_back_to_solves_and_agree() {
        // r_word = 0: no line structure, AMD ordering; the answer must not depend on the path
        let mut s = system(12, 10, 0.0, 5);
        let t = s.effective_weights().unwrap();
        let reference = t_by_solves(&mut s);
        for i in 0..12 {
            for j in 0..10 {
                assert!((t[(i, j)] - reference[(i, j)]).abs() <= 1e-12 * reference[(i, j)].abs());
            }
        }
    }

    #[test]
    fn new_conductance_state_equals_a_fresh_factorization() {
        let mut s = system(16, 8, 2.5, 7);
        let mut fresh = system(16, 8, 2.5, 8);
        s.update_cells(&fresh.cell_g.clone(), 0.0, 0.0).unwrap();
        let (a, b) = (
            s.effective_weights().unwrap(),
            fresh.effective_weights().unwrap(),
        );
        for i in 0..16 {
            for j in 0..8 {
                assert!((a[(i, j)] - b[(i, j)]).abs() <= 1e-13 * b[(i, j)].abs());
            }
        }
        assert!(s.update_cells(&[1e-5; 3], 0.0, 0.0).is_err());
    }
}
