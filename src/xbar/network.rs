//! Nodal description of a crossbar under a given biasing topology: which nodes are unknowns, which
//! are held by sources, the linear wire elements, and the fixed sparse pattern of the nodal matrix
//! (registered once; values are stamped into slots).
//!
//! Zero resistances merge nodes instead of being approximated: a word line with `r_word = 0` is one
//! node, and with a zero driver resistance too it *is* the source node (likewise for bit lines).
#![allow(clippy::needless_range_loop)] // parallel arrays indexed together

use faer::sparse::SymbolicSparseColMat;

use super::array::{CellKind, Crossbar, SenseKind};
use super::XbarError;

/// A circuit node as seen by the solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// An unknown (index into the solution vector).
    Free(u32),
    /// Held by the source of row i (word-line driver).
    Row(u32),
    /// Held by the source at the bottom of column j (virtual ground or bias source).
    Col(u32),
    /// Ground (0 V).
    Ground,
}

/// How the left end of a word line is terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowEnd {
    /// Driven by a voltage source (through the driver resistance).
    Driven,
    /// Left open (floating line).
    Open,
}

/// How the bottom end of a bit line is terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColEnd {
    /// A voltage source (0 V for a virtual ground) whose current is measured.
    Driven,
    /// Left open (floating line).
    Open,
    /// The array's transimpedance amplifier.
    Tia,
}

/// The termination of every line.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub rows: Vec<RowEnd>,
    pub cols: Vec<ColEnd>,
}

impl Topology {
    /// Inference: every row driven, every column into the array's sense amplifier.
    pub fn inference(x: &Crossbar) -> Topology {
        Topology {
            rows: vec![RowEnd::Driven; x.rows],
            cols: vec![
                match x.sense {
                    SenseKind::VirtualGround => ColEnd::Driven,
                    SenseKind::Tia { .. } => ColEnd::Tia,
                };
                x.cols
            ],
        }
    }
}

/// A linear two-terminal conductance between two nodes.
#[derive(Debug, Clone, Copy)]
pub struct Conductance {
    pub a: Node,
    pub b: Node,
    pub g_siemens: f64,
}

/// The nodal structure of an array under a topology.
#[derive(Debug, Clone)]
pub struct Network {
    pub rows: usize,
    pub cols: usize,
    /// Number of unknowns.
    pub n_free: usize,
    /// Word-line node of cell (i, j), row-major.
    pub w: Vec<Node>,
    /// Bit-line node of cell (i, j), row-major.
    pub b: Vec<Node>,
    /// Wire segments and end connections (not the cells).
    pub wires: Vec<Conductance>,
    /// Transimpedance amplifiers: (column, sense node index).
    pub tia: Vec<(usize, u32)>,
    /// True when every word- and bit-line node is its own unknown, numbered `i·C + j` (word) and
    /// `R·C + i·C + j` (bit), TIA sense nodes after them: the line structure the ordering and the
    /// iterative solver exploit.
    pub structured: bool,
    /// Full (both triangles) symmetric pattern of the nodal matrix, sorted row indices.
    pub pattern: SymbolicSparseColMat<u32>,
}

impl Network {
    pub fn new(x: &Crossbar, topo: &Topology) -> Result<Network, XbarError> {
        x.validate()?;
        if topo.rows.len() != x.rows || topo.cols.len() != x.cols {
            return Err(XbarError::Invalid(format!(
                "topology is {}×{} but the array is {}×{}",
                topo.rows.len(),
                topo.cols.len(),
                x.rows,
                x.cols
            )));
        }
        if topo.cols.contains(&ColEnd::Tia) && !matches!(x.sense, SenseKind::Tia { .. }) {
            return Err(XbarError::Invalid(
                "topology asks for a transimpedance amplifier the array does not have".into(),
            ));
        }
        let (r, c) = (x.rows, x.cols);
        if 2 * r * c + c >= u32::MAX as usize / 2 {
            return Err(XbarError::Invalid(format!("array {r}×{c} is too large")));
        }
        let mut n_free: u32 = 0;
        let mut fresh = || {
            let k = n_free;
            n_free += 1;
            Node::Free(k)
        };
        let mut w = Vec::with_capacity(r * c);
        // (sized up front: regrowing large arrays costs copies and fresh pages)
        let mut wires = Vec::with_capacity(2 * r * c + r + c);
        let series = |a: f64, b: f64| a + b;
        // Word lines.
        for i in 0..r {
            let driven = topo.rows[i] == RowEnd::Driven;
            if x.r_word_ohm > 0.0 {
                for _ in 0..c {
                    w.push(fresh());
                }
                let base = i * c;
                if driven {
                    wires.push(Conductance {
                        a: Node::Row(i as u32),
                        b: w[base],
                        g_siemens: 1.0 / series(x.r_driver_ohm, x.r_word_ohm),
                    });
                }
                for j in 1..c {
                    wires.push(Conductance {
                        a: w[base + j - 1],
                        b: w[base + j],
                        g_siemens: 1.0 / x.r_word_ohm,
                    });
                }
            } else {
                let node = if driven && x.r_driver_ohm == 0.0 {
                    Node::Row(i as u32)
                } else {
                    let n = fresh();
                    if driven {
                        wires.push(Conductance {
                            a: Node::Row(i as u32),
                            b: n,
                            g_siemens: 1.0 / x.r_driver_ohm,
                        });
                    }
                    n
                };
                w.extend(std::iter::repeat_n(node, c));
            }
        }
        // Bit lines: allocate row-major when every node is separate (structured numbering).
        let mut b = vec![Node::Ground; r * c];
        let mut bottom_end: Vec<Option<Node>> = vec![None; c];
        let mut tia = Vec::new();
        if x.r_bit_ohm > 0.0 {
            for slot in b.iter_mut() {
                *slot = fresh();
            }
            for j in 0..c {
                for i in 1..r {
                    wires.push(Conductance {
                        a: b[(i - 1) * c + j],
                        b: b[i * c + j],
                        g_siemens: 1.0 / x.r_bit_ohm,
                    });
                }
            }
        }
        for (j, end) in topo.cols.iter().enumerate() {
            let end_node = match end {
                ColEnd::Driven => Some(Node::Col(j as u32)),
                ColEnd::Open => None,
                ColEnd::Tia => None, // allocated below, after all line nodes
            };
            bottom_end[j] = end_node;
        }
        // TIA sense nodes come after all line nodes.
        let mut tia_node: Vec<Option<Node>> = vec![None; c];
        let r_end = series(x.r_bit_ohm, x.r_sense_ohm);
        if x.r_bit_ohm > 0.0 || x.r_sense_ohm > 0.0 {
            // The sense end is a distinct node from the line.
            if x.r_bit_ohm == 0.0 {
                // Merged bit lines are free nodes.
                for j in 0..c {
                    let n = fresh();
                    for i in 0..r {
                        b[i * c + j] = n;
                    }
                }
            }
            for (j, end) in topo.cols.iter().enumerate() {
                if *end == ColEnd::Tia {
                    let n = fresh();
                    tia_node[j] = Some(n);
                }
            }
            for j in 0..c {
                let end = bottom_end[j].or(tia_node[j]);
                if let Some(e) = end {
                    wires.push(Conductance {
                        a: b[(r - 1) * c + j],
                        b: e,
                        g_siemens: 1.0 / r_end,
                    });
                }
            }
        } else {
            // r_bit = r_sense = 0: the merged bit line is the end node itself.
            for (j, end) in topo.cols.iter().enumerate() {
                let n = match end {
                    ColEnd::Driven => Node::Col(j as u32),
                    ColEnd::Open => fresh(),
                    ColEnd::Tia => {
                        let n = fresh();
                        tia_node[j] = Some(n);
                        n
                    }
                };
                for i in 0..r {
                    b[i * c + j] = n;
                }
            }
        }
        for (j, n) in tia_node.iter().enumerate() {
            if let Some(Node::Free(k)) = n {
                tia.push((j, *k));
            }
        }
        let structured = x.r_word_ohm > 0.0 && x.r_bit_ohm > 0.0;
        let n_free = n_free as usize;
        let pattern = build_pattern(n_free, &w, &b, &wires)?;
        Ok(Network {
            rows: r,
            cols: c,
            n_free,
            w,
            b,
            wires,
            tia,
            structured,
            pattern,
        })
    }

    /// Position of entry (row, col) in the values array.
    #[inline]
    pub fn slot(&self, row: u32, col: u32) -> usize {
        let cp = self.pattern.col_ptr();
        let lo = cp[col as usize] as usize;
        let hi = cp[col as usize + 1] as usize;
        let ri = &self.pattern.row_idx()[lo..hi];
        // line nodes hold a handful of entries: a scan beats a binary search there
        let at = if ri.len() <= 8 {
            ri.iter().position(|&q| q == row)
        } else {
            ri.binary_search(&row).ok()
        };
        match at {
            Some(k) => lo + k,
            None => unreachable!("entry ({row}, {col}) is not in the pattern"),
        }
    }

    /// Stamp a conductance `g` between nodes a and b into `values` (known nodes are skipped).
    #[inline]
    pub fn stamp_g(&self, values: &mut [f64], a: Node, b: Node, g: f64) {
        match (a, b) {
            (Node::Free(p), Node::Free(q)) => {
                values[self.slot(p, p)] += g;
                values[self.slot(q, q)] += g;
                values[self.slot(p, q)] -= g;
                values[self.slot(q, p)] -= g;
            }
            (Node::Free(p), _) | (_, Node::Free(p)) => values[self.slot(p, p)] += g,
            _ => {}
        }
    }

    /// Voltage of a node given the unknowns and the source values.
    #[inline]
    pub fn voltage(node: Node, x: &[f64], v_row: &[f64], v_col: &[f64]) -> f64 {
        match node {
            Node::Free(k) => x[k as usize],
            Node::Row(i) => v_row[i as usize],
            Node::Col(j) => v_col[j as usize],
            Node::Ground => 0.0,
        }
    }

    /// Every (unknown, source node) pair joined by a wire or a cell: where a row driver or a
    /// column's bottom source meets the unknowns (repeats possible, in wire then cell order).
    pub fn source_couplings(&self) -> impl Iterator<Item = (u32, Node)> + '_ {
        let ends = self.wires.iter().map(|e| (e.a, e.b));
        ends.chain(self.w.iter().copied().zip(self.b.iter().copied()))
            .filter_map(|pair| match pair {
                (Node::Free(p), k @ (Node::Row(_) | Node::Col(_)))
                | (k @ (Node::Row(_) | Node::Col(_)), Node::Free(p)) => Some((p, k)),
                _ => None,
            })
    }

    /// The unknowns tied to a source (see [`Self::source_couplings`]), sorted: where the inputs
    /// enter and the virtual-ground outputs are read.
    pub fn source_coupled(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self.source_couplings().map(|(p, _)| p).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// A fill-reducing ordering: geometric nested dissection for the structured numbering
    /// (`None` otherwise: use AMD).
    pub fn nested_dissection(&self) -> Option<(Vec<u32>, Vec<u32>)> {
        if !self.structured {
            return None;
        }
        let (r, c) = (self.rows, self.cols);
        let mut tia_of_col = vec![None; c];
        for &(j, k) in &self.tia {
            tia_of_col[j] = Some(k);
        }
        let mut fwd: Vec<u32> = Vec::with_capacity(self.n_free);
        let nd = NdCtx {
            r,
            c,
            tia_of_col: &tia_of_col,
        };
        nd.recurse(0, r, 0, c, &mut fwd);
        // Any node not placed (should not happen) → fall back to AMD.
        if fwd.len() != self.n_free {
            return None;
        }
        let mut inv = vec![u32::MAX; self.n_free];
        for (pos, &node) in fwd.iter().enumerate() {
            if inv[node as usize] != u32::MAX {
                return None;
            }
            inv[node as usize] = pos as u32;
        }
        Some((fwd, inv))
    }
}

struct NdCtx<'a> {
    r: usize,
    c: usize,
    tia_of_col: &'a [Option<u32>],
}

impl NdCtx<'_> {
    fn w(&self, i: usize, j: usize) -> u32 {
        (i * self.c + j) as u32
    }
    fn b(&self, i: usize, j: usize) -> u32 {
        (self.r * self.c + i * self.c + j) as u32
    }
    /// Bit-line chain of column j over rows i0..i1, plus the TIA node when it reaches the bottom.
    fn push_b_col(&self, i0: usize, i1: usize, j: usize, out: &mut Vec<u32>) {
        for i in i0..i1 {
            out.push(self.b(i, j));
        }
        if i1 == self.r {
            if let Some(k) = self.tia_of_col[j] {
                out.push(k);
            }
        }
    }
    fn recurse(&self, r0: usize, r1: usize, c0: usize, c1: usize, out: &mut Vec<u32>) {
        let (h, w) = (r1 - r0, c1 - c0);
        if w == 0 {
            return;
        }
        if h * w <= 16 {
            for i in r0..r1 {
                for j in c0..c1 {
                    out.push(self.w(i, j));
                }
            }
            for j in c0..c1 {
                self.push_b_col(r0, r1, j, out);
            }
            return;
        }
        if w >= h {
            // Vertical separator: the word-line nodes of column jm; the bit chain of column jm is
            // then an isolated path.
            let jm = c0 + w / 2;
            self.recurse(r0, r1, c0, jm, out);
            self.recurse(r0, r1, jm + 1, c1, out);
            self.push_b_col(r0, r1, jm, out);
            for i in r0..r1 {
                out.push(self.w(i, jm));
            }
        } else {
            // Horizontal separator: the bit-line nodes of row im; the word chain of row im is isolated.
            let im = r0 + h / 2;
            self.recurse(r0, im, c0, c1, out);
            self.recurse(im + 1, r1, c0, c1, out);
            for j in c0..c1 {
                out.push(self.w(im, j));
            }
            for j in c0..c1 {
                out.push(self.b(im, j));
            }
        }
    }
}

/// Build the full symmetric CSC pattern: every diagonal plus the couplings of wires and cells.
fn build_pattern(
    n: usize,
    w: &[Node],
    b: &[Node],
    wires: &[Conductance],
) -> Result<SymbolicSparseColMat<u32>, XbarError> {
    let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(wires.len() + w.len());
    let mut push = |a: Node, bb: Node| {
        if let (Node::Free(p), Node::Free(q)) = (a, bb) {
            if p != q {
                pairs.push((p, q));
            }
        }
    };
    for e in wires {
        push(e.a, e.b);
    }
    for (a, bb) in w.iter().zip(b) {
        push(*a, *bb);
    }
    // Column counts: diagonal + both directions.
    let mut count = vec![1u32; n + 1];
    for &(p, q) in &pairs {
        count[p as usize] += 1;
        count[q as usize] += 1;
    }
    let mut col_ptr = vec![0u32; n + 1];
    let mut acc = 0u64;
    for k in 0..n {
        col_ptr[k] = acc as u32;
        acc += count[k] as u64;
    }
    col_ptr[n] = acc as u32;
    if acc >= u32::MAX as u64 {
        return Err(XbarError::Invalid("nodal matrix too large".into()));
    }
    let mut fill = col_ptr.clone();
    let mut row_idx = vec![0u32; acc as usize];
    for k in 0..n {
        row_idx[fill[k] as usize] = k as u32;
        fill[k] += 1;
    }
    for &(p, q) in &pairs {
        row_idx[fill[q as usize] as usize] = p;
        fill[q as usize] += 1;
        row_idx[fill[p as usize] as usize] = q;
        fill[p as usize] += 1;
    }
    drop(pairs);
    let out_ptr: Vec<u32> =
        crate::circuit::sort_dedup_columns(n, |k| col_ptr[k] as usize, &mut row_idx)
            .into_iter()
            .map(|p| p as u32) // ≤ the bucketed length, checked above to fit u32
            .collect();
    Ok(SymbolicSparseColMat::new_checked(
        n, n, out_ptr, None, row_idx,
    ))
}

/// Cell conductances of the linear stand-in used to start Newton (and the exact ones for linear
/// cells): `g` for linear and sinh cells; for 1T1R the series combination of the memristor with the
/// transistor's channel conductance at zero drain–source bias.
pub fn linearized_cell_g(x: &Crossbar, gmin: f64) -> Vec<f64> {
    match &x.cell {
        CellKind::Linear | CellKind::Sinh { .. } => x.g_siemens.clone(),
        CellKind::OneT1R { mos, v_gate_v } => {
            let mut out = Vec::with_capacity(x.g_siemens.len());
            for i in 0..x.rows {
                let e = mos.eval([0.0, v_gate_v[i], 0.0, 0.0], gmin);
                let gch = e.g_siemens[0][0].max(gmin).max(1e-15);
                for j in 0..x.cols {
                    let g = x.g(i, j);
                    out.push(g * gch / (g + gch));
                }
            }
            out
        }
    }
}
