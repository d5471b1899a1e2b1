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
use crate::net::spec::{CellKind, HardwareSpec, LayerKind, NetFile, Orientation, SenseSpec};
use crate::net::NetworkIr;
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

/// Write one array. Returns the names of the column sense sources and, with op-amp sensing, the
/// TIA output nodes.
fn write_array(
    out: &mut String,
    prefix: &str,
    hw: &HardwareSpec,
    arr: &ArrayConductances,
    drivers: &[Driver],
) -> (Vec<String>, Vec<String>) {
    let (nr, nc) = (arr.rows, arr.cols);
    let rw = hw.r_wire_ohm > 0.0;
    let n = Names { p: prefix, rw };
    let k = hw.nl_k_per_v();
    let _ = writeln!(out, "* ---- array {} ({}x{}) ----", arr.index, nr, nc);
    let _ = writeln!(out, "* drivers");
    for (i, driver) in drivers.iter().enumerate().take(nr) {
        let d = format!("{prefix}d{i}");
        let src = if hw.r_driver_ohm > 0.0 {
            format!("{prefix}v{i}")
        } else {
            d.clone()
        };
        match driver {
            Driver::Volts(v) => {
                let _ = writeln!(out, "vin_{prefix}{i} {src} 0 DC {}", num(*v));
            }
            Driver::Node(node) => {
                let _ = writeln!(out, "bbuf_{prefix}{i} {src} 0 V=V({node})");
            }
            Driver::NegNode(node) => {
                let _ = writeln!(out, "binv_{prefix}{i} {src} 0 V=-V({node})");
            }
        }
        if hw.r_driver_ohm > 0.0 {
            let _ = writeln!(out, "rdrv_{prefix}{i} {src} {d} {}", num(hw.r_driver_ohm));
        }
    }
    if rw {
        let r = num(hw.r_wire_ohm);
        let _ = writeln!(
            out,
            "* word-line segments (driver -> cell (i,0), then along the row)"
        );
        for i in 0..nr {
            let _ = writeln!(out, "rwl_{prefix}{i}_0 {prefix}d{i} {} {r}", n.wl(i, 0));
            for j in 1..nc {
                let _ = writeln!(
                    out,
                    "rwl_{prefix}{i}_{j} {} {} {r}",
                    n.wl(i, j - 1),
                    n.wl(i, j)
                );
            }
        }
        let _ = writeln!(
            out,
            "* bit-line segments (along the column, then cell (R-1,j) -> sense)"
        );
        for j in 0..nc {
            for i in 1..nr {
                let _ = writeln!(
                    out,
                    "rbl_{prefix}{i}_{j} {} {} {r}",
                    n.bl(i - 1, j),
                    n.bl(i, j)
                );
            }
            let _ = writeln!(
                out,
                "rbl_{prefix}{nr}_{j} {} {prefix}s{j} {r}",
                n.bl(nr - 1, j)
            );
        }
    }
    let _ = writeln!(out, "* sense");
    let mut sense = Vec::new();
    let mut tia = Vec::new();
    for j in 0..nc {
        let s = format!("{prefix}s{j}");
        let q = if hw.r_sense_ohm > 0.0 {
            let q = format!("{prefix}q{j}");
            let _ = writeln!(out, "rsns_{prefix}{j} {s} {q} {}", num(hw.r_sense_ohm));
            q
        } else {
            s
        };
        let vname = format!("vsense_{prefix}{j}");
        match &hw.sense {
            SenseSpec::Ideal => {
                let _ = writeln!(out, "{vname} {q} 0 DC 0");
            }
            SenseSpec::Opamp {
                gain,
                vsat_v,
                r_feedback_ohm,
            } => {
                let nn = format!("{prefix}n{j}");
                let o = format!("{prefix}o{j}");
                let _ = writeln!(out, "{vname} {q} {nn} DC 0");
                let _ = writeln!(
                    out,
                    "btia_{prefix}{j} {o} 0 V={vs}*tanh({g}*(V(0)-V({nn}))/{vs})",
                    vs = num(*vsat_v),
                    g = num(*gain)
                );
                let _ = writeln!(out, "rfb_{prefix}{j} {nn} {o} {}", num(*r_feedback_ohm));
                tia.push(o);
            }
        }
        sense.push(vname);
    }
    if hw.cell == CellKind::OneT1R {
        let _ = writeln!(out, "* gate lines");
        for i in 0..nr {
            let _ = writeln!(out, "vg_{prefix}{i} {prefix}g{i} 0 DC {}", num(hw.v_gate_v));
        }
    }
    let _ = writeln!(out, "* cells");
    let t = hw.transistor.as_ref();
    for i in 0..nr {
        for j in 0..nc {
            let g = arr.g(i, j);
            let (a, b) = (n.wl(i, j), n.bl(i, j));
            let top = if hw.cell == CellKind::OneT1R {
                format!("{prefix}m{i}_{j}")
            } else {
                b.clone()
            };
            if k == 0.0 {
                let _ = writeln!(out, "rx_{prefix}{i}_{j} {a} {top} {}", num(1.0 / g));
            } else {
                let _ = writeln!(
                    out,
                    "bx_{prefix}{i}_{j} {a} {top} I={}*sinh({}*V({a},{top}))/{}",
                    num(g),
                    num(k),
                    num(k)
                );
            }
            if let Some(t) = t {
                let _ = writeln!(
                    out,
                    "mx_{prefix}{i}_{j} {top} {prefix}g{i} {b} 0 {} W={} L={}",
                    t.model_name,
                    num(t.w_m),
                    num(t.l_m)
                );
            }
        }
    }
    (sense, tia)
}

fn header(out: &mut String, title: &str, file: &NetFile) {
    let hw = &file.hardware;
    let _ = writeln!(out, "{title}");
    let _ = writeln!(
        out,
        "* written by netc compile from {}",
        file.path.display()
    );
    let _ = writeln!(
        out,
        "* cells {:?}, window [{}, {}] S, r_wire {} ohm, r_driver {} ohm, r_sense {} ohm, sinh k {} /V",
        hw.cell,
        num(hw.g_min_s),
        num(hw.g_max_s),
        num(hw.r_wire_ohm),
        num(hw.r_driver_ohm),
        num(hw.r_sense_ohm),
        num(hw.nl_k_per_v())
    );
    if let Some(t) = &hw.transistor {
        let _ = writeln!(out, "* transistor card {}", t.path.display());
        let _ = writeln!(out, "{}", t.model_text);
    }
}

/// The netlist of one array with the given row voltages (one per physical row), with `.op`.
/// A comment lists the ideal column currents `Σ_i V_i·g_ij` (exact for linear cells, no wires).
pub fn array_netlist(file: &NetFile, arr: &ArrayConductances, row_v: &[f64]) -> String {
    let hw = &file.hardware;
    let mut out = String::new();
    header(
        &mut out,
        &format!(
            "netc array {} of network {} ({}x{})",
            arr.index, file.network.name, arr.rows, arr.cols
        ),
        file,
    );
    let drivers: Vec<Driver> = row_v.iter().map(|&v| Driver::Volts(v)).collect();
    let (sense, _) = write_array(&mut out, "", hw, arr, &drivers);
    let _ = writeln!(
        out,
        "* ideal column currents (linear cells, no wire resistance), A:"
    );
    for (j, name) in sense.iter().enumerate() {
        let i: f64 = (0..arr.rows).map(|r| row_v[r] * arr.g(r, j)).sum();
        let _ = writeln!(out, "* ideal i({name}) = {}", num(i));
    }
    let _ = writeln!(out, ".op");
    let _ = writeln!(out, ".end");
    out
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
pub fn whole_netlist(
    file: &NetFile,
    ir: &NetworkIr,
    lowering: &Lowering,
    prog: &Programmed,
    x_v: &[f64],
) -> Result<String, MappingError> {
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
    let mut out = String::new();
    header(
        &mut out,
        &format!(
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
        let _ = writeln!(out, "* neurons of layer {}", m.layer);
        let mut next = Vec::new();
        for j in 0..m.cols {
            // Rf·(I⁺ − I⁻) as a sum of TIA outputs (each is −Rf·I).
            let mut e = String::new();
            match m.orientation {
                Orientation::Columns => {
                    for k in 0..m.pairs {
                        let (_, cp) = t.cell(m, 0, j, k, 0);
                        let (_, cm) = t.cell(m, 0, j, k, 1);
                        let _ = write!(e, "+V({})-V({})", tia[cm], tia[cp]);
                    }
                }
                Orientation::Rows => {
                    let (_, c) = t.cell(m, 0, j, 0, 0);
                    let _ = write!(e, "-V({})", tia[c]);
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
            let _ = writeln!(
                out,
                "bn_{node} {node} 0 V={vs}*tanh({a}*(0{e})/{vs})",
                vs = num(vs),
                a = num(a)
            );
            next.push(Driver::Node(node));
        }
        inputs = next;
    }
    let _ = writeln!(out, ".op");
    let _ = writeln!(out, ".end");
    Ok(out)
}
