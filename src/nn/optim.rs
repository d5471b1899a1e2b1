//! Optimisers. Each keeps its state as plain vectors (serialised in checkpoints).

use super::matrix::Matrix;
use super::NnError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OptimizerSpec {
    /// `v ← μ·v − lr·g; w ← w + v`.
    Sgd { lr: f64, momentum: f64 },
    /// `s ← ρ·s + (1−ρ)·g²; w ← w − lr·g/(√s + ε)` (S1: lr 0.01, ρ 0.9, ε 1e-8).
    RmsProp { lr: f64, decay: f64, eps: f64 },
    /// Manhattan rule: `w ← w − step·sign(g)` (no update where g = 0).
    Manhattan { step: f64 },
    /// S5's threshold rule: `Δ = −lr·g`, applied only where `|Δ| ≥ threshold`.
    Threshold { lr: f64, threshold: f64 },
}

impl OptimizerSpec {
    /// The same optimiser with learning rate (or step) `v`.
    pub fn with_lr(&self, v: f64) -> Self {
        let mut s = self.clone();
        match &mut s {
            OptimizerSpec::Sgd { lr, .. }
            | OptimizerSpec::RmsProp { lr, .. }
            | OptimizerSpec::Threshold { lr, .. } => *lr = v,
            OptimizerSpec::Manhattan { step } => *step = v,
        }
        s
    }

    /// The same optimiser with its learning rate (or step) multiplied by `f`.
    pub fn scaled(&self, f: f64) -> Self {
        let mut s = self.clone();
        match &mut s {
            OptimizerSpec::Sgd { lr, .. }
            | OptimizerSpec::RmsProp { lr, .. }
            | OptimizerSpec::Threshold { lr, .. } => *lr *= f,
            OptimizerSpec::Manhattan { step } => *step *= f,
        }
        s
    }

    /// S1's RMSprop settings.
    pub fn s1_rmsprop() -> Self {
        OptimizerSpec::RmsProp {
            lr: 0.01,
            decay: 0.9,
            eps: 1e-8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optimizer {
    pub spec: OptimizerSpec,
    /// One state vector per parameter matrix (velocity or mean square), or empty.
    pub state: Vec<Vec<f64>>,
}

impl Optimizer {
    pub fn new(spec: OptimizerSpec) -> Self {
        Optimizer {
            spec,
            state: vec![],
        }
    }

    /// Compute the updates `Δ` for every parameter (does not apply them).
    pub fn deltas(&mut self, params: &[Matrix], grads: &[Matrix]) -> Result<Vec<Matrix>, NnError> {
        if params.len() != grads.len()
            || params
                .iter()
                .zip(grads)
                .any(|(p, g)| p.rows != g.rows || p.cols != g.cols)
        {
            return Err(NnError::Shape(
                "optimiser: gradients do not match the parameters".into(),
            ));
        }
        if self.state.len() != params.len() {
            self.state = params.iter().map(|p| vec![0.0; p.data.len()]).collect();
        }
        let mut out = Vec::with_capacity(params.len());
        for ((p, g), st) in params.iter().zip(grads).zip(self.state.iter_mut()) {
            if st.len() != p.data.len() {
                return Err(NnError::Shape(
                    "optimiser: state does not match the parameters".into(),
                ));
            }
            let mut d = Matrix::zeros(p.rows, p.cols);
            for ((dv, &gv), sv) in d.data.iter_mut().zip(&g.data).zip(st.iter_mut()) {
                *dv = match self.spec {
                    OptimizerSpec::Sgd { lr, momentum } => {
                        *sv = momentum * *sv - lr * gv;
                        *sv
                    }
                    OptimizerSpec::RmsProp { lr, decay, eps } => {
                        *sv = decay * *sv + (1.0 - decay) * gv * gv;
                        -lr * gv / (sv.sqrt() + eps)
                    }
                    OptimizerSpec::Manhattan { step } => {
                        if gv > 0.0 {
                            -step
                        } else if gv < 0.0 {
                            step
                        } else {
                            0.0
                        }
                    }
                    OptimizerSpec::Threshold { lr, threshold } => {
                        let u = -lr * gv;
                        if u.abs() >= threshold {
                            u
                        } else {
                            0.0
                        }
                    }
                };
            }
            out.push(d);
        }
        Ok(out)
    }

    /// Compute and apply the updates; returns them.
    pub fn step(
        &mut self,
        params: &mut [Matrix],
        grads: &[Matrix],
    ) -> Result<Vec<Matrix>, NnError> {
        let d = self.deltas(params, grads)?;
        for (p, dm) in params.iter_mut().zip(&d) {
            p.data.iter_mut().zip(&dm.data).for_each(|(w, u)| *w += u);
        }
        Ok(d)
    }
}
