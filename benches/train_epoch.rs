//! Time one S1 epoch (8,000 bundled digits) with the ideal backend.
use netc::nn::backend::IdealBackend;
use netc::nn::model::Model;
use netc::nn::presets::preset;
use netc::nn::train::{train, TrainOptions};
use std::time::Instant;

fn main() {
    let p = preset("s1").expect("preset");
    let split = p.data.load().expect("bundled data");
    let mut cfg = p.train.clone();
    cfg.epochs = 1;
    let mut model = Model::new(p.model.clone()).expect("model");
    let mut b = IdealBackend::new();
    let t0 = Instant::now();
    let rep = train(&mut model, &mut b, &split, &cfg, &TrainOptions::default()).expect("train");
    let dt = t0.elapsed().as_secs_f64();
    let m = &rep.metrics[0];
    println!(
        "S1 epoch, ideal backend: {:.3} s ({} training samples + {} test samples evaluated), test acc {:.2}%",
        dt,
        split.train.len(),
        split.test.len(),
        100.0 * m.test_acc
    );
}
