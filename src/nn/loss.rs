//! Losses: softmax + cross-entropy (the softmax output layer of the presets)
//! and mean squared error against ±targets.

use super::matrix::Matrix;
use super::NnError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LossSpec {
    /// `L = −(1/n) Σ log softmax(z)[label]`.
    SoftmaxCrossEntropy,
    /// `L = (1/(n·K)) Σ (y − t)²` with `t = target_on` for the label's output
    /// and `target_off` for the others.
    Mse { target_on: f64, target_off: f64 },
}

/// Loss value (batch mean), gradient w.r.t. the network output, correct count.
#[derive(Debug, Clone)]
pub struct LossOut {
    pub loss: f64,
    pub grad: Matrix,
    pub correct: usize,
}

/// Index of the largest element (first on ties).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

pub fn softmax(z: &[f64]) -> Vec<f64> {
    let mut p = vec![0.0; z.len()];
    softmax_into(z, &mut p);
    p
}

/// [`softmax`] of `z` written into `out` (same length), without allocating.
pub fn softmax_into(z: &[f64], out: &mut [f64]) {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    for (o, &v) in out.iter_mut().zip(z) {
        *o = (v - m).exp();
    }
    let s: f64 = out.iter().sum();
    for o in out.iter_mut() {
        *o /= s;
    }
}

pub fn evaluate(spec: &LossSpec, out: &Matrix, labels: &[usize]) -> Result<LossOut, NnError> {
    let (n, k) = (out.rows, out.cols);
    if labels.len() != n {
        return Err(NnError::Shape(format!(
            "{} labels for a batch of {n}",
            labels.len()
        )));
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= k) {
        return Err(NnError::Shape(format!(
            "label {l} but the network has {k} outputs"
        )));
    }
    let mut grad = Matrix::zeros(n, k);
    let mut loss = 0.0;
    let mut correct = 0;
    for (s, &label) in labels.iter().enumerate() {
        let z = out.row(s);
        if argmax(z) == label {
            correct += 1;
        }
        let g = grad.row_mut(s);
        match spec {
            LossSpec::SoftmaxCrossEntropy => {
                // the probabilities go straight into the gradient row
                softmax_into(z, g);
                loss -= g[label].max(1e-300).ln();
                for (j, gj) in g.iter_mut().enumerate() {
                    *gj = (*gj - (j == label) as u8 as f64) / n as f64;
                }
            }
            LossSpec::Mse {
                target_on,
                target_off,
            } => {
                for j in 0..k {
                    let t = if j == label { *target_on } else { *target_off };
                    loss += (z[j] - t).powi(2) / k as f64;
                    g[j] = 2.0 * (z[j] - t) / (n * k) as f64;
                }
            }
        }
    }
    Ok(LossOut {
        loss: loss / n.max(1) as f64,
        grad,
        correct,
    })
}
