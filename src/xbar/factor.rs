//! Sparse factorizations over a network's fixed pattern: the symbolic analysis is done once and
//! shared; every worker owns its numeric values and scratch memory.

use std::sync::Arc;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::LltRegularization;
use faer::reborrow::ReborrowMut;
use faer::sparse::linalg::cholesky::{
    factorize_symbolic_cholesky, CholeskySymbolicParams, LltRef, SymbolicCholesky,
    SymbolicCholeskyRaw, SymmetricOrdering,
};
use faer::sparse::linalg::lu::{factorize_symbolic_lu, NumericLu, SymbolicLu};
use faer::sparse::linalg::SupernodalThreshold;
use faer::sparse::SparseColMatRef;
use faer::{Conj, Mat, MatMut, Par, Side};
use rayon::prelude::*;

use super::network::Network;
use super::XbarError;

/// Largest number of source-coupled unknowns ordered last (see [`Numeric::trailing_factor`]): their
/// dense block joins the top separator's, so the cost grows with its cube.
pub const MAX_TAIL: usize = 768;

/// Reorder `fwd` (elimination order) so the nodes of `tail` come last, in the order given; returns
/// the new (forward, inverse) pair.
fn move_last(fwd: Vec<u32>, tail: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let n = fwd.len();
    let mut is_tail = vec![false; n];
    for &p in tail {
        is_tail[p as usize] = true;
    }
    let mut out: Vec<u32> = fwd.into_iter().filter(|&p| !is_tail[p as usize]).collect();
    out.extend_from_slice(tail);
    let mut inv = vec![0u32; n];
    for (pos, &p) in out.iter().enumerate() {
        inv[p as usize] = pos as u32;
    }
    (out, inv)
}

/// Which factorization a matrix needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorKind {
    /// Symmetric positive definite: sparse Cholesky.
    Cholesky,
    /// General (1T1R Jacobians are not symmetric): sparse LU.
    Lu,
}

/// The shared symbolic analysis.
#[derive(Debug, Clone)]
pub enum Symbolic {
    Cholesky(Arc<SymbolicCholesky<u32>>),
    Lu(Arc<SymbolicLu<u32>>),
}

impl Symbolic {
    /// Analyse the network's pattern (nested dissection when structured, else AMD / COLAMD).
    pub fn new(net: &Network, kind: FactorKind) -> Result<Symbolic, XbarError> {
        let pat = net.pattern.as_ref();
        match kind {
            FactorKind::Cholesky => {
                let nd = net.nested_dissection().map(|(fwd, inv)| {
                    let tail = net.source_coupled();
                    if tail.len() <= MAX_TAIL && 2 * tail.len() <= net.n_free {
                        move_last(fwd, &tail)
                    } else {
                        (fwd, inv)
                    }
                });
                let ord = match &nd {
                    Some((fwd, inv)) => SymmetricOrdering::Custom(
                        faer::perm::PermRef::new_checked(fwd, inv, net.n_free),
                    ),
                    None => SymmetricOrdering::Amd,
                };
                // Supernodal always: crossbar factors are solved with many right-hand sides at
                // once (T, batches), where dense supernode blocks win over column-by-column solves.
                let params = CholeskySymbolicParams {
                    supernodal_flop_ratio_threshold: SupernodalThreshold::FORCE_SUPERNODAL,
                    ..Default::default()
                };
                let s = factorize_symbolic_cholesky(pat, Side::Lower, ord, params)
                    .map_err(|e| XbarError::Numeric(format!("symbolic Cholesky: {e:?}")))?;
                Ok(Symbolic::Cholesky(Arc::new(s)))
            }
            FactorKind::Lu => {
                let s = factorize_symbolic_lu(pat, Default::default())
                    .map_err(|e| XbarError::Numeric(format!("symbolic LU: {e:?}")))?;
                Ok(Symbolic::Lu(Arc::new(s)))
            }
        }
    }

    /// Position of every unknown in the elimination order (Cholesky; `None` for LU or the
    /// identity ordering).
    pub fn positions(&self) -> Option<&[u32]> {
        match self {
            Symbolic::Cholesky(s) => s.perm().map(|p| p.arrays().1),
            Symbolic::Lu(_) => None,
        }
    }

    /// Number of stored entries of the Cholesky factor (0 for LU).
    pub fn factor_nnz(&self) -> usize {
        match self {
            Symbolic::Cholesky(s) => s.len_val(),
            Symbolic::Lu(_) => 0,
        }
    }
}

/// One worker's numeric factorization.
pub struct Numeric {
    symbolic: Symbolic,
    l_values: Vec<f64>,
    lu: NumericLu<u32, f64>,
    mem: MemBuffer,
    par: Par,
    n: usize,
    factored: bool,
}

impl Numeric {
    /// A workspace for `symbolic`, solving up to `max_rhs` columns at once, with parallelism `par`.
    pub fn new(
        symbolic: &Symbolic,
        n: usize,
        max_rhs: usize,
        par: Par,
    ) -> Result<Numeric, XbarError> {
        let oom = |_| XbarError::Numeric("out of memory for the factorization workspace".into());
        let (l_values, req) = match symbolic {
            Symbolic::Cholesky(s) => {
                let req = s
                    .factorize_numeric_llt_scratch::<f64>(par, Default::default())
                    .or(s.solve_in_place_scratch::<f64>(max_rhs.max(1), par));
                let mut v = Vec::new();
                v.try_reserve_exact(s.len_val()).map_err(oom)?;
                v.resize(s.len_val(), 0.0);
                (v, req)
            }
            Symbolic::Lu(s) => {
                let req = s
                    .factorize_numeric_lu_scratch::<f64>(par, Default::default())
                    .or(s.solve_in_place_scratch::<f64>(max_rhs.max(1), par));
                (Vec::new(), req)
            }
        };
        let mem = MemBuffer::try_new(req)
            .map_err(|_| XbarError::Numeric("out of memory for the solver scratch".into()))?;
        Ok(Numeric {
            symbolic: symbolic.clone(),
            l_values,
            lu: NumericLu::new(),
            mem,
            par,
            n,
            factored: false,
        })
    }

    /// Factor the matrix with values `values` over the network's pattern.
    pub fn factor(&mut self, net: &Network, values: &[f64]) -> Result<(), XbarError> {
        self.factored = false;
        let a = SparseColMatRef::new(net.pattern.as_ref(), values);
        let stack = MemStack::new(&mut self.mem);
        match &self.symbolic {
            Symbolic::Cholesky(s) => {
                s.factorize_numeric_llt(
                    &mut self.l_values,
                    a,
                    Side::Lower,
                    LltRegularization::default(),
                    self.par,
                    stack,
                    Default::default(),
                )
                .map_err(|_| {
                    XbarError::Numeric(
                        "nodal matrix is not positive definite (a floating node?)".into(),
                    )
                })?;
            }
            Symbolic::Lu(s) => {
                s.factorize_numeric_lu(&mut self.lu, a, self.par, stack, Default::default())
                    .map_err(|e| XbarError::Numeric(format!("sparse LU failed: {e:?}")))?;
            }
        }
        self.factored = true;
        Ok(())
    }

    /// The trailing `m × m` block `L₂₂` of a supernodal Cholesky factor `L` (elimination positions
    /// `n − m .. n`), dense and lower triangular; `None` before factoring or for other factors.
    ///
    /// With `P·A·Pᵀ = L·Lᵀ` split after position `n − m`, `L₂₂·L₂₂ᵀ` is the Schur complement of the
    /// leading block, so for right-hand sides `b` and functionals `o` that live on the trailing
    /// positions only, `oᵀ·A⁻¹·b = (L₂₂⁻¹·o)ᵀ·(L₂₂⁻¹·b)`: the rest of the factor is never touched.
    pub fn trailing_factor(&self, m: usize) -> Option<Mat<f64>> {
        let Symbolic::Cholesky(s) = &self.symbolic else {
            return None;
        };
        let SymbolicCholeskyRaw::Supernodal(sn) = s.raw() else {
            return None;
        };
        if !self.factored || m > self.n {
            return None;
        }
        Some(trailing_block(sn, &self.l_values, self.n, m))
    }

    /// Solve in place for every column of `rhs`, columns split over the rayon threads (each with its
    /// own scratch); for many right-hand sides on a factor too small for parallel supernodes.
    pub fn solve_columns_parallel(&mut self, mut rhs: MatMut<'_, f64>) -> Result<(), XbarError> {
        let threads = rayon::current_num_threads().max(1);
        let k = rhs.ncols();
        let Symbolic::Cholesky(s) = &self.symbolic else {
            return self.solve(rhs);
        };
        if threads == 1 || k < 2 * threads || !self.factored || rhs.nrows() != self.n {
            return self.solve(rhs);
        }
        let chunk = k.div_ceil(threads);
        let l = &self.l_values;
        let mut parts = Vec::new();
        let mut rest = rhs.rb_mut();
        while rest.ncols() > 0 {
            let w = chunk.min(rest.ncols());
            let (a, b) = rest.split_at_col_mut(w);
            parts.push(a);
            rest = b;
        }
        let results: Vec<Result<(), XbarError>> = parts
            .into_par_iter()
            .map(|part| {
                let req = s.solve_in_place_scratch::<f64>(part.ncols(), Par::Seq);
                let mut mem = MemBuffer::try_new(req)
                    .map_err(|_| XbarError::Numeric("out of memory for the solve".into()))?;
                LltRef::new(s, l).solve_in_place_with_conj(
                    Conj::No,
                    part,
                    Par::Seq,
                    MemStack::new(&mut mem),
                );
                Ok(())
            })
            .collect();
        results.into_iter().collect()
    }

    /// Solve in place for every column of `rhs` (n × k) with the current factorization.
    pub fn solve(&mut self, rhs: MatMut<'_, f64>) -> Result<(), XbarError> {
        if !self.factored {
            return Err(XbarError::Numeric(
                "solve before a successful factorization".into(),
            ));
        }
        if rhs.nrows() != self.n {
            return Err(XbarError::Numeric(
                "right-hand side has the wrong size".into(),
            ));
        }
        let k = rhs.ncols();
        // Grow the scratch if more columns than planned are solved at once.
        let need = match &self.symbolic {
            Symbolic::Cholesky(s) => s.solve_in_place_scratch::<f64>(k, self.par),
            Symbolic::Lu(s) => s.solve_in_place_scratch::<f64>(k, self.par),
        };
        if !MemStack::new(&mut self.mem).can_hold(need) {
            self.mem = MemBuffer::try_new(need)
                .map_err(|_| XbarError::Numeric("out of memory for the solve".into()))?;
        }
        let stack = MemStack::new(&mut self.mem);
        match &self.symbolic {
            Symbolic::Cholesky(s) => {
                LltRef::new(s, &self.l_values).solve_in_place_with_conj(
                    Conj::No,
                    rhs,
                    self.par,
                    stack,
                );
            }
            Symbolic::Lu(s) => {
                faer::sparse::linalg::lu::LuRef::new_unchecked(s, &self.lu)
                    .solve_in_place_with_conj(Conj::No, rhs, self.par, stack);
            }
        }
        Ok(())
    }
}

/// The dense trailing `k × k` block of a supernodal factor of order `n` (lower triangle).
fn trailing_block(
    sn: &faer::sparse::linalg::cholesky::supernodal::SymbolicSupernodalCholesky<u32>,
    l_values: &[f64],
    n: usize,
    k: usize,
) -> Mat<f64> {
    let base = n - k;
    let llt =
        faer::sparse::linalg::cholesky::supernodal::SupernodalLltRef::<u32, f64>::new(sn, l_values);
    let mut l = Mat::<f64>::zeros(k, k);
    for sidx in (0..sn.n_supernodes()).rev() {
        let sup = llt.supernode(sidx);
        let (start, val, pat) = (sup.start(), sup.val(), sup.pattern());
        let end = start + val.ncols();
        if end <= base {
            break;
        }
        for col in start.max(base)..end {
            let lc = col - start;
            for row in col..end {
                l[(row - base, col - base)] = val[(row - start, lc)];
            }
            for (q, &row) in pat.iter().enumerate() {
                l[(row as usize - base, col - base)] = val[(val.ncols() + q, lc)];
            }
        }
    }
    l
}
