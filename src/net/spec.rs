//! Typed, validated blocks of a `.net` file.
//!
//! ```text
//! network lenet {
//!   input 8x8x1;                      // height x width x channels (or `input 64;` for a vector)
//!   bias off;                         // default for every layer (per layer: `bias on;` in its body)
//!   conv2d c1 { kernels 15; size 3x3; stride 1; padding 1; }   // padding: N | same | valid
//!   relu;
//!   maxpool p1 { size 2x2; stride 2; }
//!   flatten;
//!   dense fc { units 10; }
//!   tanh { slope 1e6; }  sigmoid;  softmax;
//!   convlstm cl { hidden 5; input_kernel 3x3; recurrent_kernel 2x2; steps 3; }
//! }
//! hardware {
//!   arrays 1 x 128x64;                // count x rows x cols  (rows = inputs / word lines)
//!   cell 1t1r;                        // passive | 1t1r
//!   model "taox_1t1r.cir";            // device model card (next to the .net file or in models/)
//!   g_min 10uS; g_max 100uS; levels 0;   // levels = device states (0: analogue)
//!   r_wire 2.5ohm; r_driver 0ohm; r_sense 0ohm;
//!   v_read 0.2V; v_in -0.2V .. 0.2V;
//!   transistor "nmos_level1.cir" { w 1um; l 0.13um; }  v_gate 5V;
//!   sense ideal;  or  sense opamp { gain 1e5; vsat 12V; r_feedback 10kohm; }
//!   adc_bits 16;
//! }
//! mapping {
//!   pairs 2; orientation columns; bias_rows 1; placement pack;   // pack | per_layer
//!   weight_scale 1e-4S;               // S per unit weight (R_gw); or `auto`
//!   seed 1;
//!   layer fc { split_rows 16; replicas 1; array 4; }
//! }
//! training {
//!   mode insitu;                      // exsitu | insitu | hybrid
//!   optimizer rmsprop { lr 0.01; decay 0.9; eps 1e-8; momentum 0; }
//!   epochs 2; batch 100; loss cross_entropy;
//!   dataset mnist { train 8000; test 2000; }
//!   preprocess { crop 20; resize 8x8; scale -0.2V .. 0.2V; }
//! }
//! ```

use super::ast::{Stmt, Value, ValueKind};
use super::card::{CardError, MemristorCard, MosCard};
use super::units::unit_name;
use super::NetError;
use crate::span::Span;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A whole checked `.net` file.
#[derive(Debug, Clone)]
pub struct NetFile {
    pub path: PathBuf,
    pub network: NetworkSpec,
    pub hardware: HardwareSpec,
    pub mapping: MappingSpec,
    pub training: Option<TrainingSpec>,
    /// Where each `trainable` name stands.
    pub trainable_spans: Vec<Span>,
}

#[derive(Debug, Clone)]
pub struct NetworkSpec {
    pub name: String,
    pub span: Span,
    /// `[h, w, c]` for an image (or frame) input, `[n]` for a vector.
    pub input: Vec<usize>,
    pub input_span: Span,
    pub layers: Vec<LayerSpec>,
}

#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub name: String,
    pub span: Span,
    pub kind: LayerKind,
    /// Whether the layer has a bias (only meaningful for weighted layers).
    pub bias: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    Valid,
    /// Output size `ceil(in / stride)`; odd totals put the extra zero after (bottom/right).
    Same,
    Explicit(usize),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum LayerKind {
    Conv2d {
        kernels: usize,
        size: [usize; 2],
        stride: usize,
        padding: Padding,
    },
    Dense {
        units: usize,
    },
    Relu,
    /// `tanh;` a software activation, `y = tanh(x)`; `tanh { slope A; }` the op-amp neuron of
    /// S4 (`V_H = v_h·tanh(A·(I⁺ − I⁻))`, A per ampere), see `crate::nn::from_net::model_spec`.
    Tanh {
        slope: Option<f64>,
    },
    Sigmoid,
    Softmax,
    Flatten,
    MaxPool {
        size: [usize; 2],
        stride: usize,
    },
    /// Convolutional LSTM with gates in the order input, forget, output, cell input.
    ConvLstm {
        hidden: usize,
        input_kernel: [usize; 2],
        recurrent_kernel: [usize; 2],
        steps: usize,
        input_padding: Padding,
        recurrent_padding: Padding,
    },
}

impl LayerKind {
    pub fn keyword(&self) -> &'static str {
        match self {
            LayerKind::Conv2d { .. } => "conv2d",
            LayerKind::Dense { .. } => "dense",
            LayerKind::Relu => "relu",
            LayerKind::Tanh { .. } => "tanh",
            LayerKind::Sigmoid => "sigmoid",
            LayerKind::Softmax => "softmax",
            LayerKind::Flatten => "flatten",
            LayerKind::MaxPool { .. } => "maxpool",
            LayerKind::ConvLstm { .. } => "convlstm",
        }
    }

    /// True for layers whose weights live on crossbars.
    pub fn is_weighted(&self) -> bool {
        matches!(
            self,
            LayerKind::Conv2d { .. } | LayerKind::Dense { .. } | LayerKind::ConvLstm { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    Passive,
    #[serde(rename = "1t1r")]
    OneT1R,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransistorSpec {
    pub path: PathBuf,
    /// Name of the `.model` in the card.
    pub model_name: String,
    /// The card's level-1 `.model`, written into emitted netlists.
    #[serde(skip)]
    pub model: crate::netlist::MosModel,
    pub w_m: f64,
    pub l_m: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum SenseSpec {
    /// Virtual ground: a 0 V source per column.
    Ideal,
    /// Inverting transimpedance amplifier `V = vsat·tanh(gain·(V+ − V−)/vsat)` with feedback resistor.
    Opamp {
        gain: f64,
        vsat_v: f64,
        r_feedback_ohm: f64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct HardwareSpec {
    #[serde(skip)]
    pub span: Span,
    pub arrays: usize,
    pub rows: usize,
    pub cols: usize,
    pub cell: CellKind,
    pub model: Option<MemristorCard>,
    pub g_min_siemens: f64,
    pub g_max_siemens: f64,
    /// Device conductance states, evenly spaced in [g_min, g_max]; 0 = analogue.
    pub levels: usize,
    pub r_wire_ohm: f64,
    pub r_driver_ohm: f64,
    pub r_sense_ohm: f64,
    pub v_read_v: f64,
    /// Input voltage range `[lo, hi]`.
    pub v_in_v: [f64; 2],
    /// Voltage of bias rows (defaults to `v_read`).
    pub v_bias_v: f64,
    pub transistor: Option<TransistorSpec>,
    pub v_gate_v: f64,
    pub sense: SenseSpec,
    pub adc_bits: Option<u32>,
    /// The declared device model (`device { … }`, parsed by `crate::device::spec`).
    pub device: Option<crate::device::DeviceSpec>,
}

impl HardwareSpec {
    /// sinh nonlinearity of the cells (0 = linear).
    pub fn nl_k_per_v(&self) -> f64 {
        self.model.as_ref().map(|m| m.nl_k_per_v).unwrap_or(0.0)
    }

    /// Output swing of the op-amp hidden neurons (V): scaled to the input range so that they
    /// drive the next array like an input (S4: "scaled down to be within −0.2 V to +0.2 V").
    pub fn v_hidden_v(&self) -> f64 {
        self.v_in_v[1].abs().max(self.v_in_v[0].abs())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Orientation {
    /// g⁺ and g⁻ on adjacent columns (outputs subtracted).
    Columns,
    /// g⁺ and g⁻ on adjacent rows fed with +V and −V.
    Rows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Every tile goes to the first array (and position) where it fits.
    Pack,
    /// Every layer starts on a fresh array.
    PerLayer,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightScale {
    /// Per matrix: the largest |w| uses the whole window `g_max − g_min`.
    Auto,
    /// Siemens per unit weight (S1's R_gw).
    SiemensPerUnit(f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerMapping {
    pub name: String,
    #[serde(skip)]
    pub span: Span,
    /// Split the layer's input rows into chunks of this many logical rows (partial sums added).
    pub split_rows: Option<usize>,
    pub replicas: usize,
    /// First array the layer may use.
    pub array: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MappingSpec {
    pub pairs: usize,
    pub orientation: Orientation,
    pub bias_rows: usize,
    pub placement: Placement,
    pub weight_scale: WeightScale,
    /// Siemens per weight unit of in-situ training from scratch (`mode insitu`): its initial
    /// weights say nothing about the range training needs, so `weight_scale auto` would freeze the
    /// window at their largest value. None: `weight_scale`.
    pub insitu_weight_scale_siemens: Option<f64>,
    pub seed: u64,
    pub layers: Vec<LayerMapping>,
}

impl MappingSpec {
    pub fn layer(&self, name: &str) -> Option<&LayerMapping> {
        self.layers.iter().find(|l| l.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainMode {
    Exsitu,
    Insitu,
    Hybrid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Optimizer {
    Sgd {
        lr: f64,
        momentum: f64,
    },
    Rmsprop {
        lr: f64,
        decay: f64,
        eps: f64,
        momentum: f64,
    },
    /// Fixed-amplitude conductance steps by the sign of the gradient.
    Manhattan {
        #[serde(alias = "step_s")]
        step_siemens: f64,
    },
    /// SGD whose conductance updates below `threshold_siemens` are skipped (S5).
    Threshold {
        lr: f64,
        #[serde(alias = "threshold_s")]
        threshold_siemens: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    CrossEntropy,
    Mse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    /// `mnist`, `mnist_sequence`, `fashion_mnist`, `letters4x4`, or a path.
    pub name: String,
    pub train: Option<usize>,
    pub test: Option<usize>,
    /// Fraction of the training split used (S5: 0.1).
    pub fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Preprocess {
    /// Keep the central `crop × crop` pixels.
    pub crop: Option<usize>,
    /// Resize (bicubic) to `[h, w]`.
    pub resize: Option<[usize; 2]>,
    /// Map pixels linearly to this voltage range.
    pub scale_v: Option<[f64; 2]>,
    /// Threshold to black/white.
    pub binarize: bool,
}

/// Training block: parsed and validated here, consumed by the trainer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSpec {
    pub mode: TrainMode,
    pub optimizer: Optimizer,
    pub epochs: usize,
    pub batch: usize,
    pub loss: Loss,
    pub dataset: DatasetSpec,
    pub preprocess: Preprocess,
    /// Layers trained on the hardware (hybrid: S5 trains only `fc`); empty = all.
    pub trainable: Vec<String>,
    /// The software phase's optimiser of `exsitu` and `hybrid` training (sgd or rmsprop); None:
    /// `optimizer` (a threshold optimiser becomes plain SGD at its rate).
    #[serde(default)]
    pub exsitu_optimizer: Option<Optimizer>,
    /// The software phase's epochs of `exsitu` and `hybrid` training; None: `epochs`.
    #[serde(default)]
    pub exsitu_epochs: Option<usize>,
    /// Programming noise σ on each conductance update (S).
    #[serde(alias = "noise_s")]
    pub noise_siemens: f64,
    /// Write-verify relative tolerance (S4: 0.05); 0 = none.
    pub write_tolerance: f64,
    /// Software training keeps every weight inside what the hardware window holds, |w| ≤
    /// (g_max − g_min)/weight_scale, after every step (S4: "During the training the weights were
    /// clipped within (10 μS, 100 μS)"); needs a fixed `weight_scale`.
    #[serde(default)]
    pub clip_weights: bool,
    /// Where `clip_weights` was given (for the error when the scale is `auto`).
    #[serde(skip)]
    pub clip_weights_span: Option<Span>,
    pub seed: u64,
    /// Located warnings (`file:line:col` + caret) for keys that are accepted but not applied
    /// (none at present: the in-situ keys `mode`, `noise`, `write_tolerance` and `trainable` are
    /// honoured by `netc train NET`, see `crate::insitu`).
    #[serde(skip)]
    pub not_applied: Vec<String>,
}

// ----------------------------------------------------------------------------------------------
// helpers

fn invalid(span: &Span, message: impl Into<String>) -> NetError {
    NetError::Invalid {
        span: span.clone(),
        message: message.into(),
    }
}

fn one_value(s: &Stmt) -> Result<&Value, NetError> {
    match s.values.as_slice() {
        [v] => Ok(v),
        [] => Err(invalid(&s.key_span, format!("`{}` needs a value", s.key))),
        [_, v, ..] => Err(invalid(&v.span, format!("`{}` takes one value", s.key))),
    }
}

/// The finite number of a value in `unit` (or unitless), else the span and message to report: the
/// one reader of numbers for `.net` blocks (the device block maps it into its own error).
pub(crate) fn number_in(v: &Value, key: &str, unit: &str) -> Result<f64, (Span, String)> {
    match &v.kind {
        ValueKind::Number { value, unit: u } => {
            if !u.is_empty() && u != unit {
                return Err((
                    v.span.clone(),
                    format!("`{key}` is in {}, not {}", unit_name(unit), unit_name(u)),
                ));
            }
            if !value.is_finite() {
                return Err((v.span.clone(), format!("`{key}` must be finite")));
            }
            Ok(*value)
        }
        k => Err((
            v.span.clone(),
            format!("`{key}` needs a number, found {}", k.describe()),
        )),
    }
}

fn num_of(v: &Value, key: &str, unit: &str) -> Result<f64, NetError> {
    number_in(v, key, unit).map_err(|(span, message)| NetError::Invalid { span, message })
}

fn num(s: &Stmt, unit: &str) -> Result<f64, NetError> {
    num_of(one_value(s)?, &s.key, unit)
}

fn positive(s: &Stmt, unit: &str) -> Result<f64, NetError> {
    let x = num(s, unit)?;
    if x <= 0.0 {
        return Err(invalid(
            &s.values[0].span,
            format!("`{}` must be > 0", s.key),
        ));
    }
    Ok(x)
}

fn non_negative(s: &Stmt, unit: &str) -> Result<f64, NetError> {
    let x = num(s, unit)?;
    if x < 0.0 {
        return Err(invalid(
            &s.values[0].span,
            format!("`{}` must be ≥ 0", s.key),
        ));
    }
    Ok(x)
}

fn count_of(v: &Value, key: &str) -> Result<usize, NetError> {
    match &v.kind {
        ValueKind::Number { value, unit } if unit.is_empty() => {
            if *value < 0.0 || value.fract() != 0.0 || *value > 1e12 {
                Err(invalid(
                    &v.span,
                    format!("`{key}` needs a whole number ≥ 0"),
                ))
            } else {
                Ok(*value as usize)
            }
        }
        k => Err(invalid(
            &v.span,
            format!("`{key}` needs a whole number, found {}", k.describe()),
        )),
    }
}

fn count(s: &Stmt) -> Result<usize, NetError> {
    count_of(one_value(s)?, &s.key)
}

fn count_pos(s: &Stmt) -> Result<usize, NetError> {
    let n = count(s)?;
    if n == 0 {
        return Err(invalid(
            &s.values[0].span,
            format!("`{}` must be ≥ 1", s.key),
        ));
    }
    Ok(n)
}

fn word(s: &Stmt) -> Result<(String, Span), NetError> {
    let v = one_value(s)?;
    match &v.kind {
        ValueKind::Ident(w) => Ok((w.to_ascii_lowercase(), v.span.clone())),
        k => Err(invalid(
            &v.span,
            format!("`{}` needs a word, found {}", s.key, k.describe()),
        )),
    }
}

fn choice(s: &Stmt, options: &[&str]) -> Result<(String, Span), NetError> {
    let (w, sp) = word(s)?;
    if options.contains(&w.as_str()) {
        Ok((w, sp))
    } else {
        Err(invalid(
            &sp,
            format!("`{}` must be one of: {}", s.key, options.join(", ")),
        ))
    }
}

fn on_off(s: &Stmt) -> Result<bool, NetError> {
    let (w, _) = choice(s, &["on", "off", "true", "false", "yes", "no"])?;
    Ok(matches!(w.as_str(), "on" | "true" | "yes"))
}

/// `3x3` or `3` → `[3, 3]`.
fn size2(s: &Stmt) -> Result<[usize; 2], NetError> {
    let v = one_value(s)?;
    let d = match &v.kind {
        ValueKind::Dims(d) if d.len() == 2 => [d[0], d[1]],
        ValueKind::Number { .. } => {
            let n = count_of(v, &s.key)?;
            [n, n]
        }
        _ => {
            return Err(invalid(
                &v.span,
                format!("`{}` needs a size like 3x3", s.key),
            ))
        }
    };
    if d[0] == 0 || d[1] == 0 {
        return Err(invalid(&v.span, format!("`{}` must be ≥ 1", s.key)));
    }
    Ok(d)
}

/// Memory planned per declared crossbar cell when compiling or solving the chip: conductances
/// of the cell and its pair, the weight it holds and the maps built over it.
pub const BYTES_PER_DECLARED_CELL: u128 = 32;

fn padding(s: &Stmt) -> Result<Padding, NetError> {
    let v = one_value(s)?;
    match &v.kind {
        ValueKind::Ident(w) if w.eq_ignore_ascii_case("same") => Ok(Padding::Same),
        ValueKind::Ident(w) if w.eq_ignore_ascii_case("valid") => Ok(Padding::Valid),
        ValueKind::Number { .. } => Ok(Padding::Explicit(count_of(v, "padding")?)),
        _ => Err(invalid(
            &v.span,
            "`padding` must be a number, `same` or `valid`",
        )),
    }
}

fn range_of(s: &Stmt, unit: &str) -> Result<[f64; 2], NetError> {
    let v = one_value(s)?;
    match &v.kind {
        ValueKind::Range(a, b) => {
            let lo = num_of(a, &s.key, unit)?;
            let hi = num_of(b, &s.key, unit)?;
            if lo >= hi {
                return Err(invalid(&v.span, format!("`{}`: empty range", s.key)));
            }
            Ok([lo, hi])
        }
        _ => Err(invalid(
            &v.span,
            format!("`{}` needs a range `lo .. hi`", s.key),
        )),
    }
}

fn string(s: &Stmt) -> Result<(String, Span), NetError> {
    let v = s
        .values
        .first()
        .ok_or_else(|| invalid(&s.key_span, format!("`{}` needs a file name", s.key)))?;
    match &v.kind {
        ValueKind::Str(t) => Ok((t.clone(), v.span.clone())),
        k => Err(invalid(
            &v.span,
            format!(
                "`{}` needs a quoted file name, found {}",
                s.key,
                k.describe()
            ),
        )),
    }
}

fn no_body(s: &Stmt) -> Result<(), NetError> {
    if s.body.is_some() {
        return Err(invalid(
            &s.key_span,
            format!("`{}` takes no `{{ … }}` body", s.key),
        ));
    }
    Ok(())
}

fn body(s: &Stmt) -> &[Stmt] {
    s.body.as_deref().unwrap_or(&[])
}

fn unknown_key(s: &Stmt, block: &str, known: &[&str]) -> NetError {
    invalid(
        &s.key_span,
        format!(
            "unknown key `{}` in {block} (known: {})",
            s.key,
            known.join(", ")
        ),
    )
}

/// Reject a key given twice in one block.
struct Seen(HashMap<String, Span>);

impl Seen {
    fn new() -> Seen {
        Seen(HashMap::new())
    }
    fn check(&mut self, s: &Stmt) -> Result<(), NetError> {
        if let Some(first) = self.0.get(&s.key) {
            return Err(NetError::Duplicate {
                span: s.key_span.clone(),
                name: s.key.clone(),
                first: Box::new(first.clone()),
            });
        }
        self.0.insert(s.key.clone(), s.key_span.clone());
        Ok(())
    }
}

// ----------------------------------------------------------------------------------------------

impl NetFile {
    /// Build the typed description from the statement list. `path` is the `.net` file (model
    /// cards are looked up next to it, then in its `models/` and its parent's `models/`).
    pub fn from_ast(stmts: &[Stmt], path: &Path) -> Result<NetFile, NetError> {
        let mut network = None;
        let mut hardware = None;
        let mut mapping = None;
        let mut training = None;
        let mut trainable_spans = Vec::new();
        let mut seen = Seen::new();
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        for s in stmts {
            match s.key.as_str() {
                "network" | "hardware" | "mapping" | "training" => seen.check(s)?,
                _ => {
                    return Err(unknown_key(
                        s,
                        "the file",
                        &["network", "hardware", "mapping", "training", "include"],
                    ))
                }
            }
            if s.body.is_none() {
                return Err(invalid(
                    &s.key_span,
                    format!("`{}` needs a `{{ … }}` body", s.key),
                ));
            }
            match s.key.as_str() {
                "network" => network = Some(network_block(s)?),
                "hardware" => hardware = Some(hardware_block(s, &base)?),
                "mapping" => mapping = Some(mapping_block(s)?),
                _ => {
                    let (t, spans) = training_block(s)?;
                    training = Some(t);
                    trainable_spans = spans;
                }
            }
        }
        let file_span = Span::new(
            std::sync::Arc::from(path.display().to_string()),
            1,
            1,
            1,
            std::sync::Arc::from(""),
        );
        let network =
            network.ok_or_else(|| invalid(&file_span, "missing `network { … }` block"))?;
        let hardware =
            hardware.ok_or_else(|| invalid(&file_span, "missing `hardware { … }` block"))?;
        let mapping = mapping.unwrap_or(MappingSpec {
            pairs: 1,
            orientation: Orientation::Columns,
            bias_rows: 1,
            placement: Placement::Pack,
            weight_scale: WeightScale::Auto,
            insitu_weight_scale_siemens: None,
            seed: 1,
            layers: vec![],
        });
        Ok(NetFile {
            path: path.to_path_buf(),
            network,
            hardware,
            mapping,
            training,
            trainable_spans,
        })
    }

    /// Cross-block checks that need the inferred network: mapping overrides must name weighted
    /// layers; trainable layers must exist.
    pub fn check_against(&self, ir: &super::ir::NetworkIr) -> Result<(), NetError> {
        for lm in &self.mapping.layers {
            match ir.layers.iter().find(|l| l.name == lm.name) {
                None => {
                    return Err(NetError::UnknownName {
                        span: lm.span.clone(),
                        name: lm.name.clone(),
                        message: format!(
                            "no such layer in network `{}` (layers: {})",
                            ir.name,
                            ir.layers
                                .iter()
                                .map(|l| l.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
                }
                Some(l) if l.matrix.is_none() => {
                    return Err(NetError::Unused {
                        span: lm.span.clone(),
                        name: lm.name.clone(),
                        message: format!(
                            "layer `{}` is a {} with no weights, so it has nothing to map",
                            l.name,
                            l.kind.keyword()
                        ),
                    })
                }
                _ => {}
            }
        }
        if let Some(t) = &self.training {
            for (name, span) in t.trainable.iter().zip(&self.trainable_spans) {
                if ir.layer(name).and_then(|l| l.matrix).is_none() {
                    return Err(NetError::UnknownName {
                        span: span.clone(),
                        name: name.clone(),
                        message: "`trainable` must name weighted layers of the network".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn network_block(s: &Stmt) -> Result<NetworkSpec, NetError> {
    let name = match s.values.as_slice() {
        [] => "network".to_string(),
        [v] => match &v.kind {
            ValueKind::Ident(n) => n.clone(),
            _ => return Err(invalid(&v.span, "network name must be a word")),
        },
        [_, v, ..] => return Err(invalid(&v.span, "`network` takes one name")),
    };
    let mut input = None;
    let mut default_bias = false;
    let mut layers: Vec<(LayerSpec, Option<bool>)> = Vec::new();
    let mut names: HashMap<String, Span> = HashMap::new();
    let mut counters: HashMap<&'static str, usize> = HashMap::new();
    let mut seen = Seen::new();
    for st in body(s) {
        match st.key.as_str() {
            "input" => {
                seen.check(st)?;
                no_body(st)?;
                let v = one_value(st)?;
                let shape = match &v.kind {
                    ValueKind::Dims(d) if d.len() == 3 => d.clone(),
                    ValueKind::Dims(d) if d.len() == 2 => vec![d[0], d[1], 1],
                    ValueKind::Number { .. } => vec![count_of(v, "input")?],
                    _ => {
                        return Err(invalid(
                            &v.span,
                            "`input` needs a shape: H x W x C, H x W, or a vector length",
                        ))
                    }
                };
                if shape.contains(&0) {
                    return Err(invalid(&v.span, "input dimensions must be ≥ 1"));
                }
                input = Some((shape, v.span.clone()));
            }
            "bias" => {
                seen.check(st)?;
                no_body(st)?;
                default_bias = on_off(st)?;
            }
            _ => {
                let (spec, bias) = layer(st, &mut counters)?;
                if let Some(first) = names.get(&spec.name) {
                    return Err(NetError::Duplicate {
                        span: spec.span.clone(),
                        name: spec.name.clone(),
                        first: Box::new(first.clone()),
                    });
                }
                names.insert(spec.name.clone(), spec.span.clone());
                layers.push((spec, bias));
            }
        }
    }
    let (input, input_span) =
        input.ok_or_else(|| invalid(&s.key_span, "the network needs an `input` shape"))?;
    let layers = layers
        .into_iter()
        .map(|(mut l, b)| {
            l.bias = l.kind.is_weighted() && b.unwrap_or(default_bias);
            l
        })
        .collect();
    Ok(NetworkSpec {
        name,
        span: s.key_span.clone(),
        input,
        input_span,
        layers,
    })
}

const LAYER_KEYS: &[&str] = &[
    "input", "bias", "conv2d", "dense", "relu", "tanh", "sigmoid", "softmax", "flatten", "maxpool",
    "convlstm",
];

fn layer(
    s: &Stmt,
    counters: &mut HashMap<&'static str, usize>,
) -> Result<(LayerSpec, Option<bool>), NetError> {
    let kw: &'static str = match s.key.as_str() {
        "conv2d" | "conv" => "conv",
        "dense" | "fc" | "linear" => "fc",
        "relu" => "relu",
        "tanh" => "tanh",
        "sigmoid" => "sigmoid",
        "softmax" => "softmax",
        "flatten" => "flatten",
        "maxpool" | "max_pool" => "pool",
        "convlstm" => "convlstm",
        _ => return Err(unknown_key(s, "network", LAYER_KEYS)),
    };
    let n = counters.entry(kw).or_insert(0);
    *n += 1;
    let name = match s.values.as_slice() {
        [] => format!("{kw}{n}"),
        [v] => match &v.kind {
            ValueKind::Ident(x) => x.clone(),
            _ => {
                return Err(invalid(
                    &v.span,
                    format!(
                        "a layer takes a name, then its settings in `{{ … }}` (found {})",
                        v.kind.describe()
                    ),
                ))
            }
        },
        [_, v, ..] => {
            return Err(invalid(
                &v.span,
                "a layer takes one name; put its settings in `{ … }`",
            ))
        }
    };
    let mut seen = Seen::new();
    let mut bias = None;
    let mut get: HashMap<&str, &Stmt> = HashMap::new();
    let allowed: &[&str] = match kw {
        "conv" => &["kernels", "size", "stride", "padding", "bias"],
        "fc" => &["units", "bias"],
        "tanh" => &["slope"],
        "pool" => &["size", "stride"],
        "convlstm" => &[
            "hidden",
            "input_kernel",
            "recurrent_kernel",
            "steps",
            "input_padding",
            "recurrent_padding",
            "bias",
        ],
        _ => &[],
    };
    for st in body(s) {
        if !allowed.contains(&st.key.as_str()) {
            return Err(unknown_key(st, &format!("`{}`", s.key), allowed));
        }
        seen.check(st)?;
        no_body(st)?;
        if st.key == "bias" {
            bias = Some(on_off(st)?);
        } else {
            get.insert(
                allowed
                    .iter()
                    .find(|k| **k == st.key)
                    .copied()
                    .unwrap_or(""),
                st,
            );
        }
    }
    let need = |k: &str| -> Result<&Stmt, NetError> {
        get.get(k)
            .copied()
            .ok_or_else(|| invalid(&s.key_span, format!("`{}` needs `{k}`", s.key)))
    };
    let kind = match kw {
        "conv" => LayerKind::Conv2d {
            kernels: count_pos(need("kernels")?)?,
            size: size2(need("size")?)?,
            stride: match get.get("stride") {
                Some(st) => count_pos(st)?,
                None => 1,
            },
            padding: match get.get("padding") {
                Some(st) => padding(st)?,
                None => Padding::Valid,
            },
        },
        "fc" => LayerKind::Dense {
            units: count_pos(need("units")?)?,
        },
        "relu" => LayerKind::Relu,
        "tanh" => LayerKind::Tanh {
            slope: match get.get("slope") {
                Some(st) => Some(positive(st, "")?),
                None => None,
            },
        },
        "sigmoid" => LayerKind::Sigmoid,
        "softmax" => LayerKind::Softmax,
        "flatten" => LayerKind::Flatten,
        "pool" => {
            let size = size2(need("size")?)?;
            LayerKind::MaxPool {
                size,
                stride: match get.get("stride") {
                    Some(st) => count_pos(st)?,
                    None => size[0],
                },
            }
        }
        _ => LayerKind::ConvLstm {
            hidden: count_pos(need("hidden")?)?,
            input_kernel: size2(need("input_kernel")?)?,
            recurrent_kernel: size2(need("recurrent_kernel")?)?,
            steps: count_pos(need("steps")?)?,
            input_padding: match get.get("input_padding") {
                Some(st) => padding(st)?,
                None => Padding::Valid,
            },
            recurrent_padding: match get.get("recurrent_padding") {
                Some(st) => padding(st)?,
                None => Padding::Same,
            },
        },
    };
    Ok((
        LayerSpec {
            name,
            span: s.key_span.clone(),
            kind,
            bias: false,
        },
        bias,
    ))
}

/// Find a model card: as given relative to the `.net` file, then in `models/` next to it, then in
/// `../models/`, then in `./models/` of the working directory.
fn find_model(rel: &str, base: &Path) -> Result<PathBuf, String> {
    let candidates = [
        base.join(rel),
        base.join("models").join(rel),
        base.join("..").join("models").join(rel),
        PathBuf::from("models").join(rel),
    ];
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    Err(candidates
        .iter()
        .map(|c| c.display().to_string())
        .collect::<Vec<_>>()
        .join(", "))
}

/// A card error located at the `.net` statement that names the card.
fn card_error(span: &Span, rel: &str, e: CardError) -> NetError {
    NetError::Card {
        span: span.clone(),
        card: rel.to_string(),
        source: Box::new(e),
    }
}

const HW_KEYS: &[&str] = &[
    "arrays",
    "cell",
    "model",
    "g_min",
    "g_max",
    "levels",
    "r_wire",
    "r_driver",
    "r_sense",
    "v_read",
    "v_in",
    "v_bias",
    "transistor",
    "v_gate",
    "sense",
    "adc_bits",
    "device",
];

fn hardware_block(s: &Stmt, base: &Path) -> Result<HardwareSpec, NetError> {
    if let Some(v) = s.values.first() {
        return Err(invalid(&v.span, "`hardware` takes no name"));
    }
    let mut seen = Seen::new();
    let mut hw = HardwareSpec {
        span: s.key_span.clone(),
        arrays: 0,
        rows: 0,
        cols: 0,
        cell: CellKind::Passive,
        model: None,
        g_min_siemens: 0.0,
        g_max_siemens: 0.0,
        levels: 0,
        r_wire_ohm: 0.0,
        r_driver_ohm: 0.0,
        r_sense_ohm: 0.0,
        v_read_v: 0.2,
        v_in_v: [-0.2, 0.2],
        v_bias_v: f64::NAN,
        transistor: None,
        v_gate_v: f64::NAN,
        sense: SenseSpec::Ideal,
        adc_bits: None,
        device: None,
    };
    let mut device_stmt = None;
    let mut g_min_span = None;
    let mut g_max_span = None;
    let mut transistor_span = None;
    let mut model_span = None;
    for st in body(s) {
        if !HW_KEYS.contains(&st.key.as_str()) {
            return Err(unknown_key(st, "hardware", HW_KEYS));
        }
        seen.check(st)?;
        if !matches!(st.key.as_str(), "transistor" | "sense" | "device") {
            no_body(st)?;
        }
        match st.key.as_str() {
            // parsed after the loop, once the window is known (crate::device::spec)
            "device" => device_stmt = Some(st),
            "arrays" => {
                // `arrays 8 x 128x16` (count x rows x cols) or `arrays 128x64` (one array)
                let v = one_value(st)?;
                let (n, r, c) = match &v.kind {
                    ValueKind::Dims(d) if d.len() == 3 => (d[0], d[1], d[2]),
                    ValueKind::Dims(d) if d.len() == 2 => (1, d[0], d[1]),
                    _ => {
                        return Err(invalid(
                            &v.span,
                            "`arrays` needs COUNT x ROWS x COLS (e.g. `arrays 8 x 128x16`)",
                        ))
                    }
                };
                if n == 0 || r == 0 || c == 0 {
                    return Err(invalid(&v.span, "array count and size must be ≥ 1"));
                }
                // Compiling holds every declared array's conductances, weights and maps (and
                // the circuit backend solves them): refuse a chip that cannot fit, here, located.
                let cells = (n as u128)
                    .saturating_mul(r as u128)
                    .saturating_mul(c as u128);
                crate::limits::check(
                    || format!("`arrays {n} x {r}x{c}` ({cells} cells)"),
                    cells.saturating_mul(BYTES_PER_DECLARED_CELL),
                )
                .map_err(|e| NetError::TooLarge {
                    span: v.span.clone(),
                    message: e.to_string(),
                })?;
                (hw.arrays, hw.rows, hw.cols) = (n, r, c);
            }
            "cell" => {
                hw.cell = match choice(st, &["passive", "0t1r", "1t1r"])?.0.as_str() {
                    "1t1r" => CellKind::OneT1R,
                    _ => CellKind::Passive,
                }
            }
            "model" => {
                let (rel, sp) = string(st)?;
                let path = find_model(&rel, base).map_err(|searched| NetError::UnknownModel {
                    span: sp.clone(),
                    path: rel.clone(),
                    searched,
                })?;
                let card = MemristorCard::load(&path).map_err(|e| card_error(&sp, &rel, e))?;
                hw.model = Some(card);
                model_span = Some(sp);
            }
            "g_min" => {
                hw.g_min_siemens = num(st, "s")?;
                g_min_span = Some(st.values[0].span.clone());
            }
            "g_max" => {
                hw.g_max_siemens = num(st, "s")?;
                g_max_span = Some(st.values[0].span.clone());
            }
            "levels" => {
                hw.levels = count(st)?;
                if hw.levels == 1 {
                    return Err(NetError::Window {
                        span: st.values[0].span.clone(),
                        message: "one conductance level cannot store a signed weight (use ≥ 2, or 0 for analogue)".into(),
                    });
                }
            }
            "r_wire" => hw.r_wire_ohm = non_negative(st, "ohm")?,
            "r_driver" => hw.r_driver_ohm = non_negative(st, "ohm")?,
            "r_sense" => hw.r_sense_ohm = non_negative(st, "ohm")?,
            "v_read" => hw.v_read_v = positive(st, "v")?,
            "v_in" => hw.v_in_v = range_of(st, "v")?,
            "v_bias" => hw.v_bias_v = num(st, "v")?,
            "v_gate" => hw.v_gate_v = num(st, "v")?,
            "adc_bits" => {
                let b = count_pos(st)?;
                if b > 32 {
                    return Err(invalid(&st.values[0].span, "`adc_bits` must be ≤ 32"));
                }
                hw.adc_bits = Some(b as u32);
            }
            "transistor" => {
                let (rel, sp) = string(st)?;
                if st.values.len() > 1 {
                    return Err(invalid(
                        &st.values[1].span,
                        "`transistor` takes one file name; put w and l in `{ … }`",
                    ));
                }
                let path = find_model(&rel, base).map_err(|searched| NetError::UnknownModel {
                    span: sp.clone(),
                    path: rel.clone(),
                    searched,
                })?;
                let card = MosCard::load(&path).map_err(|e| card_error(&sp, &rel, e))?;
                let mut t = TransistorSpec {
                    path,
                    model_name: card.model.name.clone(),
                    model: card.model,
                    w_m: card.w_m.unwrap_or(1e-6),
                    l_m: card.l_m.unwrap_or(1e-6),
                };
                let mut seen_t = Seen::new();
                for b in body(st) {
                    seen_t.check(b)?;
                    no_body(b)?;
                    match b.key.as_str() {
                        "w" => t.w_m = positive(b, "m")?,
                        "l" => t.l_m = positive(b, "m")?,
                        _ => return Err(unknown_key(b, "`transistor`", &["w", "l"])),
                    }
                }
                hw.transistor = Some(t);
                transistor_span = Some(sp);
            }
            _ => {
                // sense
                let (w, _) = choice(st, &["ideal", "opamp"])?;
                if w == "ideal" {
                    no_body(st)?;
                    hw.sense = SenseSpec::Ideal;
                } else {
                    let (mut gain, mut vsat, mut rf) = (1e5, 12.0, 10e3);
                    let mut seen_o = Seen::new();
                    for b in body(st) {
                        seen_o.check(b)?;
                        no_body(b)?;
                        match b.key.as_str() {
                            "gain" => gain = positive(b, "")?,
                            "vsat" => vsat = positive(b, "v")?,
                            "r_feedback" => rf = positive(b, "ohm")?,
                            _ => {
                                return Err(unknown_key(
                                    b,
                                    "`sense opamp`",
                                    &["gain", "vsat", "r_feedback"],
                                ))
                            }
                        }
                    }
                    hw.sense = SenseSpec::Opamp {
                        gain,
                        vsat_v: vsat,
                        r_feedback_ohm: rf,
                    };
                }
            }
        }
    }
    if hw.arrays == 0 {
        return Err(invalid(
            &s.key_span,
            "`hardware` needs `arrays COUNT x ROWS x COLS`",
        ));
    }
    let (Some(gmin_sp), Some(gmax_sp)) = (g_min_span, g_max_span) else {
        return Err(invalid(&s.key_span, "`hardware` needs `g_min` and `g_max`"));
    };
    if hw.g_min_siemens <= 0.0 {
        return Err(NetError::Window {
            span: gmin_sp,
            message: format!(
                "g_min = {:e} S must be > 0 (a cell is a conductance in the circuit)",
                hw.g_min_siemens
            ),
        });
    }
    if hw.g_min_siemens >= hw.g_max_siemens {
        return Err(NetError::Window {
            span: gmax_sp,
            message: format!(
                "g_max = {:e} S must be larger than g_min = {:e} S",
                hw.g_max_siemens, hw.g_min_siemens
            ),
        });
    }
    if let (Some(m), Some(sp)) = (&hw.model, &model_span) {
        let lo = m.g_lo_siemens.unwrap_or(0.0);
        let hi = m.g_hi_siemens.unwrap_or(f64::INFINITY);
        if hw.g_min_siemens < lo * (1.0 - 1e-12) || hw.g_max_siemens > hi * (1.0 + 1e-12) {
            return Err(NetError::Window {
                span: if hw.g_min_siemens < lo {
                    gmin_sp
                } else {
                    gmax_sp
                },
                message: format!(
                    "[{:e}, {:e}] S lies outside the device window [{:e}, {:e}] S of model {}",
                    hw.g_min_siemens,
                    hw.g_max_siemens,
                    lo,
                    hi,
                    sp.line_text.trim()
                ),
            });
        }
    }
    if hw.cell == CellKind::OneT1R {
        if hw.transistor.is_none() {
            return Err(invalid(
                &s.key_span,
                "a 1t1r array needs `transistor \"card\"` (a level-1 NMOS model card)",
            ));
        }
        if hw.v_gate_v.is_nan() {
            return Err(invalid(&s.key_span, "a 1t1r array needs `v_gate`"));
        }
    } else if let Some(sp) = transistor_span {
        return Err(NetError::Unused {
            span: sp,
            name: "transistor".into(),
            message: "a passive array has no access transistors (use `cell 1t1r`)".into(),
        });
    }
    if hw.v_gate_v.is_nan() {
        hw.v_gate_v = 0.0;
    }
    if hw.v_bias_v.is_nan() {
        hw.v_bias_v = hw.v_read_v;
    }
    if let Some(st) = device_stmt {
        hw.device = Some(
            crate::device::spec::device_block(st, base, hw.g_min_siemens, hw.g_max_siemens)
                .map_err(|e| match e {
                    crate::device::DeviceError::Invalid { span, message } => {
                        NetError::Invalid { span, message }
                    }
                    other => invalid(&st.key_span, other.to_string()),
                })?,
        );
    }
    Ok(hw)
}

const MAP_KEYS: &[&str] = &[
    "pairs",
    "orientation",
    "bias_rows",
    "placement",
    "weight_scale",
    "insitu_weight_scale",
    "seed",
    "layer",
];

fn mapping_block(s: &Stmt) -> Result<MappingSpec, NetError> {
    let mut m = MappingSpec {
        pairs: 1,
        orientation: Orientation::Columns,
        bias_rows: 1,
        placement: Placement::Pack,
        weight_scale: WeightScale::Auto,
        insitu_weight_scale_siemens: None,
        seed: 1,
        layers: vec![],
    };
    let mut seen = Seen::new();
    for st in body(s) {
        if !MAP_KEYS.contains(&st.key.as_str()) {
            return Err(unknown_key(st, "mapping", MAP_KEYS));
        }
        if st.key != "layer" {
            seen.check(st)?;
            no_body(st)?;
        }
        match st.key.as_str() {
            "pairs" => {
                m.pairs = count(st)?;
                if !(1..=2).contains(&m.pairs) {
                    return Err(invalid(&st.values[0].span, "`pairs` must be 1 or 2"));
                }
            }
            "orientation" => {
                m.orientation = match choice(st, &["columns", "rows"])?.0.as_str() {
                    "rows" => Orientation::Rows,
                    _ => Orientation::Columns,
                }
            }
            "bias_rows" => m.bias_rows = count_pos(st)?,
            "placement" => {
                m.placement = match choice(st, &["pack", "per_layer"])?.0.as_str() {
                    "per_layer" => Placement::PerLayer,
                    _ => Placement::Pack,
                }
            }
            "weight_scale" => {
                let v = one_value(st)?;
                m.weight_scale = match &v.kind {
                    ValueKind::Ident(w) if w.eq_ignore_ascii_case("auto") => WeightScale::Auto,
                    _ => WeightScale::SiemensPerUnit(positive(st, "s")?),
                }
            }
            "insitu_weight_scale" => m.insitu_weight_scale_siemens = Some(positive(st, "s")?),
            "seed" => m.seed = count(st)? as u64,
            _ => {
                let (name, sp) = match st.values.as_slice() {
                    [v] => match &v.kind {
                        ValueKind::Ident(n) => (n.clone(), v.span.clone()),
                        _ => return Err(invalid(&v.span, "`layer` needs a layer name")),
                    },
                    _ => return Err(invalid(&st.key_span, "`layer NAME { … }`")),
                };
                if let Some(prev) = m.layers.iter().find(|l| l.name == name) {
                    return Err(NetError::Duplicate {
                        span: sp,
                        name,
                        first: Box::new(prev.span.clone()),
                    });
                }
                let mut lm = LayerMapping {
                    name,
                    span: sp,
                    split_rows: None,
                    replicas: 1,
                    array: None,
                };
                let mut seen_l = Seen::new();
                for b in body(st) {
                    seen_l.check(b)?;
                    no_body(b)?;
                    match b.key.as_str() {
                        "split_rows" => lm.split_rows = Some(count_pos(b)?),
                        "replicas" => lm.replicas = count_pos(b)?,
                        "array" => lm.array = Some(count(b)?),
                        _ => {
                            return Err(unknown_key(
                                b,
                                "`layer`",
                                &["split_rows", "replicas", "array"],
                            ))
                        }
                    }
                }
                m.layers.push(lm);
            }
        }
    }
    Ok(m)
}

const TRAIN_KEYS: &[&str] = &[
    "mode",
    "optimizer",
    "epochs",
    "batch",
    "loss",
    "dataset",
    "preprocess",
    "trainable",
    "exsitu_optimizer",
    "exsitu_epochs",
    "noise",
    "write_tolerance",
    "clip_weights",
    "seed",
];

fn training_block(s: &Stmt) -> Result<(TrainingSpec, Vec<Span>), NetError> {
    let mut seen = Seen::new();
    let mut spans = Vec::new();
    let mut t = TrainingSpec {
        mode: TrainMode::Exsitu,
        optimizer: Optimizer::Sgd {
            lr: 0.01,
            momentum: 0.0,
        },
        epochs: 1,
        batch: 1,
        loss: Loss::CrossEntropy,
        dataset: DatasetSpec {
            name: "mnist".into(),
            train: None,
            test: None,
            fraction: 1.0,
        },
        preprocess: Preprocess::default(),
        trainable: vec![],
        exsitu_optimizer: None,
        exsitu_epochs: None,
        noise_siemens: 0.0,
        write_tolerance: 0.0,
        clip_weights: false,
        clip_weights_span: None,
        seed: 1,
        not_applied: vec![],
    };
    let mut binarize_span = None;
    for st in body(s) {
        if !TRAIN_KEYS.contains(&st.key.as_str()) {
            return Err(unknown_key(st, "training", TRAIN_KEYS));
        }
        seen.check(st)?;
        if !matches!(
            st.key.as_str(),
            "optimizer" | "exsitu_optimizer" | "dataset" | "preprocess"
        ) {
            no_body(st)?;
        }
        match st.key.as_str() {
            "mode" => {
                let (w, _) = choice(st, &["exsitu", "insitu", "hybrid"])?;
                t.mode = match w.as_str() {
                    "insitu" => TrainMode::Insitu,
                    "hybrid" => TrainMode::Hybrid,
                    _ => TrainMode::Exsitu,
                };
            }
            "optimizer" => t.optimizer = optimizer(st)?,
            "exsitu_optimizer" => {
                let o = optimizer(st)?;
                if !matches!(o, Optimizer::Sgd { .. } | Optimizer::Rmsprop { .. }) {
                    return Err(invalid(
                        &st.values[0].span,
                        "`exsitu_optimizer` is the software phase's: `sgd` or `rmsprop`",
                    ));
                }
                t.exsitu_optimizer = Some(o);
            }
            "epochs" => t.epochs = count_pos(st)?,
            "exsitu_epochs" => t.exsitu_epochs = Some(count_pos(st)?),
            "batch" => t.batch = count_pos(st)?,
            "loss" => {
                t.loss = match choice(st, &["cross_entropy", "mse"])?.0.as_str() {
                    "mse" => Loss::Mse,
                    _ => Loss::CrossEntropy,
                }
            }
            "dataset" => {
                let v = one_value(st)?;
                t.dataset.name = match &v.kind {
                    ValueKind::Ident(n) | ValueKind::Str(n) => n.clone(),
                    _ => return Err(invalid(&v.span, "`dataset` needs a name or a path")),
                };
                let mut seen_d = Seen::new();
                for b in body(st) {
                    seen_d.check(b)?;
                    no_body(b)?;
                    match b.key.as_str() {
                        "train" => t.dataset.train = Some(count_pos(b)?),
                        "test" => t.dataset.test = Some(count_pos(b)?),
                        "fraction" => {
                            let f = positive(b, "")?;
                            if f > 1.0 {
                                return Err(invalid(
                                    &b.values[0].span,
                                    "`fraction` must be in (0, 1]",
                                ));
                            }
                            t.dataset.fraction = f;
                        }
                        _ => {
                            return Err(unknown_key(b, "`dataset`", &["train", "test", "fraction"]))
                        }
                    }
                }
            }
            "preprocess" => {
                let mut seen_p = Seen::new();
                for b in body(st) {
                    seen_p.check(b)?;
                    no_body(b)?;
                    match b.key.as_str() {
                        "crop" => t.preprocess.crop = Some(count_pos(b)?),
                        "resize" => t.preprocess.resize = Some(size2(b)?),
                        "scale" => t.preprocess.scale_v = Some(range_of(b, "v")?),
                        "binarize" => {
                            t.preprocess.binarize = on_off(b)?;
                            binarize_span = Some(b.values[0].span.clone());
                        }
                        _ => {
                            return Err(unknown_key(
                                b,
                                "`preprocess`",
                                &["crop", "resize", "scale", "binarize"],
                            ))
                        }
                    }
                }
            }
            "trainable" => {
                if st.values.is_empty() {
                    return Err(invalid(&st.key_span, "`trainable` needs layer names"));
                }
                for v in &st.values {
                    match &v.kind {
                        ValueKind::Ident(n) => {
                            t.trainable.push(n.clone());
                            spans.push(v.span.clone());
                        }
                        _ => return Err(invalid(&v.span, "`trainable` takes layer names")),
                    }
                }
            }
            "noise" => {
                t.noise_siemens = non_negative(st, "s")?;
            }
            "write_tolerance" => {
                t.write_tolerance = non_negative(st, "")?;
            }
            "clip_weights" => {
                t.clip_weights = on_off(st)?;
                t.clip_weights_span = Some(st.key_span.clone());
            }
            _ => t.seed = count(st)? as u64,
        }
    }
    // Binarising is only honoured where the data is binary already (the letters are ±on/off);
    // thresholding grey images is not implemented, so asking for it is an error, not a no-op.
    if let Some(sp) = binarize_span {
        if t.preprocess.binarize && t.dataset.name != "letters4x4" {
            return Err(invalid(
                &sp,
                format!(
                    "`binarize on` is not supported for dataset `{}` (only `letters4x4`, \
                     which is binary already)",
                    t.dataset.name
                ),
            ));
        }
    }
    Ok((t, spans))
}

fn optimizer(s: &Stmt) -> Result<Optimizer, NetError> {
    let (w, _) = choice(s, &["sgd", "rmsprop", "manhattan", "threshold"])?;
    let mut vals: HashMap<String, (f64, Span)> = HashMap::new();
    let allowed: &[&str] = match w.as_str() {
        "sgd" => &["lr", "momentum"],
        "rmsprop" => &["lr", "decay", "eps", "momentum"],
        "manhattan" => &["step"],
        _ => &["lr", "threshold"],
    };
    let mut seen = Seen::new();
    for b in body(s) {
        if !allowed.contains(&b.key.as_str()) {
            return Err(unknown_key(b, &format!("optimizer `{w}`"), allowed));
        }
        seen.check(b)?;
        no_body(b)?;
        let unit = if matches!(b.key.as_str(), "step" | "threshold") {
            "s"
        } else {
            ""
        };
        vals.insert(b.key.clone(), (num(b, unit)?, b.values[0].span.clone()));
    }
    let get = |k: &str, default: f64| vals.get(k).map(|v| v.0).unwrap_or(default);
    let check = |k: &str, ok: bool, what: &str| -> Result<(), NetError> {
        if !ok {
            if let Some((_, sp)) = vals.get(k) {
                return Err(invalid(sp, format!("`{k}` must be {what}")));
            }
        }
        Ok(())
    };
    let lr = get("lr", 0.01);
    check("lr", lr > 0.0, "> 0")?;
    let momentum = get("momentum", 0.0);
    check("momentum", (0.0..1.0).contains(&momentum), "in [0, 1)")?;
    Ok(match w.as_str() {
        "sgd" => Optimizer::Sgd { lr, momentum },
        "rmsprop" => {
            // The trainer's RMSprop has no momentum term: accept only the value it runs with.
            if let Some((m, sp)) = vals.get("momentum") {
                if *m != 0.0 {
                    return Err(invalid(
                        sp,
                        "`momentum` other than 0 is not supported with `rmsprop` (the trainer's \
                         RMSprop has no momentum term; use `sgd` for momentum)",
                    ));
                }
            }
            let decay = get("decay", 0.9);
            check("decay", (0.0..1.0).contains(&decay), "in [0, 1)")?;
            let eps = get("eps", 1e-8);
            check("eps", eps > 0.0, "> 0")?;
            Optimizer::Rmsprop {
                lr,
                decay,
                eps,
                momentum,
            }
        }
        "manhattan" => {
            let step_siemens = get("step", 1e-6);
            check("step", step_siemens > 0.0, "> 0")?;
            Optimizer::Manhattan { step_siemens }
        }
        _ => {
            let threshold_siemens = get("threshold", 0.0);
            check("threshold", threshold_siemens >= 0.0, "≥ 0")?;
            Optimizer::Threshold {
                lr,
                threshold_siemens,
            }
        }
    })
}
