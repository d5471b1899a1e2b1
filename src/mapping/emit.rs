//! SPICE netlists of programmed arrays and of whole networks. Every array is lowered by
//! [`super::array::crossbar`] and written by [`crate::xbar::emit::write_array`] (the node names
//! are documented there and in docs/crossbar.md); single-array netlists use no prefix, whole
//! network netlists prefix array k's names with `a<k>_`. Column j's current is `i(vs_<p>j)`.

use super::lower::Lowering;
use super::weights::{ArrayConductances, Programmed};
use super::MappingError;
use crate::expr::{BinOp, Expr};
use crate::net::spec::{HardwareSpec, LayerKind, NetFile, Orientation, SenseSpec};
use crate::net::NetworkIr;
use crate::xbar::emit::{sat, write_array as write_xbar, ArrayPorts};
use crate::xbar::Topology;

pub use crate::xbar::emit::{element_line, num, Emitted, RowDrive as Driver};

fn ev(a: &str) -> Expr {
    Expr::V(a.to_string(), None)
}

fn n(x: f64) -> Expr {
    Expr::Num(x)
}

/// Add one array (lowered from the hardware) under the inference topology, its names prefixed
/// with `prefix`.
fn write_array(
    out: &mut Emitted,
    prefix: &str,
    hw: &HardwareSpec,
    arr: &ArrayConductances,
    drivers: &[Driver],
) -> Result<ArrayPorts, MappingError> {
    let xb = super::array::crossbar_of(hw, arr)?;
    let topo = Topology::inference(&xb);
    out.comment(format!(
        "---- array {} ({}x{}) ----",
        arr.index, arr.rows, arr.cols
    ));
    write_xbar(out, prefix, &xb, &topo, drivers, &vec![0.0; arr.cols]).map_err(|e| {
        MappingError::Lower {
            span: hw.span.clone(),
            message: e.to_string(),
        }
    })
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
        num(hw.g_min_siemens),
        num(hw.g_max_siemens),
        num(hw.r_wire_ohm),
        num(hw.r_driver_ohm),
        num(hw.r_sense_ohm),
        num(hw.nl_k_per_v())
    ));
    if let Some(t) = &hw.transistor {
        out.comment(format!("transistor card {}", t.path.display()));
    }
    out
}

/// The circuit of one array with the given row voltages (one per physical row), with `.op`.
/// A trailing comment lists the ideal column currents `Σ_i V_i·g_ij` (exact for linear cells
/// without wire, driver, sense or transistor resistance).
pub fn array_circuit(
    file: &NetFile,
    arr: &ArrayConductances,
    row_v: &[f64],
) -> Result<Emitted, MappingError> {
    let hw = &file.hardware;
    let mut out = start(
        format!(
            "netc array {} of network {} ({}x{})",
            arr.index, file.network.name, arr.rows, arr.cols
        ),
        file,
    );
    let drivers: Vec<Driver> = row_v.iter().map(|&v| Driver::Volts(v)).collect();
    let ports = write_array(&mut out, "", hw, arr, &drivers)?;
    out.trailer
        .push("ideal column currents (linear cells, no parasitics), A:".into());
    for (j, name) in ports.sense_sources.iter().enumerate() {
        let Some(name) = name else { continue };
        let i: f64 = row_v.iter().enumerate().map(|(r, v)| v * arr.g(r, j)).sum();
        out.trailer.push(format!("ideal i({name}) = {}", num(i)));
    }
    Ok(out)
}

/// [`array_circuit`] as netlist text.
pub fn array_netlist(
    file: &NetFile,
    arr: &ArrayConductances,
    row_v: &[f64],
) -> Result<String, MappingError> {
    Ok(array_circuit(file, arr, row_v)?.to_spice())
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
            LayerKind::Tanh { slope: None } => {
                return Err(fail(
                    &l.span,
                    "--whole writes op-amp neurons: give their slope per ampere, \
                     `tanh { slope A; }` (a bare `tanh` is a software activation)"
                        .into(),
                ))
            }
            LayerKind::Tanh { slope: Some(slope) } => match pending.take() {
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
    let v_hidden = hw.v_hidden_v();
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
        let ports = write_array(&mut out, &prefix, hw, arr, &drivers)?;
        let tia: Vec<String> = ports
            .amp_outputs
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
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
