//! S5 diagnosis, control experiment (not part of the test suite): the in-situ FC phase of
//! `cnn_8pe.net` without devices. The FC inputs V (192 per image) come from the software model
//! with every weight quantised by the compiler's encoders (what a perfect transfer holds); the FC
//! layer is then trained with S5's rule exactly as `insitu::rules` writes it — ΔW = −η·Σᵢ Vᵢ·δᵢ
//! over the batch (eq. 1), pairs with |ΔG| = scale·|ΔW| below the threshold skipped (eq. 2),
//! ±ΔG/2 on g⁺/g⁻ clamped to the window — in the same data order as the chip run (the run's seed,
//! shuffle stream 2). Variants: the rule; the rule without the threshold; without the window.
//! No noise, no wire drop, no write-verify: if the loss still blows up at the chip run's update,
//! the divergence is the rule's step on these data, not the devices.
//!
//! `cargo run --release --example s5fc_sgd -- NET SOFTWARE_MODEL_JSON ETA UPDATES`
//! (SOFTWARE_MODEL_JSON: a hybrid run's `software/model.json`).

use std::path::PathBuf;

use netc::insitu::{self, Overrides};
use netc::net::spec::Optimizer;
use netc::nn::backend::{ForwardCtx, IdealBackend, Pass};
use netc::nn::layers::Cache;
use netc::nn::loss::softmax;
use netc::nn::matrix::Matrix;
use netc::nn::model::{Model, WeightsFile};
use netc::nn::train::{batch_matrix, read_json};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// FC inputs (n × 192) of a dataset through the model.
fn features(model: &Model, d: &netc::data::Dataset, fc_layer: usize) -> anyhow::Result<Matrix> {
    let mut b = IdealBackend::new();
    model.prepare_backend(&mut b)?;
    let n = d.len();
    let mut out: Option<Matrix> = None;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for start in (0..n).step_by(500) {
        let idx: Vec<usize> = (start..(start + 500).min(n)).collect();
        let x = batch_matrix(d, &idx);
        let (_, caches) = model.forward(&mut b, &x, &mut ForwardCtx::new(&mut rng, Pass::Test))?;
        let Cache::Product { cols } = &caches[fc_layer] else {
            anyhow::bail!("layer {fc_layer} is not a product");
        };
        let m = out.get_or_insert_with(|| Matrix::zeros(n, cols.cols));
        for (r, &i) in idx.iter().enumerate() {
            m.row_mut(i).copy_from_slice(cols.row(r));
        }
    }
    out.ok_or_else(|| anyhow::anyhow!("empty dataset"))
}

/// Mean cross-entropy, correct count and dL/dz (p − y, per sample) of rows `idx`.
fn batch(v: &Matrix, labels: &[usize], w: &Matrix, idx: &[usize]) -> (f64, usize, Vec<Vec<f64>>) {
    let mut loss = 0.0;
    let mut correct = 0;
    let mut d = Vec::with_capacity(idx.len());
    for &i in idx {
        let x = v.row(i);
        let z: Vec<f64> = (0..w.cols)
            .map(|j| (0..w.rows).map(|r| x[r] * w.get(r, j)).sum())
            .collect();
        let p = softmax(&z);
        let y = labels[i];
        loss -= p[y].max(1e-300).ln();
        if netc::nn::loss::argmax(&z) == y {
            correct += 1;
        }
        let mut g = p;
        g[y] -= 1.0;
        d.push(g);
    }
    (loss / idx.len().max(1) as f64, correct, d)
}

/// Largest eigenvalue of the Hessian of the mean cross-entropy over all rows of `v` with
/// respect to the FC weights `w` (power iteration on H·u = mean_i V_i ⊗ (diag p_i − p_i p_iᵀ)(uᵀV_i)).
fn hessian_top(v: &Matrix, w: &Matrix) -> f64 {
    let (rows, cols) = (w.rows, w.cols);
    let probs: Vec<Vec<f64>> = (0..v.rows)
        .map(|i| {
            let x = v.row(i);
            let z: Vec<f64> = (0..cols)
                .map(|j| (0..rows).map(|r| x[r] * w.get(r, j)).sum())
                .collect();
            softmax(&z)
        })
        .collect();
    let mut u = vec![1.0 / ((rows * cols) as f64).sqrt(); rows * cols];
    // a zero-sum start over classes (H's null direction is the all-classes-equal one)
    for r in 0..rows {
        for j in 0..cols {
            u[r * cols + j] *= if j % 2 == 0 { 1.0 } else { -1.0 };
        }
    }
    let mut lambda = 0.0;
    for _ in 0..60 {
        let mut hu = vec![0.0; rows * cols];
        for (i, p) in probs.iter().enumerate() {
            let x = v.row(i);
            let a: Vec<f64> = (0..cols)
                .map(|j| (0..rows).map(|r| x[r] * u[r * cols + j]).sum())
                .collect();
            let pa: f64 = p.iter().zip(&a).map(|(p, a)| p * a).sum();
            let b: Vec<f64> = (0..cols).map(|j| p[j] * (a[j] - pa)).collect();
            for r in 0..rows {
                for j in 0..cols {
                    hu[r * cols + j] += x[r] * b[j];
                }
            }
        }
        let n = v.rows as f64;
        hu.iter_mut().for_each(|h| *h /= n);
        let norm = hu.iter().map(|h| h * h).sum::<f64>().sqrt();
        if norm == 0.0 {
            return 0.0;
        }
        lambda = norm;
        u = hu.into_iter().map(|h| h / norm).collect();
    }
    lambda
}

struct Variant {
    name: &'static str,
    threshold: bool,
    window: bool,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        anyhow::bail!("usage: s5fc_sgd NET SOFTWARE_MODEL_JSON ETA UPDATES");
    }
    let net = PathBuf::from(&args[1]);
    let wf: WeightsFile = read_json(std::path::Path::new(&args[2]))?;
    let eta: f64 = args[3].parse()?;
    let updates: usize = args[4].parse()?;
    let setup = insitu::setup(&net, &Overrides::default())?;
    let threshold_siemens = match setup.net_optimizer {
        Optimizer::Threshold {
            threshold_siemens, ..
        } => threshold_siemens,
        _ => anyhow::bail!("not a threshold-rule network"),
    };
    let mut model = Model::from_weights_file(&wf)?;
    let prog = setup.programmed(&model, &model.weights)?;
    // every slot quantised by its layer's encoder (no bias rows in this network)
    let mut fc = None;
    let rows = netc::nn::from_net::slot_rows(&model, &setup.ir)?;
    for (s, sr) in model.slots.clone().iter().zip(&rows) {
        let name = sr.layer.clone();
        let mi = setup
            .lowering
            .matrices
            .iter()
            .position(|m| m.layer == name)
            .ok_or_else(|| anyhow::anyhow!("slot {} ({name}) not mapped", s.id))?;
        let enc = prog.encoders[mi];
        for v in model.weights[s.id].data.iter_mut() {
            *v = enc.quantise(*v);
        }
        if name == "fc" {
            fc = Some((s.id, s.layer, enc));
        }
    }
    let (fc_id, fc_layer, enc) = fc.ok_or_else(|| anyhow::anyhow!("no fc layer"))?;
    let scale = enc.scale_siemens;
    let (lo, hi) = (
        setup
            .spec
            .g_min_siemens
            .max(setup.file.hardware.g_min_siemens),
        setup
            .spec
            .g_max_siemens
            .min(setup.file.hardware.g_max_siemens),
    );
    let vtr = features(&model, &setup.split.train, fc_layer)?;
    let vte = features(&model, &setup.split.test, fc_layer)?;
    let norms: Vec<f64> = (0..vtr.rows)
        .map(|i| vtr.row(i).iter().map(|x| x * x).sum::<f64>())
        .collect();
    let mean_n2 = norms.iter().sum::<f64>() / norms.len() as f64;
    let max_n2 = norms.iter().cloned().fold(0.0, f64::max);
    let w0 = model.weights[fc_id].clone();
    let wmax = w0.data.iter().map(|x| x.abs()).fold(0.0, f64::max);
    println!(
        "fc: scale {:.3} uS/unit, threshold {:.4} units, window |w| <= {:.3}, max |w0| {:.3}; \
         ||V||^2 mean {:.1} max {:.1}; eta*||V||^2 mean {:.3}",
        scale * 1e6,
        threshold_siemens / scale,
        (hi - lo) / scale,
        wmax,
        mean_n2,
        max_n2,
        eta * mean_n2
    );
    let n = vtr.rows;
    let bs = setup.cfg.batch_size;
    // how aligned the (non-negative) features are: |mean V|^2 / mean |V|^2
    let mut mv = vec![0.0; vtr.cols];
    for i in 0..n {
        for (m, x) in mv.iter_mut().zip(vtr.row(i)) {
            *m += x / n as f64;
        }
    }
    let mv2: f64 = mv.iter().map(|x| x * x).sum();
    let h0 = hessian_top(&vtr, &w0);
    println!(
        "features: |mean V|^2 {:.1} = {:.3} of mean |V|^2 (all V >= 0: {}); Hessian top eigenvalue at \
         the quantised weights {:.3} -> a step eta*batch*mean-gradient is stable below eta = \
         2/(batch*lambda) = {:.5}",
        mv2,
        mv2 / mean_n2,
        vtr.data.iter().all(|x| *x >= 0.0),
        h0,
        2.0 / (bs as f64 * h0)
    );
    let all_test: Vec<usize> = (0..vte.rows).collect();
    for var in [
        Variant {
            name: "rule (threshold, window)",
            threshold: true,
            window: true,
        },
        Variant {
            name: "no threshold (window)",
            threshold: false,
            window: true,
        },
        Variant {
            name: "plain SGD (no threshold, no window)",
            threshold: false,
            window: false,
        },
    ] {
        let mut gp: Vec<f64> = w0.data.iter().map(|w| lo + w.max(0.0) * scale).collect();
        let mut gm: Vec<f64> = w0.data.iter().map(|w| lo + (-w).max(0.0) * scale).collect();
        let mut w = w0.clone();
        let mut shuffle = ChaCha8Rng::seed_from_u64(setup.cfg.seed);
        shuffle.set_stream(2);
        let (l0, c0, _) = batch(&vte, &setup.split.test.labels, &w, &all_test);
        println!(
            "== {}: eta {eta}, start test {:.2} % loss {:.4}",
            var.name,
            100.0 * c0 as f64 / all_test.len() as f64,
            l0
        );
        let mut u = 0;
        let mut first_blowup = None;
        let mut line = String::new();
        'outer: loop {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut shuffle);
            for idx in order.chunks(bs) {
                if u >= updates {
                    break 'outer;
                }
                let (l, _, d) = batch(&vtr, &setup.split.train.labels, &w, idx);
                // ΔW = −η Σᵢ Vᵢ δᵢ
                let mut dw = vec![0.0; w.data.len()];
                for (k, &i) in idx.iter().enumerate() {
                    let x = vtr.row(i);
                    for r in 0..w.rows {
                        for j in 0..w.cols {
                            dw[r * w.cols + j] -= eta * x[r] * d[k][j];
                        }
                    }
                }
                let mut written = 0;
                let mut max_dg: f64 = 0.0;
                for (e, &dwe) in dw.iter().enumerate() {
                    let dg = scale * dwe;
                    max_dg = max_dg.max(dg.abs());
                    if var.threshold && dg.abs() < threshold_siemens {
                        continue;
                    }
                    written += 1;
                    if var.window {
                        gp[e] = (gp[e] + dg / 2.0).clamp(lo, hi);
                        gm[e] = (gm[e] - dg / 2.0).clamp(lo, hi);
                    } else {
                        gp[e] += dg / 2.0;
                        gm[e] -= dg / 2.0;
                    }
                    w.data[e] = (gp[e] - gm[e]) / scale;
                }
                u += 1;
                if l > 1.0 && first_blowup.is_none() {
                    first_blowup = Some(u);
                }
                if (460..=500).contains(&u) || u % 40 == 0 {
                    line += &format!(
                        "  u {u:4}: loss {l:8.4} written {written:4} max|dG| {:.2} uS\n",
                        max_dg * 1e6
                    );
                }
            }
            let (lt, ct, _) = batch(&vte, &setup.split.test.labels, &w, &all_test);
            let h = hessian_top(&vtr, &w);
            let r = eta * bs as f64 * h;
            line += &format!(
                "  after {u} updates: test {:.2} % loss {lt:.4}; Hessian top {h:.3}, eta*batch*lambda {r:.2} ({})\n",
                100.0 * ct as f64 / all_test.len() as f64,
                if r > 2.0 { "above 2: unstable" } else { "below 2: stable" }
            );
        }
        print!("{line}");
        println!("  first batch loss > 1: {first_blowup:?}");
    }
    Ok(())
}
