//! The array's boundary Schur complement from two half-arrays factored in parallel.
//!
//! The effective weights of a linear array only involve the unknowns tied to sources (the
//! "tail": where the inputs enter and the outputs are read). Cutting the array along the top
//! separator of its nested dissection (the word-line nodes of the middle column, or the bit-line
//! nodes of the middle row) leaves two halves `D₁`, `D₂` that touch only the interface
//! `Γ = separator ∪ tail`. Each half is factored on its own thread with its interface nodes
//! ordered last; the trailing block of its factor is the half's contribution to the interface's
//! Schur complement
//!
//! `S = A_ΓΓ − Σ_k A_ΓD_k · A_D_kD_k⁻¹ · A_D_kΓ`,
//!
//! a small dense matrix (separator + tail) that is then factored densely. No factor of the whole
//! array is ever formed, so a new conductance state costs two half factorizations in parallel.
//!
//! A half's own matrix `[A_DD A_DΓ; A_ΓD Z]` needs a Γ block that keeps it positive definite:
//! `Z = diag(Σ_δ |A_γδ|) + c·I` (the half's conductances at each interface node, plus a shift `c`
//! of the same scale, because a half may touch the sources only through the interface). The
//! trailing block then gives `L₂₂·L₂₂ᵀ = Z − A_ΓD·A_DD⁻¹·A_DΓ`, from which the known `Z` is
//! subtracted.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::LltRegularization;
use faer::sparse::linalg::cholesky::supernodal::SupernodalLltRef;
use faer::sparse::linalg::cholesky::{
    factorize_symbolic_cholesky, CholeskySymbolicParams, SymbolicCholesky, SymbolicCholeskyRaw,
    SymmetricOrdering,
};
use faer::sparse::linalg::SupernodalThreshold;
use faer::sparse::{SparseColMatRef, SymbolicSparseColMat};
use std::sync::Mutex;

use faer::{Mat, Par, Side};

use super::network::Network;
use super::XbarError;

/// Smallest number of unknowns worth splitting (below it one factor is cheap).
pub const MIN_SPLIT_UNKNOWNS: usize = 4096;

/// Largest interface (separator + tail) handled densely.
pub const MAX_INTERFACE: usize = 1024;

/// One half: its unknowns (global ids; the half's interior first in nested-dissection order,
/// then its interface nodes) and the symbolic analysis of its matrix.
struct Half {
    nodes: Vec<u32>,
    interior: usize,
    /// Local pattern (both triangles, sorted rows) and, per stored entry, the global value slot
    /// it copies (`None`: an interface diagonal, set to `Z`).
    pattern: SymbolicSparseColMat<u32>,
    from: Vec<u32>,
    symbolic: SymbolicCholesky<u32>,
    /// Factor values and scratch, kept for the next conductance state.
    work: Mutex<Option<(Vec<f64>, MemBuffer)>>,
}

/// `from` entry of an interface diagonal.
const Z_ENTRY: u32 = u32::MAX;

/// The split of a structured network, reusable across conductance states.
pub struct SplitPlan {
    halves: [Half; 2],
    /// Interface unknowns (global ids) in dense order.
    pub interface: Vec<u32>,
    /// Position of each unknown in `interface` (`u32::MAX` if not an interface node).
    pub iface_pos: Vec<u32>,
}

impl SplitPlan {
    /// Plan the split of `net` (`None` when the network has no line structure, is small, or the
    /// interface would be too large).
    pub fn new(net: &Network) -> Option<SplitPlan> {
        if !net.structured || net.n_free < MIN_SPLIT_UNKNOWNS {
            return None;
        }
        let labels = labels(net)?;
        let (fwd, _) = net.nested_dissection()?;
        let interface: Vec<u32> = (0..net.n_free as u32)
            .filter(|&p| labels[p as usize] == 0)
            .collect();
        if interface.len() > MAX_INTERFACE {
            return None;
        }
        let mut iface_pos = vec![u32::MAX; net.n_free];
        for (k, &p) in interface.iter().enumerate() {
            iface_pos[p as usize] = k as u32;
        }
        let (cp, ri) = (net.pattern.col_ptr(), net.pattern.row_idx());
        // the halves must not touch each other
        for col in 0..net.n_free {
            for &row in &ri[cp[col] as usize..cp[col + 1] as usize] {
                let (a, b) = (labels[col], labels[row as usize]);
                if a != 0 && b != 0 && a != b {
                    return None;
                }
            }
        }
        let half = |k: u8| -> Option<Half> {
            let mut nodes: Vec<u32> = fwd
                .iter()
                .copied()
                .filter(|&p| labels[p as usize] == k)
                .collect();
            let interior = nodes.len();
            let mut touches = vec![false; net.n_free];
            for &p in &nodes {
                for &row in &ri[cp[p as usize] as usize..cp[p as usize + 1] as usize] {
                    if labels[row as usize] == 0 {
                        touches[row as usize] = true;
                    }
                }
            }
            nodes.extend(interface.iter().copied().filter(|&p| touches[p as usize]));
            let mut local = vec![u32::MAX; net.n_free];
            for (q, &p) in nodes.iter().enumerate() {
                local[p as usize] = q as u32;
            }
            let m = nodes.len();
            let mut col_ptr = Vec::with_capacity(m + 1);
            let mut row_idx = Vec::new();
            let mut from = Vec::new();
            col_ptr.push(0u32);
            let mut entries: Vec<(u32, Option<usize>)> = Vec::new();
            for (q, &p) in nodes.iter().enumerate() {
                entries.clear();
                let iface_col = q >= interior;
                let lo = cp[p as usize] as usize;
                for (s, &g) in ri[lo..cp[p as usize + 1] as usize].iter().enumerate() {
                    let s = lo + s;
                    let lq = local[g as usize];
                    if lq == u32::MAX {
                        continue;
                    }
                    let iface_row = lq as usize >= interior;
                    if iface_col && iface_row {
                        if lq as usize == q {
                            entries.push((lq, None));
                        }
                    } else {
                        entries.push((lq, Some(s)));
                    }
                }
                entries.sort_unstable_by_key(|e| e.0);
                for &(r, f) in &entries {
                    row_idx.push(r);
                    from.push(f.map_or(Z_ENTRY, |s| s as u32));
                }
                col_ptr.push(row_idx.len() as u32);
            }
            let pattern = SymbolicSparseColMat::new_checked(m, m, col_ptr, None, row_idx);
            let params = CholeskySymbolicParams {
                supernodal_flop_ratio_threshold: SupernodalThreshold::FORCE_SUPERNODAL,
                ..Default::default()
            };
            let symbolic = factorize_symbolic_cholesky(
                pattern.as_ref(),
                Side::Lower,
                SymmetricOrdering::Identity,
                params,
            )
            .ok()?;
            Some(Half {
                nodes,
                interior,
                pattern,
                from,
                symbolic,
                work: Mutex::new(None),
            })
        };
        let (h1, h2) = rayon::join(|| half(1), || half(2));
        Some(SplitPlan {
            halves: [h1?, h2?],
            interface,
            iface_pos,
        })
    }

    /// The interface Schur complement `S` (dense, |Γ|×|Γ|) of the matrix with values `values`
    /// over `net.pattern`; the two halves are factored in parallel.
    pub fn schur(&self, net: &Network, values: &[f64]) -> Result<Mat<f64>, XbarError> {
        let g = self.interface.len();
        let (cp, ri) = (net.pattern.col_ptr(), net.pattern.row_idx());
        let mut s = Mat::<f64>::zeros(g, g);
        for (k, &p) in self.interface.iter().enumerate() {
            for slot in cp[p as usize] as usize..cp[p as usize + 1] as usize {
                let q = self.iface_pos[ri[slot] as usize];
                if q != u32::MAX {
                    s[(q as usize, k)] += values[slot];
                }
            }
        }
        let (a, b) = rayon::join(
            || self.halves[0].contribution(values),
            || self.halves[1].contribution(values),
        );
        for (h, c) in self.halves.iter().zip([a?, b?]) {
            let ifc = &h.nodes[h.interior..];
            for (y, &py) in ifc.iter().enumerate() {
                let qy = self.iface_pos[py as usize] as usize;
                for (x, &px) in ifc.iter().enumerate() {
                    let qx = self.iface_pos[px as usize] as usize;
                    s[(qx, qy)] -= c[(x.max(y), x.min(y))];
                }
            }
        }
        Ok(s)
    }
}

impl Half {
    /// `A_ΓD·A_DD⁻¹·A_DΓ` over this half's interface nodes (as `Z − L₂₂·L₂₂ᵀ`).
    fn contribution(&self, values: &[f64]) -> Result<Mat<f64>, XbarError> {
        let m = self.nodes.len();
        let gi = m - self.interior;
        let (cp, ri) = (self.pattern.col_ptr(), self.pattern.row_idx());
        let mut vals: Vec<f64> = self
            .from
            .iter()
            .map(|&f| {
                if f == Z_ENTRY {
                    0.0
                } else {
                    values[f as usize]
                }
            })
            .collect();
        // Z: the half's conductances at each interface node (|off-diagonals| into the interior),
        // plus a shift of the same scale
        let mut z = vec![0.0; gi];
        for q in 0..self.interior {
            for s in cp[q] as usize..cp[q + 1] as usize {
                let r = ri[s] as usize;
                if r >= self.interior {
                    z[r - self.interior] += vals[s].abs();
                }
            }
        }
        let shift = z
            .iter()
            .fold(0.0f64, |a, &b| a.max(b))
            .max(f64::MIN_POSITIVE);
        for (k, zk) in z.iter_mut().enumerate() {
            *zk += shift;
            let col = self.interior + k;
            for s in cp[col] as usize..cp[col + 1] as usize {
                if ri[s] as usize == col {
                    vals[s] = *zk;
                }
            }
        }
        fn oom<E>(_: E) -> XbarError {
            XbarError::Numeric("out of memory for a half factor".into())
        }
        let taken = self.work.lock().ok().and_then(|mut w| w.take());
        let (mut l, mut mem) = match taken {
            Some(w) => w,
            None => {
                let mut l = Vec::new();
                l.try_reserve_exact(self.symbolic.len_val()).map_err(oom)?;
                l.resize(self.symbolic.len_val(), 0.0);
                let req = self
                    .symbolic
                    .factorize_numeric_llt_scratch::<f64>(Par::Seq, Default::default());
                (l, MemBuffer::try_new(req).map_err(oom)?)
            }
        };
        self.symbolic
            .factorize_numeric_llt(
                &mut l,
                SparseColMatRef::new(self.pattern.as_ref(), &vals),
                Side::Lower,
                LltRegularization::default(),
                Par::Seq,
                MemStack::new(&mut mem),
                Default::default(),
            )
            .map_err(|_| {
                XbarError::Numeric(
                    "nodal matrix is not positive definite (a floating node?)".into(),
                )
            })?;
        let SymbolicCholeskyRaw::Supernodal(sn) = self.symbolic.raw() else {
            return Err(XbarError::Numeric("expected a supernodal factor".into()));
        };
        let l22 = trailing_block(sn, &l, m, gi);
        if let Ok(mut w) = self.work.lock() {
            *w = Some((l, mem));
        }
        // Z − L₂₂·L₂₂ᵀ
        let mut c = Mat::<f64>::zeros(gi, gi);
        faer::linalg::matmul::matmul(
            c.as_mut(),
            faer::Accum::Replace,
            l22.as_ref(),
            l22.transpose(),
            -1.0,
            Par::Seq,
        );
        for (y, zy) in z.iter().enumerate() {
            c[(y, y)] += zy;
        }
        Ok(c)
    }
}

/// The dense trailing `k × k` block of a supernodal factor of order `n` (lower triangle).
pub(crate) fn trailing_block(
    sn: &faer::sparse::linalg::cholesky::supernodal::SymbolicSupernodalCholesky<u32>,
    l_values: &[f64],
    n: usize,
    k: usize,
) -> Mat<f64> {
    let base = n - k;
    let llt = SupernodalLltRef::<u32, f64>::new(sn, l_values);
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

/// 0 = interface (top separator and source-coupled unknowns), 1 and 2 = the two halves.
fn labels(net: &Network) -> Option<Vec<u8>> {
    let (r, c) = (net.rows, net.cols);
    let rc = r * c;
    let mut lab = vec![0u8; net.n_free];
    if 2 * rc > net.n_free {
        return None;
    }
    let side = |x: usize, mid: usize| -> u8 {
        if x < mid {
            1
        } else if x > mid {
            2
        } else {
            0
        }
    };
    if c >= r {
        // vertical cut: the word-line nodes of the middle column separate; that column's bit
        // line touches only them and its own bottom source, so it joins half 1
        let jm = c / 2;
        for i in 0..r {
            for j in 0..c {
                lab[i * c + j] = side(j, jm);
                lab[rc + i * c + j] = if j == jm { 1 } else { side(j, jm) };
            }
        }
        for &(j, s) in &net.tia {
            lab[s as usize] = if j == jm { 1 } else { side(j, jm) };
        }
    } else {
        // horizontal cut: the bit-line nodes of the middle row separate; that row's word line
        // joins half 1
        let im = r / 2;
        for i in 0..r {
            for j in 0..c {
                lab[i * c + j] = if i == im { 1 } else { side(i, im) };
                lab[rc + i * c + j] = side(i, im);
            }
        }
        for &(_, s) in &net.tia {
            lab[s as usize] = 2;
        }
    }
    if lab.len() != 2 * rc + net.tia.len() {
        return None;
    }
    for p in net.source_coupled() {
        lab[p as usize] = 0;
    }
    Some(lab)
}
