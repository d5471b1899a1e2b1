//! One training epoch, every ratio measured in the same run (medians of `TRAIN_EPOCH_RUNS`
//! epochs, default 5; each epoch is every training batch plus the test pass):
//! - netc's ideal backend against the numpy reference (`benches/numpy_reference.py`: float32,
//!   im2col + BLAS, the same network, loss, optimiser and batch, random data of the same shapes
//!   and counts) for S1 (`netlists/lenet.net`: 8,000 bundled digits, batch 100, RMSprop) and for
//!   every preset S1–S5 at its own batch size (S2: ConvLSTM with backprop through time, 798 + 193
//!   sequences, batch 20; S3: 64-54-10 MLP, batch 50; S4: 16-10-4 tanh MLP, MSE, SGD with
//!   momentum, 40 + 640 letters, batch 4; S5: 28×28 CNN, batch 50); target: netc ≤ numpy;
//!   a last line sums up the five ratios;
//! - S1's circuit backend against its ideal epoch, on linear cells (the same array with passive
//!   memristors, 1 Ω segments) and on the declared 1T1R cells through the small-signal array; the
//!   circuit backend re-solves the arrays after every optimiser step (new conductance state,
//!   effective weights, dense products). Ideal and circuit epochs alternate round by round; the
//!   median of the per-round wall-time ratios is the figure (target ≤ 2×), the process CPU time
//!   of each epoch (all threads) is printed too, as a load-independent check.
//!
//! The numpy script runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its
//! environment (this machine may set them; the script prints the BLAS it ran). Set
//! `TRAIN_EPOCH_NUMPY=0` to skip it (e.g. without python3/numpy; a failing script is skipped with
//! a message). `TRAIN_EPOCH_ONLY=circuit` runs only the S1 circuit-backend comparisons (each
//! still against an ideal epoch of the same run). `TRAIN_EPOCH_NETS=s2,s3,s4` runs only the
//! ideal-vs-numpy comparisons of the listed presets (lenet.net's with `s1`), no circuit epochs.
//!
//! cargo bench --bench train_epoch
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use netc::data::Split;
use netc::nn::backend::{IdealBackend, MatmulBackend};
use netc::nn::circuit::{CircuitBackend, CircuitOverrides};
use netc::nn::from_net::recipe;
use netc::nn::model::{Model, ModelSpec};
use netc::nn::presets::{preset, TrainConfig};
use netc::nn::train::{train, TrainOptions};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Wall and CPU seconds (all threads of the process) and test accuracy of one one-epoch training
/// from the configuration's seed on a fresh model.
fn one_epoch(
    spec: &ModelSpec,
    split: &Split,
    cfg: &TrainConfig,
    backend: &mut dyn MatmulBackend,
) -> (f64, f64, f64) {
    let mut cfg = cfg.clone();
    cfg.epochs = 1;
    let mut m = Model::new(spec.clone()).expect("model");
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let rep = train(&mut m, backend, split, &cfg, &TrainOptions::default()).expect("train");
    (
        t0.elapsed().as_secs_f64(),
        cpu_seconds() - c0,
        rep.metrics[0].test_acc,
    )
}

/// Median epoch time (s) and the last run's test accuracy of `runs` one-epoch trainings from the
/// same seed on a fresh model.
fn epochs(
    spec: &ModelSpec,
    split: &Split,
    cfg: &TrainConfig,
    backend: &mut dyn MatmulBackend,
    runs: usize,
) -> (f64, f64) {
    let mut t = Vec::new();
    let mut acc = 0.0;
    for _ in 0..runs {
        let (wall, _, a) = one_epoch(spec, split, cfg, backend);
        t.push(wall);
        acc = a;
    }
    (median(t), acc)
}

/// CPU time of the whole process so far (user + system, every thread), in seconds; NaN where
/// it cannot be read.
fn cpu_seconds() -> f64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: getrusage only writes the zero-initialised struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: RUSAGE_SELF with a valid pointer to a rusage is getrusage's contract.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } == 0 {
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
            return tv(u.ru_utime) + tv(u.ru_stime);
        }
    }
    f64::NAN
}

/// The numpy reference's median epoch (s), or `None` when it cannot run.
fn numpy(net: &str, batch: usize, train: usize, test: usize, runs: usize) -> Option<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/numpy_reference.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--net", net, "--runs", &runs.to_string()])
        .args(["--batch", &batch.to_string()])
        .args(["--train", &train.to_string(), "--test", &test.to_string()])
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("numpy reference skipped: cannot run python3: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!(
            "numpy reference skipped (script failed; numpy missing?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    for l in text.lines().filter(|l| l.starts_with("blas")) {
        println!("  numpy {l}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("median_seconds "))
        .and_then(|v| v.trim().parse().ok())
}

fn main() {
    // freed memory stays with the process for reuse (see the function's docs)
    netc::retain_freed_memory();
    let runs: usize = std::env::var("TRAIN_EPOCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let only_circuit = std::env::var("TRAIN_EPOCH_ONLY").is_ok_and(|v| v == "circuit");
    let with_numpy = !only_circuit && std::env::var("TRAIN_EPOCH_NUMPY").map_or(true, |v| v != "0");
    let nets: Option<Vec<String>> = std::env::var("TRAIN_EPOCH_NETS").ok().map(|v| {
        v.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists");
    let (p, ir) = recipe(&dir.join("lenet.net")).expect("lenet.net");
    let split = p.data.load().expect("bundled data");
    println!(
        "one epoch = {} training samples + test pass over {}; medians of {runs} epochs; {} threads",
        split.train.len(),
        split.test.len(),
        rayon::current_num_threads()
    );

    if !only_circuit {
        ideal_epochs(&p, &split, runs, with_numpy, nets.as_deref());
    }
    if nets.is_none() {
        circuit_epochs(&p, &ir, &split, runs);
    }
}

/// S1 (lenet.net's own training block: batch 100) against numpy, then the ideal epoch of every
/// preset (of `nets` when given) against numpy at the preset's batch size.
fn ideal_epochs(
    p: &netc::nn::presets::Preset,
    split: &Split,
    runs: usize,
    with_numpy: bool,
    nets: Option<&[String]>,
) {
    let wanted = |name: &str| nets.is_none_or(|n| n.iter().any(|v| v == name));
    let verdict = |t: f64, np: f64| {
        format!(
            "netc/numpy {:.2} (target ≤ 1: {})",
            t / np,
            if t <= np { "met" } else { "NOT met" }
        )
    };
    if wanted("s1") {
        let (t_s1, acc_s1) = epochs(&p.model, split, &p.train, &mut IdealBackend::new(), runs);
        println!(
            "S1 lenet.net, batch {}: ideal backend {t_s1:.3} s (test {:.2}%)",
            p.train.batch_size,
            100.0 * acc_s1
        );
        if with_numpy {
            if let Some(np) = numpy(
                "s1",
                p.train.batch_size,
                split.train.len(),
                split.test.len(),
                runs,
            ) {
                println!("  numpy reference {np:.3} s → {}", verdict(t_s1, np));
            }
        }
    }
    let mut summary = Vec::new();
    for name in ["s1", "s2", "s3", "s4", "s5"] {
        if !wanted(name) {
            continue;
        }
        let pr = preset(name).expect("preset");
        let sp = pr.data.load().expect("preset data");
        let (t, acc) = epochs(&pr.model, &sp, &pr.train, &mut IdealBackend::new(), runs);
        println!(
            "preset {name}: ideal epoch {t:.4} s ({} + {} samples, batch {}; test {:.2}%)",
            sp.train.len(),
            sp.test.len(),
            pr.train.batch_size,
            100.0 * acc
        );
        if with_numpy {
            if let Some(np) = numpy(
                name,
                pr.train.batch_size,
                sp.train.len(),
                sp.test.len(),
                runs,
            ) {
                println!("  numpy reference {np:.4} s → {}", verdict(t, np));
                summary.push(format!("{name} {:.2}", t / np));
            }
        }
    }
    if !summary.is_empty() {
        println!(
            "netc/numpy per preset epoch (medians of {runs}, same run): {}",
            summary.join(", ")
        );
    }
}

/// S1's circuit backends against the ideal epoch measured just before each.
fn circuit_epochs(
    p: &netc::nn::presets::Preset,
    ir: &netc::net::NetworkIr,
    split: &Split,
    runs: usize,
) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists");
    let src = std::fs::read_to_string(dir.join("lenet.net")).expect("read lenet.net");
    let passive: String = src
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("transistor") || t.starts_with("v_gate") || t.starts_with("model "))
        })
        .map(|l| l.replace("cell 1t1r;", "cell passive;") + "\n")
        .collect();
    let (file2, ir2) =
        netc::net::load_str(&passive, "lenet_passive.net", &dir).expect("passive variant");
    assert_eq!(ir.layers.len(), ir2.layers.len());
    let file1 = netc::net::load_str(&src, "lenet.net", &dir)
        .expect("lenet.net")
        .0;
    let m0 = Model::new(p.model.clone()).expect("model");
    for (label, file, irr) in [
        ("linear cells", &file2, &ir2),
        ("1T1R, small-signal", &file1, ir),
    ] {
        let mut cb = CircuitBackend::for_model(file, irr, &m0, CircuitOverrides::default())
            .expect("backend");
        // ideal and circuit epochs alternate, so that both see the same load; the ratio is taken
        // per round (an ideal epoch and the circuit epoch right after it) and its median reported
        let (mut wi, mut wc, mut ci, mut cc, mut ratio) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut acc = 0.0;
        for _ in 0..runs {
            let (w_ideal, c_ideal, _) =
                one_epoch(&p.model, split, &p.train, &mut IdealBackend::new());
            let (w_circ, c_circ, a) = one_epoch(&p.model, split, &p.train, &mut cb);
            ratio.push(w_circ / w_ideal);
            wi.push(w_ideal);
            wc.push(w_circ);
            ci.push(c_ideal);
            cc.push(c_circ);
            acc = a;
        }
        let r = median(ratio.clone());
        let (lo, hi) = ratio
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
        println!(
            "S1 circuit backend, {label}: {:.3} s (test {:.2}%) vs ideal {:.3} s → {r:.2}× \
             (median of {runs} rounds, range {lo:.2}–{hi:.2}; target ≤ 2×: {}); CPU {:.3} s vs {:.3} s → {:.2}×",
            median(wc),
            100.0 * acc,
            median(wi),
            if r <= 2.0 { "met" } else { "NOT met" },
            median(cc.clone()),
            median(ci.clone()),
            median(cc) / median(ci),
        );
    }
}
