//! Emitted netlists run in ngspice, and with zero wire resistance and ideal sensing a compiled
//! array reproduces every layer's ideal products for the encoded weights (to 1e-9 relative).
//!
//! ngspice is the independent peer here. Without it the tests are skipped with a message, except
//! under `CI=true`, where a missing ngspice fails them.

use netc::cli::compile::{compile, CompileArgs};
use netc::mapping::emit::{array_circuit, whole_circuit, Emitted};
use netc::mapping::weights::{drive_tile, program, tile_ideal_outputs, tile_outputs, WeightsFile};
use netc::mapping::{lower, Lowering, Programmed};
use netc::net::{NetFile, NetworkIr};
use netc::solver::AnalysisResult;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn have_ngspice() -> bool {
    netc::peers::ngspice::require_for_test().is_some()
}

/// Run a netlist text in ngspice (`.op`, full precision from the raw file); names in netc's
/// convention (`v(node)`, `i(vsrc)`).
fn ngspice(netlist: &str) -> BTreeMap<String, f64> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.cir");
    std::fs::write(&p, netlist).unwrap();
    let plots = netc::peers::ngspice::run(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plots[0].kind, "op");
    plots[0].point_map(0)
}

fn solve_netlist(nl: &netc::netlist::Netlist) -> BTreeMap<String, f64> {
    match netc::solver::run(nl)
        .unwrap_or_else(|err| panic!("{err}"))
        .remove(0)
    {
        AnalysisResult::Op { values } => values,
        r => panic!("unexpected {r:?}"),
    }
}

/// Solve an emitted circuit with netc: the netlist text is parsed back by netc's SPICE front end
/// and solved; it must give the same answer as the circuit built in memory (to 1e-12).
fn netc_solve(e: &Emitted) -> BTreeMap<String, f64> {
    let text = e.to_spice();
    let parsed = netc::spice::parse_str(&text, "emitted.cir").unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(parsed.elements.len(), e.netlist.elements.len());
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let from_text = solve_netlist(&parsed);
    let direct = solve_netlist(&e.netlist);
    assert_eq!(from_text.len(), direct.len());
    for (k, a) in &direct {
        let b = from_text[k];
        assert!(
            (a - b).abs() <= 1e-12 * a.abs().max(b.abs()) + 1e-18,
            "{k}: in memory {a} vs parsed text {b}"
        );
    }
    from_text
}

/// Every ngspice value is matched by netc's within `rtol·|x| + atol`; returns the worst relative
/// difference among values above 1e-9 in magnitude.
fn agree(netc: &BTreeMap<String, f64>, ng: &BTreeMap<String, f64>, rtol: f64, atol: f64) -> f64 {
    let mut worst = 0.0f64;
    let mut n = 0;
    for (k, b) in ng {
        let Some(a) = netc.get(k) else { continue };
        n += 1;
        let d = (a - b).abs();
        let mag = a.abs().max(b.abs());
        assert!(d <= rtol * mag + atol, "{k}: netc {a} vs ngspice {b}");
        if mag > 1e-9 {
            worst = worst.max(d / mag);
        }
    }
    assert!(
        n > 0 && n + 2 >= ng.len().min(netc.len()),
        "only {n} common values"
    );
    worst
}

fn load(src: &str) -> (tempfile::TempDir, NetFile, NetworkIr) {
    let dir = tempfile::tempdir().unwrap();
    let src = src.replace("MODELS", &root().join("models").display().to_string());
    std::fs::write(dir.path().join("t.net"), src).unwrap();
    let (file, ir) = netc::net::load(&dir.path().join("t.net")).unwrap_or_else(|e| panic!("{e}"));
    (dir, file, ir)
}

/// For every tile of every matrix: drive its rows, solve the array in ngspice, combine the
/// column currents into logical outputs and compare them with the products of the *encoded*
/// weights, `pairs · scale · Σ_i x_i · quantise(w_ij)`. Returns the worst relative error.
fn check_products(
    file: &NetFile,
    ir: &NetworkIr,
    low: &Lowering,
    w: &WeightsFile,
    prog: &Programmed,
    use_ngspice: bool,
) -> f64 {
    let hw = &file.hardware;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut worst = 0.0f64;
    for (mi, m) in low.matrices.iter().enumerate() {
        let lw = w.layer(&m.layer).unwrap();
        let enc = prog.encoders[mi];
        let x: Vec<f64> = (0..m.weight_rows)
            .map(|_| rng.gen_range(hw.v_in_v[0]..=hw.v_in_v[1]))
            .collect();
        let xin = |i: usize| if i < m.weight_rows { x[i] } else { hw.v_bias_v };
        let mut layer_sum = vec![0.0; m.cols];
        for (ti, t) in m.tiles.iter().enumerate() {
            let rows = drive_tile(low, hw, mi, ti, &x);
            let circuit = array_circuit(file, &prog.arrays[t.array], &rows).unwrap();
            let v = if use_ngspice {
                let ng = ngspice(&circuit.to_spice());
                agree(&netc_solve(&circuit), &ng, 1e-9, 1e-15);
                ng
            } else {
                netc_solve(&circuit)
            };
            let cols: Vec<f64> = (0..low.cols).map(|j| v[&format!("i(vs_{j})")]).collect();
            let got = tile_outputs(low, mi, ti, &cols);
            let from_g = tile_ideal_outputs(low, hw, prog, mi, ti, &x);
            for (jj, j) in (t.out_start..t.out_start + t.out_len).enumerate() {
                let mut want = 0.0;
                let mut mag = 0.0;
                for i in t.in_start..t.in_start + t.in_len {
                    let xi = xin(i);
                    let wij =
                        netc::mapping::weights::logical_value(lw, m.weight_rows, m.bias_rows, i, j);
                    let term = m.pairs as f64 * enc.scale_siemens * xi * enc.quantise(wij);
                    want += term;
                    mag += term.abs();
                }
                let err = (got[jj] - want).abs() / mag.max(1e-30);
                worst = worst.max(err);
                assert!(
                    err < 1e-9,
                    "{} tile {ti} output {j}: ngspice {} vs encoded weights {want} (rel {err:e})",
                    m.layer,
                    got[jj]
                );
                assert!((from_g[jj] - want).abs() <= 1e-12 * mag.max(1e-30));
                if t.replica == 0 {
                    layer_sum[j] += got[jj];
                }
            }
        }
        // partial sums of all parts add up to the whole layer's product
        let l = ir.layer(&m.layer).unwrap();
        assert!(l.matrix.is_some());
        for (j, s) in layer_sum.iter().enumerate() {
            let mut want = 0.0;
            let mut mag = 0.0;
            for i in 0..m.logical_rows() {
                let xi = xin(i);
                let wij =
                    netc::mapping::weights::logical_value(lw, m.weight_rows, m.bias_rows, i, j);
                let term = m.pairs as f64 * enc.scale_siemens * xi * enc.quantise(wij);
                want += term;
                mag += term.abs();
            }
            assert!((s - want).abs() <= 1e-9 * mag, "{} output {j}", m.layer);
        }
    }
    worst
}

#[test]
fn zero_wire_columns_pairs_split_replicas_match_encoded_products() {
    // 10 inputs + bias on 8-row arrays: two parts; two pairs on adjacent columns; 2 replicas.
    let (_d, file, ir) = load(
        r#"
network t { input 10; bias on; dense a { units 3; } tanh; dense b { units 2; } }
hardware { arrays 4 x 8x16; cell passive; g_min 10uS; g_max 100uS; r_wire 0ohm; }
mapping { pairs 2; orientation columns; weight_scale 2e-5S; layer a { replicas 2; } }
"#,
    );
    let low = lower(&file, &ir).unwrap();
    assert_eq!(low.matrix("a").unwrap().parts(), 2);
    let w = WeightsFile::init(&ir, 4);
    let prog = program(&low, &file.hardware, file.mapping.weight_scale, &w).unwrap();
    let worst = check_products(&file, &ir, &low, &w, &prog, false);
    eprintln!("netc: worst relative error vs encoded products: {worst:e}");
    if have_ngspice() {
        let worst = check_products(&file, &ir, &low, &w, &prog, true);
        eprintln!("ngspice: worst relative error vs encoded products: {worst:e}");
    }
}

#[test]
fn zero_wire_rows_quantised_conv_match_encoded_products() {
    // conv kernels unrolled into columns, pairs on rows fed ±V, 8-level devices.
    let (_d, file, ir) = load(
        r#"
network t { input 5x5x2; conv2d c { kernels 3; size 2x2; bias on; } relu; flatten; dense f { units 2; } }
hardware { arrays 2 x 20x12; cell passive; g_min 2.5uS; g_max 20uS; levels 8; r_wire 0ohm; v_in 0V .. 0.2V; }
mapping { pairs 1; orientation rows; bias_rows 2; }
"#,
    );
    let low = lower(&file, &ir).unwrap();
    let w = WeightsFile::init(&ir, 2);
    let prog = program(&low, &file.hardware, file.mapping.weight_scale, &w).unwrap();
    check_products(&file, &ir, &low, &w, &prog, false);
    if have_ngspice() {
        check_products(&file, &ir, &low, &w, &prog, true);
    }
}

/// S4 end to end: `netc compile --whole` writes what it built; netc solves every circuit and,
/// when ngspice is installed, agrees with it.
#[test]
fn s4_passive_mlp_netlists_and_whole_circuit_solve_and_agree_with_ngspice() {
    let dir = tempfile::tempdir().unwrap();
    let args = CompileArgs {
        net: root().join("netlists/mlp_passive.net"),
        out: Some(dir.path().to_path_buf()),
        weights: None,
        whole: true,
        quiet: true,
    };
    let c = compile(&args).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.netlists.len(), 3);
    for f in [
        "mapping.json",
        "floorplan.png",
        "floorplan.svg",
        "array0.cir",
        "array1.cir",
        "network.cir",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    // Rebuild the same circuits in memory: their text is exactly the written files.
    let rows = netc::mapping::emit::demo_rows(&c.lowering, &c.file.hardware, c.file.mapping.seed);
    let mut circuits: Vec<(PathBuf, Emitted)> = c
        .lowering
        .arrays_used()
        .into_iter()
        .map(|a| {
            (
                dir.path().join(format!("array{a}.cir")),
                array_circuit(&c.file, &c.programmed.arrays[a], &rows[a]).unwrap(),
            )
        })
        .collect();
    let x = netc::cli::compile::whole_inputs(&c.file, &c.ir);
    circuits.push((
        dir.path().join("network.cir"),
        whole_circuit(&c.file, &c.ir, &c.lowering, &c.programmed, &x).unwrap(),
    ));
    let ng = have_ngspice();
    for (path, e) in &circuits {
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            e.to_spice(),
            "{}",
            path.display()
        );
        let v = netc_solve(e);
        assert!(v.values().all(|x| x.is_finite()), "{}", path.display());
        if ng {
            let worst = agree(&v, &ngspice(&e.to_spice()), 1e-6, 1e-12);
            eprintln!(
                "{}: netc vs ngspice worst relative difference {worst:e}",
                path.display()
            );
        }
    }
    // whole circuit: every hidden neuron within ±0.2 V, every output present
    let v = netc_solve(&circuits.last().unwrap().1);
    for j in 0..10 {
        let h = v[&format!("v(h0_{j})")];
        assert!(h.abs() <= 0.2 + 1e-12, "h0_{j} = {h}");
    }
    for k in 0..4 {
        assert!(v.contains_key(&format!("v(out{k})")));
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("mapping.json")).unwrap())
            .unwrap();
    assert_eq!(json["report"]["total_params"], 214);
}

/// A 6-4-3 perceptron with op-amp tanh neurons (slope 2e4 per ampere) on two 8×8 arrays of linear
/// cells without wire resistance, op-amp gain 1e7; `mapping` adds keys to the mapping block.
fn whole_mlp(mapping: &str) -> String {
    format!(
        r#"
network t {{ input 6; bias on; dense h {{ units 4; }} tanh {{ slope 2e4; }} dense o {{ units 3; }} }}
hardware {{ arrays 2 x 8x8; cell passive; g_min 10uS; g_max 100uS; r_wire 0ohm; v_bias 0.2V;
  sense opamp {{ gain 1e7; vsat 10V; r_feedback 10kohm; }} }}
mapping {{ pairs 1; orientation columns; placement per_layer; {mapping} }}
"#
    )
}

/// A small whole MLP with linear cells and no wire resistance against a forward pass computed
/// here from the programmed conductances (op-amp gain 1e7: virtual-ground error ~1e-6).
#[test]
fn whole_mlp_matches_forward_pass() {
    let (_d, file, ir) = load(&whole_mlp(""));
    let low = lower(&file, &ir).unwrap();
    let w = WeightsFile::init(&ir, 8);
    let prog = program(&low, &file.hardware, file.mapping.weight_scale, &w).unwrap();
    let x = [0.2, -0.1, 0.05, -0.2, 0.15, 0.0];
    let e = whole_circuit(&file, &ir, &low, &prog, &x).unwrap();
    let mut results = vec![("netc", netc_solve(&e))];
    if have_ngspice() {
        results.push(("ngspice", ngspice(&e.to_spice())));
    }
    let dh = tile_ideal_outputs(&low, &file.hardware, &prog, 0, 0, &x);
    let h: Vec<f64> = dh.iter().map(|d| 0.2 * (2e4 * d).tanh()).collect();
    let dout = tile_ideal_outputs(&low, &file.hardware, &prog, 1, 0, &h);
    for (who, v) in &results {
        for (j, hj) in h.iter().enumerate() {
            let got = v[&format!("v(h0_{j})")];
            assert!((got - hj).abs() < 1e-5, "h{j}: {who} {got} vs {hj}");
        }
        for (k, d) in dout.iter().enumerate() {
            let want = 10.0 * (1e4 * d / 10.0).tanh();
            let got = v[&format!("v(out{k})")];
            assert!(
                (got - want).abs() < 1e-5 * want.abs().max(1e-3),
                "out{k}: {who} {got} vs {want}"
            );
        }
    }
}

/// The trainer's network of a `.net` file with op-amp neurons is the circuit `compile --whole`
/// writes: S4's eq. 1, `V_H = v_h·tanh(slope·(I⁺ − I⁻))` with the slope per ampere, so the model's
/// output (weight units) times the siemens per unit and the feedback resistance is each output
/// neuron's voltage. Linear cells, no wires, op-amp gain 1e7; solved by netc (and ngspice when
/// present). Before the slope was converted, the model's hidden layer was `tanh(slope·x)` in
/// weight units: 10⁴ times steeper than the hardware's at this scale.
#[test]
fn trainer_network_is_the_whole_circuit() {
    let (_d, file, ir) = load(&whole_mlp("weight_scale 1e-4S;"));
    let spec = netc::nn::from_net::model_spec(
        &file,
        &ir,
        netc::nn::loss::LossSpec::Mse {
            target_on: 1.0,
            target_off: -1.0,
        },
    )
    .unwrap();
    let mut model = netc::nn::model::Model::new(spec).unwrap();
    model.init(&mut ChaCha8Rng::seed_from_u64(8));
    let low = lower(&file, &ir).unwrap();
    let w = netc::nn::from_net::compiler_weights(&model, &ir).unwrap();
    let prog = program(&low, &file.hardware, file.mapping.weight_scale, &w).unwrap();
    // no weight outside the window: the encoder stores each exactly
    assert!(prog
        .arrays
        .iter()
        .all(|a| a.g_siemens.iter().all(|g| *g <= 100e-6)));
    let x = [0.2, -0.1, 0.05, -0.2, 0.15, 0.0];
    let e = whole_circuit(&file, &ir, &low, &prog, &x).unwrap();
    let mut results = vec![("netc", netc_solve(&e))];
    if have_ngspice() {
        results.push(("ngspice", ngspice(&e.to_spice())));
    }
    let mut b = netc::nn::backend::IdealBackend::new();
    model.prepare_backend(&mut b).unwrap();
    let xm = netc::nn::Matrix::from_vec(1, 6, x.to_vec()).unwrap();
    let (out, _) = model.forward(&mut b, &xm, &mut test_ctx!()).unwrap();
    let (scale_siemens, rf_ohm) = (1e-4, 10e3);
    let mut swing = 0.0f64;
    for (who, v) in &results {
        for (k, y) in out.data.iter().enumerate() {
            // each output neuron is Rf·(I⁺ − I⁻) = Rf·scale·y, far from its 10 V rails here
            let want = rf_ohm * scale_siemens * y;
            let got = v[&format!("v(out{k})")];
            swing = swing.max(want.abs());
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1e-3),
                "out{k}: {who} {got} vs trainer {want}"
            );
        }
        // and the hidden neurons are not saturated (the check would not see the slope if they were)
        for j in 0..4 {
            let h = v[&format!("v(h0_{j})")];
            assert!(h.abs() < 0.19, "h0_{j} = {h} saturates");
        }
    }
    assert!(swing > 1e-2, "outputs too small to compare: {swing}");
}

#[test]
fn one_t_one_r_array_solves_and_transistors_conduct() {
    let (_d, file, ir) = load(
        r#"
network t { input 4; dense a { units 3; } }
hardware { arrays 1 x 4x6; cell 1t1r; model "MODELS/hfox_1t1r.cir"; g_min 10uS; g_max 100uS;
  r_wire 2.5ohm; transistor "MODELS/nmos_level1.cir"; v_gate 5V; }
"#,
    );
    let low = lower(&file, &ir).unwrap();
    let w = WeightsFile::init(&ir, 1);
    let prog = program(&low, &file.hardware, file.mapping.weight_scale, &w).unwrap();
    let x = [0.2, 0.1, 0.05, 0.15];
    let rows = drive_tile(&low, &file.hardware, 0, 0, &x);
    let e = array_circuit(&file, &prog.arrays[0], &rows).unwrap();
    assert!(e.to_spice().contains(".model nmos1 nmos (level=1"));
    let v = netc_solve(&e);
    if have_ngspice() {
        agree(&v, &ngspice(&e.to_spice()), 1e-6, 1e-12);
    }
    // with the access transistors (~185 ohm on) and 2.5 ohm wires in series, and only positive
    // inputs, the column currents stay within a few percent below Σ V·g
    let a = &prog.arrays[0];
    for j in 0..6 {
        let ideal: f64 = (0..4).map(|i| rows[i] * a.g(i, j)).sum();
        let got = v[&format!("i(vs_{j})")];
        assert!(
            (got - ideal).abs() <= 0.05 * ideal.abs() + 1e-9,
            "col {j}: {got} vs {ideal}"
        );
        assert!(got <= ideal * (1.0 + 1e-9), "col {j}: {got} vs {ideal}");
        assert!(got > 0.0);
    }
}

#[test]
fn compile_writes_everything_atomically_and_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| CompileArgs {
        net: root().join("netlists/convlstm.net"),
        out: Some(out.to_path_buf()),
        weights: None,
        whole: false,
        quiet: true,
    };
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    compile(&args(&a)).unwrap();
    compile(&args(&b)).unwrap();
    for f in ["array0.cir", "mapping.json", "floorplan.svg"] {
        let x = std::fs::read(a.join(f)).unwrap();
        let y = std::fs::read(b.join(f)).unwrap();
        assert!(x == y, "{f} differs between two runs");
    }
    // no temporary files left behind
    let names: Vec<String> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    // weights from a file: the written file drives the same conductances
    let c = compile(&args(&a)).unwrap();
    let wpath = dir.path().join("w.json");
    c.weights.save(&wpath).unwrap();
    let mut with = args(&b);
    with.weights = Some(wpath);
    let c2 = compile(&with).unwrap();
    assert!(c.programmed.arrays == c2.programmed.arrays);
}

/// The five reference systems: netc solves every emitted array netlist and agrees with ngspice.
/// Heavy (a 128×64 1T1R array has ~41k elements; ngspice needs minutes): run by hand with
/// `cargo test --release --test compile_netlists -- --ignored --nocapture`.
#[test]
#[ignore]
fn reference_arrays_agree_with_ngspice() {
    let ng = have_ngspice();
    for name in ["mlp_passive", "convlstm", "cnn_8pe", "mlp_1t1r", "lenet"] {
        let dir = tempfile::tempdir().unwrap();
        let args = CompileArgs {
            net: root().join(format!("netlists/{name}.net")),
            out: Some(dir.path().to_path_buf()),
            weights: None,
            whole: false,
            quiet: true,
        };
        let c = compile(&args).unwrap_or_else(|e| panic!("{e}"));
        let rows =
            netc::mapping::emit::demo_rows(&c.lowering, &c.file.hardware, c.file.mapping.seed);
        for a in c.lowering.arrays_used() {
            let e = array_circuit(&c.file, &c.programmed.arrays[a], &rows[a]).unwrap();
            let t0 = std::time::Instant::now();
            let v = netc_solve(&e);
            let t_netc = t0.elapsed().as_secs_f64();
            if ng {
                let t0 = std::time::Instant::now();
                let n = ngspice(&e.to_spice());
                let t_ng = t0.elapsed().as_secs_f64();
                let worst = agree(&v, &n, 1e-6, 1e-12);
                eprintln!(
                    "{name} array{a}: {} elements, netc {t_netc:.2} s, ngspice {t_ng:.2} s, worst relative difference {worst:e}",
                    e.netlist.elements.len()
                );
            }
        }
    }
}
