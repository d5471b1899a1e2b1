//! Networks built from a layer list, their parameters and the weights file.

use super::backend::{ForwardCtx, LayerId, MatmulBackend};
use super::layers::{self, Cache, LayerSpec, Pad, Shape};
use super::loss::LossSpec;
use super::matrix::Matrix;
use super::NnError;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A network: input shape, layers, loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// `[channels, height, width]` of one sample (a sequence of T frames of C
    /// channels is `[T·C, H, W]`).
    pub input: Shape,
    pub layers: Vec<LayerSpec>,
    pub loss: LossSpec,
}

/// Builder: `ModelBuilder::new([1, 8, 8]).conv2d(15, [3, 3], 1, Pad::uniform(1), false).relu()…`.
#[derive(Debug, Clone)]
pub struct ModelBuilder {
    input: Shape,
    layers: Vec<LayerSpec>,
}

impl ModelBuilder {
    pub fn new(input: Shape) -> Self {
        ModelBuilder {
            input,
            layers: vec![],
        }
    }
    pub fn layer(mut self, l: LayerSpec) -> Self {
        self.layers.push(l);
        self
    }
    pub fn conv2d(
        self,
        out_channels: usize,
        kernel: [usize; 2],
        stride: usize,
        pad: Pad,
        bias: bool,
    ) -> Self {
        self.layer(LayerSpec::Conv2d {
            out_channels,
            kernel,
            stride,
            pad,
            bias,
        })
    }
    pub fn dense(self, out: usize, bias: bool) -> Self {
        self.layer(LayerSpec::Dense { out, bias })
    }
    pub fn relu(self) -> Self {
        self.layer(LayerSpec::Relu)
    }
    pub fn tanh(self, slope: f64) -> Self {
        self.layer(LayerSpec::Tanh {
            slope,
            amplitude: 1.0,
        })
    }
    pub fn sigmoid(self) -> Self {
        self.layer(LayerSpec::Sigmoid)
    }
    pub fn max_pool(self, size: usize, stride: usize) -> Self {
        self.layer(LayerSpec::MaxPool { size, stride })
    }
    pub fn flatten(self) -> Self {
        self.layer(LayerSpec::Flatten)
    }
    pub fn conv_lstm(
        self,
        hidden: usize,
        steps: usize,
        in_kernel: [usize; 2],
        rec_kernel: [usize; 2],
        bias: bool,
    ) -> Self {
        self.layer(LayerSpec::ConvLstm {
            hidden,
            steps,
            in_kernel,
            rec_kernel,
            bias,
        })
    }
    pub fn spec(self, loss: LossSpec) -> ModelSpec {
        ModelSpec {
            input: self.input,
            layers: self.layers,
            loss,
        }
    }
}

/// One crossbar matrix product of the model (what a backend is prepared with).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatmulSlot {
    pub id: LayerId,
    /// Index of the layer in `ModelSpec::layers`.
    pub layer: usize,
    /// e.g. `"L0.conv2d"`, `"L1.conv_lstm.input"`, `"L1.conv_lstm.recurrent"`.
    pub name: String,
    /// Crossbar rows = inputs (im2col order channel, ky, kx), bias row last.
    pub rows: usize,
    /// Crossbar columns = outputs.
    pub cols: usize,
    pub bias_row: bool,
}

/// A network with its float weights (one matrix per slot).
#[derive(Debug, Clone)]
pub struct Model {
    pub spec: ModelSpec,
    /// `shapes[i]` is the input shape of layer `i`; the last is the output shape.
    pub shapes: Vec<Shape>,
    pub slots: Vec<MatmulSlot>,
    /// Slot ids of every layer.
    pub layer_slots: Vec<Vec<LayerId>>,
    pub weights: Vec<Matrix>,
}

fn layer_kind(l: &LayerSpec) -> &'static str {
    match l {
        LayerSpec::Conv2d { .. } => "conv2d",
        LayerSpec::Dense { .. } => "dense",
        LayerSpec::Relu => "relu",
        LayerSpec::Tanh { .. } => "tanh",
        LayerSpec::Sigmoid => "sigmoid",
        LayerSpec::MaxPool { .. } => "max_pool",
        LayerSpec::Flatten => "flatten",
        LayerSpec::ConvLstm { .. } => "conv_lstm",
    }
}

impl Model {
    /// Validate shapes and allocate zero weights.
    pub fn new(spec: ModelSpec) -> Result<Self, NnError> {
        if spec.input.contains(&0) {
            return Err(NnError::Shape(format!(
                "input shape {:?} has a zero dimension",
                spec.input
            )));
        }
        let mut shapes = vec![spec.input];
        let mut slots = vec![];
        let mut layer_slots = vec![];
        let mut weights = vec![];
        for (li, l) in spec.layers.iter().enumerate() {
            let s = *shapes.last().unwrap_or(&spec.input);
            let out = layers::output_shape(l, s)
                .map_err(|e| NnError::Shape(format!("layer {li} ({}): {e}", layer_kind(l))))?;
            let ws = layers::weight_shapes(l, s);
            let bias = matches!(
                l,
                LayerSpec::Conv2d { bias: true, .. }
                    | LayerSpec::Dense { bias: true, .. }
                    | LayerSpec::ConvLstm { bias: true, .. }
            );
            let mut ids = vec![];
            for (k, (r, c)) in ws.into_iter().enumerate() {
                let id = slots.len();
                let suffix = match (l, k) {
                    (LayerSpec::ConvLstm { .. }, 0) => ".input",
                    (LayerSpec::ConvLstm { .. }, _) => ".recurrent",
                    _ => "",
                };
                slots.push(MatmulSlot {
                    id,
                    layer: li,
                    name: format!("L{li}.{}{suffix}", layer_kind(l)),
                    rows: r,
                    cols: c,
                    bias_row: bias && k == 0,
                });
                weights.push(Matrix::zeros(r, c));
                ids.push(id);
            }
            layer_slots.push(ids);
            shapes.push(out);
        }
        let out = shapes[shapes.len() - 1];
        if out[1] != 1 || out[2] != 1 {
            return Err(NnError::Shape(format!(
                "network output must be a vector, got shape {out:?}"
            )));
        }
        Ok(Model {
            spec,
            shapes,
            slots,
            layer_slots,
            weights,
        })
    }

    /// Glorot-uniform weights, zero biases (ConvLSTM forget-gate bias 1).
    pub fn init<R: Rng>(&mut self, rng: &mut R) {
        for slot in &self.slots {
            let w = &mut self.weights[slot.id];
            let spec = &self.spec.layers[slot.layer];
            let fan_in = slot.rows - slot.bias_row as usize;
            let fan_out = match spec {
                LayerSpec::Conv2d {
                    kernel,
                    out_channels,
                    ..
                } => out_channels * kernel[0] * kernel[1],
                LayerSpec::ConvLstm { hidden, .. } => *hidden * 4,
                _ => slot.cols,
            };
            let b = (6.0 / (fan_in + fan_out) as f64).sqrt();
            for r in 0..fan_in {
                for c in 0..slot.cols {
                    w.set(r, c, rng.gen_range(-b..b));
                }
            }
            if slot.bias_row {
                for c in 0..slot.cols {
                    let forget =
                        matches!(spec, LayerSpec::ConvLstm { hidden, .. } if c / hidden == 1);
                    w.set(fan_in, c, if forget { 1.0 } else { 0.0 });
                }
            }
        }
    }

    pub fn input_len(&self) -> usize {
        self.spec.input.iter().product()
    }

    pub fn output_len(&self) -> usize {
        self.shapes[self.shapes.len() - 1][0]
    }

    /// Hand every weight matrix to the backend.
    pub fn prepare_backend(&self, backend: &mut dyn MatmulBackend) -> Result<(), NnError> {
        for (id, w) in self.weights.iter().enumerate() {
            backend.prepare(id, w)?;
        }
        Ok(())
    }

    /// Forward pass of a batch (`n × input_len`) through the backend.
    pub fn forward(
        &self,
        backend: &mut dyn MatmulBackend,
        x: &Matrix,
        ctx: &mut ForwardCtx,
    ) -> Result<(Matrix, Vec<Cache>), NnError> {
        if x.cols != self.input_len() {
            return Err(NnError::Shape(format!(
                "input has {} values per sample, the network expects {}",
                x.cols,
                self.input_len()
            )));
        }
        let mut caches = Vec::with_capacity(self.spec.layers.len());
        let mut a = x.clone();
        for (li, l) in self.spec.layers.iter().enumerate() {
            let (y, c) =
                layers::forward_owned(l, self.shapes[li], &self.layer_slots[li], backend, a, ctx)?;
            caches.push(c);
            a = y;
        }
        Ok((a, caches))
    }

    /// Backward pass from `dL/d(output)`; returns one gradient per slot.
    /// Uses the backend's effective (read-back) weights and the activations
    /// of the forward pass that produced `caches`. The first layer's input gradient is not
    /// computed where that saves work (conv, dense: nothing below them uses it).
    pub fn backward(
        &self,
        backend: &dyn MatmulBackend,
        caches: &[Cache],
        dout: &Matrix,
    ) -> Result<Vec<Matrix>, NnError> {
        let mut grads: Vec<Matrix> = self
            .weights
            .iter()
            .map(|w| Matrix::zeros(w.rows, w.cols))
            .collect();
        let mut d = dout.clone();
        for li in (0..self.spec.layers.len()).rev() {
            let ids = &self.layer_slots[li];
            let mut g: Vec<Matrix> = ids
                .iter()
                .map(|&id| Matrix::zeros(self.weights[id].rows, self.weights[id].cols))
                .collect();
            let dx = layers::backward_owned(
                &self.spec.layers[li],
                self.shapes[li],
                ids,
                backend,
                &caches[li],
                d,
                &mut g,
                li > 0,
            )?;
            for (&id, gm) in ids.iter().zip(g) {
                grads[id] = gm;
            }
            d = match dx {
                Some(dx) => dx,
                None if li == 0 => break,
                None => {
                    return Err(NnError::Shape(format!(
                        "internal: layer {li} returned no input gradient"
                    )))
                }
            };
        }
        Ok(grads)
    }

    /// Weights file contents.
    pub fn to_weights_file(&self) -> WeightsFile {
        WeightsFile {
            format: WEIGHTS_FORMAT.into(),
            version: 1,
            model: self.spec.clone(),
            slots: self
                .slots
                .iter()
                .map(|s| SlotWeights {
                    slot: s.clone(),
                    data: self.weights[s.id].data.clone(),
                })
                .collect(),
        }
    }

    /// Rebuild a model from a weights file (shapes re-validated).
    pub fn from_weights_file(f: &WeightsFile) -> Result<Self, NnError> {
        if f.format != WEIGHTS_FORMAT || f.version != 1 {
            return Err(NnError::Format(format!(
                "weights file has format {:?} version {}, expected {WEIGHTS_FORMAT:?} version 1",
                f.format, f.version
            )));
        }
        let mut m = Model::new(f.model.clone())?;
        if f.slots.len() != m.slots.len() {
            return Err(NnError::Format(format!(
                "weights file has {} matrices, the network needs {}",
                f.slots.len(),
                m.slots.len()
            )));
        }
        for (s, fw) in m.slots.iter().zip(&f.slots) {
            if fw.slot.rows != s.rows || fw.slot.cols != s.cols {
                return Err(NnError::Format(format!(
                    "matrix {} should be {}x{}, the file declares {}x{}",
                    s.name, s.rows, s.cols, fw.slot.rows, fw.slot.cols
                )));
            }
            if fw.data.len() != s.rows * s.cols {
                return Err(NnError::Format(format!(
                    "matrix {} is {}x{} and needs {} values, the file has {}",
                    s.name,
                    s.rows,
                    s.cols,
                    s.rows * s.cols,
                    fw.data.len()
                )));
            }
            if let Some(i) = fw.data.iter().position(|v| !v.is_finite()) {
                return Err(NnError::Format(format!(
                    "matrix {} holds a non-finite value ({}) at index {i}",
                    s.name, fw.data[i]
                )));
            }
            m.weights[s.id].data.clone_from(&fw.data);
        }
        Ok(m)
    }
}

pub const WEIGHTS_FORMAT: &str = "netc-weights";

/// The trainer's JSON model file (`model.json`: network + weights; `netc eval --weights`
/// reads it; runs from a `.net` file also write `weights.json` in the compiler's
/// `netc-weights/1` format, see `nn::from_net::compiler_weights`):
///
/// ```json
/// {"format": "netc-weights", "version": 1,
///  "model": {"input": [1, 8, 8], "layers": [{"type": "conv2d", ...}, ...], "loss": {...}},
///  "slots": [{"id": 0, "layer": 0, "name": "L0.conv2d", "rows": 9, "cols": 15,
///             "bias_row": false, "data": [w00, w01, ..., w0(cols-1), w10, ...]}, ...]}
/// ```
/// Each slot is one crossbar matrix, row-major, rows = inputs in im2col order
/// (channel, kernel row, kernel column; dense: flattened c·H·W order), bias
/// row last (its input is the constant `BIAS_INPUT` = 1), columns = outputs
/// (conv: output channels; ConvLSTM: gates i, f, o, g each `hidden` wide).
/// Output `y = x · W`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsFile {
    pub format: String,
    pub version: u32,
    pub model: ModelSpec,
    pub slots: Vec<SlotWeights>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotWeights {
    #[serde(flatten)]
    pub slot: MatmulSlot,
    pub data: Vec<f64>,
}
