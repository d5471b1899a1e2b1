//! Network IR: the layer list with inferred shapes, parameter counts, MACs per inference and the
//! logical crossbar matrix of every weighted layer.
//!
//! Matrix layouts (the trainer and the weights file use the same ones):
//! - dense: row `i` = input `i` (flattened `h, w, c` order, channel fastest), column `j` = unit `j`;
//! - conv2d: row `r = (c·kh + ky)·kw + kx` (PyTorch's `weight[o][c][ky][kx]` flattened), column = kernel;
//! - convlstm: rows = the input patch (`c_in·kh·kw`, as conv2d) followed by the recurrent patch
//!   (`hidden·khr·kwr`); column `g·hidden + k` for gate `g` in the order input, forget, output,
//!   cell input, and hidden map `k`.
//!
//! Biases are extra logical rows below the weights (see `crate::mapping`).

use super::spec::{LayerKind, NetworkSpec, Padding};
use super::NetError;
use crate::span::Span;
use serde::Serialize;
use std::fmt;

/// Activation shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Feature maps `h × w × c`.
    Map { h: usize, w: usize, c: usize },
    /// A vector.
    Vec { n: usize },
}

impl Shape {
    pub fn len(&self) -> usize {
        match *self {
            Shape::Map { h, w, c } => h * w * c,
            Shape::Vec { n } => n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Map { h, w, c } => write!(f, "{h}x{w}x{c}"),
            Shape::Vec { n } => write!(f, "{n}"),
        }
    }
}

/// The logical weight matrix of a crossbar-mapped layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MatrixShape {
    /// Weight rows (inputs of one MAC), without bias rows.
    pub rows: usize,
    /// Outputs (kernels, units, or 4·hidden gate maps).
    pub cols: usize,
    pub bias: bool,
    /// How many times the matrix is applied per inference (sliding positions × time steps).
    pub uses_per_inference: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerIr {
    pub name: String,
    #[serde(skip)]
    pub span: Span,
    pub kind: LayerKind,
    pub in_shape: Shape,
    pub out_shape: Shape,
    /// Weights (without biases).
    pub weights: usize,
    pub biases: usize,
    /// Multiply-accumulates per inference (bias additions not counted).
    pub macs: usize,
    pub matrix: Option<MatrixShape>,
    /// Padding `[top, bottom, left, right]` actually used (conv2d; convlstm input kernel).
    pub pad: [usize; 4],
    /// Padding of the convlstm recurrent kernel.
    pub pad_recurrent: [usize; 4],
}

impl LayerIr {
    /// Trainable parameters: weights + biases (biases count as weights, as S4's 170 + 44 do).
    pub fn params(&self) -> usize {
        self.weights + self.biases
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkIr {
    pub name: String,
    pub input: Shape,
    pub layers: Vec<LayerIr>,
}

impl NetworkIr {
    pub fn params(&self) -> usize {
        self.layers.iter().map(|l| l.params()).sum()
    }

    pub fn macs(&self) -> usize {
        self.layers.iter().map(|l| l.macs).sum()
    }

    pub fn output(&self) -> Shape {
        self.layers
            .last()
            .map(|l| l.out_shape)
            .unwrap_or(self.input)
    }

    pub fn layer(&self, name: &str) -> Option<&LayerIr> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Shape inference over the layer list.
    pub fn infer(net: &NetworkSpec) -> Result<NetworkIr, NetError> {
        let input = match net.input.as_slice() {
            [n] => Shape::Vec { n: *n },
            [h, w, c] => Shape::Map {
                h: *h,
                w: *w,
                c: *c,
            },
            _ => {
                return Err(NetError::Shape {
                    span: net.input_span.clone(),
                    message: "input must be H x W x C or a vector length".into(),
                })
            }
        };
        // Sizes are checked against the memory budget (in u128, before any usize product that
        // could overflow) layer by layer: a `units 1000000000` or a `padding 100000` is
        // refused here, located, instead of aborting whoever allocates the network later.
        let input_values = budget_values(&net.input.iter().map(|&d| d as u128).collect::<Vec<_>>());
        let mut planned = input_values.saturating_mul(BYTES_PER_ACTIVATION);
        check_budget(&net.input_span, planned, || {
            format!("input {}", dims_text(&net.input))
        })?;
        let mut cur = input;
        let mut layers = Vec::new();
        for l in &net.layers {
            let err = |m: String| NetError::Shape {
                span: l.span.clone(),
                message: m,
            };
            planned = planned.saturating_add(layer_bytes(&l.kind, cur));
            check_budget(&l.span, planned, || {
                format!(
                    "`{}` {} (with the layers before it)",
                    l.name,
                    l.kind.keyword()
                )
            })?;
            let mut pad = [0; 4];
            let mut pad_recurrent = [0; 4];
            let (out, weights, biases, macs, matrix) = match &l.kind {
                LayerKind::Conv2d {
                    kernels,
                    size,
                    stride,
                    padding,
                } => {
                    let Shape::Map { h, w, c } = cur else {
                        return Err(err(format!(
                            "conv2d `{}` needs feature maps but gets a vector of {}",
                            l.name, cur
                        )));
                    };
                    let (oh, ph) = conv_out(h, size[0], *stride, *padding)
                        .ok_or_else(|| err(too_big(&l.name, "kernel", size, h, w, *padding)))?;
                    let (ow, pw) = conv_out(w, size[1], *stride, *padding)
                        .ok_or_else(|| err(too_big(&l.name, "kernel", size, h, w, *padding)))?;
                    pad = [ph.0, ph.1, pw.0, pw.1];
                    let rows = c * size[0] * size[1];
                    let out = Shape::Map {
                        h: oh,
                        w: ow,
                        c: *kernels,
                    };
                    (
                        out,
                        rows * kernels,
                        if l.bias { *kernels } else { 0 },
                        oh * ow * rows * kernels,
                        Some(MatrixShape {
                            rows,
                            cols: *kernels,
                            bias: l.bias,
                            uses_per_inference: oh * ow,
                        }),
                    )
                }
                LayerKind::Dense { units } => {
                    let Shape::Vec { n } = cur else {
                        return Err(err(format!(
                            "dense `{}` needs a vector but gets feature maps {} (insert `flatten;` before it)",
                            l.name, cur
                        )));
                    };
                    (
                        Shape::Vec { n: *units },
                        n * units,
                        if l.bias { *units } else { 0 },
                        n * units,
                        Some(MatrixShape {
                            rows: n,
                            cols: *units,
                            bias: l.bias,
                            uses_per_inference: 1,
                        }),
                    )
                }
                LayerKind::Relu
                | LayerKind::Tanh { .. }
                | LayerKind::Sigmoid
                | LayerKind::Softmax => (cur, 0, 0, 0, None),
                LayerKind::Flatten => (Shape::Vec { n: cur.len() }, 0, 0, 0, None),
                LayerKind::MaxPool { size, stride } => {
                    let Shape::Map { h, w, c } = cur else {
                        return Err(err(format!(
                            "maxpool `{}` needs feature maps but gets a vector of {}",
                            l.name, cur
                        )));
                    };
                    if size[0] > h || size[1] > w {
                        return Err(err(format!(
                            "maxpool `{}` window {}x{} is larger than its input {}",
                            l.name, size[0], size[1], cur
                        )));
                    }
                    (
                        Shape::Map {
                            h: (h - size[0]) / stride + 1,
                            w: (w - size[1]) / stride + 1,
                            c,
                        },
                        0,
                        0,
                        0,
                        None,
                    )
                }
                LayerKind::ConvLstm {
                    hidden,
                    input_kernel,
                    recurrent_kernel,
                    steps,
                    input_padding,
                    recurrent_padding,
                } => {
                    let Shape::Map { h, w, c } = cur else {
                        return Err(err(format!(
                            "convlstm `{}` needs frames (H x W x C) but gets a vector of {}",
                            l.name, cur
                        )));
                    };
                    let (oh, ph) =
                        conv_out(h, input_kernel[0], 1, *input_padding).ok_or_else(|| {
                            err(too_big(
                                &l.name,
                                "input kernel",
                                input_kernel,
                                h,
                                w,
                                *input_padding,
                            ))
                        })?;
                    let (ow, pw) =
                        conv_out(w, input_kernel[1], 1, *input_padding).ok_or_else(|| {
                            err(too_big(
                                &l.name,
                                "input kernel",
                                input_kernel,
                                h,
                                w,
                                *input_padding,
                            ))
                        })?;
                    pad = [ph.0, ph.1, pw.0, pw.1];
                    // The recurrent kernel maps the oh×ow×hidden state onto itself.
                    let rec_too_big = || {
                        err(too_big(
                            &l.name,
                            "recurrent kernel",
                            recurrent_kernel,
                            oh,
                            ow,
                            *recurrent_padding,
                        ))
                    };
                    let (rh, rph) = conv_out(oh, recurrent_kernel[0], 1, *recurrent_padding)
                        .ok_or_else(rec_too_big)?;
                    let (rw, rpw) = conv_out(ow, recurrent_kernel[1], 1, *recurrent_padding)
                        .ok_or_else(rec_too_big)?;
                    if (rh, rw) != (oh, ow) {
                        return Err(err(format!(
                            "convlstm `{}`: the recurrent kernel {}x{} turns the {}x{} state into {}x{}; it must keep the state size (use `recurrent_padding same`)",
                            l.name, recurrent_kernel[0], recurrent_kernel[1], oh, ow, rh, rw
                        )));
                    }
                    pad_recurrent = [rph.0, rph.1, rpw.0, rpw.1];
                    let rows = c * input_kernel[0] * input_kernel[1]
                        + hidden * recurrent_kernel[0] * recurrent_kernel[1];
                    let cols = 4 * hidden;
                    (
                        Shape::Map {
                            h: oh,
                            w: ow,
                            c: *hidden,
                        },
                        rows * cols,
                        if l.bias { cols } else { 0 },
                        steps * oh * ow * rows * cols,
                        Some(MatrixShape {
                            rows,
                            cols,
                            bias: l.bias,
                            uses_per_inference: steps * oh * ow,
                        }),
                    )
                }
            };
            layers.push(LayerIr {
                name: l.name.clone(),
                span: l.span.clone(),
                kind: l.kind.clone(),
                in_shape: cur,
                out_shape: out,
                weights,
                biases,
                macs,
                matrix,
                pad,
                pad_recurrent,
            });
            cur = out;
        }
        Ok(NetworkIr {
            name: net.name.clone(),
            input,
            layers,
        })
    }
}

/// Bytes planned per trainable parameter: the weight, its gradient and two optimizer moments.
const BYTES_PER_PARAM: u128 = 32;
/// Bytes planned per activation value of one sample: the value and its gradient, for a batch
/// of 16 samples.
const BYTES_PER_ACTIVATION: u128 = 8 * 2 * 16;

fn budget_values(dims: &[u128]) -> u128 {
    dims.iter().fold(1u128, |a, &d| a.saturating_mul(d))
}

fn dims_text(d: &[usize]) -> String {
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

fn check_budget(span: &Span, bytes: u128, what: impl FnOnce() -> String) -> Result<(), NetError> {
    crate::limits::check(what, bytes).map_err(|e| NetError::TooLarge {
        span: span.clone(),
        message: e.to_string(),
    })
}

/// Memory a layer adds (parameters, and activations with any padding and im2col buffers),
/// from upper bounds of its shapes in u128 (no overflow whatever the sizes).
fn layer_bytes(kind: &LayerKind, cur: Shape) -> u128 {
    let (h, w, c) = match cur {
        Shape::Map { h, w, c } => (h as u128, w as u128, c as u128),
        Shape::Vec { n } => (1, 1, n as u128),
    };
    let pad_of = |p: &Padding, k: usize| match p {
        Padding::Explicit(q) => 2 * *q as u128,
        Padding::Same => k as u128,
        Padding::Valid => 0,
    };
    let conv = |kh: usize, kw: usize, pad: u128, cin: u128, cout: u128, reps: u128| {
        let (ph, pw) = (h + pad, w + pad);
        let rows = budget_values(&[cin, kh as u128, kw as u128]);
        let params = budget_values(&[rows, cout]);
        // padded input, im2col (out positions × rows), output
        let acts = budget_values(&[ph, pw, cin])
            .saturating_add(budget_values(&[ph, pw, rows]))
            .saturating_add(budget_values(&[ph, pw, cout]))
            .saturating_mul(reps);
        params
            .saturating_mul(BYTES_PER_PARAM)
            .saturating_add(acts.saturating_mul(BYTES_PER_ACTIVATION))
    };
    match kind {
        LayerKind::Conv2d {
            kernels,
            size,
            padding,
            ..
        } => conv(
            size[0],
            size[1],
            pad_of(padding, size[0].max(size[1])),
            c,
            *kernels as u128,
            1,
        ),
        LayerKind::Dense { units } => {
            let n = budget_values(&[h, w, c]);
            budget_values(&[n, *units as u128])
                .saturating_mul(BYTES_PER_PARAM)
                .saturating_add((*units as u128).saturating_mul(BYTES_PER_ACTIVATION))
        }
        LayerKind::ConvLstm {
            hidden,
            input_kernel,
            recurrent_kernel,
            steps,
            input_padding,
            ..
        } => {
            let k = input_kernel[0]
                .max(input_kernel[1])
                .max(recurrent_kernel[0])
                .max(recurrent_kernel[1]);
            conv(
                k,
                k,
                pad_of(input_padding, k),
                c.saturating_add(*hidden as u128),
                4 * *hidden as u128,
                (*steps as u128).max(1),
            )
        }
        _ => budget_values(&[h, w, c]).saturating_mul(BYTES_PER_ACTIVATION),
    }
}

fn too_big(name: &str, what: &str, k: &[usize; 2], h: usize, w: usize, p: Padding) -> String {
    format!(
        "`{name}`: {what} {}x{} does not fit its {h}x{w} input with padding {}",
        k[0],
        k[1],
        match p {
            Padding::Valid => "valid".to_string(),
            Padding::Same => "same".to_string(),
            Padding::Explicit(n) => n.to_string(),
        }
    )
}

/// Output size and `(before, after)` padding along one axis.
fn conv_out(n: usize, k: usize, stride: usize, p: Padding) -> Option<(usize, (usize, usize))> {
    match p {
        Padding::Valid => (k <= n).then(|| ((n - k) / stride + 1, (0, 0))),
        Padding::Explicit(q) => {
            let m = n + 2 * q;
            (k <= m).then(|| ((m - k) / stride + 1, (q, q)))
        }
        Padding::Same => {
            let out = n.div_ceil(stride);
            let total = ((out - 1) * stride + k).saturating_sub(n);
            Some((out, (total / 2, total - total / 2)))
        }
    }
}
