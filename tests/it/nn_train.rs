//! Tiny training runs: convergence, resume bit-identity, determinism, backends.

use netc::data::idx::bundled_mnist;
use netc::data::preprocess::Preprocess;
use netc::data::Split;
use netc::nn::backend::{EncodedBackend, IdealBackend, LinearCodec};
use netc::nn::layers::Pad;
use netc::nn::loss::LossSpec;
use netc::nn::model::{Model, ModelBuilder, ModelSpec};
use netc::nn::optim::OptimizerSpec;
use netc::nn::presets::{preset, TrainConfig};
use netc::nn::train::{evaluate, train, TrainOptions};

fn small_split(n_train: usize, n_test: usize) -> Split {
    let (tr, te) = bundled_mnist().unwrap();
    let p = Preprocess::s1();
    Split {
        train: p.apply(&tr.slice(0..n_train)).unwrap(),
        test: p.apply(&te.slice(0..n_test)).unwrap(),
    }
}

fn tiny_cnn() -> ModelSpec {
    ModelBuilder::new([1, 8, 8])
        .conv2d(4, [3, 3], 1, Pad::uniform(1), true)
        .relu()
        .max_pool(2, 2)
        .flatten()
        .dense(10, true)
        .spec(LossSpec::SoftmaxCrossEntropy)
}

fn cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 20,
        optimizer: OptimizerSpec::s1_rmsprop(),
        seed: 42,
        lr_decay: 0.8,
        weight_clip: None,
    }
}

#[test]
fn resume_is_bit_identical() {
    let split = small_split(200, 50);
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let mut a = Model::new(tiny_cnn()).unwrap();
    let opts = |d: &std::path::Path, stop: Option<usize>| TrainOptions {
        out_dir: Some(d.into()),
        resume: true,
        stop_after: stop,
        ..Default::default()
    };
    let ra = train(
        &mut a,
        &mut IdealBackend::new(),
        &split,
        &cfg(3),
        &opts(dir_a.path(), None),
    )
    .unwrap();
    assert!(ra.finished);
    // interrupted after 1 epoch, then resumed in a fresh model
    let mut b = Model::new(tiny_cnn()).unwrap();
    let rb = train(
        &mut b,
        &mut IdealBackend::new(),
        &split,
        &cfg(3),
        &opts(dir_b.path(), Some(1)),
    )
    .unwrap();
    assert!(!rb.finished);
    let mut b = Model::new(tiny_cnn()).unwrap();
    let rb = train(
        &mut b,
        &mut IdealBackend::new(),
        &split,
        &cfg(3),
        &opts(dir_b.path(), None),
    )
    .unwrap();
    assert!(rb.finished);
    for (wa, wb) in a.weights.iter().zip(&b.weights) {
        let ba: Vec<u64> = wa.data.iter().map(|v| v.to_bits()).collect();
        let bb: Vec<u64> = wb.data.iter().map(|v| v.to_bits()).collect();
        assert_eq!(ba, bb);
    }
    assert_eq!(ra.metrics.len(), 3);
    assert_eq!(
        ra.metrics
            .iter()
            .map(|m| m.loss.to_bits())
            .collect::<Vec<_>>(),
        rb.metrics
            .iter()
            .map(|m| m.loss.to_bits())
            .collect::<Vec<_>>()
    );
    // outputs written
    for f in [
        "model.json",
        "checkpoint.json",
        "metrics.json",
        "metrics.csv",
        "training_curve.png",
        "training_curve.svg",
    ] {
        assert!(dir_b.path().join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(dir_b.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    // weights file round trip
    let wf: netc::nn::model::WeightsFile =
        serde_json::from_slice(&std::fs::read(dir_b.path().join("model.json")).unwrap()).unwrap();
    let c = Model::from_weights_file(&wf).unwrap();
    assert_eq!(c.weights, b.weights);
}

#[test]
fn same_result_with_one_or_two_threads() {
    let split = small_split(100, 20);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut m = Model::new(tiny_cnn()).unwrap();
            train(
                &mut m,
                &mut IdealBackend::new(),
                &split,
                &cfg(1),
                &TrainOptions::default(),
            )
            .unwrap();
            m.weights
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn tiny_cnn_learns() {
    let split = small_split(400, 200);
    let mut m = Model::new(tiny_cnn()).unwrap();
    let mut b = IdealBackend::new();
    let r = train(&mut m, &mut b, &split, &cfg(4), &TrainOptions::default()).unwrap();
    let last = r.metrics.last().unwrap();
    assert!(last.test_acc > 0.6, "test accuracy {}", last.test_acc);
    assert!(r.metrics[0].loss > last.loss);
}

#[test]
fn s4_letters_reach_full_training_accuracy() {
    let p = preset("s4").unwrap();
    let split = p.data.load().unwrap();
    let mut m = Model::new(p.model.clone()).unwrap();
    let mut b = IdealBackend::new();
    let r = train(&mut m, &mut b, &split, &p.train, &TrainOptions::default()).unwrap();
    assert_eq!(r.metrics.last().unwrap().train_acc, 1.0);
    assert_eq!(
        evaluate(&m, &mut b, &split.train, 100, &mut test_ctx!())
            .unwrap()
            .accuracy,
        1.0
    );
}

#[test]
fn encoded_backend_matches_ideal_when_analog() {
    let split = small_split(200, 100);
    let mut m = Model::new(tiny_cnn()).unwrap();
    let mut ideal = IdealBackend::new();
    train(
        &mut m,
        &mut ideal,
        &split,
        &cfg(2),
        &TrainOptions::default(),
    )
    .unwrap();
    let ri = evaluate(&m, &mut ideal, &split.test, 50, &mut test_ctx!()).unwrap();
    let mut enc = EncodedBackend::new(LinearCodec::new(2.5e-6, 20e-6, None).unwrap());
    m.prepare_backend(&mut enc).unwrap();
    let re = evaluate(&m, &mut enc, &split.test, 50, &mut test_ctx!()).unwrap();
    assert_eq!(ri.predictions, re.predictions);
    // 3 levels per device: coarse, the outputs must change
    let mut q = EncodedBackend::new(LinearCodec::new(2.5e-6, 20e-6, Some(3)).unwrap());
    m.prepare_backend(&mut q).unwrap();
    let errs =
        netc::nn::train::layer_errors(&m, &mut ideal, &mut q, &split.test, 20, &mut test_ctx!())
            .unwrap();
    assert!(errs[0] > 1e-3, "{errs:?}");
    let errs =
        netc::nn::train::layer_errors(&m, &mut ideal, &mut enc, &split.test, 20, &mut test_ctx!())
            .unwrap();
    assert!(errs.iter().all(|&e| e < 1e-12), "{errs:?}");
}
