//! `netc eval --chip`: inference on a programmed chip. Checked against the circuit backend on the
//! same weights (a chip holding exactly the encoded conductances decodes to the same effective
//! weights), against the drift law's closed form (ideal wires: a uniform power-law decay scales
//! every effective weight by (t/t0)^(−ν)), and for the errors (another network's chip, bad ages).

use std::path::{Path, PathBuf};

use netc::device::chip::{network_hash, parse_age, ArrayState, Chip, Manifest, CHIP_FORMAT};
use netc::device::DeviceParams;
use netc::nn::backend::MatmulBackend;
use netc::nn::circuit::{CircuitBackend, CircuitOverrides};
use netc::nn::from_net::{compiler_weights, model_spec};
use netc::nn::loss::LossSpec;
use netc::nn::model::Model;
use rand::SeedableRng;

use super::common::netc;

const NU: f64 = 0.05;
const T0_SECONDS: f64 = 20.0;

/// S4's `mlp_passive.net` with linear passive cells, ideal wires and ideal sensing, a noise-free
/// device with a tight verify window and a power-law drift (ν = 0.05, t0 = 20 s, no spread).
fn net_text() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists");
    let src = std::fs::read_to_string(root.join("mlp_passive.net")).unwrap();
    let out: String = src
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            // no cycle noise and nominal switching thresholds: this test is about reading a
            // precisely programmed chip (S4's ramped verify is kept)
            !(t.starts_with("model ")
                || t.starts_with("sense ")
                || t.starts_with("c2c")
                || t.starts_with("v_threshold_dtod")
                || t.starts_with("overdrive_exponent"))
        })
        .map(|l| {
            let l = l
                .replace("r_wire 10ohm;", "r_wire 0ohm;")
                .replace("r_driver 300ohm;", "r_driver 0ohm;")
                .replace("r_sense 300ohm;", "r_sense 0ohm;")
                .replace("tolerance_rel 0.05;", "tolerance_rel 0.002;")
                .replace("max_pulses 200;", "max_pulses 2000;")
                .replace(
                    "a_ltp 30; a_ltd 30; p_max 100;",
                    "a_ltp 300; a_ltd 300; p_max 2000;",
                );
            if l.trim_start().starts_with("device {") {
                format!("{l}\n    drift {{ nu {NU}; t0_seconds {T0_SECONDS}; }}\n")
            } else {
                l + "\n"
            }
        })
        .collect();
    // the edits above must all have found their lines in the S4 file
    for k in [
        "tolerance_rel 0.002;",
        "max_pulses 2000;",
        "r_wire 0ohm;",
        "r_driver 0ohm;",
        "r_sense 0ohm;",
        "a_ltp 300;",
    ] {
        assert!(
            out.contains(k),
            "mlp_passive.net changed: `{k}` not applied"
        );
    }
    out
}

fn model_for(file: &netc::net::NetFile, ir: &netc::net::NetworkIr) -> Model {
    let mut m = Model::new(
        model_spec(
            file,
            ir,
            LossSpec::Mse {
                target_on: 1.0,
                target_off: -1.0,
            },
        )
        .unwrap(),
    )
    .unwrap();
    m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    m
}

/// A chip holding exactly the conductances the encoder gives for `model` (programming without
/// error), every cell written at t = 0.
fn exact_chip(file: &netc::net::NetFile, ir: &netc::net::NetworkIr, model: &Model) -> Chip {
    exact_chip_of(&net_text(), file, ir, model)
}

fn exact_chip_of(
    text: &str,
    file: &netc::net::NetFile,
    ir: &netc::net::NetworkIr,
    model: &Model,
) -> Chip {
    let lowering = netc::mapping::lower(file, ir).unwrap();
    let hw = &file.hardware;
    let w = compiler_weights(model, ir).unwrap();
    let prog =
        netc::mapping::weights::program(&lowering, hw, file.mapping.weight_scale, &w).unwrap();
    let spec = hw.device.clone().unwrap();
    let arrays: Vec<ArrayState> = prog
        .arrays
        .iter()
        .map(|a| ArrayState {
            rows: a.rows,
            cols: a.cols,
            g_siemens: a.g_siemens.clone(),
            params: vec![DeviceParams::nominal(&spec); a.g_siemens.len()],
            pulses: vec![0; a.g_siemens.len()],
            t_written_seconds: vec![0.0; a.g_siemens.len()],
            v_gate_v: vec![0.0; a.g_siemens.len()],
        })
        .collect();
    Chip {
        manifest: Manifest {
            format: CHIP_FORMAT,
            netc_version: "test".into(),
            network: ir.name.clone(),
            network_sha256: network_hash(text),
            hardware: serde_json::Value::Null,
            device: spec,
            seed: 0,
            now_seconds: 0.0,
            arrays: arrays.iter().map(|a| [a.rows, a.cols]).collect(),
            scale_weights: None,
        },
        arrays,
    }
}

fn backends(age_seconds: f64) -> (Model, CircuitBackend, CircuitBackend, Chip) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists");
    let (file, ir) = netc::net::load_str(&net_text(), "mlp_chip.net", &dir).unwrap();
    let model = model_for(&file, &ir);
    let chip = exact_chip(&file, &ir, &model);
    let mut circ =
        CircuitBackend::for_model(&file, &ir, &model, CircuitOverrides::default()).unwrap();
    let mut on_chip = CircuitBackend::for_model(&file, &ir, &model, CircuitOverrides::default())
        .unwrap()
        .with_chip_conductances(chip.read(age_seconds, 1));
    model.prepare_backend(&mut circ).unwrap();
    model.prepare_backend(&mut on_chip).unwrap();
    (model, circ, on_chip, chip)
}

#[test]
fn exact_chip_decodes_to_the_circuit_backends_weights() {
    let (model, circ, on_chip, _) = backends(0.0);
    assert_eq!(on_chip.name(), "chip");
    for id in 0..model.weights.len() {
        let (a, b) = (
            circ.effective_weights(id).unwrap(),
            on_chip.effective_weights(id).unwrap(),
        );
        let scale = a.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(a.max_abs_diff(&b) <= 1e-12 * scale, "slot {id}");
    }
}

#[test]
fn drift_scales_the_weights_by_the_power_law() {
    let age_seconds = parse_age("30d").unwrap();
    assert_eq!(age_seconds, 30.0 * 86400.0);
    let (model, _, fresh, chip) = backends(0.0);
    let (_, _, aged, _) = backends(age_seconds);
    let k = (age_seconds / T0_SECONDS).powf(-NU);
    // closed form on one array's conductances
    let g0 = &chip.arrays[0].g_siemens;
    let g_aged = &chip.read(age_seconds, 1)[0];
    for (a, b) in g0.iter().zip(g_aged) {
        assert!((b - a * k).abs() <= 1e-12 * a, "{b} vs {a}·{k}");
    }
    // ideal wires, linear cells: W_eff = (G⁺ − G⁻)/scale, so every weight shrinks by k
    for id in 0..model.weights.len() {
        let w0 = fresh.effective_weights(id).unwrap();
        let w1 = aged.effective_weights(id).unwrap();
        let scale = w0.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in w0.data.iter().zip(&w1.data) {
            assert!(
                (b - k * a).abs() <= 1e-9 * scale,
                "slot {id}: {b} vs {k}·{a}"
            );
        }
        assert!(
            k < 0.8,
            "30 days of ν = {NU} drift is a visible decay ({k})"
        );
    }
}

#[test]
fn bad_ages_are_errors_naming_the_cause() {
    for (age, cause) in [
        ("3weeks", "unknown unit `weeks`"),
        ("abc", "is not a number"),
        ("-2h", "≥ 0"),
    ] {
        let (ok, _, err) = netc(&[
            "eval",
            "x.net",
            "--weights",
            "model.json",
            "--chip",
            "chip",
            &format!("--age={age}"),
        ]);
        assert!(!ok);
        assert!(err.contains(cause), "{age}: {err}");
    }
    for (age, s) in [
        ("2h", 7200.0),
        ("10min", 600.0),
        ("45s", 45.0),
        ("120", 120.0),
    ] {
        assert_eq!(parse_age(age).unwrap(), s);
    }
}

/// End to end: `netc program` writes a chip by write-verify (noise-free device, ideal wires,
/// window ±0.2 %); `netc eval --compare circuit,chip` then agrees with the circuit backend within
/// that programming error; the same chip given with another network file is refused.
#[test]
fn cli_program_then_eval_chip() {
    let dir = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netlists");
    let net = dir.path().join("mlp_chip.net");
    // no `model` line (linear cells): the file can live in the temp dir
    std::fs::write(&net, net_text()).unwrap();
    let (file, ir) = netc::net::load_str(&net_text(), "mlp_chip.net", &root).unwrap();
    let weights = dir.path().join("model.json");
    netc::nn::train::write_json(&weights, &model_for(&file, &ir).to_weights_file()).unwrap();
    let chip = dir.path().join("chip");
    let (ok, _, err) = netc(&[
        "program",
        net.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        chip.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = netc(&[
        "eval",
        net.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--chip",
        chip.to_str().unwrap(),
        "--compare",
        "circuit,chip",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let agree = out
        .lines()
        .find_map(|l| l.strip_prefix("identical predictions: "))
        .unwrap_or_else(|| panic!("{out}"));
    let (n, total) = agree.split_once('/').unwrap();
    let (n, total): (usize, usize) = (n.parse().unwrap(), total.parse().unwrap());
    assert!(n * 100 >= 98 * total, "{out}");
    let rms = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("layer"))
        .map(|l| l.split(':').nth(1).unwrap().trim().parse::<f64>().unwrap())
        .collect::<Vec<_>>();
    assert!(rms.len() >= 2, "{out}");
    // each cell within ±0.2 % of its target: the outputs differ by about that much, not more
    assert!(rms.iter().all(|&e| e < 0.02), "{out}");
    // another network file (same network, other text): refused, naming the cause
    let other = dir.path().join("other.net");
    std::fs::write(&other, net_text() + "// another file\n").unwrap();
    let (ok, _, err) = netc(&[
        "eval",
        other.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--chip",
        chip.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("was programmed for network"), "{err}");
}

/// A reference `.net` file with its device replaced by a noise-free one that lands exactly on its
/// target and with zero wire resistance: 1T1R arrays one-shot with the line G = V_g / 1e4 S⁻¹·V
/// over a gate range that reaches every target; passive arrays (S4) by write-verify with 5 nS
/// steps to a ±0.1 % window.
fn ideal_variant(name: &str) -> (String, &'static str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists");
    let src = std::fs::read_to_string(root.join(format!("{name}.net"))).unwrap();
    let passive = src.contains("cell passive;");
    let device = if passive {
        "  device { pulse linear { up 5nS; down 5nS; } verify { v_read 0.2V; tolerance_rel 1e-3; max_pulses 100000; } }\n"
    } else {
        "  device { set_law linear_gate; r_vg 1e4; v_gate_zero 0V; gate_range 0V .. 10V; }\n"
    };
    let mut out = String::new();
    let mut depth_in_device = 0usize;
    for line in src.lines() {
        let t = line.split("//").next().unwrap_or("").trim();
        if depth_in_device > 0 {
            depth_in_device += t.matches('{').count();
            depth_in_device -= t.matches('}').count();
            continue;
        }
        if t.starts_with("device {") {
            depth_in_device = t.matches('{').count() - t.matches('}').count();
            continue;
        }
        // ideal lines: no segment, driver or sense resistance (S4 declares all three)
        if t.starts_with("r_wire ") {
            out.push_str("  r_wire 0ohm;\n");
            continue;
        }
        if t.starts_with("r_driver ") || t.starts_with("r_sense ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if t.starts_with("hardware {") {
            out.push_str(device);
        }
    }
    (out, if passive { "write-verify" } else { "oneshot" })
}

fn eval_accuracies(json: &Path) -> Vec<(String, f64)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["backend"].as_str().unwrap().to_string(),
                e["accuracy"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// `netc program` then `netc eval --chip` on all five reference networks (the mapper's seeded
/// initial weights, a small test subset). With the network's own device, aged 30 days, the chip's
/// accuracy is a number in [0, 1]; with a noise-free device that lands on its targets and ideal
/// wires, the chip is the encoded network, so its predictions equal the circuit backend's, sample
/// for sample.
#[test]
fn program_and_eval_chip_on_all_five_reference_networks() {
    let dir = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netlists");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    for name in ["lenet", "convlstm", "mlp_1t1r", "mlp_passive", "cnn_8pe"] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let weights = d.join("model.json");
        let (ideal_text, algorithm) = ideal_variant(name);
        let ideal_net = d.join(format!("{name}_ideal.net"));
        std::fs::write(&ideal_net, &ideal_text).unwrap();
        let (file, ir) = netc::net::load_str(&ideal_text, "ideal.net", &root).unwrap();
        // the network's own model (its loss), with seeded initial weights
        let (recipe, _) = netc::nn::from_net::recipe_from(&file, ir, &ideal_net).unwrap();
        let mut model = Model::new(recipe.model).unwrap();
        model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
        netc::nn::train::write_json(&weights, &model.to_weights_file()).unwrap();
        let shipped = root.join(format!("{name}.net"));
        for (net, algorithm, age) in [
            (ideal_net.clone(), algorithm, "0"),
            (shipped.clone(), "", "30d"),
        ] {
            let chip = d.join(format!("chip_{age}"));
            let mut args = vec![
                "program".to_string(),
                s(&net),
                "--weights".into(),
                s(&weights),
                "--out".into(),
                s(&chip),
            ];
            if !algorithm.is_empty() {
                args.extend(["--algorithm".into(), algorithm.into()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (ok, _, err) = netc(&args);
            assert!(ok, "{name}: program: {err}");
            let out_dir = d.join(format!("eval_{age}"));
            std::fs::create_dir_all(&out_dir).unwrap();
            let (ok, out, err) = netc(&[
                "eval",
                &s(&net),
                "--weights",
                &s(&weights),
                "--chip",
                &s(&chip),
                "--age",
                age,
                "--compare",
                "circuit,chip",
                "--limit-test",
                "24",
                "--out",
                &s(&out_dir),
            ]);
            assert!(ok, "{name} ({age}): eval: {err}");
            let acc = eval_accuracies(&out_dir.join("eval.json"));
            assert_eq!(acc.len(), 2, "{name}: {acc:?}");
            assert_eq!(acc[1].0, "chip", "{name}: {acc:?}");
            for (b, a) in &acc {
                assert!(a.is_finite() && (0.0..=1.0).contains(a), "{name} {b}: {a}");
            }
            if age == "0" {
                assert_eq!(acc[0].1, acc[1].1, "{name}: {acc:?}\n{out}");
                let agree = out
                    .lines()
                    .find_map(|l| l.strip_prefix("identical predictions: "))
                    .unwrap_or_else(|| panic!("{name}: {out}"));
                let (n, total) = agree.split_once('/').unwrap();
                assert_eq!(n.trim(), total.trim(), "{name}: {out}");
            }
        }
    }
}

/// A chip records the weights it was programmed from (an in-situ or hybrid run freezes each
/// matrix's siemens per weight unit there); other weights evaluated on it (the trained ones) do
/// not change how its conductances decode. Checked against the circuit backend prepared with the
/// programming weights; without the record, `weight_scale auto` would decode the same chip at the
/// evaluated weights' scale (three times the weights here). S4's file has a fixed scale (its op-amp
/// neurons need one), so this test takes `auto` and a software `tanh`.
#[test]
fn chip_decodes_with_the_weights_it_records() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists");
    let text = net_text()
        .replace("weight_scale 1e-4S;", "weight_scale auto;")
        .replace("clip_weights on;", "")
        .replace("tanh { slope 1e6; }", "tanh;");
    assert!(text.contains("weight_scale auto;") && !text.contains("slope 1e6"));
    let (file, ir) = netc::net::load_str(&text, "mlp_chip.net", &dir).unwrap();
    let programmed = model_for(&file, &ir);
    let mut chip = exact_chip_of(&text, &file, &ir, &programmed);
    chip.manifest.scale_weights = Some(programmed.weights.clone());
    let mut trained = programmed.clone();
    for w in &mut trained.weights {
        for v in &mut w.data {
            *v *= 3.0;
        }
    }
    let mut circ =
        CircuitBackend::for_model(&file, &ir, &programmed, CircuitOverrides::default()).unwrap();
    programmed.prepare_backend(&mut circ).unwrap();
    let on_chip = |chip: &Chip| {
        netc::cli::eval::chip_circuit(
            &file,
            &ir,
            &trained,
            CircuitOverrides::default(),
            chip,
            0.0,
            1,
        )
        .unwrap()
    };
    let recorded = on_chip(&chip);
    chip.manifest.scale_weights = None;
    let unrecorded = on_chip(&chip);
    for id in 0..programmed.weights.len() {
        let a = circ.effective_weights(id).unwrap();
        let scale = a.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let b = recorded.effective_weights(id).unwrap();
        assert!(a.max_abs_diff(&b) <= 1e-12 * scale, "slot {id}");
        let c = unrecorded.effective_weights(id).unwrap();
        assert!(
            a.max_abs_diff(&c) > scale,
            "slot {id}: the record made no difference"
        );
    }
    // a record that does not fit the model is an error, not a wrong decode
    chip.manifest.scale_weights = Some(vec![]);
    let e = netc::cli::eval::chip_circuit(
        &file,
        &ir,
        &trained,
        CircuitOverrides::default(),
        &chip,
        0.0,
        1,
    )
    .err()
    .expect("a chip with no weight matrices for this model is refused");
    assert!(e.to_string().contains("weight matrices"), "{e}");
}
