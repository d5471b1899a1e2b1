//! In-situ, ex-situ and hybrid training on the chip (`netc::insitu`): resume equality, the
//! papers' write rules against their closed forms, stuck devices, the read-back weights.

use std::path::{Path, PathBuf};

use netc::device::chip::{ArrayState, Chip};
use netc::device::Fault;
use netc::insitu::{self, CellMap, Overrides, Rule, RunOptions, TrainMode};
use netc::nn::backend::MatmulBackend;
use netc::nn::from_net::slot_rows;
use netc::nn::matrix::Matrix;
use netc::nn::model::Model;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn net(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("netlists")
        .join(name)
}

fn small(limit_train: usize, limit_test: usize) -> Overrides {
    Overrides {
        limit_train: Some(limit_train),
        limit_test: Some(limit_test),
        ..Default::default()
    }
}

/// A killed in-situ run resumed from its checkpoint ends exactly where an uninterrupted run
/// ends: same batch curve, same chip (bit for bit), same accuracies.
#[test]
fn killed_insitu_run_resumes_to_the_same_result() {
    let ov = Overrides {
        max_updates: Some(6),
        batch: Some(50),
        ..small(300, 100)
    };
    let d1 = tempfile::tempdir().unwrap();
    let whole = insitu::run(
        &net("lenet.net"),
        &ov,
        &RunOptions {
            out_dir: Some(d1.path().into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(whole.updates, 6);
    assert!(!whole.interrupted);
    let d2 = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out_dir: Some(d2.path().into()),
        stop_after_updates: Some(3),
        ..Default::default()
    };
    let part = insitu::run(&net("lenet.net"), &ov, &opts).unwrap();
    assert!(part.interrupted);
    assert_eq!(part.updates, 3);
    let resumed = insitu::run(
        &net("lenet.net"),
        &ov,
        &RunOptions {
            resume: true,
            stop_after_updates: None,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(resumed.updates, 6);
    assert_eq!(resumed.batches, whole.batches);
    assert_eq!(resumed.chip.arrays, whole.chip.arrays);
    assert_eq!(resumed.chip_final, whole.chip_final);
    assert_eq!(resumed.cells_written, whole.cells_written);
    // the per-update write counts add up: the run's cells are the initial programming (every
    // used cell once) plus every update's
    let per_update: u64 = whole.batches.iter().map(|b| b.cells_written).sum();
    assert!(per_update > 0);
    assert_eq!(
        whole.cells_written - per_update,
        whole.g_before_siemens.len() as u64
    );
    // the run wrote its outputs
    for f in [
        "result.json",
        "batches.csv",
        "chip/chip.json",
        "batch_curve.png",
    ] {
        assert!(d1.path().join(f).is_file(), "{f}");
    }
}

/// Everything the rule tests need: the setup of a reference network, its cell map and a chip of
/// nominal devices holding `g0` everywhere.
struct Rig {
    setup: insitu::Setup,
    model: Model,
    map: CellMap,
    chip: Chip,
}

fn rig(name: &str, ov: &Overrides, g0: f64) -> Rig {
    let setup = insitu::setup(&net(name), ov).unwrap();
    let mut model = Model::new(setup.preset.model.clone()).unwrap();
    model.init(&mut ChaCha8Rng::seed_from_u64(1));
    let slots = slot_rows(&model, &setup.ir).unwrap();
    let map = CellMap::new(&setup.lowering, &slots, &model).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(5);
    let prog = setup.programmed(&model, &model.weights).unwrap();
    let arrays: Vec<ArrayState> = prog
        .arrays
        .iter()
        .map(|a| {
            let mut st = ArrayState::fresh(&setup.spec, a.rows, a.cols, &mut r);
            for (g, p) in st.g_siemens.iter_mut().zip(&st.params) {
                if !matches!(p.fault, Fault::Stuck { .. }) {
                    *g = g0;
                }
            }
            st
        })
        .collect();
    let chip = Chip {
        manifest: netc::device::chip::Manifest {
            format: netc::device::chip::CHIP_FORMAT,
            netc_version: "test".into(),
            network: setup.ir.name.clone(),
            network_sha256: String::new(),
            hardware: serde_json::Value::Null,
            device: setup.spec.clone(),
            seed: 0,
            now_seconds: 0.0,
            arrays: arrays.iter().map(|a| [a.rows, a.cols]).collect(),
            scale_weights: None,
        },
        arrays,
    };
    Rig {
        setup,
        model,
        map,
        chip,
    }
}

/// Zero updates except `dw` at element `e` of slot `id`.
fn one_update(model: &Model, id: usize, e: usize, dw: f64) -> Vec<Matrix> {
    let mut d: Vec<Matrix> = model
        .weights
        .iter()
        .map(|w| Matrix::zeros(w.rows, w.cols))
        .collect();
    d[id].data[e] = dw;
    d
}

/// S1's rule (seed 001, Methods): a written cell's new gate is its last gate plus R_vg·ΔG,
/// clamped to the gate range, and (noise-free, linear rule) its conductance is the rule's
/// G = (V_gate − V_0)/R_vg; cells of other weights are not written.
#[test]
fn s1_gate_rule_matches_its_closed_form() {
    let ov = Overrides {
        program_noise_siemens: Some(0.0),
        ..small(10, 10)
    };
    let mut rig = rig("lenet.net", &ov, 50e-6);
    let spec = rig.setup.spec.clone();
    let (r_vg, v0) = match spec.set_law {
        netc::device::SetLaw::LinearGate {
            r_vg_v_per_siemens,
            v_gate_zero_v,
        } => (r_vg_v_per_siemens, v_gate_zero_v),
        _ => panic!("lenet.net declares S1's linear gate rule"),
    };
    let rule = Rule::of(&rig.setup).unwrap();
    assert_eq!(
        rule,
        Rule::Gate {
            r_vg_v_per_siemens: r_vg
        }
    );
    let scale = 1e-4; // lenet.net: weight_scale 1e-4 S
                      // a last gate on one cell of weight (slot 2, element 7), none on the others
    let cells = rig.map.slots[2][7].clone();
    assert_eq!(cells.len(), 4, "2 pairs × (g+, g−)");
    let c0 = cells[0];
    rig.chip.arrays[c0.array].v_gate_v[c0.cell] = 1.2;
    let before = rig.chip.arrays[0].g_siemens.clone();
    for (dw, expect_clamp) in [(0.3, false), (40.0, true)] {
        let gates: Vec<f64> = cells
            .iter()
            .map(|c| {
                let st = &rig.chip.arrays[c.array];
                insitu::rules::last_gate(&spec, st.v_gate_v[c.cell], st.g_siemens[c.cell])
            })
            .collect();
        let d = one_update(&rig.model, 2, 7, dw);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let stats = rule
            .apply(
                &rig.setup.file.hardware,
                &spec,
                &mut rig.chip,
                &rig.map,
                &vec![scale; rig.model.weights.len()],
                &d,
                &vec![true; rig.model.weights.len()],
                &mut rng,
            )
            .unwrap();
        assert_eq!(stats.cells_written, 4);
        for (c, last) in cells.iter().zip(&gates) {
            let dg = c.sign * c.share * scale * dw / 2.0;
            let want = (last + r_vg * dg).clamp(spec.v_gate_min_v, spec.v_gate_max_v);
            let st = &rig.chip.arrays[c.array];
            assert!((st.v_gate_v[c.cell] - want).abs() < 1e-12);
            let g_want = ((want - v0) / r_vg).clamp(spec.g_min_siemens, spec.g_max_siemens);
            assert!(
                (st.g_siemens[c.cell] - g_want).abs() < 1e-15,
                "{} vs {g_want}",
                st.g_siemens[c.cell]
            );
            if expect_clamp {
                assert!(
                    want == spec.v_gate_min_v || want == spec.v_gate_max_v,
                    "a 40-unit step must clamp the gate"
                );
            }
        }
    }
    // every other cell of the array kept its conductance
    let written: Vec<usize> = cells.iter().map(|c| c.cell).collect();
    for (k, (a, b)) in before.iter().zip(&rig.chip.arrays[0].g_siemens).enumerate() {
        if !written.contains(&k) {
            assert_eq!(a, b, "cell {k} moved");
        }
    }
}

/// S3: stuck devices never move during in-situ updates (gate-controlled SET aimed at G + ΔG),
/// while the free devices of the same weights do.
#[test]
fn stuck_devices_never_move_in_situ() {
    let ov = Overrides {
        stuck_off_fraction: Some(0.5),
        ..small(10, 10)
    };
    let mut rig = rig("mlp_1t1r.net", &ov, 100e-6);
    let rule = Rule::of(&rig.setup).unwrap();
    assert_eq!(rule, Rule::OneShotTarget);
    let spec = rig.setup.spec.clone();
    // updates on the weights of one output column (few columns: few SET solves)
    let slot = 0;
    let cols = rig.model.weights[slot].cols;
    let mut d: Vec<Matrix> = rig
        .model
        .weights
        .iter()
        .map(|w| Matrix::zeros(w.rows, w.cols))
        .collect();
    for r in 0..rig.model.weights[slot].rows {
        d[slot].data[r * cols] = if r % 2 == 0 { 0.5 } else { -0.5 };
    }
    let before = rig.chip.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let scale = vec![(spec.g_max_siemens - spec.g_min_siemens) / 2.0; rig.model.weights.len()];
    rule.apply(
        &rig.setup.file.hardware,
        &spec,
        &mut rig.chip,
        &rig.map,
        &scale,
        &d,
        &vec![true; rig.model.weights.len()],
        &mut rng,
    )
    .unwrap();
    let (mut stuck, mut moved_free) = (0, 0);
    for (a, b) in before.arrays.iter().zip(&rig.chip.arrays) {
        for k in 0..a.g_siemens.len() {
            match a.params[k].fault {
                Fault::Stuck { g_siemens } => {
                    stuck += 1;
                    assert_eq!(b.g_siemens[k], g_siemens, "a stuck device moved");
                }
                _ => moved_free += (a.g_siemens[k] != b.g_siemens[k]) as usize,
            }
        }
    }
    assert!(
        stuck > 0 && moved_free > 0,
        "{stuck} stuck, {moved_free} moved"
    );
}

/// S5's threshold rule: an update whose |ΔG| is below 1.5 µS writes nothing (pulse counters and
/// conductances unchanged); one above it is written by write-verify.
#[test]
fn threshold_rule_skips_small_updates() {
    let mut rig = rig("cnn_8pe.net", &small(10, 10), 10e-6);
    let spec = rig.setup.spec.clone();
    let rule = Rule::of(&rig.setup).unwrap();
    assert_eq!(
        rule,
        Rule::Threshold {
            threshold_siemens: 1.5e-6
        }
    );
    let scale = 1e-6; // 1 µS per weight unit
    let n = rig.model.weights.len();
    let id = n - 1; // the FC layer
    let pulses =
        |c: &Chip| -> Vec<Vec<u32>> { c.arrays.iter().map(|a| a.pulses.clone()).collect() };
    let gs = |c: &Chip| -> Vec<Vec<f64>> { c.arrays.iter().map(|a| a.g_siemens.clone()).collect() };
    let p0 = pulses(&rig.chip);
    let g0 = gs(&rig.chip);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let small_update = one_update(&rig.model, id, 3, 1.4); // ΔG = 1.4 µS < 1.5 µS
    let st = rule
        .apply(
            &rig.setup.file.hardware,
            &spec,
            &mut rig.chip,
            &rig.map,
            &vec![scale; n],
            &small_update,
            &vec![true; n],
            &mut rng,
        )
        .unwrap();
    assert_eq!((st.cells_written, st.pulses, st.skipped), (0, 0, 1));
    assert_eq!(pulses(&rig.chip), p0);
    assert_eq!(gs(&rig.chip), g0);
    let big = one_update(&rig.model, id, 3, 4.0); // ΔG = 4 µS: written
    let st = rule
        .apply(
            &rig.setup.file.hardware,
            &spec,
            &mut rig.chip,
            &rig.map,
            &vec![scale; n],
            &big,
            &vec![true; n],
            &mut rng,
        )
        .unwrap();
    assert_eq!(st.skipped, 0);
    assert_eq!(st.cells_written, rig.map.slots[id][3].len() as u64);
    assert!(st.pulses > 0);
    assert_ne!(pulses(&rig.chip), p0);
}

/// S5's eq. 1: the threshold rule's step is ΔW = −η·Σᵢ Vᵢ·δᵢ over the batch, i.e. η·batch
/// times the batch-mean gradient the model gives — no accumulator, no momentum: two calls with
/// the same gradient give the same step (hand-computed case).
#[test]
fn threshold_rule_step_is_eta_times_the_batch_sum() {
    use netc::nn::optim::{Optimizer, OptimizerSpec};
    let rule = Rule::Threshold {
        threshold_siemens: 1.5e-6,
    };
    let mut opt = Optimizer::new(OptimizerSpec::Threshold {
        lr: 0.002,
        threshold: 1.5e-6,
    });
    let w = vec![Matrix::from_vec(1, 3, vec![0.3, -0.2, 0.0]).unwrap()];
    // batch-mean gradients of a batch of 100
    let g = vec![Matrix::from_vec(1, 3, vec![0.5, -1.0, 0.0]).unwrap()];
    for _ in 0..2 {
        let d = rule.deltas(&mut opt, &w, &g, 100).unwrap();
        // −0.002 · 100 · (0.5, −1, 0)
        let want = [-0.1, 0.2, 0.0];
        for (a, b) in d[0].data.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{:?} != {want:?}", d[0].data);
        }
    }
}

/// S4's Manhattan rule: every written cell gets exactly one pulse, in the sign of its ΔG (g⁺
/// up and g⁻ down for a positive update), and half-selected cells (V/2 below the switching
/// threshold) get none.
#[test]
fn manhattan_gives_each_written_cell_one_pulse_in_the_update_sign() {
    let ov = Overrides {
        optimizer: Some(netc::net::spec::Optimizer::Manhattan { step_siemens: 1e-6 }),
        ..small(10, 10)
    };
    let mut rig = rig("mlp_passive.net", &ov, 50e-6);
    // the rule's mechanics with one nominal 1 V threshold for both polarities and a step that
    // does not depend on the overdrive: every selected cell switches (its solved voltage is
    // above 1 V), no half-selected one does (V/2 = 0.8 V). S4's declared thresholds (RESET
    // 1.2 V ± 13 %) are not all reached through the array's IR drop by its 1.6 V pulse — a
    // device below its threshold neither moves nor counts the pulse
    // (device_laws::threshold_spread_and_overdrive_scale_the_step covers those laws)
    for a in &mut rig.chip.arrays {
        for p in &mut a.params {
            p.th_set_gain = 1.0;
            p.th_reset_gain = 1.0;
        }
    }
    let rule = Rule::of(&rig.setup).unwrap();
    assert_eq!(rule, Rule::Manhattan);
    let mut spec = rig.setup.spec.clone();
    spec.v_threshold_v = 1.0;
    spec.v_threshold_reset_v = None;
    spec.overdrive_exponent = 0.0;
    let n = rig.model.weights.len();
    let mut d: Vec<Matrix> = rig
        .model
        .weights
        .iter()
        .map(|w| Matrix::zeros(w.rows, w.cols))
        .collect();
    d[0].data[0] = 0.01;
    d[0].data[5] = -0.02;
    let before = rig.chip.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let st = rule
        .apply(
            &rig.setup.file.hardware,
            &spec,
            &mut rig.chip,
            &rig.map,
            &vec![1e-5; n],
            &d,
            &vec![true; n],
            &mut rng,
        )
        .unwrap();
    let mut written = vec![];
    for (e, sign_w) in [(0usize, 1.0f64), (5, -1.0)] {
        for c in &rig.map.slots[0][e] {
            written.push((c.array, c.cell));
            let (a, b) = (&before.arrays[c.array], &rig.chip.arrays[c.array]);
            assert_eq!(b.pulses[c.cell], a.pulses[c.cell] + 1, "one pulse per cell");
            let dir = (b.g_siemens[c.cell] - a.g_siemens[c.cell]).signum();
            assert_eq!(dir, c.sign * sign_w, "pulse in the update's sign");
        }
    }
    assert_eq!(st.cells_written, written.len() as u64);
    assert_eq!(
        st.pulses,
        written.len() as u64,
        "no half-select pulses counted"
    );
    for (ai, (a, b)) in before.arrays.iter().zip(&rig.chip.arrays).enumerate() {
        for k in 0..a.g_siemens.len() {
            if !written.contains(&(ai, k)) {
                assert_eq!(a.pulses[k], b.pulses[k]);
                assert_eq!(
                    a.g_siemens[k], b.g_siemens[k],
                    "half-selected cell {k} disturbed"
                );
            }
        }
    }
}

/// After in-situ updates the model's weights are the chip's read-back (the circuit backend on
/// the chip's conductances, built here independently), not the software targets.
#[test]
fn model_weights_after_a_step_are_the_chip_readback() {
    let ov = Overrides {
        max_updates: Some(1),
        batch: Some(20),
        ..small(40, 20)
    };
    let r = insitu::run(&net("lenet.net"), &ov, &RunOptions::default()).unwrap();
    assert_eq!((r.mode, r.updates), (TrainMode::Insitu, 1));
    let (file, ir) = netc::net::load(&net("lenet.net")).unwrap();
    let mut b =
        netc::nn::circuit::CircuitBackend::for_model(&file, &ir, &r.model, Default::default())
            .unwrap()
            .with_chip_conductances(r.chip.read(0.0, r.chip.manifest.seed));
    for (id, w) in r.scale_weights.iter().enumerate() {
        b.prepare(id, w).unwrap();
    }
    let mut max_target_gap = 0.0f64;
    for (id, w) in r.model.weights.iter().enumerate() {
        let rb = b.effective_weights(id).unwrap();
        assert!(w.max_abs_diff(&rb) < 1e-12, "slot {id}");
        max_target_gap = max_target_gap.max(w.max_abs_diff(&r.software_weights[id]));
    }
    // programming noise (10 µS = 0.1 weight units at 1e-4 S) separates chip and software
    assert!(max_target_gap > 0.01, "{max_target_gap}");
    // the chip read later at age 0 with the run's read seed is the chip the run evaluated
    let again =
        insitu::chip_accuracy_at(&net("lenet.net"), &ov, &r, 0.0, r.chip.manifest.seed).unwrap();
    assert_eq!(again, r.chip_final);
    assert!(insitu::chip_accuracy_at(&net("lenet.net"), &ov, &r, -1.0, 1).is_err());
}

/// Ex-situ on a noise-free ideal device: the transferred chip holds the quantised weights to the
/// write-verify tolerance, so its accuracy is the quantised accuracy (closed form: every chip
/// weight within tolerance·ΔG_max/scale of its quantised value).
#[test]
fn exsitu_transfer_on_an_ideal_device_matches_the_quantised_model() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(net("mlp_passive.net")).unwrap();
    // linear cells, no wires, 8 levels, an ideal device written to 0.2 %
    let start = text.find("hardware {").unwrap();
    let end = text.find("mapping {").unwrap();
    let hw = "hardware {\n  arrays 2 x 20x20;\n  cell passive;\n  g_min 10uS;\n  g_max 100uS;\n  levels 8;\n  r_wire 0ohm;\n  v_read 0.2V;\n  v_in -0.2V .. 0.2V;\n  v_bias 0.2V;\n  sense ideal;\n  device { pulse linear { up 0.01uS; } verify { v_read 0.2V; tolerance_rel 0.002; max_pulses 20000; } }\n}\n\n";
    let t2 = format!("{}{}{}", &text[..start], hw, &text[end..]);
    let p = dir.path().join("ideal.net");
    std::fs::write(&p, t2).unwrap();
    // the file's `write_tolerance 0.05` would widen the window: the experiment's knob narrows it
    let ov = Overrides {
        epochs: Some(300),
        write_tolerance_rel: Some(0.002),
        ..Default::default()
    };
    let r = insitu::run(&p, &ov, &RunOptions::default()).unwrap();
    assert_eq!(r.mode, TrainMode::Exsitu);
    let (q, t) = (r.quantised.unwrap(), r.transferred.unwrap());
    // closed-form bound on every weight: the verify window (0.2 % of G ≤ 100 µS, on each device
    // of the pair) over the frozen scale
    let setup = insitu::setup(&p, &ov).unwrap();
    let prog = setup.programmed(&r.model, &r.software_weights).unwrap();
    let slots = slot_rows(&r.model, &setup.ir).unwrap();
    for (id, s) in slots.iter().enumerate() {
        let mi = setup
            .lowering
            .matrices
            .iter()
            .position(|m| m.layer == s.layer)
            .unwrap();
        let enc = prog.encoders[mi];
        let bound = 2.0 * 0.002 * 100e-6 / enc.scale_siemens + 1e-9;
        let w_sw = &r.software_weights[id];
        for (k, (wc, ws)) in r.model.weights[id].data.iter().zip(&w_sw.data).enumerate() {
            let wq = enc.quantise(*ws);
            assert!(
                (wc - wq).abs() <= bound,
                "slot {id} weight {k}: chip {wc}, quantised {wq}, bound {bound}"
            );
        }
    }
    assert!(
        (q.test - t.test).abs() <= 2.0 / 640.0 + 1e-12,
        "quantised {q:?} transferred {t:?}"
    );
}

/// `netc train NET --mode insitu` runs on the chip, prints the chip's accuracy and writes the
/// run's files; `--backend ideal` on the same file still trains in software.
#[test]
fn train_cli_runs_the_mode_on_the_chip() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let net = net("mlp_passive.net");
    let (ok, so, se) = crate::common::netc(&[
        "train",
        net.to_str().unwrap(),
        "--mode",
        "insitu",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(ok, "{so}{se}");
    assert!(
        so.contains("(Insitu)") && so.contains("chip (final)"),
        "{so}"
    );
    for f in [
        "result.json",
        "batches.csv",
        "chip/chip.json",
        "weights.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    assert_eq!(r["mode"], "insitu");
    assert_eq!(
        r["updates"], 1,
        "40 letters at batch 40: one update per epoch"
    );
    let (ok, so, se) = crate::common::netc(&[
        "train",
        net.to_str().unwrap(),
        "--backend",
        "ideal",
        "--epochs",
        "2",
        "--out",
        d.path().join("sw").to_str().unwrap(),
        "-q",
    ]);
    assert!(ok && so.contains("2 epochs"), "{so}{se}");
}

/// The chip backend's state round-trips: a chip written by an update through the backend, saved,
/// and loaded into a fresh backend made from the run's pre-update chip gives the same chip (bit
/// for bit) and, read with the same stream, the same forward pass and read-back weights.
#[test]
fn chip_backend_save_load_round_trips() {
    use netc::insitu::ChipBackend;
    use netc::nn::backend::{ForwardCtx, Pass, Update, UpdateCtx};
    use rand::Rng;
    let ov = Overrides {
        max_updates: Some(1),
        batch: Some(20),
        ..small(40, 20)
    };
    let r = insitu::run(&net("lenet.net"), &ov, &RunOptions::default()).unwrap();
    let setup = insitu::setup(&net("lenet.net"), &ov).unwrap();
    let make = || {
        let slots = slot_rows(&r.model, &setup.ir).unwrap();
        let map = CellMap::new(&setup.lowering, &slots, &r.model).unwrap();
        let all = vec![true; r.model.weights.len()];
        ChipBackend::new(
            &setup,
            &r.model,
            r.chip.clone(),
            r.scale_weights.clone(),
            map,
            all,
        )
        .unwrap()
    };
    let mut a = make();
    // one update through the backend: random steps of ±0.05 weight units on every slot
    let mut step_rng = ChaCha8Rng::seed_from_u64(21);
    let steps: Vec<(usize, Update)> = r
        .model
        .weights
        .iter()
        .map(|w| {
            let d = (0..w.rows * w.cols)
                .map(|_| step_rng.gen_range(-0.05..0.05))
                .collect();
            Update::Step(Matrix::from_vec(w.rows, w.cols, d).unwrap())
        })
        .enumerate()
        .collect();
    let mut wrng = ChaCha8Rng::seed_from_u64(22);
    let rep = a.update(steps, &mut UpdateCtx::new(&mut wrng)).unwrap();
    assert!(rep.cells_written > 0 && rep.pulses > 0, "{rep:?}");
    assert_ne!(
        a.chip().arrays,
        r.chip.arrays,
        "the update must change the chip"
    );
    // a chip backend holds no read after an update: read-back without a read is an error
    assert!(a.effective_weights(0).is_err());
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("state");
    a.save_state(&dir).unwrap();
    let mut b = make();
    assert!(b.load_state(&d.path().join("missing")).is_err());
    b.load_state(&dir).unwrap();
    assert_eq!(b.chip(), a.chip());
    let x = {
        let mut g = ChaCha8Rng::seed_from_u64(23);
        let n = r.model.weights[0].rows;
        Matrix::from_vec(5, n, (0..5 * n).map(|_| g.gen_range(0.0..1.0)).collect()).unwrap()
    };
    let (mut ra, mut rb) = (ChaCha8Rng::seed_from_u64(24), ChaCha8Rng::seed_from_u64(24));
    let ya = a
        .forward(0, &x, &mut ForwardCtx::new(&mut ra, Pass::Test))
        .unwrap();
    let yb = b
        .forward(0, &x, &mut ForwardCtx::new(&mut rb, Pass::Test))
        .unwrap();
    assert_eq!(ya, yb);
    for id in 0..r.model.weights.len() {
        assert_eq!(
            a.effective_weights(id).unwrap(),
            b.effective_weights(id).unwrap()
        );
    }
    // a fresh backend without the saved state computes something else (the update mattered)
    let mut c = make();
    let mut rc = ChaCha8Rng::seed_from_u64(24);
    let yc = c
        .forward(0, &x, &mut ForwardCtx::new(&mut rc, Pass::Test))
        .unwrap();
    assert!(yc.max_abs_diff(&ya) > 0.0);
    // a chip backend is written by updates, never prepared
    assert!(c.prepare(0, &r.model.weights[0]).is_err());
}
