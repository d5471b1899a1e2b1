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
//! # The interface ([`MatmulBackend`])
//! A backend owns whatever holds the weights: a software matrix (ideal, encoded), the compiled
//! arrays solved at circuit level (circuit), or a programmed chip with its devices' state and its
//! write rule (`crate::insitu::ChipBackend`).
//! 1. `prepare(id, W)` sets the weights of matmul slot `id` exactly (see `Model::matmul_slots` for
//!    names and shapes): a software backend stores them, the circuit backend maps them through the
//!    compiler's codec onto its arrays (solved lazily, once per conductance state). A chip is
//!    programmed when it is made and changed by `update`, never prepared.
//! 2. `read(ctx)` takes one read of the devices (drift to `ctx.age_seconds` after the chip's last
//!    write, read noise drawn from `ctx.read_rng`) and holds it for the products and read-backs
//!    that follow; backends without device state have nothing to read.
//! 3. `forward(id, X, ctx)` returns what the hardware outputs, converted back to weight units
//!    (`X · W_eff`, or a Newton solve per vector for nonlinear cells); a chip backend with no read
//!    held takes one first.
//! 4. `effective_weights(id)` returns the weights as read back from the devices: backprop uses
//!    them (as S1 did) together with the activations `forward` produced.
//! 5. `update(updates, ctx)` writes one optimiser step into every slot named ([`Update`]: a
//!    target, a weight change, or an outer product `−lr·Xᵀ·δ`): a software backend sets its
//!    weights, a chip backend turns the step into device writes by its rule (write RNG and clock
//!    from `ctx`) and reports what it wrote ([`UpdateReport`]).
//! 6. `save_state(dir)` / `load_state(dir)` checkpoint what the backend holds (software: the
//!    prepared weights, `weights.json`; a chip: the chip directory).

use super::matrix::Matrix;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    #[error("backend: {path}: {message}")]
    State { path: PathBuf, message: String },
}

/// Whether a forward pass belongs to training or to a test evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pass {
    Train,
    Test,
}

/// What a read and a forward pass take from their caller: the read-noise stream and the clock.
pub struct ForwardCtx<'a> {
    /// Read noise: a device backend draws one value per cell from it at every [`MatmulBackend::read`].
    pub read_rng: &'a mut ChaCha8Rng,
    /// Seconds after the chip's last programming operation at which it is read (drift since each
    /// cell's own last write); the read does not advance the chip's clock.
    pub age_seconds: f64,
    /// Training or test pass (for the caller's bookkeeping and for backends that read differently).
    pub pass: Pass,
}

impl<'a> ForwardCtx<'a> {
    /// A read right after the last write (`age_seconds` 0).
    pub fn new(read_rng: &'a mut ChaCha8Rng, pass: Pass) -> Self {
        ForwardCtx {
            read_rng,
            age_seconds: 0.0,
            pass,
        }
    }
}

/// What an update takes from its caller: the write-noise stream and the clock.
pub struct UpdateCtx<'a> {
    /// Programming noise, cycle-to-cycle variation and every other random draw of the writes.
    pub write_rng: &'a mut ChaCha8Rng,
    /// Seconds the chip idles before these writes (its clock advances by this; the writes then
    /// advance it by their own programming time).
    pub idle_seconds: f64,
}

impl<'a> UpdateCtx<'a> {
    pub fn new(write_rng: &'a mut ChaCha8Rng) -> Self {
        UpdateCtx {
            write_rng,
            idle_seconds: 0.0,
        }
    }
}

/// One slot's update.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Move the slot to these weights (a device backend writes the difference from the weights
    /// it holds as last read).
    Target(Matrix),
    /// Change the weights by this much (an optimiser's step: SGD, RMSprop, Manhattan signs).
    Step(Matrix),
    /// The rank-`n` update `ΔW = −lr·Xᵀ·δ` of `n` input vectors (rows of `x`, `n × rows`) and
    /// their output errors (rows of `delta`, `n × cols`), as a crossbar applies it in parallel
    /// (S4's and S5's rules are outer products of this kind).
    OuterProduct { x: Matrix, delta: Matrix, lr: f64 },
}

impl Update {
    /// The weight change this update asks of slot `id`, which holds `w` now.
    pub fn step(&self, id: LayerId, w: &Matrix) -> Result<Matrix, BackendError> {
        let shape = |m: &Matrix| {
            if (m.rows, m.cols) != (w.rows, w.cols) {
                Err(BackendError::Other(format!(
                    "slot {id}: update is {}×{}, the weights are {}×{}",
                    m.rows, m.cols, w.rows, w.cols
                )))
            } else {
                Ok(())
            }
        };
        match self {
            Update::Target(t) => {
                shape(t)?;
                let mut d = t.clone();
                d.data.iter_mut().zip(&w.data).for_each(|(a, b)| *a -= b);
                Ok(d)
            }
            Update::Step(d) => {
                shape(d)?;
                Ok(d.clone())
            }
            Update::OuterProduct { x, delta, lr } => {
                if x.rows != delta.rows || x.cols != w.rows || delta.cols != w.cols {
                    return Err(BackendError::Other(format!(
                        "slot {id}: outer product of {}×{} inputs and {}×{} errors for {}×{} weights",
                        x.rows, x.cols, delta.rows, delta.cols, w.rows, w.cols
                    )));
                }
                if !lr.is_finite() {
                    return Err(BackendError::Other(format!(
                        "slot {id}: learning rate {lr} is not finite"
                    )));
                }
                let mut d = x.t_matmul(delta);
                d.data.iter_mut().for_each(|v| *v *= -lr);
                Ok(d)
            }
        }
    }

    /// The weights after this update of weights `w`.
    pub fn apply_to(self, id: LayerId, w: &Matrix) -> Result<Matrix, BackendError> {
        let d = match self {
            Update::Target(t) if (t.rows, t.cols) == (w.rows, w.cols) => return Ok(t),
            u => u.step(id, w)?,
        };
        let mut out = w.clone();
        out.data.iter_mut().zip(&d.data).for_each(|(a, b)| *a += b);
        Ok(out)
    }
}

/// What one [`MatmulBackend::update`] wrote into the devices (all zero for software backends).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateReport {
    /// Cells written (a cell written by several pulses counts once).
    pub cells_written: u64,
    pub pulses: u64,
    /// Weight updates the rule left out (S5: |ΔG| below the threshold).
    pub skipped: u64,
}

/// One interface for every way of computing a crossbar product (see the module docs).
pub trait MatmulBackend: Send {
    /// Short name for reports ("ideal", "encoded", "circuit", "chip").
    fn name(&self) -> String;
    /// Set (or map) the weights of slot `id` exactly (software and circuit backends).
    fn prepare(&mut self, id: LayerId, w: &Matrix) -> Result<(), BackendError>;
    /// Take one read of the devices for the products and read-backs that follow (drift at
    /// `ctx.age_seconds`, read noise from `ctx.read_rng`). Nothing to read without device state.
    fn read(&mut self, _ctx: &mut ForwardCtx) -> Result<(), BackendError> {
        Ok(())
    }
    /// `X · W_eff` for a batch of input vectors (one per row).
    fn forward(
        &mut self,
        id: LayerId,
        x: &Matrix,
        ctx: &mut ForwardCtx,
    ) -> Result<Matrix, BackendError>;
    /// The weights as the hardware holds them (read back); used by backprop.
    fn effective_weights(&self, id: LayerId) -> Result<Matrix, BackendError>;
    /// Write one step into the slots named. The default (software backends) sets each slot's
    /// weights to the update applied to the weights it was prepared with.
    fn update(
        &mut self,
        updates: Vec<(LayerId, Update)>,
        _ctx: &mut UpdateCtx,
    ) -> Result<UpdateReport, BackendError> {
        for (id, u) in updates {
            let w = u.apply_to(id, &self.effective_weights(id)?)?;
            self.prepare(id, &w)?;
        }
        Ok(UpdateReport::default())
    }
    /// Save what the backend holds into the directory `dir` (created if needed).
    fn save_state(&self, dir: &Path) -> Result<(), BackendError>;
    /// Restore what [`MatmulBackend::save_state`] saved (into a backend made the same way). The
    /// default reads the weights file of [`save_weights`] and prepares every matrix in it.
    fn load_state(&mut self, dir: &Path) -> Result<(), BackendError> {
        for (id, w) in load_weights(dir)? {
            self.prepare(id, &w)?;
        }
        Ok(())
    }
}

/// The weights file of the software backends' state.
pub const WEIGHTS_STATE_FILE: &str = "weights.json";

/// Save prepared weights as `dir/weights.json` (written whole or not at all).
pub fn save_weights(dir: &Path, weights: &BTreeMap<LayerId, Matrix>) -> Result<(), BackendError> {
    let p = dir.join(WEIGHTS_STATE_FILE);
    let err = |message: String| BackendError::State {
        path: p.clone(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let bytes = serde_json::to_vec(weights).map_err(|e| err(e.to_string()))?;
    crate::data::write_atomic(&p, &bytes).map_err(|e| err(e.to_string()))
}

/// The weights saved by [`save_weights`].
pub fn load_weights(dir: &Path) -> Result<BTreeMap<LayerId, Matrix>, BackendError> {
    let p = dir.join(WEIGHTS_STATE_FILE);
    let err = |message: String| BackendError::State {
        path: p.clone(),
        message,
    };
    let bytes = std::fs::read(&p).map_err(|e| err(e.to_string()))?;
    let w: BTreeMap<LayerId, Matrix> =
        serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
    if let Some((id, m)) = w.iter().find(|(_, m)| m.data.len() != m.rows * m.cols) {
        return Err(err(format!(
            "slot {id}: {} values for {}×{}",
            m.data.len(),
            m.rows,
            m.cols
        )));
    }
    Ok(w)
}

/// The weights of slot `id` held by a backend that stores them.
fn stored(weights: &BTreeMap<LayerId, Matrix>, id: LayerId) -> Result<&Matrix, BackendError> {
    weights.get(&id).ok_or(BackendError::NotPrepared(id))
}

fn checked_product(id: LayerId, x: &Matrix, w: &Matrix) -> Result<Matrix, BackendError> {
    check_inputs(id, x, w)?;
    Ok(x.matmul(w))
}

/// A batch `x` whose rows have as many inputs as slot `id`'s weights `w` have rows.
pub(crate) fn check_inputs(id: LayerId, x: &Matrix, w: &Matrix) -> Result<(), BackendError> {
    if x.cols != w.rows {
        return Err(BackendError::Shape {
            id,
            got: x.cols,
            want: w.rows,
        });
    }
    Ok(())
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
    fn forward(
        &mut self,
        id: LayerId,
        x: &Matrix,
        _ctx: &mut ForwardCtx,
    ) -> Result<Matrix, BackendError> {
        checked_product(id, x, stored(&self.weights, id)?)
    }
    fn effective_weights(&self, id: LayerId) -> Result<Matrix, BackendError> {
        stored(&self.weights, id).cloned()
    }
    fn save_state(&self, dir: &Path) -> Result<(), BackendError> {
        save_weights(dir, &self.weights)
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
    /// The weights as prepared (before the codec): updates apply to them, `save_state` saves them.
    source: BTreeMap<LayerId, Matrix>,
    weights: BTreeMap<LayerId, Matrix>,
}

impl<C: WeightCodec> EncodedBackend<C> {
    pub fn new(codec: C) -> Self {
        EncodedBackend {
            codec,
            source: BTreeMap::new(),
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
        self.source.insert(id, w.clone());
        Ok(())
    }
    fn forward(
        &mut self,
        id: LayerId,
        x: &Matrix,
        _ctx: &mut ForwardCtx,
    ) -> Result<Matrix, BackendError> {
        checked_product(id, x, stored(&self.weights, id)?)
    }
    fn effective_weights(&self, id: LayerId) -> Result<Matrix, BackendError> {
        stored(&self.weights, id).cloned()
    }
    /// Steps apply to the weights as prepared (before the codec), then pass through it again.
    fn update(
        &mut self,
        updates: Vec<(LayerId, Update)>,
        _ctx: &mut UpdateCtx,
    ) -> Result<UpdateReport, BackendError> {
        for (id, u) in updates {
            let w = u.apply_to(id, stored(&self.source, id)?)?;
            self.prepare(id, &w)?;
        }
        Ok(UpdateReport::default())
    }
    fn save_state(&self, dir: &Path) -> Result<(), BackendError> {
        save_weights(dir, &self.source)
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

    /// An outer-product update is `−lr·Xᵀ·δ` (closed form, written out element by element), a
    /// target replaces the weights, a step adds; the ideal backend's state round-trips.
    #[test]
    fn updates_and_state_of_the_ideal_backend() {
        use rand::SeedableRng;
        let w0 = Matrix::from_vec(3, 2, vec![0.1, -0.2, 0.3, 0.0, -0.5, 0.25]).unwrap();
        let x = Matrix::from_vec(2, 3, vec![1.0, 2.0, -1.0, 0.5, 0.0, 3.0]).unwrap();
        let delta = Matrix::from_vec(2, 2, vec![0.2, -0.1, 1.0, 0.4]).unwrap();
        let lr = 0.05;
        let mut b = IdealBackend::new();
        b.prepare(0, &w0).unwrap();
        let mut wrng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let rep = b
            .update(
                vec![(
                    0,
                    Update::OuterProduct {
                        x: x.clone(),
                        delta: delta.clone(),
                        lr,
                    },
                )],
                &mut UpdateCtx::new(&mut wrng),
            )
            .unwrap();
        assert_eq!(rep, UpdateReport::default());
        let w1 = b.effective_weights(0).unwrap();
        for i in 0..3 {
            for j in 0..2 {
                let dw: f64 = (0..2).map(|n| -lr * x.get(n, i) * delta.get(n, j)).sum();
                assert!((w1.get(i, j) - (w0.get(i, j) + dw)).abs() < 1e-15);
            }
        }
        let step = Matrix::from_vec(3, 2, vec![1.0; 6]).unwrap();
        b.update(
            vec![(0, Update::Step(step))],
            &mut UpdateCtx::new(&mut wrng),
        )
        .unwrap();
        let w2 = b.effective_weights(0).unwrap();
        assert!((w2.get(2, 1) - (w1.get(2, 1) + 1.0)).abs() < 1e-15);
        b.update(
            vec![(0, Update::Target(w0.clone()))],
            &mut UpdateCtx::new(&mut wrng),
        )
        .unwrap();
        assert_eq!(b.effective_weights(0).unwrap(), w0);
        // a wrong shape is an error, not a panic
        let bad = Update::Step(Matrix::zeros(2, 2));
        assert!(b
            .update(vec![(0, bad)], &mut UpdateCtx::new(&mut wrng))
            .is_err());
        let d = tempfile::tempdir().unwrap();
        b.save_state(d.path()).unwrap();
        let mut fresh = IdealBackend::new();
        fresh.load_state(d.path()).unwrap();
        let mut rrng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut ctx = ForwardCtx::new(&mut rrng, Pass::Test);
        assert_eq!(
            fresh.forward(0, &x, &mut ctx).unwrap(),
            b.forward(0, &x, &mut ctx).unwrap()
        );
    }
}
