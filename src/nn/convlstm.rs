//! ConvLSTM layer: `z = W_x * x_t + W_h * h_{t−1}` (two backend products per
//! step), gates `i, f, o = σ(z)`, `g = tanh(z)`, `c_t = f⊙c_{t−1} + i⊙g`,
//! `h_t = o⊙tanh(c_t)`, zero initial state, backprop through time.
//!
//! Gate columns of the kernel matrices: `[i | f | o | g]`, each `hidden` wide.

use super::backend::{ForwardCtx, LayerId, MatmulBackend};
use super::layers::{
    col2im, im2col, maps_to_patches, patches_to_maps, sigmoid, ConvGeom, LayerSpec, Pad, Shape,
};
use super::matrix::Matrix;
use super::NnError;

/// Per-step tensors kept for BPTT (patch-major `(n·P) × …`).
#[derive(Debug, Clone)]
pub struct LstmCache {
    xcols: Vec<Matrix>,
    hcols: Vec<Option<Matrix>>,
    /// Gate activations `(n·P) × 4F` after the nonlinearities.
    gates: Vec<Matrix>,
    /// Cell states `c_0 … c_{T−1}`.
    cells: Vec<Matrix>,
}

struct Geo {
    steps: usize,
    hidden: usize,
    gx: ConvGeom,
    gh: ConvGeom,
    bias: bool,
}

fn geo(spec: &LayerSpec, s: Shape) -> Result<Geo, NnError> {
    let LayerSpec::ConvLstm {
        hidden,
        steps,
        in_kernel,
        rec_kernel,
        bias,
    } = spec
    else {
        return Err(NnError::Shape("internal: not a ConvLSTM".into()));
    };
    if *steps == 0 || !s[0].is_multiple_of(*steps) {
        return Err(NnError::Shape(
            "ConvLSTM input channels not divisible by steps".into(),
        ));
    }
    let gx = ConvGeom::new([s[0] / steps, s[1], s[2]], *in_kernel, 1, Pad::default())?;
    let gh = ConvGeom::new(
        [*hidden, gx.oh, gx.ow],
        *rec_kernel,
        1,
        Pad::same(rec_kernel[0], rec_kernel[1]),
    )?;
    Ok(Geo {
        steps: *steps,
        hidden: *hidden,
        gx,
        gh,
        bias: *bias,
    })
}

fn frame(x: &Matrix, t: usize, len: usize) -> Matrix {
    let mut out = Matrix::zeros(x.rows, len);
    for r in 0..x.rows {
        out.row_mut(r)
            .copy_from_slice(&x.row(r)[t * len..(t + 1) * len]);
    }
    out
}

pub fn forward(
    spec: &LayerSpec,
    s: Shape,
    slots: &[LayerId],
    backend: &mut dyn MatmulBackend,
    x: &Matrix,
    ctx: &mut ForwardCtx,
) -> Result<(Matrix, LstmCache), NnError> {
    let g = geo(spec, s)?;
    let n = x.rows;
    let (p, f) = (g.gx.p(), g.hidden);
    let flen = g.gx.c * g.gx.h * g.gx.w;
    let mut cache = LstmCache {
        xcols: vec![],
        hcols: vec![],
        gates: vec![],
        cells: vec![],
    };
    let mut c = Matrix::zeros(n * p, f);
    let mut h = Matrix::zeros(n * p, f);
    for t in 0..g.steps {
        let xcols = im2col(&frame(x, t, flen), &g.gx, g.bias);
        let mut z = backend.forward(slots[0], &xcols, ctx)?;
        let hcols = if t > 0 {
            let hc = im2col(&patches_to_maps(&h, n, p), &g.gh, false);
            let zh = backend.forward(slots[1], &hc, ctx)?;
            z.data.iter_mut().zip(&zh.data).for_each(|(a, b)| *a += b);
            Some(hc)
        } else {
            None
        };
        for r in 0..n * p {
            let zr = &mut z.data[r * 4 * f..(r + 1) * 4 * f];
            for k in 0..f {
                zr[k] = sigmoid(zr[k]);
                zr[f + k] = sigmoid(zr[f + k]);
                zr[2 * f + k] = sigmoid(zr[2 * f + k]);
                zr[3 * f + k] = zr[3 * f + k].tanh();
                let cv = zr[f + k] * c.data[r * f + k] + zr[k] * zr[3 * f + k];
                c.data[r * f + k] = cv;
                h.data[r * f + k] = zr[2 * f + k] * cv.tanh();
            }
        }
        cache.xcols.push(xcols);
        cache.hcols.push(hcols);
        cache.gates.push(z);
        cache.cells.push(c.clone());
    }
    Ok((patches_to_maps(&h, n, p), cache))
}

pub fn backward(
    spec: &LayerSpec,
    s: Shape,
    slots: &[LayerId],
    backend: &dyn MatmulBackend,
    cache: &LstmCache,
    dy: &Matrix,
    grads: &mut [Matrix],
) -> Result<Matrix, NnError> {
    let g = geo(spec, s)?;
    let n = dy.rows;
    let (p, f) = (g.gx.p(), g.hidden);
    let flen = g.gx.c * g.gx.h * g.gx.w;
    let wx = backend.effective_weights(slots[0])?;
    let wh = backend.effective_weights(slots[1])?;
    grads[0] = Matrix::zeros(wx.rows, wx.cols);
    grads[1] = Matrix::zeros(wh.rows, wh.cols);
    let mut dx = Matrix::zeros(n, g.steps * flen);
    let mut dh = maps_to_patches(dy, f, p);
    let mut dc_next = Matrix::zeros(n * p, f);
    for t in (0..g.steps).rev() {
        let gates = &cache.gates[t];
        let c = &cache.cells[t];
        let mut dz = Matrix::zeros(n * p, 4 * f);
        for r in 0..n * p {
            let gr = &gates.data[r * 4 * f..(r + 1) * 4 * f];
            for k in 0..f {
                let (i, fg, o, gg) = (gr[k], gr[f + k], gr[2 * f + k], gr[3 * f + k]);
                let tc = c.data[r * f + k].tanh();
                let c_prev = if t > 0 {
                    cache.cells[t - 1].data[r * f + k]
                } else {
                    0.0
                };
                let dhv = dh.data[r * f + k];
                let dc = dc_next.data[r * f + k] + dhv * o * (1.0 - tc * tc);
                let dzr = &mut dz.data[r * 4 * f..(r + 1) * 4 * f];
                dzr[k] = dc * gg * i * (1.0 - i);
                dzr[f + k] = dc * c_prev * fg * (1.0 - fg);
                dzr[2 * f + k] = dhv * tc * o * (1.0 - o);
                dzr[3 * f + k] = dc * i * (1.0 - gg * gg);
                dc_next.data[r * f + k] = dc * fg;
            }
        }
        let gx = cache.xcols[t].t_matmul(&dz);
        grads[0]
            .data
            .iter_mut()
            .zip(&gx.data)
            .for_each(|(a, b)| *a += b);
        let dxt = col2im(&dz.matmul_t(&wx), &g.gx, n);
        for r in 0..n {
            dx.row_mut(r)[t * flen..(t + 1) * flen].copy_from_slice(dxt.row(r));
        }
        if let Some(hc) = &cache.hcols[t] {
            let gh = hc.t_matmul(&dz);
            grads[1]
                .data
                .iter_mut()
                .zip(&gh.data)
                .for_each(|(a, b)| *a += b);
            let dhm = col2im(&dz.matmul_t(&wh), &g.gh, n);
            dh = maps_to_patches(&dhm, f, p);
        } else {
            dh = Matrix::zeros(n * p, f);
        }
    }
    Ok(dx)
}
