//! Linear circuits of resistors, independent current sources and voltage sources to ground
//! ([`Circuit::held_nodes`]): the node voltages the sources hold are known, and the other
//! ("free") nodes solve
//!
//! ```text
//! G_ff · x_f = i_f − G_fh · v_h
//! ```
//!
//! with the nodal conductance matrix `G_ff`, symmetric and — with positive resistances and
//! every node on a DC path (checked when the circuit is built) — positive definite. It is
//! factored by sparse Cholesky with an AMD ordering: a third of the unknowns of the modified
//! nodal system fewer, and no unsymmetric LU whose column ordering (COLAMD) has to plan for the
//! pattern of AᵀA. The current of each source then follows from its node's row of the modified
//! nodal equations (KCL at the held node). When the factorization fails (a negative resistance
//! can make `G_ff` indefinite) the caller falls back to the LU of the whole system.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::cholesky::llt::factor::LltRegularization;
use faer::sparse::linalg::cholesky::{
    factorize_symbolic_cholesky, LltRef, SymbolicCholesky, SymmetricOrdering,
};
use faer::sparse::{SparseColMatRef, SymbolicSparseColMat};
use faer::{Conj, MatMut, Par, Side};

use crate::circuit::Circuit;

/// No index: a free node's held index, a held node's free index.
const NONE: usize = usize::MAX;

/// One held node: its unknown, the branch unknown of its source and the source's incidence.
#[derive(Debug, Clone, Copy)]
struct Held {
    node: usize,
    branch: usize,
    sign: f64,
}

/// The factored conductance matrix of the free nodes and what maps the whole system onto it.
pub struct Reduced {
    held: Vec<Held>,
    /// The node of each free position (increasing).
    free_nodes: Vec<usize>,
    /// Entries `(free row, held node, g)` of `G_fh`: moved to the right-hand side.
    coupling: Vec<(usize, usize, f64)>,
    /// Entries `(held index, node, g)` of the held nodes' rows: their sources' currents.
    held_rows: Vec<(usize, usize, f64)>,
    symbolic: SymbolicCholesky<usize>,
    l_values: Vec<f64>,
    mem: MemBuffer,
    /// The free nodes' right-hand side, solved in place.
    b: Vec<f64>,
}

impl Reduced {
    /// The reduced system of `circuit` with its linear matrix `lin` (pattern order), factored;
    /// `None` when the circuit is not of this kind, has no free node, or `G_ff` is not positive
    /// definite (or its workspace cannot be allocated): the caller solves the whole system.
    pub fn new(circuit: &Circuit, lin: &[f64]) -> Option<Reduced> {
        let held_nodes = circuit.held_nodes()?;
        let nn = circuit.n_nodes;
        let p = &circuit.pattern;
        let mut hidx = vec![NONE; nn];
        let held: Vec<Held> = held_nodes
            .iter()
            .enumerate()
            .map(|(h, &(node, branch, sign))| {
                hidx[node] = h;
                Held { node, branch, sign }
            })
            .collect();
        let mut free_of = vec![NONE; nn];
        let mut free_nodes = Vec::with_capacity(nn - held.len());
        for (i, f) in free_of.iter_mut().enumerate() {
            if hidx[i] == NONE {
                *f = free_nodes.len();
                free_nodes.push(i);
            }
        }
        let nf = free_nodes.len();
        if nf == 0 {
            return None;
        }
        // Lower triangle of G_ff in compressed columns: node columns in increasing order map to
        // free columns in increasing order, and rows stay sorted within a column.
        let mut col_ptr = Vec::with_capacity(nf + 1);
        col_ptr.push(0usize);
        let mut row_idx = Vec::new();
        let mut vals = Vec::new();
        let mut coupling = Vec::new();
        let mut held_rows = Vec::new();
        for c in 0..nn {
            let (lo, hi) = (p.col_ptr[c], p.col_ptr[c + 1]);
            for (&r, &g) in p.row_idx[lo..hi].iter().zip(&lin[lo..hi]) {
                if r >= nn {
                    continue; // a branch row: the source's equation, used through `held`
                }
                if hidx[r] != NONE {
                    held_rows.push((hidx[r], c, g));
                } else if hidx[c] != NONE {
                    coupling.push((free_of[r], c, g));
                } else if r >= c {
                    row_idx.push(free_of[r]);
                    vals.push(g);
                }
            }
            if hidx[c] == NONE {
                col_ptr.push(row_idx.len());
            }
        }
        let sym = SymbolicSparseColMat::new_checked(nf, nf, col_ptr, None, row_idx);
        let symbolic = factorize_symbolic_cholesky(
            sym.as_ref(),
            Side::Lower,
            SymmetricOrdering::Amd,
            Default::default(),
        )
        .ok()?;
        let req = StackReq::or(
            symbolic.factorize_numeric_llt_scratch::<f64>(Par::Seq, Default::default()),
            symbolic.solve_in_place_scratch::<f64>(1, Par::Seq),
        );
        let mut mem = MemBuffer::try_new(req).ok()?;
        let mut l_values = Vec::new();
        l_values.try_reserve_exact(symbolic.len_val()).ok()?;
        l_values.resize(symbolic.len_val(), 0.0);
        symbolic
            .factorize_numeric_llt(
                &mut l_values,
                SparseColMatRef::new(sym.as_ref(), &vals),
                Side::Lower,
                LltRegularization::default(),
                Par::Seq,
                MemStack::new(&mut mem),
                Default::default(),
            )
            .ok()?;
        Some(Reduced {
            held,
            free_nodes,
            coupling,
            held_rows,
            symbolic,
            l_values,
            mem,
            b: vec![0.0; nf],
        })
    }

    /// Solve for the right-hand side `rhs` of the whole system (len n + 1, as
    /// [`Circuit::stamp_sources`] writes it) into `x` (len n + 1; ground's entry set to 0).
    pub fn solve(&mut self, rhs: &[f64], x: &mut [f64]) {
        for h in &self.held {
            // the source's row: sign · V(node) = v
            x[h.node] = h.sign * rhs[h.branch];
        }
        for (bf, &node) in self.b.iter_mut().zip(&self.free_nodes) {
            *bf = rhs[node];
        }
        for &(f, node, g) in &self.coupling {
            self.b[f] -= g * x[node];
        }
        let nf = self.b.len();
        LltRef::new(&self.symbolic, &self.l_values).solve_in_place_with_conj(
            Conj::No,
            MatMut::from_column_major_slice_mut(&mut self.b, nf, 1),
            Par::Seq,
            MemStack::new(&mut self.mem),
        );
        for (&bf, &node) in self.b.iter().zip(&self.free_nodes) {
            x[node] = bf;
        }
        // the held node's row: Σ_j G_nj·x_j + sign·i = rhs_n
        let mut acc: Vec<f64> = self.held.iter().map(|h| rhs[h.node]).collect();
        for &(h, node, g) in &self.held_rows {
            acc[h] -= g * x[node];
        }
        for (h, a) in self.held.iter().zip(acc) {
            x[h.branch] = h.sign * a;
        }
        let n = x.len() - 1;
        x[n] = 0.0;
    }
}
