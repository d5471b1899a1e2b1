//! Sparse LU on a fixed pattern: symbolic analysis (column ordering) once, numeric factorisation
//! with partial pivoting as often as the values change, solves of many right-hand sides at once.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::sparse::linalg::lu::{factorize_symbolic_lu, LuRef, NumericLu, SymbolicLu};
use faer::sparse::{SparseColMatRef, SymbolicSparseColMat};
use faer::{Conj, MatMut, Par};

use crate::circuit::Pattern;

#[derive(Debug, thiserror::Error)]
pub enum LuError {
    #[error("sparse LU symbolic analysis failed: {0}")]
    Symbolic(String),
    #[error("sparse LU factorisation failed (structurally singular matrix): {0}")]
    Numeric(String),
    #[error("sparse LU: cannot allocate {0} bytes of workspace")]
    Alloc(usize),
}

/// A workspace buffer, or an error naming its size (never an allocation panic).
fn buffer(req: StackReq) -> Result<MemBuffer, LuError> {
    MemBuffer::try_new(req).map_err(|_| LuError::Alloc(req.size_bytes()))
}

/// A reusable sparse LU factorisation of matrices sharing one pattern.
pub struct SparseLu {
    sym_mat: SymbolicSparseColMat<usize>,
    symbolic: SymbolicLu<usize>,
    numeric: NumericLu<usize, f64>,
    factor_buf: MemBuffer,
    solve_buf: MemBuffer,
    solve_cols: usize,
    factored: bool,
}

impl SparseLu {
    pub fn new(p: &Pattern) -> Result<SparseLu, LuError> {
        let sym_mat =
            SymbolicSparseColMat::new_checked(p.n, p.n, p.col_ptr.clone(), None, p.row_idx.clone());
        let symbolic = factorize_symbolic_lu(sym_mat.as_ref(), Default::default())
            .map_err(|e| LuError::Symbolic(format!("{e:?}")))?;
        let req = symbolic.factorize_numeric_lu_scratch::<f64>(Par::Seq, Default::default());
        let factor_buf = buffer(req)?;
        let solve_buf = buffer(symbolic.solve_in_place_scratch::<f64>(1, Par::Seq))?;
        Ok(SparseLu {
            sym_mat,
            symbolic,
            numeric: NumericLu::new(),
            factor_buf,
            solve_buf,
            solve_cols: 1,
            factored: false,
        })
    }

    /// Factor the matrix whose values (in pattern order) are `vals[..nnz]`.
    pub fn factor(&mut self, vals: &[f64]) -> Result<(), LuError> {
        let nnz = self.sym_mat.row_idx().len();
        let a = SparseColMatRef::new(self.sym_mat.as_ref(), &vals[..nnz]);
        self.symbolic
            .factorize_numeric_lu(
                &mut self.numeric,
                a,
                Par::Seq,
                MemStack::new(&mut self.factor_buf),
                Default::default(),
            )
            .map_err(|e| LuError::Numeric(format!("{e:?}")))?;
        self.factored = true;
        Ok(())
    }

    fn ensure_solve_buf(&mut self, k: usize) {
        if k > self.solve_cols {
            let req: StackReq = self.symbolic.solve_in_place_scratch::<f64>(k, Par::Seq);
            self.solve_buf = MemBuffer::new(req);
            self.solve_cols = k;
        }
    }

    /// Solve A·X = B in place (B has n rows and any number of columns).
    pub fn solve_in_place(&mut self, rhs: MatMut<'_, f64>) {
        assert!(self.factored, "solve before factor");
        self.ensure_solve_buf(rhs.ncols());
        let lu = LuRef::new_unchecked(&self.symbolic, &self.numeric);
        lu.solve_in_place_with_conj(Conj::No, rhs, Par::Seq, MemStack::new(&mut self.solve_buf));
    }

    /// Solve Aᵀ·X = B in place (adjoint systems).
    pub fn solve_transpose_in_place(&mut self, rhs: MatMut<'_, f64>) {
        assert!(self.factored, "solve before factor");
        self.ensure_solve_buf(rhs.ncols());
        let lu = LuRef::new_unchecked(&self.symbolic, &self.numeric);
        lu.solve_transpose_in_place_with_conj(
            Conj::No,
            rhs,
            Par::Seq,
            MemStack::new(&mut self.solve_buf),
        );
    }

    /// Solve for one right-hand side held in `x[..n]` in place.
    pub fn solve_vec(&mut self, x: &mut [f64]) {
        let n = self.sym_mat.nrows();
        let m = faer::MatMut::from_column_major_slice_mut(&mut x[..n], n, 1);
        self.solve_in_place(m);
    }
}
