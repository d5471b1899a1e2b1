//! Models built from `.net` files; compiler-format weight export.

use netc::mapping::weights::WeightsFile as CompilerWeights;
use netc::nn::backend::IdealBackend;
use netc::nn::from_net::{compiler_weights, recipe};
use netc::nn::layers::{self, LayerSpec};
use netc::nn::model::Model;
use rand::SeedableRng;
use std::path::Path;

fn load(name: &str) -> (netc::nn::presets::Preset, netc::net::NetworkIr) {
    recipe(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("netlists")
            .join(name),
    )
    .unwrap()
}

#[test]
fn reference_networks_build_with_paper_sizes() {
    for (f, weights) in [
        ("lenet.net", 1015),
        ("convlstm.net", 850),
        ("mlp_passive.net", 170 + 44),
    ] {
        let (p, ir) = load(f);
        let m = Model::new(p.model.clone()).unwrap();
        let n: usize = m.weights.iter().map(|w| w.data.len()).sum();
        assert_eq!(n, weights, "{f}");
        assert_eq!(n, ir.params(), "{f}");
    }
    let (p, _) = load("lenet.net");
    assert_eq!(p.model, netc::nn::presets::preset("s1").unwrap().model);
    let (p, _) = load("convlstm.net");
    assert_eq!(p.model, netc::nn::presets::preset("s2").unwrap().model);
}

#[test]
fn compiler_weights_compute_the_same_dense_outputs() {
    let (p, ir) = load("lenet.net");
    let mut m = Model::new(p.model.clone()).unwrap();
    m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
    let cw = compiler_weights(&m, &ir).unwrap();
    cw.check(&ir, "test").unwrap();
    let d = tempfile::tempdir().unwrap();
    cw.save(&d.path().join("w.json")).unwrap();
    assert_eq!(CompilerWeights::load(&d.path().join("w.json")).unwrap(), cw);
    // activations entering the flatten (c, h, w order), then the dense through the IR layout (h, w, c)
    let split = p.data.load().unwrap();
    let x = netc::nn::Matrix::from_vec(1, 64, split.test.sample(0).to_vec()).unwrap();
    let mut b = IdealBackend::new();
    m.prepare_backend(&mut b).unwrap();
    let mut a = x;
    let mut map = None;
    for (li, l) in m.spec.layers.iter().enumerate() {
        if matches!(l, LayerSpec::Flatten) {
            map = Some((a.clone(), m.shapes[li]));
        }
        a = layers::forward(
            l,
            m.shapes[li],
            &m.layer_slots[li],
            &mut b,
            &a,
            &mut test_ctx!(),
        )
        .unwrap()
        .0;
    }
    let (act, [c, h, w]) = map.unwrap();
    let fc = cw.layer("fc").unwrap();
    for j in 0..10 {
        let mut s = 0.0;
        for y in 0..h {
            for xx in 0..w {
                for ci in 0..c {
                    s += act.data[(ci * h + y) * w + xx] * fc.w((y * w + xx) * c + ci, j);
                }
            }
        }
        assert!(
            (s - a.data[j]).abs() < 1e-12,
            "output {j}: {s} vs {}",
            a.data[j]
        );
    }
}

/// `dataset … { train N; test M; fraction f; }` is honoured: the split the trainer gets has the
/// counts asked for (it used to train on every sample), and the samples are the data's first ones.
#[test]
fn dataset_counts_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    std::fs::create_dir(dir.path().join("models")).unwrap();
    std::fs::copy(
        models.join("al2o3_tio2_passive.cir"),
        dir.path().join("models/al2o3_tio2_passive.cir"),
    )
    .unwrap();
    let write = |name: &str, dataset: &str| {
        let src = format!(
            "network t {{ input 4x4x1; flatten; dense fc {{ units 4; }} }}\n\
             hardware {{ arrays 1 x 32x16; cell passive; model \"al2o3_tio2_passive.cir\"; \
             g_min 10uS; g_max 100uS; }}\n\
             training {{ loss mse; {dataset} preprocess {{ scale -0.2V .. 0.2V; }} }}\n"
        );
        let p = dir.path().join(name);
        std::fs::write(&p, src).unwrap();
        recipe(&p).unwrap().0
    };
    let all = write("all.net", "dataset letters4x4;");
    let full = all.data.load().unwrap();
    let mut warnings = vec![];
    let same = all.samples.apply(full.clone(), &mut warnings).unwrap();
    assert_eq!(same, full);
    assert!(warnings.is_empty());

    let p = write("cut.net", "dataset letters4x4 { train 7; test 100; }");
    let s = p.samples.apply(full.clone(), &mut warnings).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (7, 100));
    assert_eq!(s.train, full.train.take(7));
    assert_eq!(s.test, full.test.take(100));
    assert!(warnings.is_empty());

    // fraction applies to the training split after `train`: round(0.5 · 7) = 4 (half away from 0)
    let p = write("frac.net", "dataset letters4x4 { train 7; fraction 0.5; }");
    let s = p.samples.apply(full.clone(), &mut warnings).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (4, full.test.len()));

    // More than the data has: all of it, with a warning that says so.
    let p = write("more.net", "dataset letters4x4 { train 1000; }");
    let s = p.samples.apply(full.clone(), &mut warnings).unwrap();
    assert_eq!(s.train.len(), full.train.len());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("train 1000"), "{warnings:?}");
}

/// `clip_weights on` keeps every weight inside what the window holds, (g_max − g_min)/scale =
/// 90 µS / 100 µS per unit = 0.9 for S4, and the bound is reached (the clip acted: without it
/// S4's weights grow past 0.9 within these epochs).
#[test]
fn clip_weights_bounds_the_trained_weights_by_the_window() {
    let (p, _) = load("mlp_passive.net");
    assert_eq!(p.train.weight_clip, Some((100e-6 - 10e-6) / 1e-4));
    let split = p.data.load().unwrap();
    let run = |clip: Option<f64>| {
        let mut cfg = p.train.clone();
        cfg.weight_clip = clip;
        cfg.epochs = 300;
        cfg.optimizer = netc::nn::optim::OptimizerSpec::Sgd {
            lr: 0.2,
            momentum: 0.0,
        };
        let mut m = Model::new(p.model.clone()).unwrap();
        let opts = netc::nn::train::TrainOptions {
            out_dir: None,
            resume: false,
            progress: false,
            readback: false,
            stop_after: None,
        };
        netc::nn::train::train(&mut m, &mut IdealBackend::new(), &split, &cfg, &opts).unwrap();
        m.weights
            .iter()
            .flat_map(|w| w.data.iter())
            .fold(0.0f64, |a, v| a.max(v.abs()))
    };
    let free = run(None);
    assert!(
        free > 0.9,
        "unclipped weights stay below the window ({free}): no test"
    );
    let clipped = run(Some(0.9));
    assert!(
        (clipped - 0.9).abs() < 1e-12,
        "largest clipped weight {clipped}"
    );
}

/// Hardware units need a fixed scale: `tanh { slope }` (per ampere) and `clip_weights` (the
/// window in weight units) are located errors with `weight_scale auto`; a bare `tanh` is not.
#[test]
fn per_ampere_keys_need_a_fixed_weight_scale() {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists/mlp_passive.net"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nets")).unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let write = |name: &str, text: &str| {
        let p = dir.path().join("nets").join(name);
        std::fs::write(
            &p,
            text.replace("\"al2o3", &format!("\"{}/al2o3", models.display())),
        )
        .unwrap();
        p
    };
    let auto = src.replace("weight_scale 1e-4S;", "weight_scale auto;");
    let err = |p: &Path| match recipe(p) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{} trained with weight_scale auto", p.display()),
    };
    // the tanh slope is found first (the network), then the clip (the training block)
    let e = err(&write("a.net", &auto));
    assert!(e.contains("a.net:11:3") && e.contains("per ampere"), "{e}");
    let e = err(&write(
        "b.net",
        &auto.replace("tanh { slope 1e6; }", "tanh;"),
    ));
    assert!(e.contains("b.net:") && e.contains("clip_weights on"), "{e}");
    let line = auto
        .lines()
        .position(|l| l.trim_start().starts_with("clip_weights"))
        .unwrap()
        + 1;
    assert!(e.contains(&format!("b.net:{line}:3")), "{e}");
    let ok = auto
        .replace("tanh { slope 1e6; }", "tanh;")
        .replace("clip_weights on;", "");
    recipe(&write("c.net", &ok)).unwrap();
}
