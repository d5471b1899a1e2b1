//! Matrix-product backends: every crossbar product of a network goes through
//! a [`MatmulBackend`].
//!
//! # Conventions
//! * A weight matrix `W` is `rows × cols` = crossbar rows (inputs) × crossbar
//!   columns (outputs); a layer with a bias has one extra **last** row whose
//!   input is the constant [`BIAS_INPUT`] (in hardware: a fixed bias voltage).
//! * A batch `X` holds one input vector per row (`n × rows`); the product is
//!   `Y = X · W` (`n × cols`), i.e. `I = Gᵀ·V` for every vector.
//! * Conv layers call the backend with the im2col patch matrix of the whole
//!   mini-batch (one row per patch; patch element order channel, ky, kx).
//!
//! # Plugging in another backend (e.g. the circuit backend)
//! 1. `prepare(id, W)` receives the software weights of matmul slot `id`
//!    (see `Model::matmul_slots` for names and shapes). A circuit backend maps
//!    `W` through the compiler's codec onto its arrays, solves the array once
//!    (linear cells: the exact effective matrix `W_eff` including wire
//!    resistance, sense circuit, ADC transfer) and caches it.
//! 2. `forward(id, X)` returns what the hardware outputs, converted back to
//!    weight units (`X · W_eff`, or a Newton solve per vector for nonlinear cells).
//! 3. `effective_weights(id)` returns the weights as read back from the
//!    devices: backprop uses them (as S1 did) together with the activations
//!    `forward` produced.
//! 4. `program(id, target, delta)` is the weight-programming hook used by the
//!    trainer after each optimiser step: a software backend just sets the
//!    weights; an in-situ backend programs the devices with `delta` (pulses,
//!    write-verify, noise) and returns the weights actually realised, which the
//!    trainer then adopts as the model's weights when `readback` is on.

use super::matrix::Matrix;
use std::collections::BTreeMap;
use thiserror::Error;

/// Input value of the bias row, in the same units as the layer's inputs.
pub const BIAS_INPUT: f64 = 1.0;

/// Index of one crossbar matrix product in a model (a conv layer has one,
/// a ConvLSTM two: input kernel then recurrent kernel).
pub type LayerId = usize;

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("backend: matmul slot {0} was never prepared")]
    NotPrepared(LayerId),
    #[error("backend: slot {id}: input has {got} columns, weight matrix has {want} rows")]
    Shape {
        id: LayerId,
        got: usize,
        want: usize,
    },
    #[error("backend: weight codec: {0}")]
    Codec(String),
    #[error("backend: {0}")]
    Other(String),
}

/// One interface for every way of computing a crossbar product.
pub trait MatmulBackend: Send + Sync {
    /// Short name for reports ("ideal", "encoded", "circuit").
    fn name(&self) -> String;
    /// Set (or map) the weights of slot `id`.
    fn prepare(&mut self, id: LayerId, w: &Matrix) -> Result<(), BackendError>;
    /// `X · W_eff` for a batch of input vectors (one per row).
    fn forward(&self, id: LayerId, x: &Matrix) -> Result<Matrix, BackendError>;
    /// The weights as the hardware holds them (read back); used by backprop.
    fn effective_weights(&self, id: LayerId) -> Result<Matrix, BackendError>;
    /// Weight-programming hook: move slot `id` to `target` (the update being
    /// `delta = target − previous`). Returns the weights actually realised.
    fn program(
        &mut self,
        id: LayerId,
        target: &Matrix,
        _delta: &Matrix,
    ) -> Result<Matrix, BackendError> {
        self.prepare(id, target)?;
        self.effective_weights(id)
    }

    /// Program every slot after one optimiser step (`targets[id]`, `deltas[id]`) and return the
    /// weights realised in each. Backends whose state is solved as a whole (the circuit backend:
    /// one solve per conductance state) override this to set every slot before reading any back.
    fn program_all(
        &mut self,
        targets: &[Matrix],
        deltas: &[Matrix],
    ) -> Result<Vec<Matrix>, BackendError> {
        same_count(targets, deltas)?;
        targets
            .iter()
            .zip(deltas)
            .enumerate()
            .map(|(id, (t, d))| self.program(id, t, d))
            .collect()
    }
}

/// One update per target ([`MatmulBackend::program_all`]).
pub fn same_count(targets: &[Matrix], deltas: &[Matrix]) -> Result<(), BackendError> {
    if targets.len() != deltas.len() {
        return Err(BackendError::Other(format!(
            "{} targets for {} updates",
            targets.len(),
            deltas.len()
        )));
    }
    Ok(())
}

/// The weights of slot `id` held by a backend that stores them.
fn stored(weights: &BTreeMap<LayerId, Matrix>, id: LayerId) -> Result<&Matrix, BackendError> {
    weights.get(&id).ok_or(BackendError::NotPrepared(id))
}

fn checked_product(id: LayerId, x: &Matrix, w: &Matrix) -> Result<Matrix, BackendError> {
    if x.cols != w.rows {
        return Err(BackendError::Shape {
            id,
            got: x.cols,
            want: w.rows,
        });
    }
    Ok(x.matmul(w))
}

/// Float weights, exact products.
#[derive(Debug, Default, Clone)]
pub struct IdealBackend {
    weights: BTreeMap<LayerId, Matrix>,
}

impl IdealBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

impl MatmulBackend for IdealBackend {
    fn name(&self) -> String {
        "ideal".into()
    }
    fn prepare(&mut self, id: LayerId, w: &Matrix) -> Result<(), BackendError> {
        self.weights.insert(id, w.clone());
        Ok(())
    }
    fn forward(&self, id: LayerId, x: &Matrix) -> Result<Matrix, BackendError> {
        checked_product(id, x, stored(&self.weights, id)?)
    }
    fn effective_weights(&self, id: LayerId) -> Result<Matrix, BackendError> {
        stored(&self.weights, id).cloned()
    }
}

/// A weight matrix as a differential conductance pair: `w = scale·(g⁺ − g⁻)`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedWeights {
    pub g_pos_siemens: Matrix,
    pub g_neg_siemens: Matrix,
    /// Weight units per siemens.
    pub scale_per_siemens: f64,
}

/// Weight → conductance encoding and quantisation, and its inverse.
/// The compiler provides the real codec (in `src/mapping/`); [`LinearCodec`]
/// is a simple one for tests and for `--backend encoded`.
pub trait WeightCodec: Send + Sync {
    fn g_min_siemens(&self) -> f64;
    fn g_max_siemens(&self) -> f64;
    /// Number of programmable conductance states per device (`None` = analog).
    fn levels(&self) -> Option<usize>;
    fn encode(&self, w: &Matrix) -> Result<EncodedWeights, BackendError>;
    fn decode(&self, e: &EncodedWeights) -> Matrix;
}

/// Linear differential codec: the largest |w| of the matrix maps to
/// `g_max − g_min`; positive weights on `g⁺`, negative on `g⁻`, the other
/// device at `g_min`; each conductance is rounded to one of `levels`
/// equally spaced states in `[g_min, g_max]` when `levels` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearCodec {
    pub g_min_siemens: f64,
    pub g_max_siemens: f64,
    pub levels: Option<usize>,
}

impl LinearCodec {
    pub fn new(
        g_min_siemens: f64,
        g_max_siemens: f64,
        levels: Option<usize>,
    ) -> Result<Self, BackendError> {
        if !(g_min_siemens.is_finite()
            && g_max_siemens.is_finite()
            && 0.0 <= g_min_siemens
            && g_min_siemens < g_max_siemens)
        {
            return Err(BackendError::Codec(format!(
                "need 0 <= g_min < g_max, got g_min = {g_min_siemens} S, g_max = {g_max_siemens} S"
            )));
        }
        if matches!(levels, Some(l) if l < 2) {
            return Err(BackendError::Codec(
                "need at least 2 conductance levels".into(),
            ));
        }
        Ok(LinearCodec {
            g_min_siemens,
            g_max_siemens,
            levels,
        })
    }

    fn quantise(&self, g: f64) -> f64 {
        let g = g.clamp(self.g_min_siemens, self.g_max_siemens);
        match self.levels {
            None => g,
            Some(l) => {
                let step = (self.g_max_siemens - self.g_min_siemens) / (l - 1) as f64;
                self.g_min_siemens + ((g - self.g_min_siemens) / step).round() * step
            }
        }
    }
}

impl WeightCodec for LinearCodec {
    fn g_min_siemens(&self) -> f64 {
        self.g_min_siemens
    }
    fn g_max_siemens(&self) -> f64 {
        self.g_max_siemens
    }
    fn levels(&self) -> Option<usize> {
        self.levels
    }
    fn encode(&self, w: &Matrix) -> Result<EncodedWeights, BackendError> {
        if let Some(bad) = w.data.iter().find(|v| !v.is_finite()) {
            return Err(BackendError::Codec(format!("non-finite weight {bad}")));
        }
        let w_max = w.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let range = self.g_max_siemens - self.g_min_siemens;
        let scale = if w_max > 0.0 { w_max / range } else { 1.0 };
        let mut gp = Matrix::zeros(w.rows, w.cols);
        let mut gn = Matrix::zeros(w.rows, w.cols);
        for (i, &v) in w.data.iter().enumerate() {
            gp.data[i] = self.quantise(self.g_min_siemens + v.max(0.0) / scale);
            gn.data[i] = self.quantise(self.g_min_siemens + (-v).max(0.0) / scale);
        }
        Ok(EncodedWeights {
            g_pos_siemens: gp,
            g_neg_siemens: gn,
            scale_per_siemens: scale,
        })
    }
    fn decode(&self, e: &EncodedWeights) -> Matrix {
        let mut w = e.g_pos_siemens.clone();
        for (o, &g) in w.data.iter_mut().zip(&e.g_neg_siemens.data) {
            *o = (*o - g) * e.scale_per_siemens;
        }
        w
    }
}

/// Weights passed through a codec's encode → decode before an exact product.
pub struct EncodedBackend<C: WeightCodec> {
    pub codec: C,
    weights: BTreeMap<LayerId, Matrix>,
}

impl<C: WeightCodec> EncodedBackend<C> {
    pub fn new(codec: C) -> Self {
        EncodedBackend {
            codec,
            weights: BTreeMap::new(),
        }
    }
}

impl<C: WeightCodec> MatmulBackend for EncodedBackend<C> {
    fn name(&self) -> String {
        "encoded".into()
    }
    fn prepare(&mut self, id: LayerId, w: &Matrix) -> Result<(), BackendError> {
        let e = self.codec.encode(w)?;
        self.weights.insert(id, self.codec.decode(&e));
        Ok(())
    }
    fn forward(&self, id: LayerId, x: &Matrix) -> Result<Matrix, BackendError> {
        checked_product(id, x, stored(&self.weights, id)?)
    }
    fn effective_weights(&self, id: LayerId) -> Result<Matrix, BackendError> {
        stored(&self.weights, id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analog_codec_round_trips() {
        let c = LinearCodec::new(2.5e-6, 20e-6, None).unwrap();
        let w = Matrix::from_vec(2, 2, vec![0.5, -1.0, 0.0, 0.25]).unwrap();
        let d = c.decode(&c.encode(&w).unwrap());
        assert!(d.max_abs_diff(&w) < 1e-15);
    }

    #[test]
    fn quantised_codec_error_is_half_a_step() {
        // 8 states 2.5..20 µS in 2.5 µS steps (S5): 15 weight levels.
        let c = LinearCodec::new(2.5e-6, 20e-6, Some(8)).unwrap();
        let w = Matrix::from_vec(1, 5, vec![1.0, -0.3, 0.07, 0.5, -1.0]).unwrap();
        let e = c.encode(&w).unwrap();
        let d = c.decode(&e);
        let step_w = 2.5e-6 * e.scale_per_siemens;
        assert!(d.max_abs_diff(&w) <= step_w / 2.0 + 1e-15);
        // extremes are exact, every value lies on the 15-level grid
        assert!((d.data[0] - 1.0).abs() < 1e-12 && (d.data[4] + 1.0).abs() < 1e-12);
        for v in &d.data {
            let k = v / step_w;
            assert!((k - k.round()).abs() < 1e-9);
        }
        assert!(LinearCodec::new(1.0, 0.5, None).is_err());
    }
}
