//! SPICE netlists of programmed arrays, in the dialect and crossbar conventions of DESIGN.md.
//!
//! Nodes of array cell `(i, j)` (prefix `p`, empty for single-array netlists, `a<k>_` in whole
//! network netlists): word-line node `p r<i>_<j>`, bit-line node `p c<i>_<j>`; driver node
//! `p d<i>` (the input source, or `p v<i>` behind a driver resistance); sense node `p s<j>` below
//! the last bit-line segment, then (sense resistance) `p q<j>`, then the 0 V source
//! `vsense_<p><j>` whose current (positive into ground) is the column output. With `sense opamp` the
//! 0 V source ends on the inverting input `p n<j>` of a transimpedance amplifier
//! `V(p o<j>) = vsat·tanh(gain·(V(0) − V(n<j>))/vsat)` with `r_feedback` from `n<j>` to `o<j>`.
//! Wire segments: driver → cell (i, 0), between consecutive cells of each line, and cell (R−1, j)
//! → sense; the far ends are open. With zero wire resistance the nodes of a line are merged
//! (`p d<i>` and `p s<j>`). Cells: `R` (linear), `B … I=g*sinh(k*V(a,b))/k` (nonlinear), for 1T1R
//! in series with a level-1 NMOS (drain `p m<i>_<j>`, gate line `p g<i>`, source on the bit line).

use super::lower::Lowering;
use super::weights::{ArrayConductances, Programmed};
use super::MappingError;
use crate::expr::{BinOp, Expr, Func};
use crate::net::spec::{CellKind, HardwareSpec, LayerKind, NetFile, Orientation, SenseSpec};
use crate::net::NetworkIr;
use crate::netlist::{Analysis, Element, ElementKind, MosModel, Netlist, SimOptions};
use crate::span::Span;
use std::fmt::Write;

/// Shortest round-trip formatting of a number for SPICE.
pub fn num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        format!("{x:e}")
    }
}

/// What drives a row.
#[derive(Debug, Clone)]
pub enum Driver {
    /// An independent source of this DC voltage.
    Volts(f64),
    /// An existing node (e.g. a neuron output).
    Node(String),
    /// The negative of an existing node (through an inverting `B` source).
    NegNode(String),
}

/// A circuit being built: elements plus comment lines to print before some of them.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub netlist: Netlist,
    /// `(element index, comment)`: the comment is written before that element.
    pub comments: Vec<(usize, String)>,
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
fn sat(vsat: f64, a: f64, x: Expr) -> Expr {
    mul(
        n(vsat),
        Expr::Call(Func::Tanh, vec![div(mul(n(a), x), n(vsat))]),
    )
}

impl Emitted {
    fn new(title: String) -> Emitted {
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
            models: vec![],
            trailer: vec![],
        }
    }

    fn comment(&mut self, c: impl Into<String>) {
        self.comments.push((self.netlist.elements.len(), c.into()));
    }

    fn push(&mut self, name: String, kind: ElementKind) {
        self.netlist.elements.push(Element {
            name,
            kind,
            span: Span::default(),
        });
    }

    fn r(&mut self, name: String, a: &str, b: &str, r_ohm: f64) {
        self.push(
            name,
            ElementKind::Resistor {
                n: [a.into(), b.into()],
                r_ohm,
            },
        );
    }

    fn v(&mut self, name: String, a: &str, b: &str, dc_v: f64) {
        self.push(
            name,
            ElementKind::VSource {
                n: [a.into(), b.into()],
                dc_v,
            },
        );
    }

    fn bv(&mut self, name: String, a: &str, b: &str, expr: Expr) {
        self.push(
            name,
            ElementKind::BVoltage {
                n: [a.into(), b.into()],
                expr,
            },
        );
    }

    /// The netlist text in the dialect of DESIGN.md (ngspice runs it).
    pub fn to_spice(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.netlist.title);
        let mut ci = 0;
        let head: Vec<&String> = self
            .comments
            .iter()
            .take_while(|(i, _)| *i == 0)
            .map(|(_, c)| c)
            .collect();
        for c in &head {
            let _ = writeln!(out, "* {c}");
        }
        ci += head.len();
        for m in &self.models {
            let _ = writeln!(
                out,
                ".model {} {} (level=1 vto={} kp={} lambda={} gamma={} phi={} is={} ld={})",
                m.name,
                if m.nmos { "nmos" } else { "pmos" },
                num(m.vto_v),
                num(m.kp_a_per_v2),
                num(m.lambda_per_v),
                num(m.gamma_sqrt_v),
                num(m.phi_v),
                num(m.is_a),
                num(m.ld_m)
            );
        }
        for (k, e) in self.netlist.elements.iter().enumerate() {
            while ci < self.comments.len() && self.comments[ci].0 == k {
                let _ = writeln!(out, "* {}", self.comments[ci].1);
                ci += 1;
            }
            let _ = writeln!(out, "{}", element_line(e));
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

struct Names<'a> {
    p: &'a str,
    rw: bool,
}

impl Names<'_> {
    fn wl(&self, i: usize, j: usize) -> String {
        if self.rw {
            format!("{}r{i}_{j}", self.p)
        } else {
            format!("{}d{i}", self.p)
        }
    }
    fn bl(&self, i: usize, j: usize) -> String {
        if self.rw {
            format!("{}c{i}_{j}", self.p)
        } else {
            format!("{}s{j}", self.p)
        }
    }
}

/// Add one array. Returns the names of the column sense sources and, with op-amp sensing, the
/// TIA output nodes.
fn write_array(
    out: &mut Emitted,
    prefix: &str,
    hw: &HardwareSpec,
    arr: &ArrayConductances,
    drivers: &[Driver],
) -> (Vec<String>, Vec<String>) {
    let (nr, nc) = (arr.rows, arr.cols);
    let rw = hw.r_wire_ohm > 0.0;
    let nm = Names { p: prefix, rw };
    let k = hw.nl_k_per_v();
    out.comment(format!("---- array {} ({}x{}) ----", arr.index, nr, nc));
    out.comment("drivers");
    for (i, driver) in drivers.iter().enumerate().take(nr) {
        let d = format!("{prefix}d{i}");
        let src = if hw.r_driver_ohm > 0.0 {
            format!("{prefix}v{i}")
        } else {
            d.clone()
        };
        match driver {
            Driver::Volts(v) => out.v(format!("vin_{prefix}{i}"), &src, "0", *v),
            Driver::Node(node) => out.bv(format!("bbuf_{prefix}{i}"), &src, "0", ev(node)),
            Driver::NegNode(node) => out.bv(
                format!("binv_{prefix}{i}"),
                &src,
                "0",
                Expr::Neg(Box::new(ev(node))),
            ),
        }
        if hw.r_driver_ohm > 0.0 {
            out.r(format!("rdrv_{prefix}{i}"), &src, &d, hw.r_driver_ohm);
        }
    }
    if rw {
        let r = hw.r_wire_ohm;
        out.comment("word-line segments (driver -> cell (i,0), then along the row)");
        for i in 0..nr {
            out.r(
                format!("rwl_{prefix}{i}_0"),
                &format!("{prefix}d{i}"),
                &nm.wl(i, 0),
                r,
            );
            for j in 1..nc {
                out.r(
                    format!("rwl_{prefix}{i}_{j}"),
                    &nm.wl(i, j - 1),
                    &nm.wl(i, j),
                    r,
                );
            }
        }
        out.comment("bit-line segments (along the column, then cell (R-1,j) -> sense)");
        for j in 0..nc {
            for i in 1..nr {
                out.r(
                    format!("rbl_{prefix}{i}_{j}"),
                    &nm.bl(i - 1, j),
                    &nm.bl(i, j),
                    r,
                );
            }
            out.r(
                format!("rbl_{prefix}{nr}_{j}"),
                &nm.bl(nr - 1, j),
                &format!("{prefix}s{j}"),
                r,
            );
        }
    }
    out.comment("sense");
    let mut sense = Vec::new();
    let mut tia = Vec::new();
    for j in 0..nc {
        let s = format!("{prefix}s{j}");
        let q = if hw.r_sense_ohm > 0.0 {
            let q = format!("{prefix}q{j}");
            out.r(format!("rsns_{prefix}{j}"), &s, &q, hw.r_sense_ohm);
            q
        } else {
            s
        };
        let vname = format!("vsense_{prefix}{j}");
        match &hw.sense {
            SenseSpec::Ideal => out.v(vname.clone(), &q, "0", 0.0),
            SenseSpec::Opamp {
                gain,
                vsat_v,
                r_feedback_ohm,
            } => {
                let nn = format!("{prefix}n{j}");
                let o = format!("{prefix}o{j}");
                out.v(vname.clone(), &q, &nn, 0.0);
                let x = Expr::bin(BinOp::Sub, ev("0"), ev(&nn));
                out.bv(format!("btia_{prefix}{j}"), &o, "0", sat(*vsat_v, *gain, x));
                out.r(format!("rfb_{prefix}{j}"), &nn, &o, *r_feedback_ohm);
                tia.push(o);
            }
        }
        sense.push(vname);
    }
    let t = hw.transistor.as_ref();
    if t.is_some() && hw.cell == CellKind::OneT1R {
        out.comment("gate lines");
        for i in 0..nr {
            out.v(
                format!("vg_{prefix}{i}"),
                &format!("{prefix}g{i}"),
                "0",
                hw.v_gate_v,
            );
        }
    }
    out.comment("cells");
    for i in 0..nr {
        for j in 0..nc {
            let g = arr.g(i, j);
            let (a, b) = (nm.wl(i, j), nm.bl(i, j));
            let top = if hw.cell == CellKind::OneT1R {
                format!("{prefix}m{i}_{j}")
            } else {
                b.clone()
            };
            if k == 0.0 {
                out.r(format!("rx_{prefix}{i}_{j}"), &a, &top, 1.0 / g);
            } else {
                let vab = Expr::V(a.clone(), Some(top.clone()));
                let expr = div(
                    mul(n(g), Expr::Call(Func::Sinh, vec![mul(n(k), vab)])),
                    n(k),
                );
                out.push(
                    format!("bx_{prefix}{i}_{j}"),
                    ElementKind::BCurrent {
                        n: [a.clone(), top.clone()],
                        expr,
                    },
                );
            }
            if let (Some(t), CellKind::OneT1R) = (t, hw.cell) {
                out.push(
                    format!("mx_{prefix}{i}_{j}"),
                    ElementKind::Mosfet {
                        d: top.clone(),
                        g: format!("{prefix}g{i}"),
                        s: b.clone(),
                        b: "0".into(),
                        model: t.model.clone(),
                        w_m: t.w_m,
                        l_m: t.l_m,
                    },
                );
            }
        }
    }
    (sense, tia)
}

fn start(title: String, file: &NetFile) -> Emitted {
    let hw = &file.hardware;
    let mut out = Emitted::new(title);
    out.comment(format!(
        "written by netc compile from {}",
        file.path.display()
    ));
    out.comment(format!(
        "cells {:?}, window [{}, {}] S, r_wire {} ohm, r_driver {} ohm, r_sense {} ohm, sinh k {} /V",
        hw.cell,
        num(hw.g_min_s),
        num(hw.g_max_s),
        num(hw.r_wire_ohm),
        num(hw.r_driver_ohm),
        num(hw.r_sense_ohm),
        num(hw.nl_k_per_v())
    ));
    if let (Some(t), CellKind::OneT1R) = (&hw.transistor, hw.cell) {
        out.comment(format!("transistor card {}", t.path.display()));
        out.models.push(t.model.clone());
    }
    out
}

/// The circuit of one array with the given row voltages (one per physical row), with `.op`.
/// A trailing comment lists the ideal column currents `Σ_i V_i·g_ij` (exact for linear cells
/// without wire, driver, sense or transistor resistance).
pub fn array_circuit(file: &NetFile, arr: &ArrayConductances, row_v: &[f64]) -> Emitted {
    let hw = &file.hardware;
    let mut out = start(
        format!(
            "netc array {} of network {} ({}x{})",
            arr.index, file.network.name, arr.rows, arr.cols
        ),
        file,
    );
    let drivers: Vec<Driver> = row_v.iter().map(|&v| Driver::Volts(v)).collect();
    let (sense, _) = write_array(&mut out, "", hw, arr, &drivers);
    out.trailer
        .push("ideal column currents (linear cells, no parasitics), A:".into());
    for (j, name) in sense.iter().enumerate() {
        let i: f64 = row_v.iter().enumerate().map(|(r, v)| v * arr.g(r, j)).sum();
        out.trailer.push(format!("ideal i({name}) = {}", num(i)));
    }
    out
}

/// [`array_circuit`] as netlist text.
pub fn array_netlist(file: &NetFile, arr: &ArrayConductances, row_v: &[f64]) -> String {
    array_circuit(file, arr, row_v).to_spice()
}

/// Row voltages for the standalone array netlists: every matrix gets a seeded input vector in
/// the `v_in` range; each row is driven by the first tile (in matrix order) that uses it.
pub fn demo_rows(lowering: &Lowering, hw: &HardwareSpec, seed: u64) -> Vec<Vec<f64>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_7463);
    let mut rows = vec![vec![0.0; lowering.rows]; lowering.arrays];
    let mut taken = vec![vec![false; lowering.rows]; lowering.arrays];
    for (mi, m) in lowering.matrices.iter().enumerate() {
        let x: Vec<f64> = (0..m.weight_rows)
            .map(|_| rng.gen_range(hw.v_in_v[0]..=hw.v_in_v[1]))
            .collect();
        for (ti, t) in m.tiles.iter().enumerate() {
            let v = super::weights::drive_tile(lowering, hw, mi, ti, &x);
            for r in t.row0..t.row0 + t.n_rows {
                if !taken[t.array][r] {
                    taken[t.array][r] = true;
                    rows[t.array][r] = v[r];
                }
            }
        }
    }
    rows
}

/// One circuit for a whole multilayer perceptron (dense layers, each on one tile, with `tanh` or
/// no activation between them): inputs `x_v`, arrays, transimpedance amplifiers and differential
/// neuron stages `V = vsat·tanh(a·(V(n) − V(p))/vsat)` (hidden neurons saturate at the `v_in`
/// maximum with the layer's tanh slope in 1/A; the output neurons are unit-gain differential
/// stages saturating at the op-amp `vsat`). Output neuron `k` is node `out<k>`.
pub fn whole_circuit(
    file: &NetFile,
    ir: &NetworkIr,
    lowering: &Lowering,
    prog: &Programmed,
    x_v: &[f64],
) -> Result<Emitted, MappingError> {
    let hw = &file.hardware;
    let fail = |span: &crate::span::Span, m: String| MappingError::Emit {
        span: span.clone(),
        message: m,
    };
    let SenseSpec::Opamp {
        vsat_v,
        r_feedback_ohm,
        ..
    } = hw.sense
    else {
        return Err(fail(
            &hw.span,
            "--whole needs op-amp neurons: `sense opamp { gain …; vsat …; r_feedback …; }`".into(),
        ));
    };
    // Chain of (matrix index, activation slope or None for the output).
    let mut chain: Vec<(usize, Option<f64>)> = Vec::new();
    let mut pending: Option<usize> = None;
    for l in &ir.layers {
        match &l.kind {
            LayerKind::Dense { .. } => {
                if pending.is_some() {
                    return Err(fail(
                        &l.span,
                        "--whole needs a `tanh` between consecutive dense layers".into(),
                    ));
                }
                let mi = lowering
                    .matrices
                    .iter()
                    .position(|m| m.layer == l.name)
                    .ok_or_else(|| fail(&l.span, "layer was not lowered".into()))?;
                let m = &lowering.matrices[mi];
                if m.parts() != 1 || m.tiles.len() != 1 {
                    return Err(fail(
                        &l.span,
                        "--whole supports layers held by a single tile (no split, no replicas)"
                            .into(),
                    ));
                }
                pending = Some(mi);
            }
            LayerKind::Tanh { slope } => match pending.take() {
                Some(mi) => chain.push((mi, Some(*slope))),
                None => {
                    return Err(fail(
                        &l.span,
                        "--whole: tanh must follow a dense layer".into(),
                    ))
                }
            },
            LayerKind::Softmax if pending.is_some() => {}
            LayerKind::Flatten if chain.is_empty() && pending.is_none() => {}
            _ => {
                return Err(fail(
                    &l.span,
                    format!(
                    "--whole writes multilayer perceptrons (dense, tanh, softmax); `{}` is a {}",
                    l.name,
                    l.kind.keyword()
                ),
                ))
            }
        }
    }
    match pending {
        Some(mi) => chain.push((mi, None)),
        None => {
            return Err(fail(
                &file.network.span,
                "--whole: the network must end with a dense layer (optionally + softmax)".into(),
            ))
        }
    }
    let arrays: Vec<usize> = chain
        .iter()
        .map(|(mi, _)| lowering.matrices[*mi].tiles[0].array)
        .collect();
    for (a, (mi, _)) in arrays.iter().zip(&chain).skip(1) {
        if arrays.iter().filter(|b| *b == a).count() > 1 {
            return Err(fail(
                &ir.layers[lowering.matrices[*mi].layer_index].span,
                "--whole needs every layer on its own array (use `placement per_layer`)".into(),
            ));
        }
    }
    let mut out = start(
        format!(
            "netc whole network {} ({} layers)",
            file.network.name,
            chain.len()
        ),
        file,
    );
    // The inputs of the current layer: one driver per logical weight row.
    let mut inputs: Vec<Driver> = x_v.iter().map(|&v| Driver::Volts(v)).collect();
    let v_hidden = hw.v_in_v[1].abs().max(hw.v_in_v[0].abs());
    for (li, (mi, slope)) in chain.iter().enumerate() {
        let m = &lowering.matrices[*mi];
        let t = &m.tiles[0];
        let arr = &prog.arrays[t.array];
        if inputs.len() != m.weight_rows {
            return Err(fail(
                &ir.layers[m.layer_index].span,
                format!(
                    "layer `{}` has {} inputs but gets {}",
                    m.layer,
                    m.weight_rows,
                    inputs.len()
                ),
            ));
        }
        let mut drivers = vec![Driver::Volts(0.0); arr.rows];
        for i in 0..m.logical_rows() {
            let d = if let Some(input) = inputs.get(i).filter(|_| i < m.weight_rows) {
                input.clone()
            } else {
                Driver::Volts(hw.v_bias_v)
            };
            for k in 0..m.pairs {
                for s in 0..2 {
                    let (r, _) = t.cell(m, i, 0, k, s);
                    drivers[r] = match (m.orientation, s, &d) {
                        (Orientation::Rows, 1, Driver::Volts(v)) => Driver::Volts(-v),
                        (Orientation::Rows, 1, Driver::Node(n)) => Driver::NegNode(n.clone()),
                        _ => d.clone(),
                    };
                }
            }
        }
        let prefix = format!("a{}_", t.array);
        let (_, tia) = write_array(&mut out, &prefix, hw, arr, &drivers);
        out.comment(format!("neurons of layer {}", m.layer));
        let mut next = Vec::new();
        for j in 0..m.cols {
            // Rf·(I⁺ − I⁻) as a sum of TIA outputs (each is −Rf·I).
            let mut e = n(0.0);
            match m.orientation {
                Orientation::Columns => {
                    for k in 0..m.pairs {
                        let (_, cp) = t.cell(m, 0, j, k, 0);
                        let (_, cm) = t.cell(m, 0, j, k, 1);
                        e = Expr::bin(
                            BinOp::Add,
                            e,
                            Expr::bin(BinOp::Sub, ev(&tia[cm]), ev(&tia[cp])),
                        );
                    }
                }
                Orientation::Rows => {
                    let (_, c) = t.cell(m, 0, j, 0, 0);
                    e = Expr::bin(BinOp::Sub, e, ev(&tia[c]));
                }
            }
            let node = match slope {
                Some(_) => format!("h{li}_{j}"),
                None => format!("out{j}"),
            };
            let (vs, a) = match slope {
                Some(s) => (v_hidden, s * v_hidden / r_feedback_ohm),
                None => (vsat_v, 1.0),
            };
            out.bv(format!("bn_{node}"), &node, "0", sat(vs, a, e));
            next.push(Driver::Node(node));
        }
        inputs = next;
    }
    Ok(out)
}

/// [`whole_circuit`] as netlist text.
pub fn whole_netlist(
    file: &NetFile,
    ir: &NetworkIr,
    lowering: &Lowering,
    prog: &Programmed,
    x_v: &[f64],
) -> Result<String, MappingError> {
    Ok(whole_circuit(file, ir, lowering, prog, x_v)?.to_spice())
}
