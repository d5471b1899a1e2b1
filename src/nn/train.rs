//! Mini-batch training with checkpoints, evaluation and confusion matrices.

use super::backend::{ForwardCtx, MatmulBackend, Pass, Update, UpdateCtx};
use super::loss::{self, argmax};
use super::matrix::Matrix;
use super::model::{Model, WeightsFile};
use super::optim::Optimizer;
use super::presets::TrainConfig;
use super::NnError;
use crate::data::{write_atomic, Dataset, Split};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Metrics of one epoch. `train_acc` and `loss` are running values over the
/// epoch's mini-batches (each measured before that batch's update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub loss: f64,
    pub train_acc: f64,
    pub test_acc: f64,
    pub seconds: f64,
}

/// Exact state of a ChaCha8 generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: [u8; 32],
    pub stream: u64,
    /// Word position, as a decimal string (u128).
    pub word_pos: String,
}

impl RngState {
    pub fn of(r: &ChaCha8Rng) -> Self {
        RngState {
            seed: r.get_seed(),
            stream: r.get_stream(),
            word_pos: r.get_word_pos().to_string(),
        }
    }
    pub fn restore(&self) -> Result<ChaCha8Rng, NnError> {
        let mut r = ChaCha8Rng::from_seed(self.seed);
        r.set_stream(self.stream);
        let pos: u128 = self
            .word_pos
            .parse()
            .map_err(|_| NnError::Format(format!("bad RNG word position {:?}", self.word_pos)))?;
        r.set_word_pos(pos);
        Ok(r)
    }
}

/// Everything needed to continue a run exactly (`checkpoint.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub epochs_done: usize,
    pub config: TrainConfig,
    pub weights: WeightsFile,
    pub optimizer: Optimizer,
    pub rng: RngState,
    pub metrics: Vec<EpochMetrics>,
}

/// Options of [`train`].
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Directory for metrics, plots, weights and checkpoints (none: nothing written).
    pub out_dir: Option<PathBuf>,
    /// Continue from `out_dir/checkpoint.json` if it exists.
    pub resume: bool,
    pub progress: bool,
    /// Adopt the weights the backend reports after programming (in-situ).
    pub readback: bool,
    /// Stop after this many epochs of this call (to simulate interruptions).
    pub stop_after: Option<usize>,
}

pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// The trainer's model file (network + weights, `WeightsFile`); `netc eval --weights` reads it.
pub const MODEL_FILE: &str = "model.json";

/// The samples `idx` of `d` as a batch matrix (one row per sample).
pub fn batch_matrix(d: &Dataset, idx: &[usize]) -> Matrix {
    let l = d.sample_len();
    let mut m = Matrix::zeros(idx.len(), l);
    for (r, &i) in idx.iter().enumerate() {
        m.row_mut(r).copy_from_slice(d.sample(i));
    }
    m
}

pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), NnError> {
    let s = serde_json::to_vec_pretty(v).map_err(|source| NnError::Json {
        path: path.into(),
        source,
    })?;
    Ok(write_atomic(path, &s)?)
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, NnError> {
    let b = std::fs::read(path).map_err(|source| NnError::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_slice(&b).map_err(|source| NnError::Json {
        path: path.into(),
        source,
    })
}

/// Result of a training run.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub metrics: Vec<EpochMetrics>,
    /// True when all `config.epochs` epochs are done.
    pub finished: bool,
}

/// Train `model` (initialised from `config.seed` unless resuming) on
/// `split.train`, evaluating on `split.test` after every epoch.
pub fn train(
    model: &mut Model,
    backend: &mut dyn MatmulBackend,
    split: &Split,
    config: &TrainConfig,
    opts: &TrainOptions,
) -> Result<TrainReport, NnError> {
    // The loop runs on a worker of rayon's pool (`scope` called from outside the pool injects
    // it there; from inside, it runs in place). Its parallel products then share the pool's
    // threads with it, instead of the calling thread competing for the cores with workers
    // that spin between products: S1's ideal epoch ~0.25 → ~0.21 s on 2 cores. The work and
    // its order are unchanged (products split into fixed bands), so are the results.
    rayon::scope(|_| train_on_this_thread(model, backend, split, config, opts))
}

fn train_on_this_thread(
    model: &mut Model,
    backend: &mut dyn MatmulBackend,
    split: &Split,
    config: &TrainConfig,
    opts: &TrainOptions,
) -> Result<TrainReport, NnError> {
    if config.batch_size == 0 {
        return Err(NnError::Format("batch size must be positive".into()));
    }
    for d in [&split.train, &split.test] {
        if d.sample_len() != model.input_len() {
            return Err(NnError::Shape(format!(
                "dataset samples have shape {:?}, the network expects {:?}",
                d.shape, model.spec.input
            )));
        }
    }
    if split.train.is_empty() {
        return Err(NnError::Format(
            "the training set is empty (0 samples): nothing to train on".into(),
        ));
    }
    let ckpt_path = opts.out_dir.as_ref().map(|d| d.join(CHECKPOINT_FILE));
    let resumed = match &ckpt_path {
        Some(p) if opts.resume && p.is_file() => Some((read_json::<Checkpoint>(p)?, p)),
        _ => None,
    };
    let (mut rng, mut opt, mut metrics, start) = match resumed {
        Some((c, p)) => {
            if c.weights.model != model.spec {
                return Err(NnError::Format(format!(
                    "{}: the checkpoint belongs to a different network",
                    p.display()
                )));
            }
            *model = Model::from_weights_file(&c.weights)
                .map_err(|e| NnError::Format(format!("{}: {e}", p.display())))?;
            // A run killed between publishing its checkpoint and its outputs left outputs of an
            // earlier epoch: publish the checkpoint's state before anything else.
            if let Some(dir) = &opts.out_dir {
                write_outputs(dir, model, &c.metrics)?;
            }
            (c.rng.restore()?, c.optimizer, c.metrics, c.epochs_done)
        }
        None => {
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
            model.init(&mut rng);
            clip_weights(model, config.weight_clip);
            (rng, Optimizer::new(config.optimizer.clone()), vec![], 0)
        }
    };
    model.prepare_backend(backend)?;
    // read and write streams of the backend's contexts: software backends draw nothing from them
    // (a device backend trained here would restart them on resume; in-situ training is
    // `crate::insitu`, which checkpoints them)
    let mut read_rng = ChaCha8Rng::seed_from_u64(config.seed);
    read_rng.set_stream(3);
    let mut write_rng = ChaCha8Rng::seed_from_u64(config.seed);
    write_rng.set_stream(1);
    let n = split.train.len();
    let batches = n.div_ceil(config.batch_size);
    // one bar over all epochs (batches of the current one in its message) and a line every
    // `line_every` epochs: long runs (hundreds of epochs) print tens of lines, not hundreds
    let pb = if opts.progress {
        ProgressBar::new(config.epochs as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(st) =
        ProgressStyle::with_template("epoch {pos}/{len} [{bar:30}] {msg} {elapsed} eta {eta}")
    {
        pb.set_style(st.progress_chars("=> "));
    }
    pb.set_position(start as u64);
    for (done_now, epoch) in (start..config.epochs).enumerate() {
        if opts.stop_after.is_some_and(|s| done_now >= s) {
            break;
        }
        let t0 = Instant::now();
        opt.spec = config.optimizer.scaled(config.lr_decay.powi(epoch as i32));
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        let mut batch_no = 0usize;
        for idx in order.chunks(config.batch_size) {
            let x = batch_matrix(&split.train, idx);
            let labels: Vec<usize> = idx.iter().map(|&i| split.train.labels[i]).collect();
            let (out, caches) = model.forward(
                backend,
                &x,
                &mut ForwardCtx::new(&mut read_rng, Pass::Train),
            )?;
            let l = loss::evaluate(&model.spec.loss, &out, &labels)?;
            if !l.loss.is_finite() {
                return Err(NnError::Format(format!(
                    "loss diverged to {} in epoch {}",
                    l.loss,
                    epoch + 1
                )));
            }
            loss_sum += l.loss * idx.len() as f64;
            correct += l.correct;
            let grads = model.backward(backend, &caches, &l.grad)?;
            opt.apply(&mut model.weights, &grads)?;
            clip_weights(model, config.weight_clip);
            // Non-finite weights are never published: a diverging run stops here, before its
            // checkpoint and outputs are written, so the last good checkpoint stays.
            if let Some((layer, v)) = first_non_finite(model) {
                return Err(NnError::Format(format!(
                    "training diverged in epoch {}: a weight of layer {layer} became {v} \
                     (learning rate too large?); {}",
                    epoch + 1,
                    if epoch > 0 {
                        format!("the checkpoint of epoch {epoch} is kept")
                    } else {
                        "nothing was written".to_string()
                    }
                )));
            }
            let updates = model.weights.iter().cloned().map(Update::Target);
            let updates = updates.enumerate().collect();
            backend.update(updates, &mut UpdateCtx::new(&mut write_rng))?;
            if opts.readback {
                for (id, w) in model.weights.iter_mut().enumerate() {
                    *w = backend.effective_weights(id)?;
                }
            }
            batch_no += 1;
            if batch_no.is_multiple_of(16) || batch_no == batches {
                pb.set_message(format!("batch {batch_no}/{batches}"));
            }
        }
        let test = evaluate(
            model,
            backend,
            &split.test,
            500,
            &mut ForwardCtx::new(&mut read_rng, Pass::Test),
        )?;
        let m = EpochMetrics {
            epoch: epoch + 1,
            loss: loss_sum / n.max(1) as f64,
            train_acc: correct as f64 / n.max(1) as f64,
            test_acc: test.accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if opts.progress && report_epoch(m.epoch, config.epochs) {
            pb.suspend(|| {
                eprintln!(
                    "epoch {:>3}: loss {:.4}  train {:.2}%  test {:.2}%  {:.1} s",
                    m.epoch,
                    m.loss,
                    100.0 * m.train_acc,
                    100.0 * m.test_acc,
                    m.seconds
                )
            });
        }
        pb.inc(1);
        metrics.push(m);
        if let Some(dir) = &opts.out_dir {
            let ck = Checkpoint {
                epochs_done: epoch + 1,
                config: config.clone(),
                weights: model.to_weights_file(),
                optimizer: opt.clone(),
                rng: RngState::of(&rng),
                metrics: metrics.clone(),
            };
            write_json(&dir.join(CHECKPOINT_FILE), &ck)?;
            write_outputs(dir, model, &metrics)?;
        }
    }
    pb.finish_and_clear();
    let finished = metrics.len() >= config.epochs;
    Ok(TrainReport { metrics, finished })
}

/// Whether epoch `epoch` (1-based) of `total` gets a printed line: the first, the last and every
/// `⌈total/20⌉`-th, so a run prints at most about 22 lines (every epoch is in `metrics.csv`).
pub fn report_epoch(epoch: usize, total: usize) -> bool {
    let every = total.div_ceil(20).max(1);
    epoch == 1 || epoch == total || epoch.is_multiple_of(every)
}

/// The first weight that is NaN or infinite: (layer index, value).
fn first_non_finite(model: &Model) -> Option<(usize, f64)> {
    model
        .weights
        .iter()
        .enumerate()
        .find_map(|(li, w)| w.data.iter().find(|v| !v.is_finite()).map(|&v| (li, v)))
}

/// Write `model.json`, `metrics.json`, `metrics.csv` and the training curve.
pub fn write_outputs(dir: &Path, model: &Model, metrics: &[EpochMetrics]) -> Result<(), NnError> {
    write_json(&dir.join(MODEL_FILE), &model.to_weights_file())?;
    write_json(&dir.join("metrics.json"), &metrics)?;
    let mut csv = String::from("epoch,loss,train_acc,test_acc,seconds\n");
    for m in metrics {
        csv += &format!(
            "{},{},{},{},{}\n",
            m.epoch, m.loss, m.train_acc, m.test_acc, m.seconds
        );
    }
    write_atomic(&dir.join("metrics.csv"), csv.as_bytes())?;
    super::plot::training_curve(dir, metrics)
}

/// Accuracy, mean loss, confusion matrix (`confusion[true][predicted]`) and predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub samples: usize,
    pub accuracy: f64,
    pub loss: f64,
    pub confusion: Vec<Vec<usize>>,
    pub predictions: Vec<usize>,
}

/// Evaluate a model whose weights are already prepared in `backend` (a device backend: with the
/// read it holds, or one it takes from `ctx` if it holds none).
pub fn evaluate(
    model: &Model,
    backend: &mut dyn MatmulBackend,
    data: &Dataset,
    batch: usize,
    ctx: &mut ForwardCtx,
) -> Result<EvalResult, NnError> {
    let k = model.output_len();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut predictions = Vec::with_capacity(data.len());
    let (mut loss_sum, mut correct) = (0.0, 0);
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_matrix(data, chunk);
        let labels: Vec<usize> = chunk.iter().map(|&i| data.labels[i]).collect();
        let (out, _) = model.forward(backend, &x, ctx)?;
        let l = loss::evaluate(&model.spec.loss, &out, &labels)?;
        loss_sum += l.loss * chunk.len() as f64;
        correct += l.correct;
        for (r, &t) in labels.iter().enumerate() {
            let p = argmax(out.row(r));
            confusion[t][p] += 1;
            predictions.push(p);
        }
    }
    let n = data.len().max(1) as f64;
    Ok(EvalResult {
        samples: data.len(),
        accuracy: correct as f64 / n,
        loss: loss_sum / n,
        confusion,
        predictions,
    })
}

/// Relative RMS difference of every layer's output between two backends
/// (same weights, same inputs): `‖a_B − a_A‖ / ‖a_A‖`, one entry per layer.
pub fn layer_errors(
    model: &Model,
    a: &mut dyn MatmulBackend,
    b: &mut dyn MatmulBackend,
    data: &Dataset,
    samples: usize,
    ctx: &mut ForwardCtx,
) -> Result<Vec<f64>, NnError> {
    let idx: Vec<usize> = (0..data.len().min(samples)).collect();
    let x = batch_matrix(data, &idx);
    let (mut xa, mut xb) = (x.clone(), x);
    let mut out = vec![];
    for (li, l) in model.spec.layers.iter().enumerate() {
        let slots = &model.layer_slots[li];
        let ya = super::layers::forward(l, model.shapes[li], slots, a, &xa, ctx)?.0;
        let yb = super::layers::forward(l, model.shapes[li], slots, b, &xb, ctx)?.0;
        let num: f64 = ya
            .data
            .iter()
            .zip(&yb.data)
            .map(|(p, q)| (p - q).powi(2))
            .sum();
        let den: f64 = ya.data.iter().map(|p| p * p).sum();
        out.push(if den > 0.0 {
            (num / den).sqrt()
        } else {
            num.sqrt()
        });
        (xa, xb) = (ya, yb);
    }
    Ok(out)
}

/// Clamp every weight (biases included: they sit on conductance pairs too) to ±`clip`.
fn clip_weights(model: &mut Model, clip: Option<f64>) {
    if let Some(c) = clip {
        for w in &mut model.weights {
            w.data.iter_mut().for_each(|v| *v = v.clamp(-c, c));
        }
    }
}

#[cfg(test)]
mod report_tests {
    use super::report_epoch;

    #[test]
    fn long_runs_print_a_few_lines_and_short_runs_every_epoch() {
        let lines: Vec<usize> = (1..=500).filter(|&e| report_epoch(e, 500)).collect();
        assert!(lines.len() <= 22, "{}", lines.len());
        assert_eq!((lines[0], *lines.last().unwrap()), (1, 500));
        // evenly spread: no gap longer than ⌈500/20⌉
        assert!(lines.windows(2).all(|w| w[1] - w[0] <= 25));
        assert_eq!((1..=10).filter(|&e| report_epoch(e, 10)).count(), 10);
    }
}
