//! ConvLSTM layer: `z = W_x * x_t + W_h * h_{t−1}` (two backend products per
//! step), gates `i, f, o = σ(z)`, `g = tanh(z)`, `c_t = f⊙c_{t−1} + i⊙g`,
//! `h_t = o⊙tanh(c_t)`, zero initial state, backprop through time.
//!
//! Gate columns of the kernel matrices: `[i | f | o | g]`, each `hidden` wide.

use super::backend::{ForwardCtx, LayerId, MatmulBackend};
use super::layers::{
    col2im, im2col, maps_to_patches, patches_to_maps, ConvGeom, LayerSpec, Pad, Shape,
};
use super::matrix::Matrix;
use super::NnError;
use crate::fastmath;

/// Per-step tensors kept for BPTT (patch-major `(n·P) × …`).
#[derive(Debug, Clone)]
pub struct LstmCache {
    xcols: Vec<Matrix>,
    hcols: Vec<Option<Matrix>>,
    /// Gate activations `(n·P) × 4F` after the nonlinearities.
    gates: Vec<Matrix>,
    /// Cell states `c_0 … c_{T−1}`.
    cells: Vec<Matrix>,
    /// `tanh(c_t)` of every step (the forward pass computes it; backward reuses it).
    tanh_cells: Vec<Matrix>,
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
        tanh_cells: vec![],
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
        // products may come from SIMD kernels that leave the upper vector state dirty
        fastmath::clear_upper_vector_state();
        // gate nonlinearities over contiguous blocks: σ on [i|f|o], tanh on g
        for zr in z.data.chunks_exact_mut(4 * f) {
            let (sig, gg) = zr.split_at_mut(3 * f);
            fastmath::sigmoid_in_place(sig);
            fastmath::tanh_in_place(gg);
        }
        for (zr, cr) in z.data.chunks_exact(4 * f).zip(c.data.chunks_exact_mut(f)) {
            for k in 0..f {
                cr[k] = zr[f + k] * cr[k] + zr[k] * zr[3 * f + k];
            }
        }
        let mut tc = Matrix::zeros(n * p, f);
        fastmath::tanh_into(&c.data, &mut tc.data);
        for ((zr, tr), hr) in z
            .data
            .chunks_exact(4 * f)
            .zip(tc.data.chunks_exact(f))
            .zip(h.data.chunks_exact_mut(f))
        {
            for k in 0..f {
                hr[k] = zr[2 * f + k] * tr[k];
            }
        }
        cache.xcols.push(xcols);
        cache.hcols.push(hcols);
        cache.gates.push(z);
        cache.cells.push(c.clone());
        cache.tanh_cells.push(tc);
    }
    Ok((patches_to_maps(&h, n, p), cache))
}

/// Backprop through time: the kernel gradients into `grads[0]` (input kernel) and `grads[1]`
/// (recurrent kernel), and the gradient of the layer input.
pub fn backward(
    spec: &LayerSpec,
    s: Shape,
    slots: &[LayerId],
    backend: &dyn MatmulBackend,
    cache: &LstmCache,
    dy: &Matrix,
    grads: &mut [Matrix],
) -> Result<Matrix, NnError> {
    backward_with(spec, s, slots, backend, cache, dy, grads, true)?
        .ok_or_else(|| NnError::Shape("internal: ConvLSTM input gradient not computed".into()))
}

/// [`backward`]; the input gradient (one product `dz·W_xᵀ` and a col2im per step) only when
/// `need_dx` (a first layer does not need it).
#[allow(clippy::too_many_arguments)]
pub fn backward_with(
    spec: &LayerSpec,
    s: Shape,
    slots: &[LayerId],
    backend: &dyn MatmulBackend,
    cache: &LstmCache,
    dy: &Matrix,
    grads: &mut [Matrix],
    need_dx: bool,
) -> Result<Option<Matrix>, NnError> {
    let g = geo(spec, s)?;
    let n = dy.rows;
    let (p, f) = (g.gx.p(), g.hidden);
    let flen = g.gx.c * g.gx.h * g.gx.w;
    let wx = backend.effective_weights(slots[0])?;
    let wh = backend.effective_weights(slots[1])?;
    grads[0] = Matrix::zeros(wx.rows, wx.cols);
    grads[1] = Matrix::zeros(wh.rows, wh.cols);
    let mut dx = need_dx.then(|| Matrix::zeros(n, g.steps * flen));
    let mut dh = maps_to_patches(dy, f, p);
    let mut dc_next = Matrix::zeros(n * p, f);
    for t in (0..g.steps).rev() {
        let gates = &cache.gates[t];
        let tcs = &cache.tanh_cells[t];
        let mut dz = Matrix::zeros(n * p, 4 * f);
        for r in 0..n * p {
            let gr = &gates.data[r * 4 * f..(r + 1) * 4 * f];
            for k in 0..f {
                let (i, fg, o, gg) = (gr[k], gr[f + k], gr[2 * f + k], gr[3 * f + k]);
                let tc = tcs.data[r * f + k];
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
        if let Some(dx) = dx.as_mut() {
            let dxt = col2im(&dz.matmul_t(&wx), &g.gx, n);
            for r in 0..n {
                dx.row_mut(r)[t * flen..(t + 1) * flen].copy_from_slice(dxt.row(r));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::backend::{IdealBackend, Pass};
    use crate::nn::layers::weight_shapes;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Skipping the input gradient changes nothing else: same kernel gradients, bit for bit.
    #[test]
    fn kernel_gradients_do_not_depend_on_need_dx() {
        let spec = LayerSpec::ConvLstm {
            hidden: 3,
            steps: 2,
            in_kernel: [3, 3],
            rec_kernel: [2, 2],
            bias: true,
        };
        let s: Shape = [4, 5, 5];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut rand = |r: usize, c: usize| {
            let d = (0..r * c).map(|_| rng.gen_range(-0.8..0.8)).collect();
            Matrix::from_vec(r, c, d).unwrap()
        };
        let mut b = IdealBackend::new();
        let shapes = weight_shapes(&spec, s);
        for (id, &(r, c)) in shapes.iter().enumerate() {
            b.prepare(id, &rand(r, c)).unwrap();
        }
        let x = rand(3, 4 * 5 * 5);
        let mut read = ChaCha8Rng::seed_from_u64(0);
        let mut ctx = ForwardCtx::new(&mut read, Pass::Train);
        let (y, cache) = forward(&spec, s, &[0, 1], &mut b, &x, &mut ctx).unwrap();
        let dy = rand(y.rows, y.cols);
        let zeros = || shapes.iter().map(|&(r, c)| Matrix::zeros(r, c)).collect();
        let (mut g1, mut g2): (Vec<Matrix>, Vec<Matrix>) = (zeros(), zeros());
        let dx = backward(&spec, s, &[0, 1], &b, &cache, &dy, &mut g1).unwrap();
        assert_eq!((dx.rows, dx.cols), (x.rows, x.cols));
        let none = backward_with(&spec, s, &[0, 1], &b, &cache, &dy, &mut g2, false).unwrap();
        assert!(none.is_none());
        assert_eq!(g1, g2);
        assert!(g1.iter().all(|g| g.data.iter().any(|&v| v != 0.0)));
    }
}
