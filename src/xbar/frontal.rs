//! The array's source-to-source Schur complement by a multifrontal elimination along the array's
//! geometry.
//!
//! The effective weights of a linear array are the currents its sources exchange: take the row
//! drivers and the column virtual grounds as terminals (kept, never eliminated) and eliminate
//! every unknown; the Schur complement `S` onto the terminals (with `B` the couplings of the
//! unknowns to them, `S = −Bᵀ·A⁻¹·B` off the diagonal) holds in its row-to-column block the
//! current into each column's ground per volt on each row: `T[i, j] = −S[col j, row i]`. No
//! dense solve follows, and the row–row and column–column blocks are never computed.
//! `S` comes from a nested dissection of the crossbar's rectangle:
//!
//! - a leaf (a few crosspoints) is a dense front: its unknowns, then its update nodes (the
//!   neighbours outside it, and terminals);
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
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, Par};

use super::network::{Network, Node};
use super::XbarError;

/// Most terminals (sources coupled to the array) handled densely.
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
    /// Update nodes that are unknowns (the rest are terminals: rows, then columns) and row
    /// terminals among the update nodes.
    n_free_upd: u32,
    n_row_term: u32,
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

    /// First row of update column `j` (update coordinates: free update nodes, row terminals,
    /// column terminals) that is ever read ([`TerminalBlocks`]: the row–row and column–column
    /// blocks are not), `n_update()` when none.
    #[inline(always)]
    fn first_update_row(&self, j: usize) -> usize {
        let f = self.n_free_upd as usize;
        let ct = f + self.n_row_term as usize;
        if j < f {
            j
        } else if j < ct {
            ct
        } else {
            self.n_update()
        }
    }

    /// Length of the packed update matrix: the rows [`Self::first_update_row`] on of every
    /// update column.
    fn packed_update_len(&self) -> usize {
        let b = self.n_update();
        (0..b).map(|j| b - self.first_update_row(j)).sum()
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
    /// The terminals (ids after the unknowns: `n + i` for row source i, `n + R + j` for column
    /// source j), ascending: the order of `S`.
    pub tail: Vec<u32>,
    /// Position in `tail` of terminal `n + k` (`u32::MAX` if that source couples to nothing).
    pub tail_pos: Vec<u32>,
    /// (unknown, terminal) couplings, sorted; coupling k's matrix entry is value slot `nnz + k`.
    pub term_pairs: Vec<(u32, u32)>,
    /// Number of value slots of the network's pattern.
    nnz: usize,
    /// Rows whose source is a terminal (`false`: held at 0 V, [`FrontalPlan::with_row_terminals`];
    /// empty for a plan built from the geometry, whose rows are all terminals).
    row_kept: Vec<bool>,
}

/// The (unknown, terminal) couplings of a network: the sources' nodes are the terminals,
/// numbered after the unknowns (row i: `n + i`, column j: `n + R + j`).
fn terminal_pairs(net: &Network) -> Vec<(u32, u32)> {
    let mut pairs: Vec<(u32, u32)> = net
        .source_couplings()
        .filter_map(|(p, k)| Some((p, terminal_id(k, net.n_free, net.rows)?)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// The terminal id of a source node in a network with `n` unknowns and `r` rows.
fn terminal_id(k: Node, n: usize, r: usize) -> Option<u32> {
    match k {
        Node::Row(i) => Some((n + i as usize) as u32),
        Node::Col(j) => Some((n + r + j as usize) as u32),
        _ => None,
    }
}

/// The nodal pattern and terminal couplings of a structured `r × c` array, from the geometry:
/// word-line node (i, j) couples to its line neighbours and its cell's bit-line node, bit-line
/// node (i, j) to its line neighbours and its cell's word-line node; row i's source to the
/// first word-line node when driven, column j's ground to the last bit-line node.
pub struct GridStructure {
    col_ptr: Vec<u32>,
    row_idx: Vec<u32>,
    term_pairs: Vec<(u32, u32)>,
}

impl GridStructure {
    fn new(r: usize, c: usize, driven: &[bool]) -> GridStructure {
        let rc = r * c;
        let (w, b) = (
            |i: usize, j: usize| (i * c + j) as u32,
            |i: usize, j: usize| (rc + i * c + j) as u32,
        );
        let mut col_ptr = Vec::with_capacity(2 * rc + 1);
        let mut row_idx = Vec::with_capacity(8 * rc);
        col_ptr.push(0);
        for i in 0..r {
            for j in 0..c {
                if j > 0 {
                    row_idx.push(w(i, j - 1));
                }
                row_idx.push(w(i, j));
                if j + 1 < c {
                    row_idx.push(w(i, j + 1));
                }
                row_idx.push(b(i, j));
                col_ptr.push(row_idx.len() as u32);
            }
        }
        for i in 0..r {
            for j in 0..c {
                row_idx.push(w(i, j));
                if i > 0 {
                    row_idx.push(b(i - 1, j));
                }
                row_idx.push(b(i, j));
                if i + 1 < r {
                    row_idx.push(b(i + 1, j));
                }
                col_ptr.push(row_idx.len() as u32);
            }
        }
        let n = 2 * rc;
        let mut term_pairs: Vec<(u32, u32)> = (0..r)
            .filter(|&i| driven[i])
            .map(|i| (w(i, 0), (n + i) as u32))
            .collect();
        term_pairs.extend((0..c).map(|j| (b(r - 1, j), (n + r + j) as u32)));
        term_pairs.sort_unstable();
        GridStructure {
            col_ptr,
            row_idx,
            term_pairs,
        }
    }

    /// True when `net` has exactly this structure (same unknowns, pattern and terminals).
    pub fn matches(&self, net: &Network) -> bool {
        net.structured
            && net.tia.is_empty()
            && net.n_free + 1 == self.col_ptr.len()
            && net.pattern.col_ptr() == &self.col_ptr[..]
            && net.pattern.row_idx() == &self.row_idx[..]
            && terminal_pairs(net) == self.term_pairs
    }
}

/// Neighbours of an unknown while the plan is built: the pattern's, then its terminals.
struct Adjacency<'a> {
    cp: &'a [u32],
    ri: &'a [u32],
    term_first: &'a [u32],
    term_pairs: &'a [(u32, u32)],
}

impl Adjacency<'_> {
    /// (neighbour, value slot) of unknown `p`, itself included.
    fn neighbours(&self, p: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        let p = p as usize;
        let (lo, hi) = (self.cp[p] as usize, self.cp[p + 1] as usize);
        let nnz = self.ri.len();
        let (t0, t1) = (self.term_first[p] as usize, self.term_first[p + 1] as usize);
        (lo..hi)
            .map(|s| (self.ri[s], s as u32))
            .chain((t0..t1).map(move |k| (self.term_pairs[k].1, (nnz + k) as u32)))
    }
}

/// Matrix values by slot: the pattern's, then the terminal couplings'.
#[derive(Clone, Copy)]
struct Vals<'a> {
    pattern: &'a [f64],
    terminal: &'a [f64],
}

impl Vals<'_> {
    #[inline(always)]
    fn get(&self, s: u32) -> f64 {
        let s = s as usize;
        match self.pattern.get(s) {
            Some(&v) => v,
            None => self.terminal[s - self.pattern.len()],
        }
    }
}

/// Per unknown while the plan is built (together: one cache line serves every lookup): the
/// front eliminating it, the last front that listed it as an update node, its position in the
/// current front, its index on the current path (`NONE` when not applicable).
#[derive(Clone, Copy)]
struct Mark {
    front: u32,
    seen: u32,
    loc: u32,
    chain: u32,
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
    /// Plan the elimination of `net`'s unknowns onto its sources (`None` when the network has no
    /// line structure, has amplifier nodes, or too many sources).
    pub fn new(net: &Network) -> Option<FrontalPlan> {
        Self::with_row_terminals(net, &vec![true; net.rows])
    }

    /// The plan of `net` with only the sources of the rows `kept[i]` as row terminals; the other
    /// rows' sources are held at 0 V. A row source at 0 V is a conductance to ground, and the
    /// nodal matrix holds that conductance on its node's diagonal already, so the Schur
    /// complement onto the kept terminals is the whole network's, exactly, with those rows
    /// driven at 0 V; the grounded rows get no entries in it (their weights are not computed).
    /// Fewer terminals make every front on the array's left edge smaller: the effective weights
    /// of rows that are never driven cost nothing.
    pub fn with_row_terminals(net: &Network, kept: &[bool]) -> Option<FrontalPlan> {
        let (r, c) = (net.rows, net.cols);
        if kept.len() != r
            || !net.structured
            || !net.tia.is_empty()
            || net.n_free != 2 * r * c
            || r * c == 0
        {
            return None;
        }
        let n = net.n_free;
        let pairs: Vec<(u32, u32)> = terminal_pairs(net)
            .into_iter()
            .filter(|&(_, t)| match (t as usize).checked_sub(n) {
                Some(i) if i < r => kept[i],
                _ => true,
            })
            .collect();
        let (cp, ri) = (net.pattern.col_ptr(), net.pattern.row_idx());
        let mut plan = Self::build(r, c, cp, ri, pairs)?;
        plan.row_kept = kept.to_vec();
        Some(plan)
    }

    /// The plan of the structured network an `r × c` array with every word- and bit-line
    /// segment resistive and virtual-ground sensing has, built from the geometry alone (so that
    /// it can be made while the network itself is): rows `driven[i]` have a driver, every column
    /// a ground. Its structure comes along: use the plan for a network only if
    /// [`GridStructure::matches`] it.
    pub fn for_grid(r: usize, c: usize, driven: &[bool]) -> Option<(FrontalPlan, GridStructure)> {
        if r * c == 0 || driven.len() != r || 2 * r * c + r + c >= u32::MAX as usize / 4 {
            return None;
        }
        let g = GridStructure::new(r, c, driven);
        let plan = Self::build(r, c, &g.col_ptr, &g.row_idx, g.term_pairs.clone())?;
        Some((plan, g))
    }

    /// Plan the elimination of the `2·r·c` unknowns of a structured array (word-line node of
    /// (i, j) is `i·c + j`, bit-line node `r·c + i·c + j`) with pattern `cp`, `ri` and terminal
    /// couplings `term_pairs` onto the terminals.
    fn build(
        r: usize,
        c: usize,
        cp: &[u32],
        ri: &[u32],
        mut term_pairs: Vec<(u32, u32)>,
    ) -> Option<FrontalPlan> {
        let n = 2 * r * c;
        if cp.len() != n + 1 {
            return None;
        }
        let nnz = ri.len();
        term_pairs.sort_unstable();
        term_pairs.dedup();
        let mut tail: Vec<u32> = term_pairs.iter().map(|&(_, t)| t).collect();
        tail.sort_unstable();
        tail.dedup();
        if tail.is_empty() || tail.len() > MAX_TAIL {
            return None;
        }
        let mut tail_pos = vec![NONE; r + c];
        for (k, &t) in tail.iter().enumerate() {
            tail_pos[t as usize - n] = k as u32;
        }
        let mut term_first = vec![0u32; n + 1];
        for &(p, _) in &term_pairs {
            term_first[p as usize + 1] += 1;
        }
        for p in 0..n {
            term_first[p + 1] += term_first[p];
        }
        let adj = Adjacency {
            cp,
            ri,
            term_first: &term_first,
            term_pairs: &term_pairs,
        };
        let geo = Geometry {
            r,
            c,
            leaf: LEAF_CROSSPOINTS,
        };
        let mut specs = Vec::with_capacity(n / LEAF_CROSSPOINTS + 16);
        let mut elim = Vec::with_capacity(n);
        geo.dissect((0, r, 0, c), &mut specs, &mut elim)?;
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
            term_pairs: Vec::new(),
            nnz,
            row_kept: Vec::new(),
        };
        let mut mk = vec![
            Mark {
                front: NONE,
                seen: NONE,
                loc: NONE,
                chain: NONE,
            };
            n + r + c
        ];
        let mut bound: Vec<u32> = Vec::new();
        let mut pairs: Vec<(u32, u32, u32)> = Vec::new();
        let root = specs.len() - 1;
        for (k, spec) in specs.iter().enumerate() {
            let kk = k as u32;
            let own = &elim[spec.e0 as usize..spec.e1 as usize];
            let path = &elim[spec.e1 as usize..spec.c1 as usize];
            for &p in own.iter().chain(path) {
                mk[p as usize].front = kk;
            }
            let kids = &spec.kids[..spec.n_kids as usize];
            let first = kids
                .iter()
                .map(|&ch| plan.fronts[ch as usize].first)
                .min()
                .unwrap_or(kk);
            for (t, &p) in path.iter().enumerate() {
                mk[p as usize].chain = t as u32;
            }
            // update nodes: the children's, and the neighbours of what is eliminated here
            bound.clear();
            for &ch in kids {
                let cf = plan.fronts[ch as usize];
                for &p in &plan.nodes[(cf.n0 + cf.n_elim) as usize..cf.n1 as usize] {
                    if mk[p as usize].front != kk && mk[p as usize].seen != kk {
                        mk[p as usize].seen = kk;
                        bound.push(p);
                    }
                }
            }
            for &p in own.iter().chain(path) {
                for (q, _) in adj.neighbours(p) {
                    let fq = mk[q as usize].front;
                    if fq == NONE {
                        if mk[q as usize].seen != kk {
                            mk[q as usize].seen = kk;
                            bound.push(q);
                        }
                    } else if fq != kk {
                        // eliminated earlier: must be in this subtree, and never next to a path
                        if fq < first || mk[p as usize].chain != NONE {
                            return None;
                        }
                    }
                }
            }
            if k == root {
                if bound.iter().any(|&p| (p as usize) < n) {
                    return None;
                }
                bound.clear();
                bound.extend_from_slice(&tail);
            } else {
                bound.sort_unstable();
            }
            let n_free_upd = bound.iter().filter(|&&p| (p as usize) < n).count() as u32;
            let n_row_term = bound
                .iter()
                .filter(|&&p| (n..n + r).contains(&(p as usize)))
                .count() as u32;
            let n0 = plan.nodes.len() as u32;
            plan.nodes.extend_from_slice(own);
            plan.nodes.extend_from_slice(&bound);
            let n1 = plan.nodes.len() as u32;
            for (q, &p) in plan.nodes[n0 as usize..].iter().enumerate() {
                mk[p as usize].loc = q as u32;
            }
            let mut map_at = [0u32; 2];
            for (slot, &ch) in kids.iter().enumerate() {
                let cf = plan.fronts[ch as usize];
                map_at[slot] = plan.maps.len() as u32;
                for q in (cf.n0 + cf.n_elim) as usize..cf.n1 as usize {
                    let p = plan.nodes[q];
                    plan.maps.push(mk[p as usize].loc);
                }
            }
            // matrix entries: every pair is assembled where its first unknown is eliminated
            let e0 = plan.entries.len() as u32;
            for &p in own {
                let lp = mk[p as usize].loc;
                for (q, s) in adj.neighbours(p) {
                    let fq = mk[q as usize].front;
                    if (fq == kk && mk[q as usize].chain == NONE && mk[q as usize].loc >= lp)
                        || fq == NONE
                    {
                        plan.entries.push((mk[q as usize].loc, lp, s));
                    }
                }
            }
            let e1 = plan.entries.len() as u32;
            let chain = if path.is_empty() {
                None
            } else {
                let ch = plan.chain(path, &adj, &mk, kk, &mut pairs)?;
                for &p in path {
                    mk[p as usize].chain = NONE;
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
                n_free_upd,
                n_row_term,
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
        // every unknown is eliminated exactly once
        if mk[..n].iter().any(|m| m.front == NONE) {
            return None;
        }
        plan.tail = tail;
        plan.tail_pos = tail_pos;
        plan.term_pairs = term_pairs;
        Some(plan)
    }

    /// Record the closed-form elimination data of a path (its unknowns in path order); `None`
    /// when the unknowns are not a path (links between non-consecutive ones) or touch an
    /// unknown eliminated before.
    fn chain(
        &mut self,
        nodes: &[u32],
        adj: &Adjacency<'_>,
        mk: &[Mark],
        k: u32,
        pairs: &mut Vec<(u32, u32, u32)>,
    ) -> Option<Chain> {
        let len = nodes.len();
        let at = self.slots.len();
        self.slots.resize(at + 2 * len - 1, NONE);
        pairs.clear(); // (front position, path index, slot)
        for (t, &p) in nodes.iter().enumerate() {
            for (q, s) in adj.neighbours(p) {
                let u = mk[q as usize].chain;
                if u != NONE {
                    let u = u as usize;
                    if u == t {
                        self.slots[at + t] = s;
                    } else if u == t + 1 {
                        self.slots[at + len + t] = s;
                    } else if u + 1 != t {
                        return None;
                    }
                } else {
                    let fq = mk[q as usize].front;
                    if fq != NONE && fq != k {
                        return None;
                    }
                    pairs.push((mk[q as usize].loc, t as u32, s));
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

    /// Estimated multiply-adds of the dense eliminations (for traces).
    pub fn work(&self) -> f64 {
        self.fronts.last().map_or(0.0, |f| f.work)
    }

    /// The coupling entries of the terminals (`term_pairs` order) from the source couplings
    /// (unknown, source node, conductance) of a network with `n` unknowns and `r` rows: minus
    /// the conductance; `None` when a coupling is not one the plan knows. Couplings to grounded
    /// rows are skipped (their conductance is on the diagonal already).
    pub fn terminal_values(
        &self,
        src: &[(u32, Node, f64)],
        n: usize,
        r: usize,
    ) -> Option<Vec<f64>> {
        let mut tv = vec![0.0; self.term_pairs.len()];
        for &(p, k, g) in src {
            if let Node::Row(i) = k {
                if self.row_kept.get(i as usize) == Some(&false) {
                    continue;
                }
            }
            let t = terminal_id(k, n, r)?;
            let at = self.term_pairs.binary_search(&(p, t)).ok()?;
            tv[at] -= g;
        }
        Some(tv)
    }

    /// The row-to-column block `S[col, row]` of the Schur complement of the unknowns onto the
    /// terminals (the only block computed, see [`TerminalBlocks`]), for the matrix with values
    /// `values` over `net.pattern` and terminal couplings `terminal` (see
    /// [`Self::terminal_values`]): rows are the column terminals, columns the row terminals, each
    /// in `tail` order.
    pub fn row_col_block(&self, values: &[f64], terminal: &[f64]) -> Result<Mat<f64>, XbarError> {
        if values.len() != self.nnz || terminal.len() != self.term_pairs.len() {
            return Err(XbarError::Invalid(
                "matrix values do not match the elimination plan".into(),
            ));
        }
        let values = Vals {
            pattern: values,
            terminal,
        };
        let root = self.fronts.len() - 1;
        let u = self.eliminate(root, values)?;
        let g = self.tail.len();
        let n_rows = self.root_row_terminals();
        // the root's update nodes are the terminals, rows then columns; packed, row terminal
        // j's column holds the column terminals' rows only (the row–column block)
        debug_assert_eq!(self.fronts[root].n_free_upd, 0);
        debug_assert_eq!(u.len(), n_rows * (g - n_rows));
        let s = Mat::from_fn(g - n_rows, n_rows, |i, j| u[i + j * (g - n_rows)]);
        give_back(u);
        Ok(s)
    }

    /// Number of row terminals (the first ones of `tail`).
    pub fn root_row_terminals(&self) -> usize {
        self.fronts.last().map_or(0, |f| f.n_row_term as usize)
    }

    /// Eliminate the subtree of front `k`; returns its update matrix (`b × b`, column-major,
    /// lower triangle meaningful) over the front's update nodes.
    fn eliminate(&self, k: usize, values: Vals<'_>) -> Result<Vec<f64>, XbarError> {
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
        let m = front.size();
        let e = front.n_elim as usize;
        // the thread's buffers are taken out while in use (nothing here re-enters them now, but
        // a borrow held across dense kernels would be one rayon change away from a panic)
        let mut sc = SCRATCH.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
        if sc.front.len() < m * m {
            sc.front.clear();
            sc.front.try_reserve_exact(m * m).map_err(oom)?;
            sc.front.resize(m * m, 0.0);
        }
        let buf = &mut sc.front[..m * m];
        self.assemble(front, buf, &updates, values, &mut sc.chain)?;
        for u in updates {
            give_back(u);
        }
        let rt0 = e + front.n_free_upd as usize;
        let skip = TerminalBlocks {
            rt0,
            ct0: rt0 + front.n_row_term as usize,
        };
        partial_llt(buf, m, e, skip)?;
        // the update matrix leaves packed: of every column only the rows ever read (the blocks
        // between terminals of one kind are neither updated nor read)
        let b = m - e;
        let mut u = take_buffer(front.packed_update_len())?;
        for j in 0..b {
            let i0 = front.first_update_row(j);
            u.extend_from_slice(&buf[(e + j) * m + e + i0..(e + j + 1) * m]);
        }
        SCRATCH.with(|cell| {
            let mut kept = cell.borrow_mut();
            if kept.front.len() < sc.front.len() {
                *kept = sc;
            }
        });
        Ok(u)
    }

    /// Front `front`'s dense matrix (lower triangle, column-major): its own entries, the
    /// closed-form elimination of its path, and its children's update matrices.
    fn assemble(
        &self,
        front: &Front,
        buf: &mut [f64],
        updates: &[Vec<f64>; 2],
        values: Vals<'_>,
        chain_scratch: &mut Vec<f64>,
    ) -> Result<(), XbarError> {
        let m = front.size();
        for j in 0..m {
            buf[j * m + j..(j + 1) * m]
                .iter_mut()
                .for_each(|v| *v = 0.0);
        }
        for &(r, c, s) in &self.entries[front.e0 as usize..front.e1 as usize] {
            buf[r as usize + c as usize * m] += values.get(s);
        }
        for (slot, u) in updates.iter().enumerate().take(front.n_kids as usize) {
            let child = &self.fronts[front.kids[slot] as usize];
            let bc = child.n_update();
            let map = &self.maps[front.map_at[slot] as usize..front.map_at[slot] as usize + bc];
            debug_assert_eq!(u.len(), child.packed_update_len());
            let mut at = 0;
            for (jj, &pc) in map.iter().enumerate() {
                let i0 = child.first_update_row(jj);
                let col = &u[at..at + (bc - i0)];
                at += bc - i0;
                for (&pr, &v) in map[i0..].iter().zip(col) {
                    let (a, b) = if pr >= pc { (pr, pc) } else { (pc, pr) };
                    buf[a as usize + b as usize * m] += v;
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
        values: Vals<'_>,
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
            let mut dt = values.get(diag[t]);
            if t > 0 {
                dt -= l[t - 1] * values.get(link[t - 1]);
            }
            if dt.is_nan() || dt <= 0.0 {
                return Err(not_pd());
            }
            d[t] = 1.0 / dt;
            if t + 1 < len {
                l[t] = values.get(link[t]) / dt;
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
                    x[4 * t as usize + c] += values.get(s);
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
                        .map(|&(t, s)| values.get(s) * x[4 * t as usize + c])
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

thread_local! {
    /// Spare update-matrix buffers of this thread: update matrices are made and consumed at
    /// every front, and fresh large allocations cost page faults each time.
    static SPARE: std::cell::RefCell<Vec<Vec<f64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Spare buffers kept per thread, and the largest kept (bytes).
const SPARE_COUNT: usize = 16;
const SPARE_MAX_BYTES: usize = 8 << 20;

/// An empty buffer with room for `len` values (a spare one when there is one).
fn take_buffer(len: usize) -> Result<Vec<f64>, XbarError> {
    let spare = SPARE.with(|cell| {
        let mut spare = cell.borrow_mut();
        // the smallest that fits
        let at = (0..spare.len())
            .filter(|&k| spare[k].capacity() >= len)
            .min_by_key(|&k| spare[k].capacity())?;
        Some(spare.swap_remove(at))
    });
    let mut u = spare.unwrap_or_default();
    u.clear();
    u.try_reserve_exact(len).map_err(oom)?;
    Ok(u)
}

/// Keep `u` for a later [`take_buffer`] on this thread (within the limits).
fn give_back(u: Vec<f64>) {
    if u.capacity() == 0 || u.capacity() * 8 > SPARE_MAX_BYTES {
        return;
    }
    SPARE.with(|cell| {
        let mut spare = cell.borrow_mut();
        if spare.len() < SPARE_COUNT {
            spare.push(u);
        } else if let Some(k) = (0..spare.len()).min_by_key(|&k| spare[k].capacity()) {
            if spare[k].capacity() < u.capacity() {
                spare[k] = u;
            }
        }
    });
}

fn oom<E>(_: E) -> XbarError {
    XbarError::Numeric("out of memory for a front".into())
}

fn not_pd() -> XbarError {
    XbarError::Numeric("nodal matrix is not positive definite (a floating node?)".into())
}

/// Where a front's terminals sit (positions `rt0..ct0`: row terminals, `ct0..`: column
/// terminals). Only the row-to-column block of the Schur complement between terminals is ever
/// read, so the row–row and column–column blocks of the updates are not computed.
#[derive(Clone, Copy)]
struct TerminalBlocks {
    rt0: usize,
    ct0: usize,
}

impl TerminalBlocks {
    /// First row of column `j` whose update is needed (`m`: none).
    #[inline(always)]
    fn first_row(&self, j: usize, m: usize) -> usize {
        if j < self.rt0 {
            j
        } else if j < self.ct0 {
            self.ct0
        } else {
            m
        }
    }
}

/// Eliminate the first `e` unknowns of the dense front (`m × m`, lower triangle, column-major):
/// `F₁₁ = L₁₁·L₁₁ᵀ`, `L₂₁ = F₂₁·L₁₁⁻ᵀ`, `F₂₂ −= L₂₁·L₂₁ᵀ` (the update matrix, in place; the
/// blocks `skip` leaves out are not updated).
fn partial_llt(buf: &mut [f64], m: usize, e: usize, skip: TerminalBlocks) -> Result<(), XbarError> {
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
        // F₂₂ in blocks: unknowns (f), row terminals (t), column terminals
        let (f, t) = (skip.rt0 - e, skip.ct0 - skip.rt0);
        let b = m - e;
        let (f_f, _, term_f, term_term) = f22.split_at_mut(f, f);
        let l_f = f21.rb().subrows(0, f);
        tri_matmul(
            f_f,
            BlockStructure::TriangularLower,
            Accum::Add,
            l_f,
            BlockStructure::Rectangular,
            l_f.transpose(),
            BlockStructure::Rectangular,
            -1.0,
            Par::Seq,
        );
        matmul(
            term_f,
            Accum::Add,
            f21.rb().subrows(f, b - f),
            l_f.transpose(),
            -1.0,
            Par::Seq,
        );
        let (_, _, col_row, _) = term_term.split_at_mut(t, t);
        matmul(
            col_row,
            Accum::Add,
            f21.rb().subrows(f + t, b - f - t),
            f21.rb().subrows(f, t).transpose(),
            -1.0,
            Par::Seq,
        );
        return Ok(());
    }
    small_llt(buf, m, e, skip)
}

/// The plain-loop partial Cholesky of small fronts, with AVX2/FMA when the CPU has them.
fn small_llt(buf: &mut [f64], m: usize, e: usize, skip: TerminalBlocks) -> Result<(), XbarError> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { small_llt_avx2(buf, m, e, skip) };
    }
    small_llt_body::<false>(buf, m, e, skip)
}

/// # Safety
/// Only call on a CPU with AVX2 and FMA (checked by `small_llt` before the call).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn small_llt_avx2(
    buf: &mut [f64],
    m: usize,
    e: usize,
    skip: TerminalBlocks,
) -> Result<(), XbarError> {
    small_llt_body::<true>(buf, m, e, skip)
}

/// Right-looking, four columns at a time: factor a panel of up to four columns, then update
/// every later column with the whole panel (four multiply-adds per load and store).
#[inline(always)]
fn small_llt_body<const FMA: bool>(
    buf: &mut [f64],
    m: usize,
    e: usize,
    skip: TerminalBlocks,
) -> Result<(), XbarError> {
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
                for i in skip.first_row(j, m)..m {
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
                    let i0 = skip.first_row(j, m);
                    for (dst, &src) in colj[i0..].iter_mut().zip(&ck[i0..]) {
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

    const AMPLIFIER: SenseKind = SenseKind::Tia {
        gain: 1e4,
        r_f_ohm: 1e4,
        vsat_v: 1.0,
    };

    fn net(xb: &Crossbar) -> Network {
        Network::new(xb, &Topology::inference(xb)).unwrap()
    }

    #[test]
    fn plan_eliminates_every_unknown_onto_the_sources() {
        let xb = Crossbar::passive(12, 9, vec![1e-5; 108], 2.5).unwrap();
        let n = net(&xb);
        let plan = FrontalPlan::new(&n).expect("structured array");
        // the tail: the 12 row sources, then the 9 column sources
        let expect: Vec<u32> = (0..21).map(|k| (216 + k) as u32).collect();
        assert_eq!(plan.tail, expect);
        // each couples to one unknown: the first word-line node of its row, the last bit-line
        // node of its column
        let mut pairs: Vec<(u32, u32)> = (0..12).map(|i| (i * 9, 216 + i)).collect();
        pairs.extend((0..9).map(|j| (108 + 11 * 9 + j, 228 + j)));
        pairs.sort_unstable();
        assert_eq!(plan.term_pairs, pairs);
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
        for (p, &k) in count.iter().enumerate() {
            assert_eq!(k, 1, "unknown {p}");
        }
    }

    #[test]
    fn the_grid_plan_is_the_network_plan() {
        for (r, c) in [(1, 1), (1, 6), (7, 1), (5, 8), (12, 9), (33, 17)] {
            let g: Vec<f64> = (0..r * c).map(|k| 1e-6 * (1 + k % 7) as f64).collect();
            let mut xb = Crossbar::passive(r, c, g, 2.5).unwrap();
            xb.r_bit_ohm = 1.5;
            xb.r_driver_ohm = 10.0;
            xb.r_sense_ohm = 3.0;
            let n = net(&xb);
            let (grid_plan, structure) = FrontalPlan::for_grid(r, c, &vec![true; r]).unwrap();
            assert!(structure.matches(&n), "{r}×{c}");
            let plan = FrontalPlan::new(&n).unwrap();
            // the same elimination, value slot for value slot
            assert_eq!(plan.entries, grid_plan.entries, "{r}×{c}");
            assert_eq!(plan.nodes, grid_plan.nodes, "{r}×{c}");
            assert_eq!(plan.maps, grid_plan.maps, "{r}×{c}");
            assert_eq!(plan.slots, grid_plan.slots, "{r}×{c}");
            assert_eq!(plan.couple, grid_plan.couple, "{r}×{c}");
            assert_eq!(plan.term_pairs, grid_plan.term_pairs, "{r}×{c}");
        }
        // other structures are told apart: an open row, merged word lines, an amplifier
        let xb = Crossbar::passive(6, 5, vec![1e-5; 30], 2.5).unwrap();
        let mut topo = Topology::inference(&xb);
        topo.rows[2] = crate::xbar::network::RowEnd::Open;
        let open = Network::new(&xb, &topo).unwrap();
        let (_, structure) = FrontalPlan::for_grid(6, 5, &[true; 6]).unwrap();
        assert!(!structure.matches(&open));
        let mut driven = [true; 6];
        driven[2] = false;
        let (_, structure_open) = FrontalPlan::for_grid(6, 5, &driven).unwrap();
        assert!(structure_open.matches(&open));
        let mut merged = xb.clone();
        merged.r_word_ohm = 0.0;
        assert!(!structure.matches(&net(&merged)));
        let mut tia = xb.clone();
        tia.sense = AMPLIFIER;
        assert!(!structure.matches(&net(&tia)));
    }

    #[test]
    fn amplifier_nodes_and_merged_lines_are_not_planned() {
        let mut xb = Crossbar::passive(6, 5, vec![1e-5; 30], 2.5).unwrap();
        xb.sense = AMPLIFIER;
        assert!(FrontalPlan::new(&net(&xb)).is_none());
        let mut xb = Crossbar::passive(6, 5, vec![1e-5; 30], 2.5).unwrap();
        xb.r_word_ohm = 0.0;
        assert!(FrontalPlan::new(&net(&xb)).is_none());
    }
}
