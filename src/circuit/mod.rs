//! The elaborated circuit as modified nodal equations.
//!
//! Unknowns are the non-ground node voltages followed by the branch currents of voltage-defined
//! elements (V, E, H, `B … V=`). The sparse pattern is built once: every device registers its
//! matrix positions up front and afterwards writes into fixed slots; entries in a ground row or
//! column go to a scratch slot (and ground's unknown is a scratch entry fixed at 0 V), so stamping
//! code has no branches. Devices are stored one vector per type.

pub mod mos1;
pub mod tape;

use petgraph::unionfind::UnionFind;

use crate::netlist::{ElementKind, FastMap, Netlist, SimOptions, GROUND};
use crate::span::Span;
use mos1::Mos1;
use tape::{Tape, TapeError};

/// Errors found while building the nodal equations.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CircuitError {
    #[error("{}", span.render(&format!("node(s) with no DC path to ground: {}", nodes.join(", "))))]
    Floating { nodes: Vec<String>, span: Span },
    #[error("{}", span.render(&format!("loop of voltage sources: `{name}` closes a loop of voltage-defined elements")))]
    VoltageLoop { name: String, span: Span },
    #[error("{}", span.render(&format!("`{name}`: {msg}")))]
    Element {
        name: String,
        msg: String,
        span: Span,
    },
    #[error("{}", span.render(&format!("`{name}` is not an independent voltage or current source")))]
    UnknownSource { name: String, span: Span },
    #[error("the circuit has no unknowns (no node other than ground)")]
    Empty,
}

/// Slot index into the values buffer; the last slot is scratch.
type Slot = usize;

/// The fixed sparse pattern (compressed sparse columns, rows sorted).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub n: usize,
    pub col_ptr: Vec<usize>,
    pub row_idx: Vec<usize>,
}

/// Sort and deduplicate the row indices of every column of a pattern bucketed by column
/// (column `c` holds `rows[start(c)..start(c + 1)]`, `start(n)` = `rows.len()`), compacting
/// `rows` in place; returns the new column pointers. Shared by the circuit's pattern and the
/// crossbar engine's nodal pattern.
pub(crate) fn sort_dedup_columns<I: Copy + Ord>(
    n: usize,
    start: impl Fn(usize) -> usize,
    rows: &mut Vec<I>,
) -> Vec<usize> {
    let mut out = vec![0usize; n + 1];
    let mut w = 0;
    for (c, o) in out.iter_mut().take(n).enumerate() {
        let (lo, hi) = (start(c), start(c + 1));
        rows[lo..hi].sort_unstable();
        *o = w;
        for k in lo..hi {
            let r = rows[k];
            if k == lo || r != rows[w - 1] {
                rows[w] = r;
                w += 1;
            }
        }
    }
    out[n] = w;
    rows.truncate(w);
    out
}

impl Pattern {
    fn build(n: usize, pairs: Vec<(usize, usize)>) -> Pattern {
        // Bucket the entries by column (counting sort, O(entries)), then sort and deduplicate
        // each column's few rows: a global sort of the (row, col) pairs was the largest cost of
        // building a 64×64 crossbar's equations.
        let mut col_ptr = vec![0usize; n + 1];
        for &(r, c) in &pairs {
            if r < n && c < n {
                col_ptr[c + 1] += 1;
            }
        }
        for c in 0..n {
            col_ptr[c + 1] += col_ptr[c];
        }
        let mut next = col_ptr.clone();
        let mut rows = vec![0usize; col_ptr[n]];
        for &(r, c) in &pairs {
            if r < n && c < n {
                rows[next[c]] = r;
                next[c] += 1;
            }
        }
        drop(pairs);
        let col_ptr = sort_dedup_columns(n, |c| col_ptr[c], &mut rows);
        Pattern {
            n,
            col_ptr,
            row_idx: rows,
        }
    }

    /// Number of structural entries.
    pub fn nnz(&self) -> usize {
        self.row_idx.len()
    }

    /// The slot of (row, col); the scratch slot when either index is ground (`n`).
    fn slot(&self, r: usize, c: usize) -> Slot {
        if r >= self.n || c >= self.n {
            return self.nnz();
        }
        let lo = self.col_ptr[c];
        let hi = self.col_ptr[c + 1];
        match self.row_idx[lo..hi].binary_search(&r) {
            Ok(p) => lo + p,
            Err(_) => unreachable!("entry ({r},{c}) was not registered"),
        }
    }
}

#[derive(Debug, Clone)]
struct Res {
    g: f64,
    s: [Slot; 4],
}

#[derive(Debug, Clone)]
struct Vsrc {
    /// Terminals (ground is `n`).
    a: usize,
    b: usize,
    k: usize,
    v: f64,
    s: [Slot; 4],
}

#[derive(Debug, Clone)]
struct Isrc {
    a: usize,
    b: usize,
    i: f64,
}

#[derive(Debug, Clone)]
struct Bsrc {
    /// Element name and card, for messages.
    name: String,
    span: Span,
    a: usize,
    b: usize,
    /// Branch row for a voltage source; `None` for a current source.
    k: Option<usize>,
    tape: Tape,
    /// Incidence slots (voltage form): (a,k) (b,k) (k,a) (k,b).
    s_inc: [Slot; 4],
    /// Jacobian slots: for each dep, (row a, dep) and (row b, dep) — or (row k, dep).
    s_dep: Vec<[Slot; 2]>,
    grad: Vec<f64>,
}

#[derive(Debug, Clone)]
struct Mos {
    t: [usize; 4],
    dev: Mos1,
    s: [[Slot; 4]; 4],
    /// Limiting state: last (vgs, vds, vbs) in device polarity, and von.
    last: Option<(f64, f64, f64, f64)>,
    vcrit: f64,
}

/// A reference to an independent source, for sweeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SourceRef {
    V(usize),
    I(usize),
}

/// The circuit ready for nodal analysis.
#[derive(Debug, Clone)]
pub struct Circuit {
    pub title: String,
    /// Non-ground node names; node i is unknown i.
    pub node_names: Vec<String>,
    /// Element names of the branch unknowns (unknown `n_nodes + k`).
    pub branch_names: Vec<String>,
    pub n_nodes: usize,
    /// Number of unknowns; index `n` is the ground scratch entry.
    pub n: usize,
    pub pattern: Pattern,
    pub options: SimOptions,
    res: Vec<Res>,
    vsrc: Vec<Vsrc>,
    vsrc_names: Vec<String>,
    isrc: Vec<Isrc>,
    /// (a, b, k, [(row, col, value)]) linear controlled sources pre-resolved as matrix entries.
    lin_entries: Vec<(Slot, f64)>,
    bsrc: Vec<Bsrc>,
    mos: Vec<Mos>,
    diag: Vec<Slot>,
    sources: FastMap<String, SourceRef>,
    node_index: FastMap<String, usize>,
}

impl Circuit {
    /// Build the nodal equations of an elaborated netlist, checking DC paths and source loops.
    pub fn build(nl: &Netlist) -> Result<Circuit, CircuitError> {
        // Node numbering.
        // Every element's terminals are looked up by name once, here: `ids[k]` holds element k's
        // node numbers in `ElementKind::nodes` order (ground as `usize::MAX` until the number of
        // unknowns is known, then `n`); the passes below read them instead of hashing names again.
        let mut node_index: FastMap<String, usize> = FastMap::default();
        let mut node_names = Vec::new();
        let mut ids: Vec<[usize; 4]> = Vec::with_capacity(nl.elements.len());
        for e in &nl.elements {
            let mut t = [usize::MAX; 4];
            for (slot, n) in t.iter_mut().zip(e.kind.nodes()) {
                if n == GROUND {
                    continue;
                }
                *slot = match node_index.get(n) {
                    Some(&i) => i,
                    None => {
                        node_index.insert(n.to_string(), node_names.len());
                        node_names.push(n.to_string());
                        node_names.len() - 1
                    }
                };
            }
            ids.push(t);
        }
        let n_nodes = node_names.len();
        if n_nodes == 0 {
            return Err(CircuitError::Empty);
        }
        // Branch numbering.
        let mut branch_names = Vec::new();
        let mut branch_of: FastMap<String, usize> = FastMap::default();
        for e in &nl.elements {
            if matches!(
                e.kind,
                ElementKind::VSource { .. }
                    | ElementKind::Vcvs { .. }
                    | ElementKind::Ccvs { .. }
                    | ElementKind::BVoltage { .. }
            ) {
                branch_of.insert(e.name.clone(), n_nodes + branch_names.len());
                branch_names.push(e.name.clone());
            }
        }
        let n = n_nodes + branch_names.len();
        let gnd = n;
        for t in &mut ids {
            for v in t.iter_mut().filter(|v| **v == usize::MAX) {
                *v = gnd;
            }
        }

        check_topology(nl, &ids, &node_names)?;

        // Pass 1: register pattern entries.
        let mut pairs: Vec<(usize, usize)> = (0..n_nodes).map(|i| (i, i)).collect();
        let ctrl_branch = |name: &str, vsrc: &str, span: &Span| -> Result<usize, CircuitError> {
            branch_of
                .get(vsrc)
                .copied()
                .ok_or_else(|| CircuitError::Element {
                    name: name.to_string(),
                    msg: format!("controlling source `{vsrc}` is not a voltage source"),
                    span: span.clone(),
                })
        };
        let mut tapes: Vec<Option<Tape>> = Vec::with_capacity(nl.elements.len());
        for (e, t) in nl.elements.iter().zip(&ids) {
            let mut tape = None;
            match &e.kind {
                ElementKind::Resistor { r_ohm, .. } => {
                    if *r_ohm == 0.0 || !r_ohm.is_finite() {
                        return Err(CircuitError::Element {
                            name: e.name.clone(),
                            msg: format!("resistance must be finite and non-zero, got {r_ohm}"),
                            span: e.span.clone(),
                        });
                    }
                    let (a, b) = (t[0], t[1]);
                    pairs.extend([(a, a), (b, b), (a, b), (b, a)]);
                }
                ElementKind::VSource { .. } | ElementKind::BVoltage { .. } => {
                    let (a, b, k) = (t[0], t[1], branch_of[&e.name]);
                    pairs.extend([(a, k), (b, k), (k, a), (k, b)]);
                    if let ElementKind::BVoltage { expr, .. } = &e.kind {
                        let t = compile(expr, &e.name, &e.span, &node_index, gnd, &branch_of)?;
                        for &d in &t.deps {
                            pairs.push((k, d));
                        }
                        tape = Some(t);
                    }
                }
                ElementKind::BCurrent { expr, .. } => {
                    let (a, b) = (t[0], t[1]);
                    let t = compile(expr, &e.name, &e.span, &node_index, gnd, &branch_of)?;
                    for &d in &t.deps {
                        pairs.extend([(a, d), (b, d)]);
                    }
                    tape = Some(t);
                }
                ElementKind::ISource { .. } => {}
                ElementKind::Vcvs { .. } => {
                    let k = branch_of[&e.name];
                    let (a, b, c, d) = (t[0], t[1], t[2], t[3]);
                    pairs.extend([(a, k), (b, k), (k, a), (k, b), (k, c), (k, d)]);
                }
                ElementKind::Vccs { .. } => {
                    let (a, b, c, d) = (t[0], t[1], t[2], t[3]);
                    pairs.extend([(a, c), (a, d), (b, c), (b, d)]);
                }
                ElementKind::Cccs { vsrc, .. } => {
                    let kc = ctrl_branch(&e.name, vsrc, &e.span)?;
                    let (a, b) = (t[0], t[1]);
                    pairs.extend([(a, kc), (b, kc)]);
                }
                ElementKind::Ccvs { vsrc, .. } => {
                    let kc = ctrl_branch(&e.name, vsrc, &e.span)?;
                    let k = branch_of[&e.name];
                    let (a, b) = (t[0], t[1]);
                    pairs.extend([(a, k), (b, k), (k, a), (k, b), (k, kc)]);
                }
                ElementKind::Mosfet {
                    l_m, w_m, model, ..
                } => {
                    let t = *t;
                    for r in t {
                        for c in t {
                            pairs.push((r, c));
                        }
                    }
                    if *l_m - 2.0 * model.ld_m <= 0.0 || *w_m <= 0.0 {
                        return Err(CircuitError::Element {
                            name: e.name.clone(),
                            msg: format!(
                                "non-positive channel size W={w_m} L_eff={}",
                                l_m - 2.0 * model.ld_m
                            ),
                            span: e.span.clone(),
                        });
                    }
                }
            }
            tapes.push(tape);
        }
        let pattern = Pattern::build(n, pairs);

        // Pass 2: devices with their slots.
        let sl = |r: usize, c: usize| pattern.slot(r, c);
        let mut c = Circuit {
            title: nl.title.clone(),
            node_names,
            branch_names,
            n_nodes,
            n,
            pattern: pattern.clone(),
            options: nl.options.clone(),
            res: Vec::new(),
            vsrc: Vec::new(),
            vsrc_names: Vec::new(),
            isrc: Vec::new(),
            lin_entries: Vec::new(),
            bsrc: Vec::new(),
            mos: Vec::new(),
            diag: (0..n_nodes).map(|i| sl(i, i)).collect(),
            sources: FastMap::default(),
            // moved in below, once pass 2 no longer looks nodes up
            node_index: FastMap::default(),
        };
        for ((e, tape), t) in nl.elements.iter().zip(tapes).zip(&ids) {
            match &e.kind {
                ElementKind::Resistor { r_ohm, .. } => {
                    if !(1.0 / r_ohm).is_finite() {
                        return Err(CircuitError::Element {
                            name: e.name.clone(),
                            msg: format!(
                                "resistance {r_ohm:e} Ω is too small: its conductance 1/R \
                                 overflows to infinity"
                            ),
                            span: e.span.clone(),
                        });
                    }
                    let (a, b) = (t[0], t[1]);
                    c.res.push(Res {
                        g: 1.0 / r_ohm,
                        s: [sl(a, a), sl(b, b), sl(a, b), sl(b, a)],
                    });
                }
                ElementKind::VSource { dc_v, .. } => {
                    let (a, b, k) = (t[0], t[1], branch_of[&e.name]);
                    c.sources.insert(e.name.clone(), SourceRef::V(c.vsrc.len()));
                    c.vsrc.push(Vsrc {
                        a,
                        b,
                        k,
                        v: *dc_v,
                        s: [sl(a, k), sl(b, k), sl(k, a), sl(k, b)],
                    });
                    c.vsrc_names.push(e.name.clone());
                }
                ElementKind::ISource { dc_a, .. } => {
                    c.sources.insert(e.name.clone(), SourceRef::I(c.isrc.len()));
                    c.isrc.push(Isrc {
                        a: t[0],
                        b: t[1],
                        i: *dc_a,
                    });
                }
                ElementKind::Vcvs { gain, .. } => {
                    let k = branch_of[&e.name];
                    let (a, b, cp, cn) = (t[0], t[1], t[2], t[3]);
                    c.lin_entries.extend([
                        (sl(a, k), 1.0),
                        (sl(b, k), -1.0),
                        (sl(k, a), 1.0),
                        (sl(k, b), -1.0),
                        (sl(k, cp), -gain),
                        (sl(k, cn), *gain),
                    ]);
                }
                ElementKind::Vccs { gm_siemens, .. } => {
                    let (a, b, cp, cn) = (t[0], t[1], t[2], t[3]);
                    let g = *gm_siemens;
                    c.lin_entries.extend([
                        (sl(a, cp), g),
                        (sl(a, cn), -g),
                        (sl(b, cp), -g),
                        (sl(b, cn), g),
                    ]);
                }
                ElementKind::Cccs { vsrc, gain, .. } => {
                    let kc = branch_of[vsrc];
                    let (a, b) = (t[0], t[1]);
                    c.lin_entries
                        .extend([(sl(a, kc), *gain), (sl(b, kc), -gain)]);
                }
                ElementKind::Ccvs { vsrc, r_ohm, .. } => {
                    let kc = branch_of[vsrc];
                    let k = branch_of[&e.name];
                    let (a, b) = (t[0], t[1]);
                    c.lin_entries.extend([
                        (sl(a, k), 1.0),
                        (sl(b, k), -1.0),
                        (sl(k, a), 1.0),
                        (sl(k, b), -1.0),
                        (sl(k, kc), -r_ohm),
                    ]);
                }
                ElementKind::BVoltage { .. } => {
                    let (a, b, k) = (t[0], t[1], branch_of[&e.name]);
                    let tape = tape.expect("tape compiled in pass 1");
                    let s_dep = tape
                        .deps
                        .iter()
                        .map(|&d| [sl(k, d), pattern.nnz()])
                        .collect();
                    let nd = tape.deps.len();
                    c.bsrc.push(Bsrc {
                        name: e.name.clone(),
                        span: e.span.clone(),
                        a,
                        b,
                        k: Some(k),
                        tape,
                        s_inc: [sl(a, k), sl(b, k), sl(k, a), sl(k, b)],
                        s_dep,
                        grad: vec![0.0; nd],
                    });
                }
                ElementKind::BCurrent { .. } => {
                    let (a, b) = (t[0], t[1]);
                    let tape = tape.expect("tape compiled in pass 1");
                    let s_dep = tape.deps.iter().map(|&d| [sl(a, d), sl(b, d)]).collect();
                    let nd = tape.deps.len();
                    let scratch = pattern.nnz();
                    c.bsrc.push(Bsrc {
                        name: e.name.clone(),
                        span: e.span.clone(),
                        a,
                        b,
                        k: None,
                        tape,
                        s_inc: [scratch; 4],
                        s_dep,
                        grad: vec![0.0; nd],
                    });
                }
                ElementKind::Mosfet {
                    model, w_m, l_m, ..
                } => {
                    let t = *t;
                    let mut slots = [[0; 4]; 4];
                    for (i, r) in t.iter().enumerate() {
                        for (j, col) in t.iter().enumerate() {
                            slots[i][j] = sl(*r, *col);
                        }
                    }
                    c.mos.push(Mos {
                        t,
                        dev: Mos1 {
                            model: (**model).clone(),
                            w_m: *w_m,
                            l_m: *l_m,
                        },
                        s: slots,
                        last: None,
                        vcrit: mos1::vcrit(model.is_a.max(1e-300)),
                    });
                }
            }
        }
        c.node_index = node_index;
        Ok(c)
    }

    /// True when no device is nonlinear: the matrix is factored once.
    pub fn is_linear(&self) -> bool {
        self.bsrc.is_empty() && self.mos.is_empty()
    }

    /// The nodes held by voltage sources, as (node, branch unknown, sign), when the circuit is made
    /// of resistors, independent current sources and independent voltage sources with one
    /// terminal at ground, each holding a different node; `None` for any other circuit. Such a
    /// circuit's node voltages solve a symmetric system over the other nodes
    /// ([`crate::solver::spd`]). The sign is the source's incidence at the node: +1 when the node
    /// is its positive terminal (`V(node) = v`), −1 when it is the negative one (`V(node) = −v`).
    pub fn held_nodes(&self) -> Option<Vec<(usize, usize, f64)>> {
        if !(self.is_linear() && self.lin_entries.is_empty()) {
            return None;
        }
        let gnd = self.n;
        let mut held = vec![false; self.n_nodes];
        let mut out = Vec::with_capacity(self.vsrc.len());
        for v in &self.vsrc {
            let (node, sign) = match (v.a == gnd, v.b == gnd) {
                (false, true) => (v.a, 1.0),
                (true, false) => (v.b, -1.0),
                _ => return None,
            };
            if std::mem::replace(&mut held[node], true) {
                return None;
            }
            out.push((node, v.k, sign));
        }
        Some(out)
    }

    /// Unknown index of a node name (`None` for ground or unknown names).
    pub fn node(&self, name: &str) -> Option<usize> {
        self.node_index.get(name).copied()
    }

    /// Name of unknown `i` for messages: `v(node)` or `i(branch)`.
    pub fn unknown_name(&self, i: usize) -> String {
        if i < self.n_nodes {
            format!("v({})", self.node_names[i])
        } else if i < self.n {
            format!("i({})", self.branch_names[i - self.n_nodes])
        } else {
            "ground".into()
        }
    }

    /// Look up an independent source for a sweep.
    pub fn source(&self, name: &str) -> Option<SourceRef> {
        self.sources.get(name).copied()
    }

    /// Current value of an independent source (V or A).
    pub fn source_value(&self, s: SourceRef) -> f64 {
        match s {
            SourceRef::V(i) => self.vsrc[i].v,
            SourceRef::I(i) => self.isrc[i].i,
        }
    }

    pub fn set_source_value(&mut self, s: SourceRef, value: f64) {
        match s {
            SourceRef::V(i) => self.vsrc[i].v = value,
            SourceRef::I(i) => self.isrc[i].i = value,
        }
    }

    /// Names and branch unknowns of the independent voltage sources, in netlist order.
    pub fn vsource_branches(&self) -> impl Iterator<Item = (&str, usize)> {
        self.vsrc_names
            .iter()
            .zip(self.vsrc.iter())
            .map(|(n, v)| (n.as_str(), v.k))
    }

    /// Stamp the linear, source-independent part of the matrix into `vals` (len nnz + 1, cleared).
    pub fn stamp_linear(&self, vals: &mut [f64]) {
        vals.iter_mut().for_each(|v| *v = 0.0);
        for r in &self.res {
            vals[r.s[0]] += r.g;
            vals[r.s[1]] += r.g;
            vals[r.s[2]] -= r.g;
            vals[r.s[3]] -= r.g;
        }
        for v in &self.vsrc {
            vals[v.s[0]] += 1.0;
            vals[v.s[1]] -= 1.0;
            vals[v.s[2]] += 1.0;
            vals[v.s[3]] -= 1.0;
        }
        for b in &self.bsrc {
            if b.k.is_some() {
                vals[b.s_inc[0]] += 1.0;
                vals[b.s_inc[1]] -= 1.0;
                vals[b.s_inc[2]] += 1.0;
                vals[b.s_inc[3]] -= 1.0;
            }
        }
        for &(s, v) in &self.lin_entries {
            vals[s] += v;
        }
        let scratch = vals.len() - 1;
        vals[scratch] = 0.0;
    }

    /// Right-hand side of the independent sources scaled by `scale` into `rhs` (len n + 1, cleared).
    pub fn stamp_sources(&self, rhs: &mut [f64], scale: f64) {
        rhs.iter_mut().for_each(|v| *v = 0.0);
        for v in &self.vsrc {
            rhs[v.k] += scale * v.v;
        }
        for i in &self.isrc {
            rhs[i.a] -= scale * i.i;
            rhs[i.b] += scale * i.i;
        }
        rhs[self.n] = 0.0;
    }

    /// Add `g_siemens` from every node to ground (gmin stepping).
    pub fn stamp_diag(&self, vals: &mut [f64], g_siemens: f64) {
        for &s in &self.diag {
            vals[s] += g_siemens;
        }
    }

    /// The first behavioural source whose value or derivative is not finite at `x` (a
    /// division by zero, an overflow in `exp`, …), as a located error naming the unknowns its
    /// expression reads and their values there.
    pub fn non_finite_device(&mut self, x: &[f64]) -> Option<CircuitError> {
        let names: Vec<String> = (0..self.n).map(|i| self.unknown_name(i)).collect();
        for b in &mut self.bsrc {
            b.tape.eval(x, &mut b.grad, false);
            let Some(f) = b.tape.out_of_domain else {
                continue;
            };
            let what = if f.is_finite() {
                "its derivative".to_string()
            } else {
                format!("its value ({f})")
            };
            let at: Vec<String> = b
                .tape
                .deps
                .iter()
                .map(|&d| format!("{} = {:e}", names.get(d).map_or("?", |s| s), x[d]))
                .collect();
            return Some(CircuitError::Element {
                name: b.name.clone(),
                msg: format!(
                    "{what} is not finite at the operating point being solved ({}): a division \
                     by zero, a function outside its domain (ln, sqrt of a value ≤ 0) or an \
                     overflow (exp, sinh, cosh, pow of a large argument)",
                    at.join(", ")
                ),
                span: b.span.clone(),
            });
        }
        None
    }

    /// Forget all Newton limiting history.
    pub fn reset_limiting(&mut self) {
        for b in &mut self.bsrc {
            b.tape.reset();
        }
        for m in &mut self.mos {
            m.last = None;
        }
    }

    /// Linearise the nonlinear devices at `x` (len n + 1, `x[n] = 0`) and add their companion
    /// stamps. Returns true when any device limited its step (not converged yet).
    pub fn stamp_nonlinear(
        &mut self,
        x: &[f64],
        vals: &mut [f64],
        rhs: &mut [f64],
        limit: bool,
    ) -> bool {
        let gmin = self.options.gmin_siemens;
        let mut limited = false;
        for b in &mut self.bsrc {
            let (f, lim) = b.tape.eval(x, &mut b.grad, limit);
            limited |= lim;
            let lin: f64 = f - b
                .grad
                .iter()
                .zip(&b.tape.deps)
                .map(|(g, &d)| g * x[d])
                .sum::<f64>();
            match b.k {
                Some(k) => {
                    for (s, g) in b.s_dep.iter().zip(&b.grad) {
                        vals[s[0]] -= g;
                    }
                    rhs[k] += lin;
                }
                None => {
                    for (s, g) in b.s_dep.iter().zip(&b.grad) {
                        vals[s[0]] += g;
                        vals[s[1]] -= g;
                    }
                    rhs[b.a] -= lin;
                    rhs[b.b] += lin;
                }
            }
        }
        for m in &mut self.mos {
            let mut v = [x[m.t[0]], x[m.t[1]], x[m.t[2]], x[m.t[3]]];
            let sign = if m.dev.model.nmos { 1.0 } else { -1.0 };
            let mut vgs = sign * (v[1] - v[2]);
            let mut vds = sign * (v[0] - v[2]);
            let mut vbs = sign * (v[3] - v[2]);
            if limit {
                if let Some((vgs_old, vds_old, vbs_old, von)) = m.last {
                    let (g0, d0) = (vgs, vds);
                    if vds_old >= 0.0 {
                        vgs = mos1::fetlim(vgs, vgs_old, von);
                        let vgd = g0 - d0;
                        vds = mos1::limvds(vgs - vgd, vds_old);
                    } else {
                        let vgd_old = vgs_old - vds_old;
                        let vgd = mos1::fetlim(g0 - d0, vgd_old, von);
                        vds = -mos1::limvds(-(vgs - vgd), -vds_old);
                        vgs = vgd + vds;
                    }
                    // bulk junctions: limit the forward-biased one (as mos1load does)
                    let b0 = vbs;
                    if vds >= 0.0 {
                        vbs = mos1::pnjlim(vbs, vbs_old, m.vcrit);
                    } else {
                        let vbd = mos1::pnjlim(vbs - vds, vbs_old - vds_old, m.vcrit);
                        vbs = vbd + vds;
                    }
                    if (vgs - g0).abs() > 1e-15
                        || (vds - d0).abs() > 1e-15
                        || (vbs - b0).abs() > 1e-15
                    {
                        limited = true;
                        v[1] = v[2] + sign * vgs;
                        v[0] = v[2] + sign * vds;
                        v[3] = v[2] + sign * vbs;
                    }
                }
            }
            let e = m.dev.eval(v, gmin);
            m.last = Some((vgs, vds, vbs, e.von_v));
            for k in 0..4 {
                let mut lin = e.i_a[k];
                for j in 0..4 {
                    vals[m.s[k][j]] += e.g_siemens[k][j];
                    lin -= e.g_siemens[k][j] * v[j];
                }
                rhs[m.t[k]] -= lin;
            }
        }
        let (sv, sr) = (vals.len() - 1, rhs.len() - 1);
        vals[sv] = 0.0;
        rhs[sr] = 0.0;
        limited
    }
}

fn compile(
    expr: &crate::expr::Expr,
    name: &str,
    span: &Span,
    node_index: &FastMap<String, usize>,
    gnd: usize,
    branch_of: &FastMap<String, usize>,
) -> Result<Tape, CircuitError> {
    let node = |s: &str| -> Option<usize> {
        if s == GROUND {
            Some(gnd)
        } else {
            node_index.get(s).copied()
        }
    };
    let branch = |s: &str| branch_of.get(s).copied();
    Tape::compile(expr, &node, &branch).map_err(|e: TapeError| CircuitError::Element {
        name: name.to_string(),
        msg: e.to_string(),
        span: span.clone(),
    })
}

/// DC-path and voltage-loop checks, before any factorisation.
fn check_topology(
    nl: &Netlist,
    ids: &[[usize; 4]],
    node_names: &[String],
) -> Result<(), CircuitError> {
    let n = node_names.len();
    // ground is `n` here (the union-find's extra element), whatever number `ids` gives it
    let id = |v: usize| v.min(n);
    // DC paths: conductive or voltage-defined branches connect their terminals.
    let mut dc = UnionFind::<usize>::new(n + 1);
    // Voltage loops: union of voltage-defined branches only.
    let mut vloop = UnionFind::<usize>::new(n + 1);
    for (e, t) in nl.elements.iter().zip(ids) {
        match &e.kind {
            ElementKind::Resistor { .. } | ElementKind::BCurrent { .. } => {
                dc.union(id(t[0]), id(t[1]));
            }
            ElementKind::VSource { .. } | ElementKind::BVoltage { .. } => {
                dc.union(id(t[0]), id(t[1]));
                if !vloop.union(id(t[0]), id(t[1])) {
                    return Err(CircuitError::VoltageLoop {
                        name: e.name.clone(),
                        span: e.span.clone(),
                    });
                }
            }
            ElementKind::Vcvs { .. } | ElementKind::Ccvs { .. } => {
                dc.union(id(t[0]), id(t[1]));
                if !vloop.union(id(t[0]), id(t[1])) {
                    return Err(CircuitError::VoltageLoop {
                        name: e.name.clone(),
                        span: e.span.clone(),
                    });
                }
            }
            ElementKind::Mosfet { .. } => {
                // channel and bulk junctions (with gmin) conduct; the gate does not
                dc.union(id(t[0]), id(t[2]));
                dc.union(id(t[0]), id(t[3]));
            }
            ElementKind::ISource { .. } | ElementKind::Vccs { .. } | ElementKind::Cccs { .. } => {}
        }
    }
    let g = dc.find(n);
    let floating: Vec<usize> = (0..n).filter(|&i| dc.find(i) != g).collect();
    if !floating.is_empty() {
        let names: Vec<String> = floating.iter().map(|&i| node_names[i].clone()).collect();
        let first = &names[0];
        let span = nl
            .elements
            .iter()
            .find(|e| e.kind.nodes().contains(&first.as_str()))
            .map(|e| e.span.clone())
            .unwrap_or_default();
        let mut shown: Vec<String> = names.iter().take(10).cloned().collect();
        if names.len() > 10 {
            shown.push(format!("… ({} in all)", names.len()));
        }
        return Err(CircuitError::Floating { nodes: shown, span });
    }
    Ok(())
}
