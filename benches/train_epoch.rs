//! One epoch of the S1 CNN (`netlists/lenet.net`: 8,000 bundled digits, batch 100, RMSprop) with the
//! ideal backend and with the circuit backend on linear cells (the same array with passive linear
//! memristors instead of 1T1R cells, 1 Ω wire segments as declared), measured in the same run.
//! The circuit backend re-solves the array after every optimiser step (factor once per conductance
//! state, exact effective weights, then dense products).
//!
//! cargo bench --bench train_epoch
use std::path::Path;
use std::time::Instant;

use netc::nn::backend::{IdealBackend, MatmulBackend};
use netc::nn::circuit::{CircuitBackend, CircuitOverrides};
use netc::nn::from_net::recipe;
use netc::nn::model::Model;
use netc::nn::train::{train, TrainOptions};

fn main() {
    // freed memory stays with the process for reuse (see the function's docs)
    netc::retain_freed_memory();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists");
    let (p, ir) = recipe(&dir.join("lenet.net")).expect("lenet.net");
    let split = p.data.load().expect("bundled data");
    let mut cfg = p.train.clone();
    cfg.epochs = 1;

    // the same network on passive linear cells
    let src = std::fs::read_to_string(dir.join("lenet.net")).expect("read lenet.net");
    let passive: String = src
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("transistor") || t.starts_with("v_gate") || t.starts_with("model "))
        })
        .map(|l| l.replace("cell 1t1r;", "cell passive;") + "\n")
        .collect();
    let (file, ir2) =
        netc::net::load_str(&passive, "lenet_passive.net", &dir).expect("passive variant");
    assert_eq!(ir.layers.len(), ir2.layers.len());

    let run = |b: &mut dyn MatmulBackend, model: &mut Model| {
        let t0 = Instant::now();
        let rep = train(model, b, &split, &cfg, &TrainOptions::default()).expect("train");
        (t0.elapsed().as_secs_f64(), rep.metrics[0].test_acc)
    };
    let mut m_ideal = Model::new(p.model.clone()).expect("model");
    let (t_ideal, acc_ideal) = run(&mut IdealBackend::new(), &mut m_ideal);

    let mut m_circ = Model::new(p.model.clone()).expect("model");
    let mut cb = CircuitBackend::for_model(&file, &ir2, &m_circ, CircuitOverrides::default())
        .expect("backend");
    let (t_circ, acc_circ) = run(&mut cb, &mut m_circ);

    println!(
        "S1 epoch ({} training + {} test samples, batch {}):",
        split.train.len(),
        split.test.len(),
        cfg.batch_size
    );
    println!(
        "  ideal backend                 {t_ideal:8.3} s   test {:.2}%",
        100.0 * acc_ideal
    );
    println!(
        "  circuit backend, linear cells {t_circ:8.3} s   test {:.2}%   ({:.2}× ideal; target ≤ 3×)",
        100.0 * acc_circ,
        t_circ / t_ideal
    );
}
