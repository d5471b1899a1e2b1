//! The one writer from a structured array ([`Crossbar`]) to a netlist in netc's SPICE dialect
//! (which ngspice runs): `netc xbar --emit`, `netc compile` (single arrays and whole networks) and
//! the tests all go through [`write_array`]. Cells are R (linear), B `I=g*sinh(k*V(a,b))/k`
//! (sinh) or R + level-1 NMOS (1T1R); op-amps are B `V=vsat*tanh(…)` sources.
//!
//! Node naming (docs/crossbar.md, "Node names"); every name below carries the array's prefix `p`
//! (empty for a single array, `a<k>_` for array k of a whole network):
//!
//! | node | meaning |
//! |---|---|
//! | `p in_i` | row i's source node (independent source or buffer of a neuron output) |
//! | `p d_i` | between the driver resistance and the first word-line segment |
//! | `p w_i_j` | word-line node of cell (i, j) (`p w_i` when the line has no resistance) |
//! | `p b_i_j` | bit-line node of cell (i, j) (`p b_j` when the line has no resistance) |
//! | `p t_j` | between the last bit-line segment and the sense resistance |
//! | `p s_j` | column end: the `+` node of the sense source `vs_p j` |
//! | `p n_j`, `p o_j` | transimpedance amplifier input and output |
//! | `p m_i_j` | 1T1R internal node (memristor → drain) |
//! | `p g_i` | gate line of row i |
//!
//! A zero-resistance line is merged into the node it touches: word line i is `p in_i` when its
//! driver resistance is zero too, bit line j is `p s_j` when its sense resistance is zero too
//! (consistent with the solver's node merging in [`super::network`]). Elements: `vin_p i` (row
//! source), `bbuf_p i` / `binv_p i` (row buffers), `rdrv_p i`, `rw_p i_j`, `rb_p i_j`, `rsen_p j`,
//! `vs_p j` (the current of `vs_p j`, positive from `s_j` through the source, is the column
//! current, with virtual-ground and amplifier sensing alike), `rf_p j`, `bamp_p j`, `vg_p i`,
//! `rc_p i_j`, `bc_p i_j`, `mc_p i_j`.
#![allow(clippy::needless_range_loop)] // parallel arrays indexed together

use std::fmt::Write;

use super::array::{CellKind, Crossbar, SenseKind};
use super::network::{ColEnd, RowEnd, Topology};
use super::XbarError;
use crate::expr::{BinOp, Expr, Func};
use crate::netlist::{Analysis, Element, ElementKind, MosModel, Netlist, SimOptions};
use crate::span::Span;

/// Shortest round-trip formatting of a number for SPICE.
/// The `.model` card of a level-1 MOSFET under `name`, every parameter written out: the one
/// writer of transistor cards (array netlists and programming bias circuits).
pub fn model_card(name: &str, m: &MosModel) -> String {
    format!(
        ".model {} {} (level=1 vto={} kp={} lambda={} gamma={} phi={} is={} ld={})",
        name,
        if m.nmos { "nmos" } else { "pmos" },
        num(m.vto_v),
        num(m.kp_a_per_v2),
        num(m.lambda_per_v),
        num(m.gamma_sqrt_v),
        num(m.phi_v),
        num(m.is_a),
        num(m.ld_m)
    )
}

pub fn num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        format!("{x:e}")
    }
}

/// What drives a row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowDrive {
    /// An independent source of this DC voltage.
    Volts(f64),
    /// An existing node (e.g. a neuron output), through a unit buffer.
    Node(String),
    /// The negative of an existing node (through an inverting buffer).
    NegNode(String),
}

/// A circuit being built: elements plus comment lines to print before some of them.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub netlist: Netlist,
    /// `(element index, comment)`: the comment is written before that element.
    pub comments: Vec<(usize, String)>,
    /// Dot lines written after the title and the leading comments (e.g. `.options …`).
    pub directives: Vec<String>,
    /// `.model` cards used by the elements.
    pub models: Vec<MosModel>,
    /// Comment lines written after the elements.
    pub trailer: Vec<String>,
}

fn ev(a: &str) -> Expr {
    Expr::V(a.to_string(), None)
}

fn n(x: f64) -> Expr {
    Expr::Num(x)
}

fn mul(a: Expr, b: Expr) -> Expr {
    Expr::bin(BinOp::Mul, a, b)
}

fn div(a: Expr, b: Expr) -> Expr {
    Expr::bin(BinOp::Div, a, b)
}

/// `vsat·tanh(a·x/vsat)`.
pub fn sat(vsat: f64, a: f64, x: Expr) -> Expr {
    mul(
        n(vsat),
        Expr::Call(Func::Tanh, vec![div(mul(n(a), x), n(vsat))]),
    )
}

impl Emitted {
    /// An empty circuit with one `.op` analysis.
    pub fn new(title: String) -> Emitted {
        Emitted {
            netlist: Netlist {
                title,
                elements: vec![],
                analyses: vec![Analysis::Op {
                    span: Span::default(),
                }],
                options: SimOptions::default(),
                warnings: vec![],
            },
            comments: vec![],
            directives: vec![],
            models: vec![],
            trailer: vec![],
        }
    }

    /// A comment written before the next element.
    pub fn comment(&mut self, c: impl Into<String>) {
        self.comments.push((self.netlist.elements.len(), c.into()));
    }

    pub fn push(&mut self, name: String, kind: ElementKind) {
        self.netlist.elements.push(Element {
            name,
            kind,
            span: Span::default(),
        });
    }

    pub fn r(&mut self, name: String, a: &str, b: &str, r_ohm: f64) {
        self.push(
            name,
            ElementKind::Resistor {
                n: [a.into(), b.into()],
                r_ohm,
            },
        );
    }

    pub fn v(&mut self, name: String, a: &str, b: &str, dc_v: f64) {
        self.push(
            name,
            ElementKind::VSource {
                n: [a.into(), b.into()],
                dc_v,
            },
        );
    }

    pub fn bv(&mut self, name: String, a: &str, b: &str, expr: Expr) {
        self.push(
            name,
            ElementKind::BVoltage {
                n: [a.into(), b.into()],
                expr,
            },
        );
    }

    /// Add a `.model` card unless one of that name is there already.
    pub fn model(&mut self, m: &MosModel) {
        if !self.models.iter().any(|x| x.name == m.name) {
            self.models.push(m.clone());
        }
    }

    /// The netlist text in netc's dialect (ngspice runs it).
    pub fn to_spice(&self) -> String {
        let mut out = String::with_capacity(64 + 48 * self.netlist.elements.len());
        let _ = writeln!(out, "{}", self.netlist.title.replace(['\n', '\r'], " "));
        let mut ci = 0;
        while ci < self.comments.len() && self.comments[ci].0 == 0 {
            let _ = writeln!(out, "* {}", self.comments[ci].1);
            ci += 1;
        }
        for d in &self.directives {
            let _ = writeln!(out, "{d}");
        }
        for m in &self.models {
            let _ = writeln!(out, "{}", model_card(&m.name, m));
        }
        for (k, e) in self.netlist.elements.iter().enumerate() {
            while ci < self.comments.len() && self.comments[ci].0 == k {
                let _ = writeln!(out, "* {}", self.comments[ci].1);
                ci += 1;
            }
            let _ = writeln!(out, "{}", element_line(e));
        }
        for (_, c) in &self.comments[ci..] {
            let _ = writeln!(out, "* {c}");
        }
        for c in &self.trailer {
            let _ = writeln!(out, "* {c}");
        }
        let _ = writeln!(out, ".op");
        let _ = writeln!(out, ".end");
        out
    }
}

/// One element card.
pub fn element_line(e: &Element) -> String {
    let name = &e.name;
    match &e.kind {
        ElementKind::Resistor { n, r_ohm } => format!("{name} {} {} {}", n[0], n[1], num(*r_ohm)),
        ElementKind::VSource { n, dc_v } => format!("{name} {} {} DC {}", n[0], n[1], num(*dc_v)),
        ElementKind::ISource { n, dc_a } => format!("{name} {} {} DC {}", n[0], n[1], num(*dc_a)),
        ElementKind::BVoltage { n, expr } => format!("{name} {} {} V={expr}", n[0], n[1]),
        ElementKind::BCurrent { n, expr } => format!("{name} {} {} I={expr}", n[0], n[1]),
        ElementKind::Mosfet {
            d,
            g,
            s,
            b,
            model,
            w_m,
            l_m,
        } => format!(
            "{name} {d} {g} {s} {b} {} W={} L={}",
            model.name,
            num(*w_m),
            num(*l_m)
        ),
        ElementKind::Vcvs { out, ctrl, gain } => {
            format!(
                "{name} {} {} {} {} {}",
                out[0],
                out[1],
                ctrl[0],
                ctrl[1],
                num(*gain)
            )
        }
        ElementKind::Vccs {
            out,
            ctrl,
            gm_siemens,
        } => format!(
            "{name} {} {} {} {} {}",
            out[0],
            out[1],
            ctrl[0],
            ctrl[1],
            num(*gm_siemens)
        ),
        ElementKind::Cccs { out, vsrc, gain } => {
            format!("{name} {} {} {vsrc} {}", out[0], out[1], num(*gain))
        }
        ElementKind::Ccvs { out, vsrc, r_ohm } => {
            format!("{name} {} {} {vsrc} {}", out[0], out[1], num(*r_ohm))
        }
    }
}

/// The node names of one array in a netlist (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct NodeNames<'a> {
    pub prefix: &'a str,
    pub xb: &'a Crossbar,
    pub topo: &'a Topology,
}

impl NodeNames<'_> {
    /// Word-line node of cell (i, j).
    pub fn word(&self, i: usize, j: usize) -> String {
        let p = self.prefix;
        if self.xb.r_word_ohm > 0.0 {
            format!("{p}w_{i}_{j}")
        } else if self.topo.rows[i] == RowEnd::Driven && self.xb.r_driver_ohm == 0.0 {
            format!("{p}in_{i}")
        } else {
            format!("{p}w_{i}")
        }
    }

    /// Bit-line node of cell (i, j).
    pub fn bit(&self, i: usize, j: usize) -> String {
        let p = self.prefix;
        if self.xb.r_bit_ohm > 0.0 {
            format!("{p}b_{i}_{j}")
        } else if self.xb.r_sense_ohm == 0.0 && self.topo.cols[j] != ColEnd::Open {
            format!("{p}s_{j}")
        } else {
            format!("{p}b_{j}")
        }
    }

    /// Row i's source node.
    pub fn input(&self, i: usize) -> String {
        format!("{}in_{i}", self.prefix)
    }

    /// Column j's end (the `+` node of its sense source).
    pub fn sense(&self, j: usize) -> String {
        format!("{}s_{j}", self.prefix)
    }

    /// Column j's amplifier output.
    pub fn amp_out(&self, j: usize) -> String {
        format!("{}o_{j}", self.prefix)
    }

    /// Name of column j's sense source (its current is the column current).
    pub fn sense_source(&self, j: usize) -> String {
        format!("vs_{}{j}", self.prefix)
    }
}

/// Name of word-line node (i, j) of a single-array netlist.
pub fn word_node(xb: &Crossbar, topo: &Topology, i: usize, j: usize) -> String {
    NodeNames {
        prefix: "",
        xb,
        topo,
    }
    .word(i, j)
}

/// Name of bit-line node (i, j) of a single-array netlist.
pub fn bit_node(xb: &Crossbar, topo: &Topology, i: usize, j: usize) -> String {
    NodeNames {
        prefix: "",
        xb,
        topo,
    }
    .bit(i, j)
}

/// What [`write_array`] wrote for the columns: per column, the sense source (absent for open
/// columns) and the amplifier output node (with amplifier sensing).
#[derive(Debug, Clone, Default)]
pub struct ArrayPorts {
    pub sense_sources: Vec<Option<String>>,
    pub amp_outputs: Vec<Option<String>>,
}

/// Add array `xb` under `topo` to `out`, its nodes and elements named with `prefix`: rows driven
/// by `rows` (ignored for open rows), driven columns held at `v_col` (amplifier columns at their
/// virtual ground). The one way a structured array becomes netlist elements.
pub fn write_array(
    out: &mut Emitted,
    prefix: &str,
    xb: &Crossbar,
    topo: &Topology,
    rows: &[RowDrive],
    v_col: &[f64],
) -> Result<ArrayPorts, XbarError> {
    xb.validate()?;
    let (r, c) = (xb.rows, xb.cols);
    if topo.rows.len() != r || topo.cols.len() != c {
        return Err(XbarError::Invalid(format!(
            "topology is {}×{} but the array is {r}×{c}",
            topo.rows.len(),
            topo.cols.len()
        )));
    }
    if rows.len() != r || v_col.len() != c {
        return Err(XbarError::Invalid(format!(
            "{} row drives and {} column voltages for a {r}×{c} array",
            rows.len(),
            v_col.len()
        )));
    }
    let tia = match xb.sense {
        SenseKind::Tia {
            gain,
            r_f_ohm,
            vsat_v,
        } => Some((gain, r_f_ohm, vsat_v)),
        SenseKind::VirtualGround => None,
    };
    if tia.is_none() && topo.cols.contains(&ColEnd::Tia) {
        return Err(XbarError::Invalid(
            "topology asks for a transimpedance amplifier the array does not have".into(),
        ));
    }
    let nm = NodeNames { prefix, xb, topo };
    let p = prefix;
    out.comment(format!(
        "array {p}: {r}x{c} cell={} r_word={} r_bit={} r_driver={} r_sense={}",
        xb.cell.name(),
        num(xb.r_word_ohm),
        num(xb.r_bit_ohm),
        num(xb.r_driver_ohm),
        num(xb.r_sense_ohm)
    ));
    out.comment("row drivers and word-line segments");
    for i in 0..r {
        if topo.rows[i] == RowEnd::Driven {
            let src = nm.input(i);
            match &rows[i] {
                RowDrive::Volts(v) => out.v(format!("vin_{p}{i}"), &src, "0", *v),
                RowDrive::Node(node) => out.bv(format!("bbuf_{p}{i}"), &src, "0", ev(node)),
                RowDrive::NegNode(node) => out.bv(
                    format!("binv_{p}{i}"),
                    &src,
                    "0",
                    Expr::Neg(Box::new(ev(node))),
                ),
            }
            let first = nm.word(i, 0);
            match (xb.r_word_ohm > 0.0, xb.r_driver_ohm > 0.0) {
                (true, true) => {
                    let d = format!("{p}d_{i}");
                    out.r(format!("rdrv_{p}{i}"), &src, &d, xb.r_driver_ohm);
                    out.r(format!("rw_{p}{i}_0"), &d, &first, xb.r_word_ohm);
                }
                (true, false) => out.r(format!("rw_{p}{i}_0"), &src, &first, xb.r_word_ohm),
                (false, true) => out.r(format!("rdrv_{p}{i}"), &src, &first, xb.r_driver_ohm),
                (false, false) => {} // the merged line is in_i itself
            }
        }
        if xb.r_word_ohm > 0.0 {
            for j in 1..c {
                out.r(
                    format!("rw_{p}{i}_{j}"),
                    &nm.word(i, j - 1),
                    &nm.word(i, j),
                    xb.r_word_ohm,
                );
            }
        }
    }
    out.comment("bit-line segments and column ends");
    let mut ports = ArrayPorts {
        sense_sources: vec![None; c],
        amp_outputs: vec![None; c],
    };
    for j in 0..c {
        if xb.r_bit_ohm > 0.0 {
            for i in 1..r {
                out.r(
                    format!("rb_{p}{i}_{j}"),
                    &nm.bit(i - 1, j),
                    &nm.bit(i, j),
                    xb.r_bit_ohm,
                );
            }
        }
        if topo.cols[j] == ColEnd::Open {
            continue;
        }
        let last = nm.bit(r - 1, j);
        let end = nm.sense(j);
        match (xb.r_bit_ohm > 0.0, xb.r_sense_ohm > 0.0) {
            (true, true) => {
                let t = format!("{p}t_{j}");
                out.r(format!("rb_{p}{r}_{j}"), &last, &t, xb.r_bit_ohm);
                out.r(format!("rsen_{p}{j}"), &t, &end, xb.r_sense_ohm);
            }
            (true, false) => out.r(format!("rb_{p}{r}_{j}"), &last, &end, xb.r_bit_ohm),
            (false, true) => out.r(format!("rsen_{p}{j}"), &last, &end, xb.r_sense_ohm),
            (false, false) => {} // the merged line is s_j itself
        }
        let vs = nm.sense_source(j);
        match (topo.cols[j], tia) {
            (ColEnd::Tia, Some((gain, r_f_ohm, vsat_v))) => {
                let (amp_in, o) = (format!("{p}n_{j}"), nm.amp_out(j));
                out.v(vs.clone(), &end, &amp_in, 0.0);
                out.r(format!("rf_{p}{j}"), &amp_in, &o, r_f_ohm);
                let x = Expr::bin(BinOp::Sub, n(0.0), ev(&amp_in));
                out.bv(format!("bamp_{p}{j}"), &o, "0", sat(vsat_v, gain, x));
                ports.amp_outputs[j] = Some(o);
            }
            _ => out.v(vs.clone(), &end, "0", v_col[j]),
        }
        ports.sense_sources[j] = Some(vs);
    }
    if let CellKind::OneT1R { v_gate_v, mos } = &xb.cell {
        out.model(&mos.model);
        out.comment("gate lines");
        for (i, vg) in v_gate_v.iter().enumerate() {
            out.v(format!("vg_{p}{i}"), &format!("{p}g_{i}"), "0", *vg);
        }
    }
    out.comment("cells");
    for i in 0..r {
        for j in 0..c {
            let (wn, bn) = (nm.word(i, j), nm.bit(i, j));
            let g = xb.g(i, j);
            match &xb.cell {
                CellKind::Linear => {
                    // a zero conductance is no element at all
                    if g > 0.0 {
                        out.r(format!("rc_{p}{i}_{j}"), &wn, &bn, 1.0 / g);
                    }
                }
                CellKind::Sinh { k_per_v } => {
                    if g > 0.0 {
                        let vab = Expr::V(wn.clone(), Some(bn.clone()));
                        let expr = div(
                            mul(n(g), Expr::Call(Func::Sinh, vec![mul(n(*k_per_v), vab)])),
                            n(*k_per_v),
                        );
                        out.push(
                            format!("bc_{p}{i}_{j}"),
                            ElementKind::BCurrent { n: [wn, bn], expr },
                        );
                    }
                }
                CellKind::OneT1R { mos, .. } => {
                    let m = format!("{p}m_{i}_{j}");
                    out.r(format!("rc_{p}{i}_{j}"), &wn, &m, 1.0 / g);
                    out.push(
                        format!("mc_{p}{i}_{j}"),
                        ElementKind::Mosfet {
                            d: m,
                            g: format!("{p}g_{i}"),
                            s: bn,
                            b: "0".into(),
                            model: Box::new(mos.model.clone()),
                            w_m: mos.w_m,
                            l_m: mos.l_m,
                        },
                    );
                }
            }
        }
    }
    Ok(ports)
}

/// The netlist of `xb` alone under `topo` with row sources `v_row` and column sources `v_col`,
/// with tight tolerances so that ngspice's answer can be compared to 1e-9.
pub fn emit_with(
    xb: &Crossbar,
    topo: &Topology,
    v_row: &[f64],
    v_col: &[f64],
) -> Result<String, XbarError> {
    let mut out = Emitted::new(format!(
        "netc crossbar {}x{} cell={}",
        xb.rows,
        xb.cols,
        xb.cell.name()
    ));
    out.directives
        .push(".options reltol=1e-9 vntol=1e-12 abstol=1e-15".into());
    let rows: Vec<RowDrive> = v_row.iter().map(|&v| RowDrive::Volts(v)).collect();
    write_array(&mut out, "", xb, topo, &rows, v_col)?;
    Ok(out.to_spice())
}

impl Crossbar {
    /// The inference circuit for input vector `v_in` (every row driven, every column into its
    /// sense amplifier) as a netlist.
    pub fn emit(&self, v_in: &[f64]) -> Result<String, XbarError> {
        let topo = Topology::inference(self);
        let v_col = vec![0.0; self.cols];
        emit_with(self, &topo, v_in, &v_col)
    }
}
