//! S5 diagnosis (not part of the test suite): one hybrid run of `cnn_8pe.net` with the in-situ
//! threshold rule's η and the number of updates given, then
//! * the transfer error (read-back − target) per layer, in µS and in weight levels (2.5 µS),
//! * the in-situ phase's per-epoch test accuracy and the chip's accuracy at several ages,
//! * how many used cells sit above the top state / at the bottom after the in-situ phase.
//!
//! `cargo run --release --example s5diag -- NET OUT_DIR ETA UPDATES [AGES_SECONDS...]`; the run's
//! seed from `S5DIAG_SEED` (default: the file's)
//! (copy a finished run's `software/` directory into OUT_DIR to skip the software phase).

use std::path::PathBuf;

use netc::insitu::{self, Overrides, RunOptions};
use netc::net::spec::{Optimizer, TrainMode};

fn stats(label: &str, e: &[f64], step_siemens: f64) {
    let n = e.len().max(1) as f64;
    let mean = e.iter().sum::<f64>() / n;
    let sd = (e.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let mut a: Vec<f64> = e.iter().map(|x| x.abs()).collect();
    a.sort_by(|x, y| x.partial_cmp(y).expect("finite"));
    let q = |p: f64| a[((a.len() as f64 - 1.0) * p) as usize];
    println!(
        "{label:>6}: n {:5}  mean {:+.3} uS  sd {:.3} uS ({:.3} levels)  |e| p50 {:.3} p95 {:.3} max {:.3} uS  >1.25uS {}",
        e.len(),
        mean * 1e6,
        sd * 1e6,
        sd / step_siemens,
        q(0.5) * 1e6,
        q(0.95) * 1e6,
        q(1.0) * 1e6,
        a.iter().filter(|x| **x > 1.25e-6).count()
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        anyhow::bail!("usage: s5diag NET OUT_DIR ETA UPDATES [AGES_SECONDS...]");
    }
    let net = PathBuf::from(&args[1]);
    let out = PathBuf::from(&args[2]);
    let eta: f64 = args[3].parse()?;
    let updates: usize = args[4].parse()?;
    let ages: Vec<f64> = if args.len() > 5 {
        args[5..]
            .iter()
            .map(|a| a.parse())
            .collect::<Result<_, _>>()?
    } else {
        vec![0.0, 600.0, 3600.0, 7200.0]
    };
    let base = insitu::setup(&net, &Overrides::default())?;
    let threshold_siemens = match base.net_optimizer {
        Optimizer::Threshold {
            threshold_siemens, ..
        } => threshold_siemens,
        _ => anyhow::bail!("not a threshold-rule network"),
    };
    let n_train = base.split.train.len();
    let batch = base.cfg.batch_size;
    let seed = match std::env::var("S5DIAG_SEED") {
        Ok(s) => Some(s.parse()?),
        Err(_) => None,
    };
    let ov = Overrides {
        mode: Some(TrainMode::Hybrid),
        seed,
        max_updates: Some(updates),
        insitu_epochs: Some(updates.div_ceil(n_train.div_ceil(batch)).max(1)),
        optimizer: Some(Optimizer::Threshold {
            lr: eta,
            threshold_siemens,
        }),
        ..Overrides::default()
    };
    let opts = RunOptions {
        out_dir: Some(out.clone()),
        resume: true,
        progress: false,
        stop_after_updates: None,
    };
    let r = insitu::run(&net, &ov, &opts)?;
    let setup = insitu::setup(&net, &ov)?;
    let pct = |a: Option<insitu::Acc>| a.map(|a| 100.0 * a.test).unwrap_or(f64::NAN);
    println!(
        "eta {eta} updates {}: software {:.2}  quantised {:.2}  transferred {:.2}  final {:.2} (test %)",
        r.updates,
        pct(r.software),
        pct(r.quantised),
        pct(r.transferred),
        100.0 * r.chip_final.test
    );
    println!(
        "cells written {}  pulses {}  weights skipped {}",
        r.cells_written, r.pulses, r.weights_skipped
    );
    for e in &r.epochs {
        println!(
            "  epoch {:2}: loss {:.4} train {:.2} test {:.2}",
            e.epoch,
            e.loss,
            100.0 * e.train_acc,
            100.0 * e.test_acc
        );
    }
    // transfer errors per layer: g_before (the transferred chip, used cells in array then cell
    // order) against the encoder's targets of the same weights
    let prog = setup.programmed(&r.model, &r.scale_weights)?;
    let step_siemens = (setup.file.hardware.g_max_siemens - setup.file.hardware.g_min_siemens)
        / (setup.file.hardware.levels.max(2) - 1) as f64;
    let mut per: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut per_after: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut i = 0;
    for a in &prog.arrays {
        for (k, o) in a.owner.iter().enumerate() {
            if let Some(mi) = o {
                let layer = setup.lowering.matrices[*mi].layer.clone();
                per.entry(layer.clone())
                    .or_default()
                    .push(r.g_before_siemens[i] - a.g_siemens[k]);
                per_after
                    .entry(layer)
                    .or_default()
                    .push(r.g_after_siemens[i]);
                i += 1;
            }
        }
    }
    println!(
        "transfer error (read-back − target) per layer, level step {:.2} uS:",
        step_siemens * 1e6
    );
    let mut all = Vec::new();
    for (l, e) in &per {
        stats(l, e, step_siemens);
        all.extend_from_slice(e);
    }
    stats("all", &all, step_siemens);
    let top = setup.file.hardware.g_max_siemens;
    for (l, g) in &per_after {
        println!(
            "after in situ, {l}: {} cells, {} above the top state ({:.1} uS), {} at g_min",
            g.len(),
            g.iter().filter(|x| **x > top * 1.0125).count(),
            top * 1e6,
            g.iter()
                .filter(|x| **x <= setup.spec.g_min_siemens * 1.0001)
                .count()
        );
    }
    println!(
        "chip clock after training: {:.6} s",
        r.chip.manifest.now_seconds
    );
    for (i, &age) in ages.iter().enumerate() {
        let a = insitu::chip_accuracy_at(&net, &ov, &r, age, 1000 + i as u64)?;
        // how far the used cells have moved from their programmed state at this age
        let spec = &r.chip.manifest.device;
        let now = r.chip.manifest.now_seconds + age;
        let mut moved = Vec::new();
        for (st, pa) in r.chip.arrays.iter().zip(&prog.arrays) {
            let g = st.g_at(spec, now);
            for (k, o) in pa.owner.iter().enumerate() {
                if o.is_some() {
                    moved.push(g[k] - st.g_siemens[k]);
                }
            }
        }
        let big = moved.iter().filter(|d| d.abs() > 1.25e-6).count();
        let rms = (moved.iter().map(|d| d * d).sum::<f64>() / moved.len().max(1) as f64).sqrt();
        println!(
            "age {:6.0} s: test {:.2} %  train {:.2} %  drift rms {:.3} uS, {} cells moved > half a level",
            age,
            100.0 * a.test,
            100.0 * a.train,
            rms * 1e6,
            big
        );
    }
    Ok(())
}
