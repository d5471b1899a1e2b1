//! Layer specifications and their forward / backward passes on mini-batches.
//!
//! Activations are stored one sample per row, each sample flattened in
//! channel, row, column order (`c·H·W + y·W + x`).

use super::backend::{ForwardCtx, LayerId, MatmulBackend, BIAS_INPUT};
use super::matrix::Matrix;
use super::NnError;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::mem::MaybeUninit;

/// Zero padding on each side of a feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Pad {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Pad {
    pub fn uniform(p: usize) -> Self {
        Pad {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }
    /// "same" padding for stride 1: the extra pixel of an even kernel goes
    /// to the bottom / right.
    pub fn same(kh: usize, kw: usize) -> Self {
        let (th, tw) = (kh.saturating_sub(1), kw.saturating_sub(1));
        Pad {
            top: th / 2,
            bottom: th - th / 2,
            left: tw / 2,
            right: tw - tw / 2,
        }
    }
}

fn unit_amplitude() -> f64 {
    1.0
}

/// One layer of a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerSpec {
    /// 2-D convolution (im2col patches × kernel matrix).
    Conv2d {
        out_channels: usize,
        kernel: [usize; 2],
        stride: usize,
        pad: Pad,
        bias: bool,
    },
    /// Fully connected layer on the flattened input.
    Dense {
        out: usize,
        bias: bool,
    },
    Relu,
    /// `y = amplitude·tanh(slope·x)`. A `.net` file's `tanh { slope }` is per ampere of array
    /// current; [`crate::nn::from_net::model_spec`] turns it into this layer's units (slope
    /// times the siemens per weight unit, amplitude the hidden neurons' output swing in volts).
    Tanh {
        slope: f64,
        #[serde(default = "unit_amplitude")]
        amplitude: f64,
    },
    Sigmoid,
    MaxPool {
        size: usize,
        stride: usize,
    },
    Flatten,
    /// ConvLSTM over `steps` frames (input shape `steps·C × H × W`); gates
    /// input, forget, output, cell input; zero initial state; outputs the
    /// hidden state of the last step (`hidden × H' × W'`). The recurrent
    /// kernel uses "same" padding.
    ConvLstm {
        hidden: usize,
        steps: usize,
        in_kernel: [usize; 2],
        rec_kernel: [usize; 2],
        bias: bool,
    },
}

/// Shape of one sample's activation: channels, height, width.
pub type Shape = [usize; 3];

/// Geometry of a convolution on one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: Pad,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeom {
    pub fn new(input: Shape, kernel: [usize; 2], stride: usize, pad: Pad) -> Result<Self, NnError> {
        let [c, h, w] = input;
        let [kh, kw] = kernel;
        if stride == 0 || kh == 0 || kw == 0 {
            return Err(NnError::Shape(
                "convolution kernel and stride must be positive".into(),
            ));
        }
        let (hp, wp) = (h + pad.top + pad.bottom, w + pad.left + pad.right);
        if hp < kh || wp < kw {
            return Err(NnError::Shape(format!(
                "kernel {kh}x{kw} larger than padded input {hp}x{wp}"
            )));
        }
        Ok(ConvGeom {
            c,
            h,
            w,
            kh,
            kw,
            stride,
            pad,
            oh: (hp - kh) / stride + 1,
            ow: (wp - kw) / stride + 1,
        })
    }
    /// Patch length (rows of the kernel matrix, without bias).
    pub fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Patches per sample.
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }
}

/// Below this many values an im2col / col2im pass runs on the calling thread: waking rayon's
/// workers costs more than the copy (S1's first layer: 50 × 64 × 9 values a batch).
const PAR_VALUES: usize = 1 << 16;

impl ConvGeom {
    /// Height and width of the zero-padded map.
    fn padded_hw(&self) -> (usize, usize) {
        (
            self.h + self.pad.top + self.pad.bottom,
            self.w + self.pad.left + self.pad.right,
        )
    }
    fn has_padding(&self) -> bool {
        self.pad != Pad::default()
    }
    /// Offset of every patch element (channel, ky, kx order) from its patch's top-left corner
    /// in the zero-padded sample (`c·Hp·Wp + y·Wp + x`).
    fn patch_offsets(&self) -> Vec<usize> {
        let (hp, wp) = self.padded_hw();
        let mut o = Vec::with_capacity(self.k());
        for ci in 0..self.c {
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    o.push((ci * hp + ky) * wp + kx);
                }
            }
        }
        o
    }
    /// The top-left corner of output position `(oy, ox)`'s patch in the padded sample.
    fn patch_base(&self, oy: usize, ox: usize) -> usize {
        let wp = self.padded_hw().1;
        (oy * wp + ox) * self.stride
    }
    /// Copy a sample into the interior of `padded` (whose border is left as it is: zero).
    fn pad_into(&self, sample: &[f64], padded: &mut [f64]) {
        let (hp, wp) = self.padded_hw();
        for ci in 0..self.c {
            for y in 0..self.h {
                padded[(ci * hp + y + self.pad.top) * wp + self.pad.left..][..self.w]
                    .copy_from_slice(&sample[(ci * self.h + y) * self.w..][..self.w]);
            }
        }
    }
    /// Copy the interior of `padded` into a sample.
    fn unpad_from(&self, padded: &[f64], sample: &mut [f64]) {
        let (hp, wp) = self.padded_hw();
        for ci in 0..self.c {
            for y in 0..self.h {
                sample[(ci * self.h + y) * self.w..][..self.w].copy_from_slice(
                    &padded[(ci * hp + y + self.pad.top) * wp + self.pad.left..][..self.w],
                );
            }
        }
    }
}

/// im2col: one row per (sample, output position), `k()` patch values in
/// channel, ky, kx order, plus a last [`BIAS_INPUT`] column when `bias`.
pub fn im2col(x: &Matrix, g: &ConvGeom, bias: bool) -> Matrix {
    let n = x.rows;
    let (p, k) = (g.p(), g.k());
    let kc = k + bias as usize;
    if kc == 0 {
        return Matrix::zeros(n * p, 0);
    }
    let offsets = g.patch_offsets();
    let (hp, wp) = g.padded_hw();
    let padded_len = g.c * hp * wp;
    let len = n * p * kc;
    let mut data: Vec<f64> = Vec::with_capacity(len);
    // `buf`: the zero-padded sample (its border is never written, so it stays zero)
    let fill = |buf: &mut Vec<f64>, s: usize, chunk: &mut [MaybeUninit<f64>]| {
        let src: &[f64] = if g.has_padding() {
            g.pad_into(x.row(s), buf);
            buf
        } else {
            x.row(s)
        };
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let win = &src[g.patch_base(oy, ox)..];
                let r = &mut chunk[(oy * g.ow + ox) * kc..][..kc];
                for (o, &off) in r.iter_mut().zip(&offsets) {
                    o.write(win[off]);
                }
                if bias {
                    r[k].write(BIAS_INPUT);
                }
            }
        }
    };
    let new_buf = || vec![0.0; if g.has_padding() { padded_len } else { 0 }];
    let out = &mut data.spare_capacity_mut()[..len];
    if len >= PAR_VALUES {
        out.par_chunks_mut(p * kc)
            .enumerate()
            .for_each_init(new_buf, |buf, (s, c)| fill(buf, s, c));
    } else {
        let mut buf = new_buf();
        out.chunks_mut(p * kc)
            .enumerate()
            .for_each(|(s, c)| fill(&mut buf, s, c));
    }
    // SAFETY: `fill` wrote every one of the first `len` values: the `n` sample chunks of `P·kc`
    // values cover them, and in each of a chunk's `P` rows of `kc` values it writes the first
    // `k` (one per patch offset; `offsets` has `k` entries) and, when `bias` (`kc = k + 1`), the
    // last.
    unsafe { data.set_len(len) };
    Matrix {
        rows: n * p,
        cols: kc,
        data,
    }
}

/// Adjoint of [`im2col`]: accumulate patch gradients back onto the input
/// (a trailing bias column, if present, is ignored). Each input value receives its patch
/// values in (output position, channel, ky, kx) order, into a zero-padded copy of the sample
/// whose interior is then the result.
pub fn col2im(d: &Matrix, g: &ConvGeom, n: usize) -> Matrix {
    let (p, kc) = (g.p(), d.cols);
    let offsets = g.patch_offsets();
    let (hp, wp) = g.padded_hw();
    let padded_len = g.c * hp * wp;
    let len = g.c * g.h * g.w;
    let mut out = Matrix::zeros(n, len);
    let scatter = |buf: &mut Vec<f64>, s: usize, xs: &mut [f64]| {
        let acc: &mut [f64] = if g.has_padding() {
            buf.iter_mut().for_each(|v| *v = 0.0);
            buf
        } else {
            xs
        };
        let rows = &d.data[s * p * kc..(s + 1) * p * kc];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let win = &mut acc[g.patch_base(oy, ox)..];
                let r = &rows[(oy * g.ow + ox) * kc..][..kc];
                for (&v, &off) in r.iter().zip(&offsets) {
                    win[off] += v;
                }
            }
        }
        if g.has_padding() {
            g.unpad_from(buf, xs);
        }
    };
    let new_buf = || vec![0.0; if g.has_padding() { padded_len } else { 0 }];
    if n * p * kc >= PAR_VALUES {
        out.data
            .par_chunks_mut(len.max(1))
            .enumerate()
            .for_each_init(new_buf, |buf, (s, xs)| scatter(buf, s, xs));
    } else {
        let mut buf = new_buf();
        out.data
            .chunks_mut(len.max(1))
            .enumerate()
            .for_each(|(s, xs)| scatter(&mut buf, s, xs));
    }
    out
}

/// Append the transpose of the row-major `rows × cols` block `src` to `out`.
fn push_transposed(out: &mut Vec<f64>, src: &[f64], rows: usize, cols: usize) {
    for j in 0..cols {
        out.extend((0..rows).map(|i| src[i * cols + j]));
    }
}

/// Patch-major `(n·P) × C` → channel-major `n × (C·P)`.
pub fn patches_to_maps(y: &Matrix, n: usize, p: usize) -> Matrix {
    let c = y.cols;
    let mut data = Vec::with_capacity(n * c * p);
    for s in 0..n {
        push_transposed(&mut data, &y.data[s * p * c..(s + 1) * p * c], p, c);
    }
    Matrix {
        rows: n,
        cols: c * p,
        data,
    }
}

/// Channel-major `n × (C·P)` → patch-major `(n·P) × C`.
pub fn maps_to_patches(x: &Matrix, c: usize, p: usize) -> Matrix {
    let n = x.rows;
    let mut data = Vec::with_capacity(n * p * c);
    for s in 0..n {
        push_transposed(&mut data, &x.data[s * c * p..(s + 1) * c * p], c, p);
    }
    Matrix {
        rows: n * p,
        cols: c,
        data,
    }
}

/// Append the bias input column.
pub fn with_bias(x: &Matrix) -> Matrix {
    let mut out = Matrix::zeros(x.rows, x.cols + 1);
    for r in 0..x.rows {
        out.row_mut(r)[..x.cols].copy_from_slice(x.row(r));
        out.data[r * (x.cols + 1) + x.cols] = BIAS_INPUT;
    }
    out
}

/// Drop the trailing `extra` columns.
pub fn drop_cols(x: &Matrix, keep: usize) -> Matrix {
    if x.cols == keep {
        return x.clone();
    }
    let mut out = Matrix::zeros(x.rows, keep);
    for r in 0..x.rows {
        out.row_mut(r).copy_from_slice(&x.row(r)[..keep]);
    }
    out
}

/// What a layer remembers from its forward pass for the backward pass.
#[derive(Debug, Clone)]
pub enum Cache {
    /// Patch (or input) matrix fed to the backend.
    Product {
        cols: Matrix,
    },
    /// Layer output (activations whose derivative is a function of the output).
    Output {
        y: Matrix,
    },
    /// Layer input (ReLU).
    Input {
        x: Matrix,
    },
    /// Flat index of the maximum of every pooling window.
    Pool {
        argmax: Vec<usize>,
        in_len: usize,
    },
    None,
    Lstm(Box<super::convlstm::LstmCache>),
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Output shape of a layer, validating the input shape.
pub fn output_shape(spec: &LayerSpec, s: Shape) -> Result<Shape, NnError> {
    Ok(match spec {
        LayerSpec::Conv2d {
            out_channels,
            kernel,
            stride,
            pad,
            ..
        } => {
            let g = ConvGeom::new(s, *kernel, *stride, *pad)?;
            [*out_channels, g.oh, g.ow]
        }
        LayerSpec::Dense { out, .. } => [*out, 1, 1],
        LayerSpec::Tanh { slope, amplitude } => {
            // the backward pass divides by the amplitude; a model file may say anything
            if !(slope.is_finite() && amplitude.is_finite() && *amplitude > 0.0) {
                return Err(NnError::Shape(format!(
                    "tanh needs a finite slope and a positive amplitude (got {slope}, {amplitude})"
                )));
            }
            s
        }
        LayerSpec::Relu | LayerSpec::Sigmoid => s,
        LayerSpec::MaxPool { size, stride } => {
            if *size == 0 || *stride == 0 || s[1] < *size || s[2] < *size {
                return Err(NnError::Shape(format!(
                    "max-pool {size}/{stride} does not fit a {}x{} map",
                    s[1], s[2]
                )));
            }
            [s[0], (s[1] - size) / stride + 1, (s[2] - size) / stride + 1]
        }
        LayerSpec::Flatten => [s[0] * s[1] * s[2], 1, 1],
        LayerSpec::ConvLstm {
            hidden,
            steps,
            in_kernel,
            rec_kernel,
            ..
        } => {
            if *steps == 0 || !s[0].is_multiple_of(*steps) {
                return Err(NnError::Shape(format!(
                    "ConvLSTM over {steps} steps needs a channel count divisible by it, got {}",
                    s[0]
                )));
            }
            let g = ConvGeom::new([s[0] / steps, s[1], s[2]], *in_kernel, 1, Pad::default())?;
            ConvGeom::new(
                [*hidden, g.oh, g.ow],
                *rec_kernel,
                1,
                Pad::same(rec_kernel[0], rec_kernel[1]),
            )?;
            [*hidden, g.oh, g.ow]
        }
    })
}

/// Shapes `(rows, cols)` of the weight matrices of a layer (one per matmul slot).
pub fn weight_shapes(spec: &LayerSpec, s: Shape) -> Vec<(usize, usize)> {
    match spec {
        LayerSpec::Conv2d {
            out_channels,
            kernel,
            bias,
            ..
        } => {
            vec![(s[0] * kernel[0] * kernel[1] + *bias as usize, *out_channels)]
        }
        LayerSpec::Dense { out, bias } => vec![(s[0] * s[1] * s[2] + *bias as usize, *out)],
        LayerSpec::ConvLstm {
            hidden,
            steps,
            in_kernel,
            rec_kernel,
            bias,
        } => vec![
            (
                (s[0] / steps) * in_kernel[0] * in_kernel[1] + *bias as usize,
                4 * hidden,
            ),
            (hidden * rec_kernel[0] * rec_kernel[1], 4 * hidden),
        ],
        _ => vec![],
    }
}

/// Forward pass of one layer on a batch (`n × len(in_shape)`).
pub fn forward(
    spec: &LayerSpec,
    in_shape: Shape,
    slots: &[LayerId],
    backend: &mut dyn MatmulBackend,
    x: &Matrix,
    ctx: &mut ForwardCtx,
) -> Result<(Matrix, Cache), NnError> {
    forward_owned(spec, in_shape, slots, backend, x.clone(), ctx)
}

/// [`forward`] taking the batch by value: layers whose output or cache is the input itself
/// (dense without bias, ReLU's cache, tanh, sigmoid, flatten) keep it instead of copying it.
pub fn forward_owned(
    spec: &LayerSpec,
    in_shape: Shape,
    slots: &[LayerId],
    backend: &mut dyn MatmulBackend,
    x: Matrix,
    ctx: &mut ForwardCtx,
) -> Result<(Matrix, Cache), NnError> {
    let n = x.rows;
    Ok(match spec {
        LayerSpec::Conv2d {
            kernel,
            stride,
            pad,
            bias,
            ..
        } => {
            let g = ConvGeom::new(in_shape, *kernel, *stride, *pad)?;
            let cols = im2col(&x, &g, *bias);
            let y = backend.forward(slots[0], &cols, ctx)?;
            (patches_to_maps(&y, n, g.p()), Cache::Product { cols })
        }
        LayerSpec::Dense { bias, .. } => {
            let cols = if *bias { with_bias(&x) } else { x };
            let y = backend.forward(slots[0], &cols, ctx)?;
            (y, Cache::Product { cols })
        }
        LayerSpec::Relu => {
            let y = Matrix {
                rows: x.rows,
                cols: x.cols,
                data: x.data.iter().map(|v| v.max(0.0)).collect(),
            };
            (y, Cache::Input { x })
        }
        LayerSpec::Tanh { slope, amplitude } => {
            let mut y = x;
            y.data
                .iter_mut()
                .for_each(|v| *v = amplitude * (slope * *v).tanh());
            (y.clone(), Cache::Output { y })
        }
        LayerSpec::Sigmoid => {
            let mut y = x;
            y.data.iter_mut().for_each(|v| *v = sigmoid(*v));
            (y.clone(), Cache::Output { y })
        }
        LayerSpec::MaxPool { size, stride } => {
            let [c, h, w] = in_shape;
            let [_, oh, ow] = output_shape(spec, in_shape)?;
            let len = c * oh * ow;
            let mut y = Matrix::zeros(n, len);
            let mut argmax = vec![0usize; n * len];
            for s in 0..n {
                let xs = x.row(s);
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut best = (f64::NEG_INFINITY, 0usize);
                            for dy in 0..*size {
                                for dx in 0..*size {
                                    let idx = (ch * h + oy * stride + dy) * w + ox * stride + dx;
                                    if xs[idx] > best.0 {
                                        best = (xs[idx], idx);
                                    }
                                }
                            }
                            let o = (ch * oh + oy) * ow + ox;
                            y.data[s * len + o] = best.0;
                            argmax[s * len + o] = best.1;
                        }
                    }
                }
            }
            (
                y,
                Cache::Pool {
                    argmax,
                    in_len: c * h * w,
                },
            )
        }
        LayerSpec::Flatten => (x, Cache::None),
        LayerSpec::ConvLstm { .. } => {
            let (y, c) = super::convlstm::forward(spec, in_shape, slots, backend, &x, ctx)?;
            (y, Cache::Lstm(Box::new(c)))
        }
    })
}

/// Backward pass of one layer: returns `dL/dx` and adds weight gradients
/// into `grads` (one matrix per slot, same order as `slots`).
pub fn backward(
    spec: &LayerSpec,
    in_shape: Shape,
    slots: &[LayerId],
    backend: &dyn MatmulBackend,
    cache: &Cache,
    dy: &Matrix,
    grads: &mut [Matrix],
) -> Result<Matrix, NnError> {
    backward_owned(
        spec,
        in_shape,
        slots,
        backend,
        cache,
        dy.clone(),
        grads,
        true,
    )?
    .ok_or_else(|| NnError::Shape("internal: input gradient not computed".into()))
}

/// [`backward`] taking `dL/dy` by value (element-wise layers scale it in place). With `need_dx`
/// false (the first layer of a network: nothing below it) a conv or dense layer skips the
/// input-gradient product `dy·Wᵀ` (and the conv its col2im) and returns `None`; the other
/// layers return their input gradient either way.
#[allow(clippy::too_many_arguments)]
pub fn backward_owned(
    spec: &LayerSpec,
    in_shape: Shape,
    slots: &[LayerId],
    backend: &dyn MatmulBackend,
    cache: &Cache,
    dy: Matrix,
    grads: &mut [Matrix],
    need_dx: bool,
) -> Result<Option<Matrix>, NnError> {
    let n = dy.rows;
    let bad_cache = || NnError::Shape("internal: layer cache does not match its layer".into());
    Ok(Some(match (spec, cache) {
        (
            LayerSpec::Conv2d {
                kernel,
                stride,
                pad,
                out_channels,
                ..
            },
            Cache::Product { cols },
        ) => {
            let g = ConvGeom::new(in_shape, *kernel, *stride, *pad)?;
            let dyp = maps_to_patches(&dy, *out_channels, g.p());
            grads[0] = cols.t_matmul(&dyp);
            if !need_dx {
                return Ok(None);
            }
            let w = backend.effective_weights(slots[0])?;
            let dcols = dyp.matmul_t(&w);
            col2im(&dcols, &g, n)
        }
        (LayerSpec::Dense { .. }, Cache::Product { cols }) => {
            grads[0] = cols.t_matmul(&dy);
            if !need_dx {
                return Ok(None);
            }
            let w = backend.effective_weights(slots[0])?;
            drop_cols(&dy.matmul_t(&w), in_shape.iter().product())
        }
        (LayerSpec::Relu, Cache::Input { x }) => {
            let mut d = dy;
            // a select, not a branch (random signs mispredict): vectorises
            d.data
                .iter_mut()
                .zip(&x.data)
                .for_each(|(d, &x)| *d = if x <= 0.0 { 0.0 } else { *d });
            d
        }
        (LayerSpec::Tanh { slope, amplitude }, Cache::Output { y }) => {
            // y = A·tanh(s·x): dy/dx = s·A·(1 − tanh²) = s·(A − y²/A); A > 0 (checked where the
            // layer is built)
            let mut d = dy;
            d.data
                .iter_mut()
                .zip(&y.data)
                .for_each(|(d, &y)| *d *= slope * (amplitude - y * y / amplitude));
            d
        }
        (LayerSpec::Sigmoid, Cache::Output { y }) => {
            let mut d = dy;
            d.data
                .iter_mut()
                .zip(&y.data)
                .for_each(|(d, &y)| *d *= y * (1.0 - y));
            d
        }
        (LayerSpec::MaxPool { .. }, Cache::Pool { argmax, in_len }) => {
            let len = dy.cols;
            let mut dx = Matrix::zeros(n, *in_len);
            for s in 0..n {
                for o in 0..len {
                    dx.data[s * in_len + argmax[s * len + o]] += dy.data[s * len + o];
                }
            }
            dx
        }
        (LayerSpec::Flatten, Cache::None) => dy,
        (LayerSpec::ConvLstm { .. }, Cache::Lstm(c)) => {
            match super::convlstm::backward_with(
                spec, in_shape, slots, backend, c, &dy, grads, need_dx,
            )? {
                Some(dx) => dx,
                None => return Ok(None),
            }
        }
        _ => return Err(bad_cache()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// im2col by its definition: patch element (ci, ky, kx) of output position (oy, ox) is input
    /// pixel (oy·stride + ky − top, ox·stride + kx − left) of channel ci, zero outside the map.
    fn im2col_def(x: &Matrix, g: &ConvGeom, bias: bool) -> Matrix {
        let kc = g.k() + bias as usize;
        let mut out = Matrix::zeros(x.rows * g.p(), kc);
        for s in 0..x.rows {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let row = s * g.p() + oy * g.ow + ox;
                    for ci in 0..g.c {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.stride + ky) as i64 - g.pad.top as i64;
                                let ix = (ox * g.stride + kx) as i64 - g.pad.left as i64;
                                if iy >= 0 && ix >= 0 && iy < g.h as i64 && ix < g.w as i64 {
                                    let v = x.get(s, (ci * g.h + iy as usize) * g.w + ix as usize);
                                    out.set(row, (ci * g.kh + ky) * g.kw + kx, v);
                                }
                            }
                        }
                    }
                    if bias {
                        out.set(row, g.k(), BIAS_INPUT);
                    }
                }
            }
        }
        out
    }

    /// The adjoint by its definition: every patch value added onto its source pixel, in
    /// (sample, output position, channel, ky, kx) order.
    fn col2im_def(d: &Matrix, g: &ConvGeom, n: usize) -> Matrix {
        let mut out = Matrix::zeros(n, g.c * g.h * g.w);
        for s in 0..n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let row = s * g.p() + oy * g.ow + ox;
                    for ci in 0..g.c {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.stride + ky) as i64 - g.pad.top as i64;
                                let ix = (ox * g.stride + kx) as i64 - g.pad.left as i64;
                                if iy >= 0 && ix >= 0 && iy < g.h as i64 && ix < g.w as i64 {
                                    let i = (ci * g.h + iy as usize) * g.w + ix as usize;
                                    let v =
                                        out.get(s, i) + d.get(row, (ci * g.kh + ky) * g.kw + kx);
                                    out.set(s, i, v);
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn random(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Matrix {
        let data = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        Matrix::from_vec(rows, cols, data).unwrap()
    }

    /// Geometries of S1, S5 and odd ones (stride 2, uneven padding, padding wider than the
    /// kernel reach), small batches (sequential) and large ones (parallel, above `PAR_VALUES`).
    fn cases() -> Vec<(Shape, [usize; 2], usize, Pad, usize)> {
        let odd = Pad {
            top: 2,
            bottom: 0,
            left: 1,
            right: 3,
        };
        vec![
            ([1, 8, 8], [3, 3], 1, Pad::uniform(1), 5),
            ([15, 8, 8], [2, 2], 1, Pad::same(2, 2), 50),
            ([1, 28, 28], [3, 3], 1, Pad::default(), 12),
            ([8, 8, 8], [3, 3], 1, Pad::uniform(1), 3),
            ([3, 7, 9], [3, 2], 2, odd, 4),
            ([2, 5, 4], [4, 5], 3, odd, 60),
            ([1, 1, 1], [1, 1], 1, Pad::default(), 2),
        ]
    }

    #[test]
    fn im2col_and_col2im_equal_their_definitions_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(16);
        for (shape, kernel, stride, pad, n) in cases() {
            let g = ConvGeom::new(shape, kernel, stride, pad).unwrap();
            let x = random(n, shape.iter().product(), &mut rng);
            for bias in [false, true] {
                let cols = im2col(&x, &g, bias);
                assert_eq!(cols, im2col_def(&x, &g, bias), "{g:?} bias {bias}");
                let d = random(cols.rows, cols.cols, &mut rng);
                assert_eq!(
                    col2im(&d, &g, n),
                    col2im_def(&d, &g, n),
                    "{g:?} bias {bias}"
                );
            }
        }
    }

    /// ⟨im2col(x), y⟩ = ⟨x, col2im(y)⟩ (bias column excluded) within rounding.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        for (shape, kernel, stride, pad, n) in cases() {
            let g = ConvGeom::new(shape, kernel, stride, pad).unwrap();
            let x = random(n, shape.iter().product(), &mut rng);
            let cols = im2col(&x, &g, false);
            let y = random(cols.rows, cols.cols, &mut rng);
            let lhs: f64 = cols.data.iter().zip(&y.data).map(|(a, b)| a * b).sum();
            let back = col2im(&y, &g, n);
            let rhs: f64 = x.data.iter().zip(&back.data).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() <= 1e-12 * (1.0 + lhs.abs()),
                "{g:?}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn patch_and_map_layouts_are_inverse_transposes() {
        let mut rng = ChaCha8Rng::seed_from_u64(18);
        for (n, p, c) in [(3, 5, 4), (50, 64, 15), (1, 1, 1), (2, 7, 1), (2, 1, 6)] {
            let y = random(n * p, c, &mut rng);
            let maps = patches_to_maps(&y, n, p);
            assert_eq!((maps.rows, maps.cols), (n, c * p));
            for s in 0..n {
                for pi in 0..p {
                    for ch in 0..c {
                        assert_eq!(maps.get(s, ch * p + pi), y.get(s * p + pi, ch));
                    }
                }
            }
            assert_eq!(maps_to_patches(&maps, c, p), y);
        }
    }
}
