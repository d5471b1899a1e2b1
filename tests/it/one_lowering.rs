//! One lowering, one writer: the arrays the circuit backend solves and the netlists `netc compile`
//! writes for the same weights are the same circuits. Both netlists are solved by netc's general
//! SPICE solver (an MNA solver independent of the crossbar engine) and must agree on every node
//! voltage and source current to 1e-9; the crossbar engine's own solution of the backend's array
//! must give the same column outputs to 1e-9.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use faer::Mat;
use netc::cli::compile::{compile, CompileArgs};
use netc::netlist::{ElementKind, Netlist};
use netc::nn::circuit::{CircuitBackend, CircuitOverrides};
use netc::nn::from_net::{model_spec, slot_rows, weights_from_slots};
use netc::nn::loss::LossSpec;
use netc::nn::matrix::Matrix;
use netc::nn::model::Model;
use netc::solver::AnalysisResult;
use netc::xbar::{Engine, SenseKind, SolveOptions};
use rand::SeedableRng;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Tight tolerances, the same for both netlists, so that Newton's answer is the circuit's to far
/// below 1e-9.
fn solve(mut nl: Netlist) -> BTreeMap<String, f64> {
    nl.options.reltol = 1e-12;
    nl.options.vntol_v = 1e-15;
    nl.options.abstol_a = 1e-18;
    nl.options.itl1 = 500;
    match netc::solver::run(&nl)
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0)
    {
        AnalysisResult::Op { values } => values,
        r => panic!("unexpected {r:?}"),
    }
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12 * scale
}

/// Compile `src` (a `.net` text; `MODELS` stands for the models directory) with the weights the
/// circuit backend was prepared with, and compare every emitted array with the backend's.
fn same_circuits(src: &str) {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("t.net");
    std::fs::write(
        &net,
        src.replace("MODELS", &models_dir().display().to_string()),
    )
    .unwrap();
    let (file, ir) = netc::net::load(&net).unwrap_or_else(|e| panic!("{e}"));
    let spec = model_spec(&file, &ir, LossSpec::SoftmaxCrossEntropy).unwrap();
    let mut model = Model::new(spec).unwrap();
    model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    let mut circ =
        CircuitBackend::for_model(&file, &ir, &model, CircuitOverrides::default()).unwrap();
    model.prepare_backend(&mut circ).unwrap();
    let arrays = circ.arrays().unwrap();

    // the same weights, through `netc compile`
    let slots = slot_rows(&model, &ir).unwrap();
    let ws: Vec<&Matrix> = model.weights.iter().collect();
    let wf = weights_from_slots(&slots, &ws, &ir.name).unwrap();
    let wpath = dir.path().join("w.json");
    wf.save(&wpath).unwrap();
    let compiled = compile(&CompileArgs {
        net: net.clone(),
        out: Some(dir.path().join("out")),
        weights: Some(wpath),
        whole: false,
        quiet: true,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut checked = 0;
    for p in &compiled.netlists {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let a: usize = name
            .strip_prefix("array")
            .and_then(|s| s.strip_suffix(".cir"))
            .unwrap()
            .parse()
            .unwrap();
        let xb = &arrays[a];
        let from_compile = netc::spice::parse_file(p).unwrap_or_else(|e| panic!("{e}"));
        // the row voltages compile chose: its sources vin_<i>
        let v_row: Vec<f64> = (0..xb.rows)
            .map(|i| {
                let e = from_compile
                    .elements
                    .iter()
                    .find(|e| e.name == format!("vin_{i}"))
                    .unwrap_or_else(|| panic!("{name}: no vin_{i}"));
                match e.kind {
                    ElementKind::VSource { dc_v, .. } => dc_v,
                    _ => panic!("vin_{i} is not a voltage source"),
                }
            })
            .collect();
        assert!(v_row.iter().any(|v| *v != 0.0), "{name}: no input");
        let from_backend = netc::spice::parse_str(&xb.emit(&v_row).unwrap(), "backend.cir")
            .unwrap_or_else(|e| panic!("{e}"));
        // element for element the same circuit (names, nodes, values, models)
        assert_eq!(from_compile.elements.len(), from_backend.elements.len());
        for (c, b) in from_compile.elements.iter().zip(&from_backend.elements) {
            assert_eq!((&c.name, &c.kind), (&b.name, &b.kind), "{name}");
        }
        let (vc, vb) = (solve(from_compile), solve(from_backend));
        assert_eq!(
            vc.keys().collect::<Vec<_>>(),
            vb.keys().collect::<Vec<_>>(),
            "{name}: different nodes or sources"
        );
        let v_scale = v_row.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (k, x) in &vc {
            assert!(close(*x, vb[k], v_scale), "{name} {k}: {x} vs {}", vb[k]);
        }
        // the crossbar engine's solution of the backend's array: the same column outputs
        let mut e = Engine::new(xb, SolveOptions::default()).unwrap();
        let out = e
            .infer(Mat::from_fn(1, xb.rows, |_, i| v_row[i]).as_ref())
            .unwrap();
        for j in 0..xb.cols {
            let (key, scale) = match xb.sense {
                SenseKind::VirtualGround => (format!("i(vs_{j})"), v_scale * 1e-3),
                SenseKind::Tia { vsat_v, .. } => (format!("v(o_{j})"), vsat_v),
            };
            let spice = vb[&key];
            assert!(
                close(out[(0, j)], spice, scale),
                "{name} column {j}: engine {} vs general solver {spice}",
                out[(0, j)]
            );
        }
        checked += 1;
    }
    assert!(checked > 0, "nothing compiled");
}

#[test]
fn passive_array_with_wire_driver_and_sense_resistance() {
    same_circuits(
        r#"
network t { input 4; dense a { units 3; } tanh; dense b { units 2; } }
hardware { arrays 2 x 8x8; cell passive; g_min 10uS; g_max 100uS; r_wire 2.5ohm;
  r_driver 10ohm; r_sense 5ohm; }
mapping { placement per_layer; }
"#,
    );
}

#[test]
fn sinh_cells_with_opamp_sensing() {
    same_circuits(
        r#"
network t { input 5; dense a { units 3; } }
hardware { arrays 1 x 10x8; cell passive; model "MODELS/al2o3_tio2_passive.cir";
  g_min 10uS; g_max 100uS; r_wire 1ohm;
  sense opamp { gain 1e4; vsat 2V; r_feedback 10kohm; } }
"#,
    );
}

#[test]
fn one_t_one_r_cells() {
    same_circuits(
        r#"
network t { input 4; dense a { units 3; } }
hardware { arrays 1 x 8x6; cell 1t1r; model "MODELS/hfox_1t1r.cir"; g_min 10uS; g_max 100uS;
  r_wire 2.5ohm; transistor "MODELS/nmos_level1.cir"; v_gate 5V; }
"#,
    );
}

#[test]
fn zero_wire_resistance_merges_lines() {
    same_circuits(
        r#"
network t { input 4; dense a { units 3; } }
hardware { arrays 1 x 8x6; cell passive; g_min 10uS; g_max 100uS; r_wire 0ohm; r_sense 3ohm; }
"#,
    );
}
