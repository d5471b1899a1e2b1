//! Writing a flat [`Netlist`] back as dialect text that ngspice runs and [`super::parse_str`]
//! reads back to an equal netlist (spans and warnings aside).
//!
//! Naming scheme: an element whose name does not start with its type letter (subcircuit members
//! such as `x1.r1`) is written with the letter and a dot in front, `r.x1.r1`: this is the name
//! ngspice itself gives flattened members (its `print all` shows `v.x1.v1#branch`), and the reader
//! turns `r.x1.r1` back into `x1.r1` (see [`super::elab::normalize_element_name`]). Names of the
//! form `r.abc` (letter, dot, rest not starting with the letter) cannot be represented: the reader
//! never produces them.
//! Numbers are written with Rust's shortest round-trip formatting (`{:e}`), so they are exact.
//! MOSFET models are written once per model name with every level-1 parameter explicit.

use std::collections::HashMap;
use std::fmt::Write;

use crate::expr::Expr;
use crate::netlist::{Analysis, ElementKind, MosModel, Netlist, SimOptions};

fn letter(k: &ElementKind) -> char {
    match k {
        ElementKind::Resistor { .. } => 'r',
        ElementKind::VSource { .. } => 'v',
        ElementKind::ISource { .. } => 'i',
        ElementKind::Vcvs { .. } => 'e',
        ElementKind::Vccs { .. } => 'g',
        ElementKind::Cccs { .. } => 'f',
        ElementKind::Ccvs { .. } => 'h',
        ElementKind::BVoltage { .. } | ElementKind::BCurrent { .. } => 'b',
        ElementKind::Mosfet { .. } => 'm',
    }
}

/// The name an element is written under (see the module documentation).
pub fn written_name(name: &str, letter: char) -> String {
    if name.starts_with(letter) {
        name.to_string()
    } else {
        format!("{letter}.{name}")
    }
}

fn src_name(name: &str) -> String {
    written_name(name, 'v')
}

/// `I(x1.v1)` must name the source as written (`I(v.x1.v1)`).
fn source_refs(e: &Expr) -> Expr {
    match e {
        Expr::I(v) => Expr::I(src_name(v)),
        Expr::Neg(a) => Expr::Neg(Box::new(source_refs(a))),
        Expr::Bin(op, a, b) => Expr::bin(*op, source_refs(a), source_refs(b)),
        Expr::Call(f, args) => Expr::Call(*f, args.iter().map(source_refs).collect()),
        other => other.clone(),
    }
}

fn model_card(m: &MosModel, name: &str) -> String {
    format!(
        ".model {name} {} (level=1 vto={:e} kp={:e} lambda={:e} gamma={:e} phi={:e} is={:e} ld={:e})",
        if m.nmos { "nmos" } else { "pmos" },
        m.vto_v,
        m.kp_a_per_v2,
        m.lambda_per_v,
        m.gamma_sqrt_v,
        m.phi_v,
        m.is_a,
        m.ld_m
    )
}

/// Write `n` as a flat netlist (title, `.options`, models, elements, analyses, `.end`).
pub fn write_netlist(n: &Netlist) -> String {
    let mut s = String::with_capacity(64 + 40 * n.elements.len());
    let title = n.title.replace(['\n', '\r'], " ");
    let _ = writeln!(s, "{title}");
    let _ = writeln!(s, "* flat netlist written by netc");
    let o: &SimOptions = &n.options;
    let _ = writeln!(
        s,
        ".options reltol={:e} abstol={:e} vntol={:e} gmin={:e} itl1={} itl2={}",
        o.reltol, o.abstol_a, o.vntol_v, o.gmin_siemens, o.itl1, o.itl2
    );
    // Models: one card per distinct model; a name used with different values gets a suffix.
    let mut models: HashMap<String, Vec<(MosModel, String)>> = HashMap::new();
    let mut model_names: Vec<String> = Vec::new();
    let mut model_of = Vec::with_capacity(n.elements.len());
    for el in &n.elements {
        if let ElementKind::Mosfet { model, .. } = &el.kind {
            let entry = models.entry(model.name.clone()).or_default();
            let name = match entry.iter().find(|(m, _)| m == &**model) {
                Some((_, nm)) => nm.clone(),
                None => {
                    let nm = if entry.is_empty() {
                        model.name.clone()
                    } else {
                        format!("{}_{}", model.name, entry.len() + 1)
                    };
                    let nm = if nm.is_empty() {
                        "netc_mos".to_string()
                    } else {
                        nm
                    };
                    entry.push(((**model).clone(), nm.clone()));
                    let _ = writeln!(s, "{}", model_card(model, &nm));
                    model_names.push(nm.clone());
                    nm
                }
            };
            model_of.push(Some(name));
        } else {
            model_of.push(None);
        }
    }
    for (el, model_name) in n.elements.iter().zip(model_of) {
        let name = written_name(&el.name, letter(&el.kind));
        let _ = match &el.kind {
            ElementKind::Resistor { n, r_ohm } => {
                writeln!(s, "{name} {} {} {:e}", n[0], n[1], r_ohm)
            }
            ElementKind::VSource { n, dc_v } => {
                writeln!(s, "{name} {} {} dc {:e}", n[0], n[1], dc_v)
            }
            ElementKind::ISource { n, dc_a } => {
                writeln!(s, "{name} {} {} dc {:e}", n[0], n[1], dc_a)
            }
            ElementKind::Vcvs { out, ctrl, gain } => {
                writeln!(
                    s,
                    "{name} {} {} {} {} {:e}",
                    out[0], out[1], ctrl[0], ctrl[1], gain
                )
            }
            ElementKind::Vccs {
                out,
                ctrl,
                gm_siemens,
            } => {
                writeln!(
                    s,
                    "{name} {} {} {} {} {:e}",
                    out[0], out[1], ctrl[0], ctrl[1], gm_siemens
                )
            }
            ElementKind::Cccs { out, vsrc, gain } => {
                writeln!(
                    s,
                    "{name} {} {} {} {:e}",
                    out[0],
                    out[1],
                    src_name(vsrc),
                    gain
                )
            }
            ElementKind::Ccvs { out, vsrc, r_ohm } => {
                writeln!(
                    s,
                    "{name} {} {} {} {:e}",
                    out[0],
                    out[1],
                    src_name(vsrc),
                    r_ohm
                )
            }
            ElementKind::BVoltage { n, expr } => {
                writeln!(s, "{name} {} {} v={}", n[0], n[1], source_refs(expr))
            }
            ElementKind::BCurrent { n, expr } => {
                writeln!(s, "{name} {} {} i={}", n[0], n[1], source_refs(expr))
            }
            ElementKind::Mosfet {
                d,
                g,
                s: src,
                b,
                w_m,
                l_m,
                ..
            } => writeln!(
                s,
                "{name} {d} {g} {src} {b} {} w={:e} l={:e}",
                model_name.unwrap_or_default(),
                w_m,
                l_m
            ),
        };
    }
    for a in &n.analyses {
        let _ = match a {
            Analysis::Op { .. } => writeln!(s, ".op"),
            Analysis::Dc {
                src,
                start,
                stop,
                step,
                ..
            } => {
                let letter = n
                    .elements
                    .iter()
                    .find(|e| e.name == *src)
                    .map(|e| letter(&e.kind))
                    .unwrap_or('v');
                writeln!(
                    s,
                    ".dc {} {:e} {:e} {:e}",
                    written_name(src, letter),
                    start,
                    stop,
                    step
                )
            }
        };
    }
    let _ = writeln!(s, ".end");
    s
}
