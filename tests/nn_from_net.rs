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
        a = layers::forward(l, m.shapes[li], &m.layer_slots[li], &b, &a)
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
