//! The array's boundary Schur complement by a multifrontal elimination along the array's geometry.
//!
//! The effective weights of a linear array only involve the unknowns tied to sources (the
//! "tail": the first word-line node of every row, where the inputs enter, and the last bit-line
//! node of every column, where the outputs are read), so `T = Eᵀ·S⁻¹·O` with `S` the Schur
//! complement of everything else onto the tail. `S` comes from a nested dissection of the
//! crossbar's rectangle in which the tail is never eliminated:
//!
//! - a leaf (a few crosspoints) is a dense front: its unknowns, then its update nodes (the
//!   neighbours outside it, and tail nodes);
//! - a rectangle is cut by the word-line nodes of its middle column (or the bit-line nodes of its
//!   middle row); the cut leaves the bit line of that column (the word line of that row) hanging
//!   on the separator only: a path with a tridiagonal matrix, eliminated in closed form
//!   (`O(len²)`, not `O(len³)`), its dense Schur complement added to the separator's front;
//! - a front assembles its own matrix entries and its children's update matrices, eliminates its
//!   unknowns (dense partial Cholesky) and passes the Schur complement on its update nodes up.
//!
//! The root's update matrix is `S`. No factor is stored (only update matrices travel up; each
//! worker thread keeps one dense front buffer), the two halves of every large rectangle are
//! processed in parallel (rayon), and the plan (fronts, index maps, which value slot goes where,
//! all in flat arrays) is built once per network and reused for every conductance state.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, Par};

use super::network::Network;
use super::XbarError;

/// Largest tail (boundary unknowns) handled densely.
pub const MAX_TAIL: usize = 1024;

/// Leaves of the dissection: rectangles of at most this many crosspoints.
const LEAF_CROSSPOINTS: usize = 16;

/// Fronts at least this large use blocked (faer) dense kernels; smaller ones plain loops.
const BLOCKED_MIN_FRONT: usize = 64;

/// Subtrees with more estimated work (multiply-adds) than this run their halves in parallel.
const PARALLEL_MIN_WORK: f64 = 2e5;

const NONE: u32 = u32::MAX;

/// A path of unknowns eliminated in closed form before its front's dense elimination. Ranges
/// index the plan's flat arrays.
#[derive(Clone, Copy)]
struct Chain {
    /// Value slots of the path's diagonal (`len`) then of its links (t, t+1) (`len − 1`), in
    /// `slots[at..]`.
    at: u32,
    len: u32,
    /// Distinct front positions the path couples to (`targets[t0..t1]`); target k's couplings
    /// (path index, value slot) are `couple[ptr[p0 + k]..ptr[p0 + k + 1]]`.
    t0: u32,
    t1: u32,
    p0: u32,
}

#[derive(Clone, Copy)]
struct Front {
    /// Local order (`nodes[n0..n1]`): the unknowns eliminated densely here, then the update
    /// nodes (sorted).
    n0: u32,
    n1: u32,
    n_elim: u32,
    chain: Option<Chain>,
    /// Children (front indices) and where their maps (front position of each of the child's
    /// update nodes) start in `maps`.
    kids: [u32; 2],
    n_kids: u8,
    map_at: [u32; 2],
    /// Matrix entries assembled here: `entries[e0..e1]`, (local row, local col, value slot),
    /// row ≥ col.
    e0: u32,
    e1: u32,
    /// First front of this front's subtree (fronts are in post-order).
    first: u32,
    /// Estimated multiply-adds of the subtree.
    work: f64,
}

impl Front {
    fn size(&self) -> usize {
        (self.n1 - self.n0) as usize
    }
    fn n_update(&self) -> usize {
        self.size() - self.n_elim as usize
    }
}

/// The elimination plan of a structured network, reusable across conductance states.
pub struct FrontalPlan {
    fronts: Vec<Front>,
    nodes: Vec<u32>,
    maps: Vec<u32>,
    entries: Vec<(u32, u32, u32)>,
    slots: Vec<u32>,
    targets: Vec<u32>,
    ptr: Vec<u32>,
    couple: Vec<(u32, u32)>,
    /// Tail unknowns (global ids, ascending): the order of `S`.
    pub tail: Vec<u32>,
    /// Position of each unknown in `tail` (`u32::MAX` if not a tail unknown).
    pub tail_pos: Vec<u32>,
}

/// A rectangle's front while the plan is built: what it eliminates (`elim[e0..e1]`, then the
/// path `elim[e1..c1]`) and its children.
struct Spec {
    e0: u32,
    e1: u32,
    c1: u32,
    kids: [u32; 2],
    n_kids: u8,
}

struct Geometry {
    r: usize,
    c: usize,
    leaf: usize,
}

impl Geometry {
    fn w(&self, i: usize, j: usize) -> u32 {
        (i * self.c + j) as u32
    }
    fn b(&self, i: usize, j: usize) -> u32 {
        (self.r * self.c + i * self.c + j) as u32
    }
    /// Post-order fronts of the rectangle rows `r0..r1`, columns `c0..c1` (unknowns in
    /// `elim`); returns the index of the subtree's top front (`None` for an empty rectangle).
    fn dissect(
        &self,
        (r0, r1, c0, c1): (usize, usize, usize, usize),
        out: &mut Vec<Spec>,
        elim: &mut Vec<u32>,
    ) -> Option<u32> {
        let (h, w) = (r1 - r0, c1 - c0);
        if h == 0 || w == 0 {
            return None;
        }
        let e0 = elim.len() as u32;
        if h * w <= self.leaf {
            for i in r0..r1 {
                for j in c0..c1 {
                    elim.push(self.w(i, j));
                }
            }
            for j in c0..c1 {
                for i in r0..r1 {
                    elim.push(self.b(i, j));
                }
            }
            let e1 = elim.len() as u32;
            out.push(Spec {
                e0,
                e1,
                c1: e1,
                kids: [0; 2],
                n_kids: 0,
            });
            return Some(out.len() as u32 - 1);
        }
        let (a, b);
        if w >= h {
            // the word-line nodes of column jm separate; that column's bit line hangs on them
            let jm = c0 + w / 2;
            a = self.dissect((r0, r1, c0, jm), out, elim);
            b = self.dissect((r0, r1, jm + 1, c1), out, elim);
            let e0 = elim.len() as u32;
            elim.extend((r0..r1).map(|i| self.w(i, jm)));
            let e1 = elim.len() as u32;
            elim.extend((r0..r1).map(|i| self.b(i, jm)));
            push_spec(out, e0, e1, elim.len() as u32, a, b);
        } else {
            // the bit-line nodes of row im separate; that row's word line hangs on them
            let im = r0 + h / 2;
            a = self.dissect((r0, im, c0, c1), out, elim);
            b = self.dissect((im + 1, r1, c0, c1), out, elim);
            let e0 = elim.len() as u32;
            elim.extend((c0..c1).map(|j| self.b(im, j)));
            let e1 = elim.len() as u32;
            elim.extend((c0..c1).map(|j| self.w(im, j)));
            push_spec(out, e0, e1, elim.len() as u32, a, b);
        }
        Some(out.len() as u32 - 1)
    }
}

fn push_spec(out: &mut Vec<Spec>, e0: u32, e1: u32, c1: u32, a: Option<u32>, b: Option<u32>) {
    let mut kids = [0; 2];
    let mut n_kids = 0;
    for k in [a, b].into_iter().flatten() {
        kids[n_kids] = k;
        n_kids += 1;
    }
    out.push(Spec {
        e0,
        e1,
        c1,
        kids,
        n_kids: n_kids as u8,
    });
}

impl FrontalPlan {
    /// Plan the elimination of `net` onto its source-coupled unknowns (`None` when the network
    /// has no line structure, has amplifier nodes, or its tail is too large).
    pub fn new(net: &Network) -> Option<FrontalPlan> {
        let (r, c) = (net.rows, net.cols);
        if !net.structured || !net.tia.is_empty() || net.n_free != 2 * r * c || r * c == 0 {
            return None;
        }
        let n = net.n_free;
        let tail = net.source_coupled();
        if tail.is_empty() || tail.len() > MAX_TAIL {
            return None;
        }
        let mut tail_pos = vec![NONE; n];
        for (k, &p) in tail.iter().enumerate() {
            tail_pos[p as usize] = k as u32;
        }
        let geo = Geometry {
            r,
            c,
            leaf: LEAF_CROSSPOINTS,
        };
        let mut specs = Vec::with_capacity(n / LEAF_CROSSPOINTS + 16);
        let mut elim = Vec::with_capacity(n);
        geo.dissect((0, r, 0, c), &mut specs, &mut elim)?;
        let (cp, ri) = (net.pattern.col_ptr(), net.pattern.row_idx());
        let col = |p: u32| cp[p as usize] as usize..cp[p as usize + 1] as usize;
        let is_tail = |p: u32| tail_pos[p as usize] != NONE;
        let mut plan = FrontalPlan {
            fronts: Vec::with_capacity(specs.len()),
            nodes: Vec::new(),
            maps: Vec::new(),
            entries: Vec::new(),
            slots: Vec::new(),
            targets: Vec::new(),
            ptr: Vec::new(),
            couple: Vec::new(),
            tail: Vec::new(),
            tail_pos: Vec::new(),
        };
        // front_of: where each unknown is eliminated (NONE: not yet, or never for the tail)
        let mut front_of = vec![NONE; n];
        let mut seen = vec![NONE; n];
        let mut loc = vec![NONE; n];
        let mut in_chain = vec![NONE; n];
        let mut own: Vec<u32> = Vec::new();
        let mut path: Vec<u32> = Vec::new();
        let mut bound: Vec<u32> = Vec::new();
        let mut pairs: Vec<(u32, u32, u32)> = Vec::new();
        let root = specs.len() - 1;
        for (k, spec) in specs.iter().enumerate() {
            let kk = k as u32;
            let untailed = |out: &mut Vec<u32>, a: u32, b: u32| {
                out.clear();
                out.extend(
                    elim[a as usize..b as usize]
                        .iter()
                        .copied()
                        .filter(|&p| !is_tail(p)),
                );
            };
            untailed(&mut own, spec.e0, spec.e1);
            untailed(&mut path, spec.e1, spec.c1);
            for &p in own.iter().chain(&path) {
                front_of[p as usize] = kk;
            }
            let kids = &spec.kids[..spec.n_kids as usize];
            let first = kids
                .iter()
                .map(|&ch| plan.fronts[ch as usize].first)
                .min()
                .unwrap_or(kk);
            for (t, &p) in path.iter().enumerate() {
                in_chain[p as usize] = t as u32;
            }
            // update nodes: the children's, and the neighbours of what is eliminated here
            bound.clear();
            for &ch in kids {
                let cf = plan.fronts[ch as usize];
                for &p in &plan.nodes[(cf.n0 + cf.n_elim) as usize..cf.n1 as usize] {
                    if front_of[p as usize] != kk && seen[p as usize] != kk {
                        seen[p as usize] = kk;
                        bound.push(p);
                    }
                }
            }
            for &p in own.iter().chain(&path) {
                for s in col(p) {
                    let q = ri[s];
                    let fq = front_of[q as usize];
                    if fq == NONE {
                        if seen[q as usize] != kk {
                            seen[q as usize] = kk;
                            bound.push(q);
                        }
                    } else if fq != kk {
                        // eliminated earlier: must be in this subtree, and never next to a path
                        if fq < first || in_chain[p as usize] != NONE {
                            return None;
                        }
                    }
                }
            }
            if k == root {
                if bound.iter().any(|&p| !is_tail(p)) {
                    return None;
                }
                bound.clear();
                bound.extend_from_slice(&tail);
            } else {
                bound.sort_unstable();
            }
            let n0 = plan.nodes.len() as u32;
            plan.nodes.extend_from_slice(&own);
            plan.nodes.extend_from_slice(&bound);
            let n1 = plan.nodes.len() as u32;
            for (q, &p) in plan.nodes[n0 as usize..].iter().enumerate() {
                loc[p as usize] = q as u32;
            }
            let mut map_at = [0u32; 2];
            for (slot, &ch) in kids.iter().enumerate() {
                let cf = plan.fronts[ch as usize];
                map_at[slot] = plan.maps.len() as u32;
                for q in (cf.n0 + cf.n_elim) as usize..cf.n1 as usize {
                    let p = plan.nodes[q];
                    plan.maps.push(loc[p as usize]);
                }
            }
            // matrix entries: every pair is assembled where its first unknown is eliminated
            let e0 = plan.entries.len() as u32;
            for &p in &own {
                let lp = loc[p as usize];
                for s in col(p) {
                    let q = ri[s];
                    let fq = front_of[q as usize];
                    if (fq == kk && in_chain[q as usize] == NONE && loc[q as usize] >= lp)
                        || fq == NONE
                    {
                        plan.entries.push((loc[q as usize], lp, s as u32));
                    }
                }
            }
            if k == root {
                for &p in &tail {
                    let lp = loc[p as usize];
                    for s in col(p) {
                        let q = ri[s];
                        if is_tail(q) && loc[q as usize] >= lp {
                            plan.entries.push((loc[q as usize], lp, s as u32));
                        }
                    }
                }
            }
            let e1 = plan.entries.len() as u32;
            let chain = if path.is_empty() {
                None
            } else {
                let ch = plan.chain(&path, net, &in_chain, &loc, &front_of, kk, &mut pairs)?;
                for &p in &path {
                    in_chain[p as usize] = NONE;
                }
                Some(ch)
            };
            let (f, e) = ((n1 - n0) as f64, own.len() as f64);
            let b = f - e;
            let mut work = e * e * e / 6.0 + b * e * e / 2.0 + b * b * e / 2.0 + f * f;
            for &ch in kids {
                work += plan.fronts[ch as usize].work;
            }
            plan.fronts.push(Front {
                n0,
                n1,
                n_elim: own.len() as u32,
                chain,
                kids: spec.kids,
                n_kids: spec.n_kids,
                map_at,
                e0,
                e1,
                first,
                work,
            });
        }
        // every unknown but the tail is eliminated exactly once
        if (0..n).any(|p| (front_of[p] == NONE) != (tail_pos[p] != NONE)) {
            return None;
        }
        plan.tail = tail;
        plan.tail_pos = tail_pos;
        Some(plan)
    }

    /// Record the closed-form elimination data of a path (its unknowns in path order); `None`
    /// when the unknowns are not a path (links between non-consecutive ones) or touch an
    /// unknown eliminated before.
    #[allow(clippy::too_many_arguments)]
    fn chain(
        &mut self,
        nodes: &[u32],
        net: &Network,
        in_chain: &[u32],
        loc: &[u32],
        front_of: &[u32],
        k: u32,
        pairs: &mut Vec<(u32, u32, u32)>,
    ) -> Option<Chain> {
        let (cp, ri) = (net.pattern.col_ptr(), net.pattern.row_idx());
        let len = nodes.len();
        let at = self.slots.len();
        self.slots.resize(at + 2 * len - 1, NONE);
        pairs.clear(); // (front position, path index, slot)
        for (t, &p) in nodes.iter().enumerate() {
            let lo = cp[p as usize] as usize;
            for (s, &q) in (lo..).zip(&ri[lo..cp[p as usize + 1] as usize]) {
                let u = in_chain[q as usize];
                if u != NONE {
                    let u = u as usize;
                    if u == t {
                        self.slots[at + t] = s as u32;
                    } else if u == t + 1 {
                        self.slots[at + len + t] = s as u32;
                    } else if u + 1 != t {
                        return None;
                    }
                } else {
                    let fq = front_of[q as usize];
                    if fq != NONE && fq != k {
                        return None;
                    }
                    pairs.push((loc[q as usize], t as u32, s as u32));
                }
            }
        }
        if self.slots[at..].contains(&NONE) {
            return None;
        }
        pairs.sort_unstable();
        let t0 = self.targets.len() as u32;
        let p0 = self.ptr.len() as u32;
        for (i, &(q, t, s)) in pairs.iter().enumerate() {
            if i == 0 || pairs[i - 1].0 != q {
                self.targets.push(q);
                self.ptr.push(self.couple.len() as u32);
            }
            self.couple.push((t, s));
        }
        self.ptr.push(self.couple.len() as u32);
        Some(Chain {
            at: at as u32,
            len: len as u32,
            t0,
            t1: self.targets.len() as u32,
            p0,
        })
    }

    /// Number of fronts (for traces).
    pub fn n_fronts(&self) -> usize {
        self.fronts.len()
    }

    /// The Schur complement `S` onto the tail (dense, |tail|², in `tail` order) of the matrix
    /// with values `values` over `net.pattern`.
    pub fn schur(&self, values: &[f64]) -> Result<Mat<f64>, XbarError> {
        let root = self.fronts.len() - 1;
        let u = self.eliminate(root, values)?;
        let g = self.tail.len();
        Ok(Mat::from_fn(g, g, |i, j| u[i.max(j) + i.min(j) * g]))
    }

    /// Eliminate the subtree of front `k`; returns its update matrix (`b × b`, column-major,
    /// lower triangle meaningful) over the front's update nodes.
    fn eliminate(&self, k: usize, values: &[f64]) -> Result<Vec<f64>, XbarError> {
        let front = &self.fronts[k];
        let kids = &front.kids[..front.n_kids as usize];
        let mut updates: [Vec<f64>; 2] = Default::default();
        if kids.len() == 2 && front.work > PARALLEL_MIN_WORK {
            let (a, b) = rayon::join(
                || self.eliminate(kids[0] as usize, values),
                || self.eliminate(kids[1] as usize, values),
            );
            updates = [a?, b?];
        } else {
            for (u, &ch) in updates.iter_mut().zip(kids) {
                *u = self.eliminate(ch as usize, values)?;
            }
        }
        // no rayon work below this point: the thread's scratch is not re-entered
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let sc = &mut *guard;
            let m = front.size();
            let e = front.n_elim as usize;
            if sc.front.len() < m * m {
                sc.front.clear();
                sc.front.try_reserve_exact(m * m).map_err(oom)?;
                sc.front.resize(m * m, 0.0);
            }
            let buf = &mut sc.front[..m * m];
            self.assemble(front, buf, &updates, values, &mut sc.chain)?;
            drop(updates);
            partial_llt(buf, m, e)?;
            let b = m - e;
            let mut u = Vec::new();
            u.try_reserve_exact(b * b).map_err(oom)?;
            for j in 0..b {
                u.extend_from_slice(&buf[(e + j) * m + e..(e + j + 1) * m]);
            }
            Ok(u)
        })
    }

    /// Front `front`'s dense matrix (lower triangle, column-major): its own entries, the
    /// closed-form elimination of its path, and its children's update matrices.
    fn assemble(
        &self,
        front: &Front,
        buf: &mut [f64],
        updates: &[Vec<f64>; 2],
        values: &[f64],
        chain_scratch: &mut Vec<f64>,
    ) -> Result<(), XbarError> {
        let m = front.size();
        for j in 0..m {
            buf[j * m + j..(j + 1) * m]
                .iter_mut()
                .for_each(|v| *v = 0.0);
        }
        for &(r, c, s) in &self.entries[front.e0 as usize..front.e1 as usize] {
            buf[r as usize + c as usize * m] += values[s as usize];
        }
        for (slot, u) in updates.iter().enumerate().take(front.n_kids as usize) {
            let bc = self.fronts[front.kids[slot] as usize].n_update();
            let map = &self.maps[front.map_at[slot] as usize..front.map_at[slot] as usize + bc];
            debug_assert_eq!(u.len(), bc * bc);
            for (jj, &pc) in map.iter().enumerate() {
                let col = &u[jj * bc..(jj + 1) * bc];
                for (ii, &pr) in map.iter().enumerate().skip(jj) {
                    let (a, b) = if pr >= pc { (pr, pc) } else { (pc, pr) };
                    buf[a as usize + b as usize * m] += col[ii];
                }
            }
        }
        if let Some(ch) = front.chain {
            self.chain_update(ch, buf, m, values, chain_scratch)?;
        }
        Ok(())
    }

    /// Subtract `Bᵀ·T⁻¹·B` (the Schur complement of a path with tridiagonal `T` and couplings
    /// `B` to front positions) from the front: `T = L·D·Lᵀ` once, then `O(len)` solves, four
    /// coupled positions at a time.
    fn chain_update(
        &self,
        ch: Chain,
        buf: &mut [f64],
        m: usize,
        values: &[f64],
        scratch: &mut Vec<f64>,
    ) -> Result<(), XbarError> {
        let len = ch.len as usize;
        let diag = &self.slots[ch.at as usize..ch.at as usize + len];
        let link = &self.slots[ch.at as usize + len..ch.at as usize + 2 * len - 1];
        // x holds four right-hand sides interleaved (independent recurrences side by side)
        scratch.clear();
        scratch.resize(6 * len, 0.0);
        let (d, rest) = scratch.split_at_mut(len);
        let (l, x) = rest.split_at_mut(len);
        for t in 0..len {
            let mut dt = values[diag[t] as usize];
            if t > 0 {
                dt -= l[t - 1] * values[link[t - 1] as usize];
            }
            if dt.is_nan() || dt <= 0.0 {
                return Err(not_pd());
            }
            d[t] = 1.0 / dt;
            if t + 1 < len {
                l[t] = values[link[t] as usize] / dt;
            }
        }
        let targets = &self.targets[ch.t0 as usize..ch.t1 as usize];
        let ptr = &self.ptr[ch.p0 as usize..ch.p0 as usize + targets.len() + 1];
        let couplings = |k: usize| &self.couple[ptr[k] as usize..ptr[k + 1] as usize];
        for k0 in (0..targets.len()).step_by(4) {
            let nk = (targets.len() - k0).min(4);
            x.iter_mut().for_each(|v| *v = 0.0);
            for c in 0..nk {
                for &(t, s) in couplings(k0 + c) {
                    x[4 * t as usize + c] += values[s as usize];
                }
            }
            // L·D·Lᵀ·x = b: forward, diagonal, backward
            for t in 1..len {
                for c in 0..4 {
                    x[4 * t + c] -= l[t - 1] * x[4 * (t - 1) + c];
                }
            }
            for t in 0..len {
                for c in 0..4 {
                    x[4 * t + c] *= d[t];
                }
            }
            for t in (0..len - 1).rev() {
                for c in 0..4 {
                    x[4 * t + c] -= l[t] * x[4 * (t + 1) + c];
                }
            }
            for c in 0..nk {
                let qk = targets[k0 + c];
                for (k2, &q2) in targets.iter().enumerate().skip(k0 + c) {
                    let v: f64 = couplings(k2)
                        .iter()
                        .map(|&(t, s)| values[s as usize] * x[4 * t as usize + c])
                        .sum();
                    buf[q2 as usize + qk as usize * m] -= v;
                }
            }
        }
        Ok(())
    }
}

thread_local! {
    /// The dense front being eliminated (one per worker thread, reused).
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    front: Vec<f64>,
    chain: Vec<f64>,
}

fn oom<E>(_: E) -> XbarError {
    XbarError::Numeric("out of memory for a front".into())
}

fn not_pd() -> XbarError {
    XbarError::Numeric("nodal matrix is not positive definite (a floating node?)".into())
}

/// Eliminate the first `e` unknowns of the dense front (`m × m`, lower triangle, column-major):
/// `F₁₁ = L₁₁·L₁₁ᵀ`, `L₂₁ = F₂₁·L₁₁⁻ᵀ`, `F₂₂ −= L₂₁·L₂₁ᵀ` (the update matrix, in place).
fn partial_llt(buf: &mut [f64], m: usize, e: usize) -> Result<(), XbarError> {
    if e == 0 {
        return Ok(());
    }
    if m >= BLOCKED_MIN_FRONT && e >= 8 {
        let mat = MatMut::from_column_major_slice_mut(buf, m, m);
        let (f11, _, mut f21, f22) = mat.split_at_mut(e, e);
        let mut mem = MemBuffer::try_new(cholesky_in_place_scratch::<f64>(
            e,
            Par::Seq,
            Default::default(),
        ))
        .map_err(|_| XbarError::Numeric("out of memory for a front".into()))?;
        let mut f11 = f11;
        cholesky_in_place(
            f11.rb_mut(),
            Default::default(),
            Par::Seq,
            MemStack::new(&mut mem),
            Default::default(),
        )
        .map_err(|_| not_pd())?;
        solve_lower_triangular_in_place(f11.rb(), f21.rb_mut().transpose_mut(), Par::Seq);
        tri_matmul(
            f22,
            BlockStructure::TriangularLower,
            Accum::Add,
            f21.rb(),
            BlockStructure::Rectangular,
            f21.rb().transpose(),
            BlockStructure::Rectangular,
            -1.0,
            Par::Seq,
        );
        return Ok(());
    }
    small_llt(buf, m, e)
}

/// The plain-loop partial Cholesky of small fronts, with AVX2/FMA when the CPU has them.
fn small_llt(buf: &mut [f64], m: usize, e: usize) -> Result<(), XbarError> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { small_llt_avx2(buf, m, e) };
    }
    small_llt_body::<false>(buf, m, e)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn small_llt_avx2(buf: &mut [f64], m: usize, e: usize) -> Result<(), XbarError> {
    small_llt_body::<true>(buf, m, e)
}

/// Right-looking, four columns at a time: factor a panel of up to four columns, then update
/// every later column with the whole panel (four multiply-adds per load and store).
#[inline(always)]
fn small_llt_body<const FMA: bool>(buf: &mut [f64], m: usize, e: usize) -> Result<(), XbarError> {
    let fnmadd = |acc: f64, a: f64, b: f64| {
        if FMA {
            (-a).mul_add(b, acc)
        } else {
            acc - a * b
        }
    };
    let mut k0 = 0;
    while k0 < e {
        let k1 = (k0 + 4).min(e);
        // the panel itself
        for k in k0..k1 {
            let (head, rest) = buf.split_at_mut((k + 1) * m);
            let colk = &mut head[k * m..];
            let dk = colk[k];
            if dk.is_nan() || dk <= 0.0 {
                return Err(not_pd());
            }
            let dk = dk.sqrt();
            colk[k] = dk;
            let inv = 1.0 / dk;
            for v in colk[k + 1..].iter_mut() {
                *v *= inv;
            }
            let colk = &head[k * m..];
            for j in k + 1..k1 {
                let ljk = colk[j];
                let colj = &mut rest[(j - k - 1) * m..(j - k) * m];
                for (dst, &src) in colj[j..].iter_mut().zip(&colk[j..]) {
                    *dst = fnmadd(*dst, src, ljk);
                }
            }
        }
        // every later column with the panel
        let (head, rest) = buf.split_at_mut(k1 * m);
        let panel = &head[k0 * m..];
        if k1 - k0 == 4 {
            let (c0, c1, c2, c3) = (
                &panel[..m],
                &panel[m..2 * m],
                &panel[2 * m..3 * m],
                &panel[3 * m..4 * m],
            );
            for j in k1..m {
                let (a0, a1, a2, a3) = (c0[j], c1[j], c2[j], c3[j]);
                let colj = &mut rest[(j - k1) * m..(j - k1 + 1) * m];
                for i in j..m {
                    let mut v = colj[i];
                    v = fnmadd(v, c0[i], a0);
                    v = fnmadd(v, c1[i], a1);
                    v = fnmadd(v, c2[i], a2);
                    v = fnmadd(v, c3[i], a3);
                    colj[i] = v;
                }
            }
        } else {
            for k in 0..k1 - k0 {
                let ck = &panel[k * m..(k + 1) * m];
                for j in k1..m {
                    let a = ck[j];
                    let colj = &mut rest[(j - k1) * m..(j - k1 + 1) * m];
                    for (dst, &src) in colj[j..].iter_mut().zip(&ck[j..]) {
                        *dst = fnmadd(*dst, src, a);
                    }
                }
            }
        }
        k0 = k1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xbar::array::{Crossbar, SenseKind};
    use crate::xbar::network::Topology;

    fn net(xb: &Crossbar) -> Network {
        Network::new(xb, &Topology::inference(xb)).unwrap()
    }

    #[test]
    fn plan_eliminates_everything_but_the_source_coupled_unknowns() {
        let xb = Crossbar::passive(12, 9, vec![1e-5; 108], 2.5).unwrap();
        let n = net(&xb);
        let plan = FrontalPlan::new(&n).expect("structured array");
        // the tail: first word-line node of every row, last bit-line node of every column
        let mut expect: Vec<u32> = (0..12).map(|i| (i * 9) as u32).collect();
        expect.extend((0..9).map(|j| (108 + 11 * 9 + j) as u32));
        expect.sort_unstable();
        assert_eq!(plan.tail, expect);
        // every other unknown is eliminated in exactly one front, densely or as a path
        let mut count = vec![0u32; n.n_free];
        for f in &plan.fronts {
            for &p in &plan.nodes[f.n0 as usize..(f.n0 + f.n_elim) as usize] {
                count[p as usize] += 1;
            }
        }
        for f in &plan.fronts {
            if let Some(ch) = f.chain {
                // a path's unknowns are recorded by their diagonal slots
                for &s in &plan.slots[ch.at as usize..(ch.at + ch.len) as usize] {
                    let cp = n.pattern.col_ptr();
                    let p = (0..n.n_free)
                        .find(|&p| (cp[p] as usize..cp[p + 1] as usize).contains(&(s as usize)))
                        .unwrap();
                    count[p] += 1;
                }
            }
        }
        for (p, (&k, &tp)) in count.iter().zip(&plan.tail_pos).enumerate() {
            let want = if tp == NONE { 1 } else { 0 };
            assert_eq!(k, want, "unknown {p}");
        }
    }

    #[test]
    fn amplifier_nodes_and_merged_lines_are_not_planned() {
        let mut xb = Crossbar::passive(6, 5, vec![1e-5; 30], 2.5).unwrap();
        xb.sense = SenseKind::Tia {
            gain: 1e4,
            r_f_ohm: 1e4,
            vsat_v: 1.0,
        };
        assert!(FrontalPlan::new(&net(&xb)).is_none());
        let mut xb = Crossbar::passive(6, 5, vec![1e-5; 30], 2.5).unwrap();
        xb.r_word_ohm = 0.0;
        assert!(FrontalPlan::new(&net(&xb)).is_none());
    }
}
