//! The circuit backend against independent computations: with zero wire resistance and ideal
//! sensing it is the ideal backend; with wire resistance its decoded products equal solving the
//! array for each input vector (driven and read back with the compiler's own drive/readout
//! helpers), and IR drop shrinks the outputs.

use std::path::Path;

use faer::Mat;
use netc::mapping::weights::{drive_tile, program, tile_outputs};
use netc::nn::backend::{IdealBackend, MatmulBackend, Update, UpdateCtx};
use netc::nn::circuit::{CircuitBackend, CircuitOverrides};
use netc::nn::from_net::{model_spec, slot_rows, weights_from_slots};
use netc::nn::loss::LossSpec;
use netc::nn::matrix::Matrix;
use netc::nn::model::Model;
use netc::xbar::{Engine, SolveOptions};
use rand::{Rng, SeedableRng};

/// `lenet.net` with passive linear cells, ideal sensing (no ADC) and the given wire resistance.
fn passive_lenet(r_wire: &str) -> (netc::net::NetFile, netc::net::NetworkIr) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists");
    let src = std::fs::read_to_string(dir.join("lenet.net")).unwrap();
    let text: String = src
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("transistor")
                || t.starts_with("v_gate")
                || t.starts_with("model ")
                || t.starts_with("adc_bits"))
        })
        .map(|l| {
            l.replace("cell 1t1r;", "cell passive;")
                .replace("r_wire 1ohm;", &format!("r_wire {r_wire};"))
                + "\n"
        })
        .collect();
    netc::net::load_str(&text, "lenet_passive.net", &dir).unwrap()
}

fn model_for(file: &netc::net::NetFile, ir: &netc::net::NetworkIr) -> Model {
    let spec = model_spec(file, ir, LossSpec::SoftmaxCrossEntropy).unwrap();
    let mut m = Model::new(spec).unwrap();
    m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
    m
}

fn random_inputs(n: usize, len: usize, seed: u64) -> Matrix {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data = (0..n * len).map(|_| rng.gen_range(-0.2..0.2)).collect();
    Matrix::from_vec(n, len, data).unwrap()
}

#[test]
fn circuit_backend_zero_wire_is_ideal() {
    let (file, ir) = passive_lenet("0ohm");
    let model = model_for(&file, &ir);
    let mut circ =
        CircuitBackend::for_model(&file, &ir, &model, CircuitOverrides::default()).unwrap();
    let mut ideal = IdealBackend::new();
    model.prepare_backend(&mut circ).unwrap();
    model.prepare_backend(&mut ideal).unwrap();
    let x = random_inputs(64, model.input_len(), 5);
    let (yi, _) = model.forward(&mut ideal, &x, &mut test_ctx!()).unwrap();
    let (yc, _) = model.forward(&mut circ, &x, &mut test_ctx!()).unwrap();
    let scale = yi.data.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    assert!(
        yi.max_abs_diff(&yc) <= 1e-9 * scale,
        "{}",
        yi.max_abs_diff(&yc)
    );
    for r in 0..x.rows {
        let argmax = |m: &Matrix| {
            (0..m.cols)
                .max_by(|&a, &b| m.get(r, a).total_cmp(&m.get(r, b)))
                .unwrap()
        };
        assert_eq!(argmax(&yi), argmax(&yc), "prediction of sample {r}");
    }
}

#[test]
fn circuit_backend_matches_per_vector_array_solves() {
    let (file, ir) = passive_lenet("2.5ohm");
    let model = model_for(&file, &ir);
    let lowering = netc::mapping::lower(&file, &ir).unwrap();
    let slots = slot_rows(&model, &ir).unwrap();
    let mut circ = CircuitBackend::new(
        &file,
        lowering.clone(),
        slots.clone(),
        CircuitOverrides::default(),
    )
    .unwrap();
    model.prepare_backend(&mut circ).unwrap();

    // Independent path: program, drive each tile of slot 0 (c1) per vector, solve, read back.
    let ws: Vec<&Matrix> = model.weights.iter().collect();
    let wf = weights_from_slots(&slots, &ws, &ir.name).unwrap();
    let prog = program(&lowering, &file.hardware, file.mapping.weight_scale, &wf).unwrap();
    let mi = lowering
        .matrices
        .iter()
        .position(|m| m.layer == slots[0].layer)
        .unwrap();
    let m = &lowering.matrices[mi];
    let x = random_inputs(6, model.weights[0].rows, 9);
    let y = circ.forward(0, &x, &mut test_ctx!()).unwrap();
    let mut ideal = IdealBackend::new();
    model.prepare_backend(&mut ideal).unwrap();
    let y_ideal = ideal.forward(0, &x, &mut test_ctx!()).unwrap();
    for v in 0..x.rows {
        let mut want = vec![0.0; m.cols];
        for (ti, t) in m.tiles.iter().enumerate().filter(|(_, t)| t.replica == 0) {
            let a = &prog.arrays[t.array];
            let xb = netc::mapping::crossbar_of(&file.hardware, a).unwrap();
            let mut e = Engine::new(&xb, SolveOptions::default()).unwrap();
            let drive = drive_tile(&lowering, &file.hardware, mi, ti, x.row(v));
            let out = e
                .infer(Mat::from_fn(1, a.rows, |_, i| drive[i]).as_ref())
                .unwrap();
            let cols: Vec<f64> = (0..a.cols).map(|c| out[(0, c)]).collect();
            let o = tile_outputs(&lowering, mi, ti, &cols);
            for (k, j) in (t.out_start..t.out_start + t.out_len).enumerate() {
                want[j] += o[k] / (prog.encoders[mi].scale_siemens * m.pairs as f64);
            }
        }
        for (j, &w) in want.iter().enumerate() {
            let got = y.get(v, j);
            assert!(
                (got - w).abs() <= 1e-9 * w.abs().max(1e-12),
                "vector {v} output {j}: backend {got} vs solved {w}"
            );
        }
        // 2.5 Ω segments lose signal: the solved outputs are not the ideal ones
        let d: f64 = (0..m.cols)
            .map(|j| (y.get(v, j) - y_ideal.get(v, j)).abs())
            .sum();
        assert!(d > 1e-6, "wire resistance must change the outputs");
    }
}

/// A new conductance state reuses each array's engine (numeric refactor only) and programs every
/// slot before solving once: the result equals a backend built from scratch on the new weights.
#[test]
fn new_conductance_state_equals_a_fresh_backend() {
    let (file, ir) = passive_lenet("2.5ohm");
    let mut model = model_for(&file, &ir);
    let mut circ =
        CircuitBackend::for_model(&file, &ir, &model, CircuitOverrides::default()).unwrap();
    model.prepare_backend(&mut circ).unwrap();
    let before = circ.effective_weights(0).unwrap(); // solved once: engines exist
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let deltas: Vec<Matrix> = model
        .weights
        .iter()
        .map(|w| {
            let d = (0..w.rows * w.cols)
                .map(|_| rng.gen_range(-0.05..0.05))
                .collect();
            Matrix::from_vec(w.rows, w.cols, d).unwrap()
        })
        .collect();
    for (w, d) in model.weights.iter_mut().zip(&deltas) {
        for r in 0..w.rows {
            for c in 0..w.cols {
                w.set(r, c, w.get(r, c) + d.get(r, c));
            }
        }
    }
    let mut wrng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let steps = deltas.into_iter().map(Update::Step).enumerate().collect();
    circ.update(steps, &mut UpdateCtx::new(&mut wrng)).unwrap();
    let realised: Vec<Matrix> = (0..model.weights.len())
        .map(|id| circ.effective_weights(id).unwrap())
        .collect();
    let mut fresh =
        CircuitBackend::for_model(&file, &ir, &model, CircuitOverrides::default()).unwrap();
    model.prepare_backend(&mut fresh).unwrap();
    for (id, got) in realised.iter().enumerate() {
        let want = fresh.effective_weights(id).unwrap();
        let scale = want.max_abs_diff(&Matrix::zeros(want.rows, want.cols));
        assert!(got.max_abs_diff(&want) <= 1e-12 * scale, "slot {id}");
    }
    assert!(
        realised[0].max_abs_diff(&before) > 1e-3,
        "the state must have changed"
    );
}

/// The ADC of the backend (row blocks in parallel, branch-free rounding) gives bit for bit what the
/// definition computes as a plain loop with `f64::round`, on a batch large enough to be split.
#[test]
fn adc_equals_plain_definition_bit_for_bit() {
    let x = random_inputs(20_000, 9, 21);
    let w = random_inputs(9, 15, 22);
    let y = x.matmul(&w);
    for bits in [3u32, 8, 16] {
        let steps = 2f64.powi(bits as i32 - 1) - 1.0;
        let mut want = y.clone();
        for v in 0..y.rows {
            let xm = x.row(v).iter().fold(0.0f64, |a, e| a.max(e.abs()));
            for j in 0..y.cols {
                let fs = xm * (0..w.rows).map(|i| w.get(i, j).abs()).sum::<f64>();
                if fs > 0.0 {
                    let q = (y.get(v, j) / fs * steps).round().clamp(-steps, steps);
                    want.set(v, j, q * fs / steps);
                }
            }
        }
        let mut got = y.clone();
        netc::nn::circuit::adc(&mut got, &x, &w, bits);
        let differ = got
            .data
            .iter()
            .zip(&want.data)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{bits} bits: {differ} outputs differ");
        assert!(got.max_abs_diff(&y) > 0.0, "{bits} bits quantise");
    }
}

/// The ADC model: outputs land on the 2^(b−1) − 1 steps of their full scale, the error is at most
/// half a step, and more bits shrink it.
#[test]
fn adc_rounds_to_its_steps() {
    let x = random_inputs(20, 9, 11);
    let w = random_inputs(9, 4, 12);
    let y = x.matmul(&w);
    let mut prev = f64::INFINITY;
    for bits in [4u32, 8, 12] {
        let mut q = y.clone();
        netc::nn::circuit::adc(&mut q, &x, &w, bits);
        let steps = 2f64.powi(bits as i32 - 1) - 1.0;
        let mut worst = 0.0f64;
        for v in 0..y.rows {
            let xm = x.row(v).iter().fold(0.0f64, |a, e| a.max(e.abs()));
            for j in 0..y.cols {
                let fs = xm * (0..w.rows).map(|i| w.get(i, j).abs()).sum::<f64>();
                let step = fs / steps;
                let k = q.get(v, j) / step;
                assert!((k - k.round()).abs() < 1e-6, "on a step");
                assert!((q.get(v, j) - y.get(v, j)).abs() <= 0.5 * step + 1e-15);
                worst = worst.max((q.get(v, j) - y.get(v, j)).abs() / fs);
            }
        }
        assert!(worst < prev);
        prev = worst;
    }
}
