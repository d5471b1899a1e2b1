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

    /// Check the shapes and size the state (zeros on first use).
    fn check(&mut self, params: &[Matrix], grads: &[Matrix]) -> Result<(), NnError> {
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
        if params
            .iter()
            .zip(&self.state)
            .any(|(p, st)| st.len() != p.data.len())
        {
            return Err(NnError::Shape(
                "optimiser: state does not match the parameters".into(),
            ));
        }
        Ok(())
    }

    /// Compute the updates `Δ` for every parameter (does not apply them).
    pub fn deltas(&mut self, params: &[Matrix], grads: &[Matrix]) -> Result<Vec<Matrix>, NnError> {
        self.check(params, grads)?;
        let mut out = Vec::with_capacity(params.len());
        for ((p, g), st) in params.iter().zip(grads).zip(self.state.iter_mut()) {
            let mut d = Matrix::zeros(p.rows, p.cols);
            rule(&self.spec, &g.data, st, |k, dv| d.data[k] = dv);
            out.push(d);
        }
        Ok(out)
    }

    /// Compute and apply the updates in place (`w ← w + Δ`, the same values as [`Self::step`])
    /// without keeping them.
    pub fn apply(&mut self, params: &mut [Matrix], grads: &[Matrix]) -> Result<(), NnError> {
        self.check(params, grads)?;
        for ((p, g), st) in params.iter_mut().zip(grads).zip(self.state.iter_mut()) {
            rule(&self.spec, &g.data, st, |k, dv| p.data[k] += dv);
        }
        Ok(())
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

/// The optimiser's rule over one parameter matrix: `out(k, Δ_k)` for every element, state `st`
/// updated (one `match` per matrix, not per element).
#[inline]
fn rule(spec: &OptimizerSpec, g: &[f64], st: &mut [f64], mut out: impl FnMut(usize, f64)) {
    match *spec {
        OptimizerSpec::Sgd { lr, momentum } => {
            for (k, (&gv, sv)) in g.iter().zip(st.iter_mut()).enumerate() {
                *sv = momentum * *sv - lr * gv;
                out(k, *sv);
            }
        }
        OptimizerSpec::RmsProp { lr, decay, eps } => {
            for (k, (&gv, sv)) in g.iter().zip(st.iter_mut()).enumerate() {
                *sv = decay * *sv + (1.0 - decay) * gv * gv;
                out(k, -lr * gv / (sv.sqrt() + eps));
            }
        }
        OptimizerSpec::Manhattan { step } => {
            for (k, &gv) in g.iter().enumerate() {
                out(
                    k,
                    if gv > 0.0 {
                        -step
                    } else if gv < 0.0 {
                        step
                    } else {
                        0.0
                    },
                );
            }
        }
        OptimizerSpec::Threshold { lr, threshold } => {
            for (k, &gv) in g.iter().enumerate() {
                let u = -lr * gv;
                out(k, if u.abs() >= threshold { u } else { 0.0 });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apply` moves the weights and the state exactly as `step` does, for every rule.
    #[test]
    fn apply_equals_step_bit_for_bit() {
        let specs = [
            OptimizerSpec::Sgd {
                lr: 0.1,
                momentum: 0.9,
            },
            OptimizerSpec::s1_rmsprop(),
            OptimizerSpec::Manhattan { step: 0.01 },
            OptimizerSpec::Threshold {
                lr: 0.5,
                threshold: 0.1,
            },
        ];
        let w0 = vec![
            Matrix::from_vec(2, 3, vec![0.3, -1.2, 0.0, 2.5, -0.7, 1e-3]).unwrap(),
            Matrix::from_vec(1, 2, vec![-0.4, 0.9]).unwrap(),
        ];
        let grads = |s: usize| -> Vec<Matrix> {
            let f = |k: usize| ((k * 7 + s * 3) as f64).sin() * 0.8;
            vec![
                Matrix::from_vec(2, 3, (0..6).map(f).collect()).unwrap(),
                Matrix::from_vec(1, 2, vec![f(11), 0.0]).unwrap(),
            ]
        };
        for spec in specs {
            let (mut a, mut b) = (Optimizer::new(spec.clone()), Optimizer::new(spec.clone()));
            let (mut wa, mut wb) = (w0.clone(), w0.clone());
            for s in 0..4 {
                a.step(&mut wa, &grads(s)).unwrap();
                b.apply(&mut wb, &grads(s)).unwrap();
            }
            assert_eq!(wa, wb, "{spec:?}");
            assert_eq!(a.state, b.state, "{spec:?}");
            assert_ne!(wa, w0, "{spec:?}");
        }
        let mut o = Optimizer::new(OptimizerSpec::s1_rmsprop());
        assert!(o.apply(&mut w0.clone(), &grads(0)[..1]).is_err());
    }
}
