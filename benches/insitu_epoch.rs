//! One S1 in-situ epoch against the ideal-backend epoch, measured in the same run (medians of
//! `INSITU_EPOCH_RUNS` runs, default 5; target: in situ ≤ 5× ideal).
//!
//! Both epochs are every training batch of `netlists/lenet.net` (8,000 bundled digits, batch 100,
//! RMSprop) plus the test pass. The ideal epoch is `nn::train` on the ideal backend. The in-situ
//! epoch is `netc::insitu::run` in mode insitu: per batch a read of the chip, the 1T1R array
//! solved for its new conductances (small-signal effective weights through the wires and
//! transistors), forward and backprop with the read-back weights, and the one-shot RESET + SET of
//! every changed cell by S1's gate rule (`EpochMetrics::seconds` of the run: the initial
//! programming and the final train/test evaluation are outside it). The bench also prints where
//! the in-situ epoch's time went (`RunResult::timing`).
//!
//! cargo bench --bench insitu_epoch
use std::path::Path;
use std::time::Instant;

use netc::insitu::{self, Overrides, RunOptions, TrainMode};
use netc::nn::backend::IdealBackend;
use netc::nn::from_net::recipe;
use netc::nn::model::Model;
use netc::nn::train::{train, TrainOptions};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    netc::retain_freed_memory();
    let runs: usize = std::env::var("INSITU_EPOCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let net = Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists/lenet.net");
    let (p, _) = recipe(&net).expect("lenet recipe");
    let setup = insitu::setup(&net, &Overrides::default()).expect("setup");
    let split = &setup.split;
    let mut cfg = p.train.clone();
    cfg.epochs = 1;
    let batches = split.train.len().div_ceil(cfg.batch_size);
    println!(
        "S1 lenet: {} training digits, {} test, batch {}, {} updates per epoch, {runs} runs",
        split.train.len(),
        split.test.len(),
        cfg.batch_size,
        batches
    );
    let mut ideal = Vec::new();
    let mut ideal_acc = 0.0;
    for _ in 0..runs {
        let mut m = Model::new(p.model.clone()).expect("model");
        let mut b = IdealBackend::new();
        let t0 = Instant::now();
        let rep = train(&mut m, &mut b, split, &cfg, &TrainOptions::default()).expect("train");
        ideal.push(t0.elapsed().as_secs_f64());
        ideal_acc = rep.metrics[0].test_acc;
    }
    let ov = Overrides {
        mode: Some(TrainMode::Insitu),
        epochs: Some(1),
        ..Default::default()
    };
    let mut chip = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let r = insitu::run(&net, &ov, &RunOptions::default()).expect("in-situ run");
        chip.push(r.epochs[0].seconds);
        last = Some(r);
    }
    let r = last.expect("at least one run");
    let (ti, tc) = (median(ideal), median(chip));
    println!(
        "ideal epoch    {:>8.3} s (median), test {:.2}%",
        ti,
        100.0 * ideal_acc
    );
    println!(
        "in-situ epoch  {:>8.3} s (median), test {:.2}% ({} cells written, {} updates)",
        tc,
        100.0 * r.epochs[0].test_acc,
        r.cells_written,
        r.updates
    );
    println!(
        "ratio in-situ / ideal: {:.2}× (target ≤ 5×)",
        tc / ti.max(1e-12)
    );
    let t = r.timing;
    let total =
        (t.read_solve_seconds + t.forward_backward_seconds + t.write_seconds + t.eval_seconds)
            .max(1e-12);
    println!("where the last in-situ epoch's time went:");
    for (name, s) in [
        ("read + array solve", t.read_solve_seconds),
        ("forward + backprop + optimiser", t.forward_backward_seconds),
        ("device writes (gate rule, one-shot SET)", t.write_seconds),
        ("test evaluation", t.eval_seconds),
    ] {
        println!("  {name:<42} {s:>8.3} s  {:>5.1}%", 100.0 * s / total);
    }
}
