//! Closed-form and property tests of the nodal solver on netlists built in code.

use super::*;
use crate::expr::{BinOp, Expr, Func};
use crate::netlist::{Element, ElementKind, MosModel, Netlist, SimOptions};

fn el(name: &str, kind: ElementKind) -> Element {
    Element {
        name: name.into(),
        kind,
        span: Span::default(),
    }
}
fn nodes(a: &str, b: &str) -> [String; 2] {
    [a.into(), b.into()]
}
fn r(name: &str, a: &str, b: &str, ohm: f64) -> Element {
    el(
        name,
        ElementKind::Resistor {
            n: nodes(a, b),
            r_ohm: ohm,
        },
    )
}
fn v(name: &str, a: &str, b: &str, volt: f64) -> Element {
    el(
        name,
        ElementKind::VSource {
            n: nodes(a, b),
            dc_v: volt,
        },
    )
}
/// `a·f(k·arg)`.
fn scaled(a: f64, f: Func, k: f64, arg: Expr) -> Expr {
    Expr::bin(
        BinOp::Mul,
        Expr::Num(a),
        Expr::Call(f, vec![Expr::bin(BinOp::Mul, Expr::Num(k), arg)]),
    )
}

fn netlist(elements: Vec<Element>) -> Netlist {
    Netlist {
        title: "t".into(),
        elements,
        analyses: vec![Analysis::Op {
            span: Span::default(),
        }],
        options: SimOptions::default(),
        warnings: vec![],
    }
}
fn op(elements: Vec<Element>) -> BTreeMap<String, f64> {
    match run(&netlist(elements)).unwrap().remove(0) {
        AnalysisResult::Op { values } => values,
        _ => unreachable!(),
    }
}

#[test]
fn divider_and_source_sign() {
    let m = op(vec![
        v("v1", "in", "0", 1.0),
        r("r1", "in", "mid", 1e3),
        r("r2", "mid", "0", 3e3),
    ]);
    assert!((m["v(mid)"] - 0.75).abs() < 1e-15);
    // current flows out of the + terminal into the circuit: negative in ngspice's convention
    assert!((m["i(v1)"] + 0.25e-3).abs() < 1e-18);
}

#[test]
fn controlled_sources_closed_form() {
    // E: out = 2·V(a); G: 1 mS·V(a) into 1 kΩ; F: 3·I(vs) into 1 kΩ; H: 500 Ω·I(vs)
    let m = op(vec![
        v("v1", "a", "0", 0.5),
        r("ra", "a", "s", 1e3),
        v("vs", "s", "0", 0.0),
        el(
            "e1",
            ElementKind::Vcvs {
                out: nodes("e", "0"),
                ctrl: nodes("a", "0"),
                gain: 2.0,
            },
        ),
        r("re", "e", "0", 1e3),
        el(
            "g1",
            ElementKind::Vccs {
                out: nodes("0", "g"),
                ctrl: nodes("a", "0"),
                gm_siemens: 1e-3,
            },
        ),
        r("rg", "g", "0", 1e3),
        el(
            "f1",
            ElementKind::Cccs {
                out: nodes("0", "f"),
                vsrc: "vs".into(),
                gain: 3.0,
            },
        ),
        r("rf", "f", "0", 1e3),
        el(
            "h1",
            ElementKind::Ccvs {
                out: nodes("h", "0"),
                vsrc: "vs".into(),
                r_ohm: 500.0,
            },
        ),
        r("rh", "h", "0", 1e3),
    ]);
    let i_vs = 0.5e-3;
    assert!((m["i(vs)"] - i_vs).abs() < 1e-18);
    assert!((m["v(e)"] - 1.0).abs() < 1e-15);
    assert!((m["v(g)"] - 0.5).abs() < 1e-15);
    assert!((m["v(f)"] - 3.0 * i_vs * 1e3).abs() < 1e-14);
    assert!((m["v(h)"] - 500.0 * i_vs).abs() < 1e-15);
}

/// A passive crossbar with zero-resistance wires is exactly I = Gᵀ·V.
#[test]
fn ideal_crossbar_is_g_transpose_v() {
    let (rows, cols) = (4, 3);
    let mut els = Vec::new();
    let vin = [0.1, -0.2, 0.15, 0.05];
    let g = |i: usize, j: usize| 1e-5 * (1.0 + i as f64 + 2.0 * j as f64);
    for (i, vi) in vin.iter().enumerate() {
        els.push(v(&format!("vin{i}"), &format!("r{i}"), "0", *vi));
    }
    for j in 0..cols {
        els.push(v(&format!("vout{j}"), &format!("c{j}"), "0", 0.0));
        for i in 0..rows {
            els.push(r(
                &format!("g{i}_{j}"),
                &format!("r{i}"),
                &format!("c{j}"),
                1.0 / g(i, j),
            ));
        }
    }
    let m = op(els);
    for j in 0..cols {
        let want: f64 = (0..rows).map(|i| g(i, j) * vin[i]).sum();
        let got = m[&format!("i(vout{j})")];
        assert!(
            (got - want).abs() <= 1e-12 * want.abs() + 1e-18,
            "col {j}: {got} vs {want}"
        );
    }
    // conservation: what the drivers deliver is what the sense sources take
    let inj: f64 = (0..rows).map(|i| m[&format!("i(vin{i})")]).sum();
    let out: f64 = (0..cols).map(|j| m[&format!("i(vout{j})")]).sum();
    assert!((inj + out).abs() < 1e-16);
}

#[test]
fn floating_node_is_named() {
    let nl = netlist(vec![
        v("v1", "a", "0", 1.0),
        r("r1", "a", "0", 1e3),
        el(
            "i1",
            ElementKind::ISource {
                n: nodes("x", "0"),
                dc_a: 1e-3,
            },
        ),
    ]);
    let e = run(&nl).unwrap_err().to_string();
    assert!(e.contains("no DC path") && e.contains('x'), "{e}");
}

#[test]
fn voltage_loop_is_reported() {
    let nl = netlist(vec![
        v("v1", "a", "0", 1.0),
        v("v2", "a", "0", 2.0),
        r("r", "a", "0", 1.0),
    ]);
    let e = run(&nl).unwrap_err().to_string();
    assert!(e.contains("loop") && e.contains("v2"), "{e}");
}

/// sinh memristor in series with a resistor: Newton solution satisfies the device equation.
#[test]
fn sinh_memristor_newton() {
    let (g, k) = (1e-4, 3.0);
    let expr = Expr::bin(
        BinOp::Div,
        scaled(g, Func::Sinh, k, Expr::V("a".into(), Some("b".into()))),
        Expr::Num(k),
    );
    let m = op(vec![
        v("v1", "a", "0", 1.5),
        el(
            "b1",
            ElementKind::BCurrent {
                n: nodes("a", "b"),
                expr,
            },
        ),
        r("rs", "b", "0", 2e3),
    ]);
    let vab = m["v(a)"] - m["v(b)"];
    let i_dev = g * (k * vab).sinh() / k;
    let i_r = m["v(b)"] / 2e3;
    assert!((i_dev - i_r).abs() < 1e-12 * i_r.abs(), "{i_dev} vs {i_r}");
    assert!((m["i(v1)"] + i_r).abs() < 1e-12 * i_r);
}

/// Saturating op-amp neuron: V(out) = vsat·tanh(a·V(in)/vsat) exactly at the solution.
#[test]
fn tanh_neuron() {
    let expr = Expr::bin(
        BinOp::Mul,
        Expr::Num(0.2),
        Expr::Call(
            Func::Tanh,
            vec![Expr::bin(
                BinOp::Div,
                Expr::bin(BinOp::Mul, Expr::Num(1e3), Expr::V("in".into(), None)),
                Expr::Num(0.2),
            )],
        ),
    );
    let m = op(vec![
        v("v1", "in", "0", 1e-4),
        el(
            "b1",
            ElementKind::BVoltage {
                n: nodes("out", "0"),
                expr,
            },
        ),
        r("rl", "out", "0", 1e4),
    ]);
    let want = 0.2 * (1e3 * 1e-4 / 0.2f64).tanh();
    assert!((m["v(out)"] - want).abs() < 1e-14);
}

/// 1T1R cell: transistor in triode, Kirchhoff's current law and the device equation hold.
#[test]
fn one_t_one_r_cell_closed_form_check() {
    let model = MosModel {
        vto_v: 0.5,
        kp_a_per_v2: 2e-4,
        lambda_per_v: 0.02,
        ..MosModel::default()
    };
    let m = op(vec![
        v("vbl", "bl", "0", 0.2),
        r("rm", "bl", "d", 1e4),
        el(
            "m1",
            ElementKind::Mosfet {
                d: "d".into(),
                g: "g".into(),
                s: "0".into(),
                b: "0".into(),
                model: Box::new(model.clone()),
                w_m: 1e-6,
                l_m: 1e-6,
            },
        ),
        v("vg", "g", "0", 2.5),
    ]);
    let vd = m["v(d)"];
    let i_r = (0.2 - vd) / 1e4;
    let dev = crate::circuit::mos1::Mos1 {
        model,
        w_m: 1e-6,
        l_m: 1e-6,
    };
    let i_m = dev.eval([vd, 2.5, 0.0, 0.0], 1e-12).i_a[0];
    assert!((i_r - i_m).abs() < 1e-9 * i_r.abs(), "{i_r} vs {i_m}");
    assert!((m["i(vbl)"] + i_r).abs() < 1e-9 * i_r);
}

#[test]
fn dc_sweep_points_and_compliance() {
    assert_eq!(sweep_points(0.0, 1.0, 0.25).unwrap().len(), 5);
    assert_eq!(sweep_points(1.0, 0.0, -0.5).unwrap(), vec![1.0, 0.5, 0.0]);
    assert!(sweep_points(0.0, 1.0, -0.1).is_err());
    assert!(sweep_points(0.0, 1.0, 0.0).is_err());
    // gate sweep of a 1T1R SET: current saturates at the transistor's compliance
    let model = MosModel {
        vto_v: 0.7,
        kp_a_per_v2: 1e-4,
        ..MosModel::default()
    };
    let mut nl = netlist(vec![
        v("vte", "te", "0", 2.5),
        r("rm", "te", "d", 2e3),
        el(
            "m1",
            ElementKind::Mosfet {
                d: "d".into(),
                g: "g".into(),
                s: "0".into(),
                b: "0".into(),
                model: Box::new(model),
                w_m: 1e-6,
                l_m: 1e-6,
            },
        ),
        v("vg", "g", "0", 0.0),
    ]);
    nl.analyses = vec![Analysis::Dc {
        src: "vg".into(),
        start: 0.0,
        stop: 2.5,
        step: 0.1,
        span: Span::default(),
    }];
    let res = run(&nl).unwrap();
    let AnalysisResult::Dc { points, .. } = &res[0] else {
        panic!()
    };
    assert_eq!(points.len(), 26);
    let i: Vec<f64> = points.iter().map(|(_, m)| -m["i(vte)"]).collect();
    assert!(i[5].abs() < 1e-11, "cut off below threshold: {}", i[5]);
    for w in i.windows(2) {
        assert!(w[1] >= w[0] - 1e-15, "monotone in the gate voltage");
    }
    // in saturation the cell current is the compliance β/2·(Vg−Vt)²
    let (vg, ig) = (points[12].0, i[12]);
    let want = 1e-4 / 2.0 * (vg - 0.7f64).powi(2);
    assert!((ig - want).abs() < 1e-3 * want, "{ig} vs {want}");
}

/// An equation with no solution (V(a) = V(a) + 1) must end in a located error, never a panic or
/// a non-finite answer.
#[test]
fn impossible_equation_is_an_error() {
    let expr = Expr::bin(BinOp::Add, Expr::V("a".into(), None), Expr::Num(1.0));
    let nl = netlist(vec![
        el(
            "b1",
            ElementKind::BVoltage {
                n: nodes("a", "0"),
                expr,
            },
        ),
        r("r1", "a", "0", 1e3),
    ]);
    let e = run(&nl).unwrap_err().to_string();
    assert!(e.contains("v(a)") || e.contains("i(b1)"), "{e}");
}

/// A node fed 1 A while its only path to ground can sink at most 1 mA has no operating point:
/// after plain Newton, gmin stepping and source stepping the error names the node.
#[test]
fn unsolvable_circuit_names_the_node() {
    let expr = Expr::bin(
        BinOp::Mul,
        Expr::Num(1e-3),
        Expr::Call(Func::Tanh, vec![Expr::V("a".into(), None)]),
    );
    let nl = netlist(vec![
        el(
            "i1",
            ElementKind::ISource {
                n: nodes("0", "a"),
                dc_a: 1.0,
            },
        ),
        el(
            "b1",
            ElementKind::BCurrent {
                n: nodes("a", "0"),
                expr,
            },
        ),
    ]);
    let e = run(&nl).unwrap_err().to_string();
    assert!(
        (e.contains("did not converge") || e.contains("not finite")) && e.contains("v(a)"),
        "{e}"
    );
}

/// Fallbacks rescue a plain Newton that runs out of iterations (ITL1 = 2), and the answer
/// satisfies the device equation.
#[test]
fn gmin_stepping_rescues_a_stiff_exponential() {
    let expr = scaled(1e-14, Func::Exp, 40.0, Expr::V("d".into(), None));
    let mut nl = netlist(vec![
        v("v1", "in", "0", 50.0),
        r("r1", "in", "d", 1.0),
        el(
            "b1",
            ElementKind::BCurrent {
                n: nodes("d", "0"),
                expr,
            },
        ),
    ]);
    nl.options.itl1 = 2;
    let res = run(&nl).unwrap();
    let AnalysisResult::Op { values } = &res[0] else {
        panic!()
    };
    let vd = values["v(d)"];
    let i_r = (50.0 - vd) / 1.0;
    let i_d = 1e-14 * (40.0 * vd).exp();
    assert!((i_r - i_d).abs() < 1e-9 * i_r, "{i_r} vs {i_d}");
}

/// Every device's stamp is the derivative of its currents: the assembled Jacobian of a circuit
/// holding R, V, I, E, G, F, H, B (V= and I=) and NMOS/PMOS equals central finite differences of
/// the KCL residual at an arbitrary (non-solution) point.
#[test]
fn assembled_jacobian_matches_finite_differences() {
    let nmos = MosModel {
        vto_v: 0.6,
        kp_a_per_v2: 1e-4,
        lambda_per_v: 0.05,
        gamma_sqrt_v: 0.4,
        phi_v: 0.7,
        ..MosModel::default()
    };
    let pmos = MosModel {
        nmos: false,
        vto_v: -0.6,
        ..nmos.clone()
    };
    let b_i = scaled(1e-4, Func::Sinh, 2.0, Expr::V("a".into(), Some("b".into())));
    let b_v = Expr::bin(
        BinOp::Add,
        Expr::Call(Func::Tanh, vec![Expr::V("c".into(), None)]),
        Expr::bin(BinOp::Mul, Expr::Num(50.0), Expr::I("vs".into())),
    );
    let nl = netlist(vec![
        v("v1", "a", "0", 1.2),
        r("r1", "a", "b", 2e3),
        el(
            "i1",
            ElementKind::ISource {
                n: nodes("b", "c"),
                dc_a: 1e-4,
            },
        ),
        r("r2", "c", "0", 5e3),
        el(
            "e1",
            ElementKind::Vcvs {
                out: nodes("e", "0"),
                ctrl: nodes("b", "c"),
                gain: 1.5,
            },
        ),
        r("re", "e", "d", 1e3),
        el(
            "g1",
            ElementKind::Vccs {
                out: nodes("d", "0"),
                ctrl: nodes("a", "c"),
                gm_siemens: 2e-4,
            },
        ),
        v("vs", "d", "s", 0.0),
        r("rs", "s", "0", 800.0),
        el(
            "f1",
            ElementKind::Cccs {
                out: nodes("f", "0"),
                vsrc: "vs".into(),
                gain: 2.0,
            },
        ),
        r("rf", "f", "0", 1e3),
        el(
            "h1",
            ElementKind::Ccvs {
                out: nodes("h", "0"),
                vsrc: "vs".into(),
                r_ohm: 300.0,
            },
        ),
        r("rh", "h", "g", 1e3),
        el(
            "b1",
            ElementKind::BCurrent {
                n: nodes("a", "b"),
                expr: b_i,
            },
        ),
        el(
            "b2",
            ElementKind::BVoltage {
                n: nodes("k", "0"),
                expr: b_v,
            },
        ),
        r("rk", "k", "g", 2e3),
        el(
            "m1",
            ElementKind::Mosfet {
                d: "g".into(),
                g: "a".into(),
                s: "0".into(),
                b: "0".into(),
                model: Box::new(nmos),
                w_m: 2e-6,
                l_m: 1e-6,
            },
        ),
        el(
            "m2",
            ElementKind::Mosfet {
                d: "g".into(),
                g: "c".into(),
                s: "a".into(),
                b: "a".into(),
                model: Box::new(pmos),
                w_m: 4e-6,
                l_m: 1e-6,
            },
        ),
    ]);
    let mut s = Solver::new(Circuit::build(&nl).unwrap()).unwrap();
    let n = s.circuit.n;
    let mut x: Vec<f64> = (0..=n)
        .map(|i| 0.3 + 0.17 * ((i * 7) % 11) as f64 / 11.0)
        .collect();
    for (k, xk) in x.iter_mut().enumerate().take(n).skip(s.circuit.n_nodes) {
        *xk = 1e-4 * (k as f64 - 5.0);
    }
    x[n] = 0.0;
    let jac = s.jacobian_dense(&x);
    for k in 0..n {
        let h = if k < s.circuit.n_nodes { 1e-6 } else { 1e-9 };
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp[k] += h;
        xm[k] -= h;
        let rp = s.residual(&xp);
        let rm = s.residual(&xm);
        for i in 0..n {
            let fd = (rp[i] - rm[i]) / (2.0 * h);
            let an = jac[i * n + k];
            assert!(
                (fd - an).abs() <= 1e-6 * an.abs().max(fd.abs()) + 1e-9,
                "∂F[{}]/∂{}: fd {fd:e} analytic {an:e}",
                s.circuit.unknown_name(i),
                s.circuit.unknown_name(k)
            );
        }
    }
}

/// The streamed JSON (`write_json`, used by `netc solve --json`) and the value (`to_json`, used by
/// Python) equal the object built key by key with `serde_json` (the form they replaced): key
/// order, numbers, non-finite values as null, a swept source named `values`.
#[test]
fn json_forms_equal_the_object_built_by_hand() {
    use serde_json::{json, Map, Value};
    let m = |kv: &[(&str, f64)]| -> BTreeMap<String, f64> {
        kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    let results = vec![
        AnalysisResult::Op {
            values: m(&[("v(b)", 0.1 + 0.2), ("v(a)", -1e-300), ("i(v1)", f64::NAN)]),
        },
        AnalysisResult::Dc {
            sweep: "v1".into(),
            points: vec![(0.0, m(&[("v(a)", 1.5)])), (0.5, m(&[("v(a)", 2.0 / 3.0)]))],
        },
        AnalysisResult::Dc {
            sweep: "values".into(),
            points: vec![(1.0, m(&[("v(x)", f64::INFINITY)]))],
        },
    ];
    let obj = |m: &BTreeMap<String, f64>| {
        Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<Map<_, _>>(),
        )
    };
    let by_hand: Vec<Value> = results
        .iter()
        .map(|r| match r {
            AnalysisResult::Op { values } => json!({"type": "op", "values": obj(values)}),
            AnalysisResult::Dc { sweep, points } => {
                let pts: Vec<Value> = points
                    .iter()
                    .map(|(v, m)| {
                        let mut p = Map::new();
                        p.insert(sweep.clone(), json!(v));
                        p.insert("values".into(), obj(m));
                        Value::Object(p)
                    })
                    .collect();
                json!({"type": "dc", "sweep": sweep, "points": pts})
            }
        })
        .collect();
    let expected = serde_json::to_string(&json!({ "analyses": by_hand })).unwrap();
    let mut streamed = Vec::new();
    write_json(&mut streamed, &results).unwrap();
    assert_eq!(String::from_utf8(streamed).unwrap(), expected);
    assert_eq!(serde_json::to_string(&to_json(&results)).unwrap(), expected);
    assert!(expected.contains("\"i(v1)\":null"), "{expected}");
}

/// Dense Gaussian elimination with partial pivoting of the whole modified nodal system (the
/// independent reference for the reduced solve).
fn dense_solve(s: &mut Solver) -> Vec<f64> {
    let n = s.circuit.n;
    let x0 = vec![0.0; n + 1];
    let mut a = s.jacobian_dense(&x0);
    let mut b = vec![0.0; n + 1];
    s.circuit.stamp_sources(&mut b, 1.0);
    b.truncate(n);
    for k in 0..n {
        let p = (k..n)
            .max_by(|&i, &j| a[i * n + k].abs().total_cmp(&a[j * n + k].abs()))
            .unwrap();
        for c in 0..n {
            a.swap(k * n + c, p * n + c);
        }
        b.swap(k, p);
        for i in k + 1..n {
            let f = a[i * n + k] / a[k * n + k];
            for c in k..n {
                a[i * n + c] -= f * a[k * n + c];
            }
            b[i] -= f * b[k];
        }
    }
    let mut x = vec![0.0; n];
    for k in (0..n).rev() {
        let s: f64 = (k + 1..n).map(|c| a[k * n + c] * x[c]).sum();
        x[k] = (b[k] - s) / a[k * n + k];
    }
    x
}

/// A resistor mesh with shunts, grounded voltage sources of both polarities and a current
/// source: `.op` goes through the reduced symmetric solve (`spd::Reduced`), and every node
/// voltage and source current equals dense elimination of the whole system to 1e-12 of the
/// largest value; a `.dc` sweep point reuses the factor and matches too.
#[test]
fn reduced_symmetric_solve_equals_dense_elimination() {
    let mut els = Vec::new();
    let mut seed = 12345u64;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let node = |i: usize, j: usize| format!("n{i}_{j}");
    for i in 0..6 {
        for j in 0..5 {
            if j + 1 < 5 {
                els.push(r(
                    &format!("rh{i}_{j}"),
                    &node(i, j),
                    &node(i, j + 1),
                    1.0 + 1e3 * rnd(),
                ));
            }
            if i + 1 < 6 {
                els.push(r(
                    &format!("rv{i}_{j}"),
                    &node(i, j),
                    &node(i + 1, j),
                    2.5 + 1e4 * rnd(),
                ));
            }
            if (i + j) % 4 == 0 {
                els.push(r(
                    &format!("rg{i}_{j}"),
                    &node(i, j),
                    "0",
                    1e5 * (1.0 + rnd()),
                ));
            }
        }
    }
    els.push(v("va", &node(0, 0), "0", 0.7));
    els.push(v("vb", "0", &node(5, 4), 0.3));
    els.push(v("vc", &node(3, 2), "0", -0.2));
    els.push(el(
        "i1",
        ElementKind::ISource {
            n: nodes(&node(2, 4), "0"),
            dc_a: 1e-4,
        },
    ));
    let nl = netlist(els);
    let mut s = Solver::new(Circuit::build(&nl).unwrap()).unwrap();
    let x = s.op().unwrap();
    assert!(s.reduced.is_some(), "the reduced solve was used");
    assert!(s.lu.is_none(), "the whole system was never analysed");
    let n = s.circuit.n;
    let want = dense_solve(&mut s);
    let nn = s.circuit.n_nodes;
    let names: Vec<String> = (0..n).map(|i| s.circuit.unknown_name(i)).collect();
    let close = |x: &[f64], want: &[f64]| {
        let vmax = want[..nn].iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let imax = want[nn..].iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for i in 0..n {
            let tol = 1e-12 * if i < nn { vmax } else { imax };
            assert!(
                (x[i] - want[i]).abs() <= tol,
                "{}: reduced {:e}, dense {:e}",
                names[i],
                x[i],
                want[i]
            );
        }
    };
    close(&x, &want);
    assert_eq!(x[s.circuit.node("n5_4").unwrap()], -0.3);
    // a sweep point: a new source value on the same factor
    let vb = s.circuit.source("vb").unwrap();
    let xs = s.dc(vb, &[0.9]).unwrap().remove(0);
    s.circuit.set_source_value(vb, 0.9);
    let want = dense_solve(&mut s);
    close(&xs, &want);
    assert_eq!(s.stats.factorizations, 1);
}

/// Circuits outside the reduced form go through the LU of the whole system: a voltage source
/// between two nodes, and a negative resistance that makes the conductance matrix indefinite
/// (the Cholesky factorization fails and the LU takes over, same answer as dense elimination).
#[test]
fn reduced_solve_falls_back_to_lu() {
    let floating = netlist(vec![
        v("v1", "a", "0", 1.0),
        v("v2", "b", "a", 0.5),
        r("r1", "b", "c", 1e3),
        r("r2", "c", "0", 2e3),
    ]);
    let mut s = Solver::new(Circuit::build(&floating).unwrap()).unwrap();
    let x = s.op().unwrap();
    assert!(s.reduced.is_none() && s.lu.is_some());
    let c = s.circuit.node("c").unwrap();
    assert!((x[c] - 1.5 * 2.0 / 3.0).abs() < 1e-12);
    // G_ff = [[1/1e3 − 1/500, 1/500], [1/500, 1/1e3 − 1/500]]: indefinite
    let negative = netlist(vec![
        v("v1", "a", "0", 1.0),
        r("r1", "a", "b", 1e3),
        r("r2", "b", "c", -500.0),
        r("r3", "c", "0", 1e3),
    ]);
    let mut s = Solver::new(Circuit::build(&negative).unwrap()).unwrap();
    let x = s.op().unwrap();
    assert!(s.reduced.is_none() && s.lu.is_some());
    let want = dense_solve(&mut s);
    for i in 0..s.circuit.n {
        assert!((x[i] - want[i]).abs() <= 1e-12 * want[i].abs().max(1e-3));
    }
}
