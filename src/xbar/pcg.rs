//! A structured iterative solver for the largest linear arrays. The nodal matrix of a passive array
//! with separate word- and bit-line nodes is held as a stencil (diagonals, one uniform wire
//! conductance per line family, the cell conductances coupling the two families) — no sparse matrix
//! is built. Conjugate gradients are preconditioned by a symmetric block Gauss–Seidel sweep over
//! the two families of lines (word lines, bit lines, word lines), each line solved exactly as a
//! tridiagonal system.

use rayon::prelude::*;
use serde::Serialize;

use super::array::{Crossbar, SenseKind};
use super::XbarError;

/// Tolerance and iteration limit: stop when `‖b − A·x‖₂ ≤ rel_tol·‖b‖₂`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PcgOptions {
    pub rel_tol: f64,
    pub max_iter: usize,
}

impl Default for PcgOptions {
    fn default() -> Self {
        PcgOptions {
            rel_tol: 1e-10,
            max_iter: 5000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PcgStats {
    pub iterations: usize,
    pub rel_residual: f64,
}

/// The stencil of a linear array under inference bias (rows driven, columns into virtual grounds).
pub struct Stencil {
    pub rows: usize,
    pub cols: usize,
    /// Cell conductances (S), row-major.
    g: Vec<f64>,
    /// Word- and bit-line segment conductances (S).
    gw: f64,
    gb: f64,
    /// Driver → first word node, last bit node → virtual ground (S).
    pub g_drv: f64,
    pub g_end: f64,
    dw: Vec<f64>,
    db: Vec<f64>,
    /// Thomas factors: inverse modified pivots per line.
    w_inv: Vec<f64>,
    b_inv: Vec<f64>,
}

/// Rows handled per parallel task.
fn row_block(c: usize) -> usize {
    (16384 / c.max(1)).max(1)
}

impl Stencil {
    pub fn new(xb: &Crossbar) -> Result<Stencil, XbarError> {
        xb.validate()?;
        if !xb.cell.is_linear() || !matches!(xb.sense, SenseKind::VirtualGround) {
            return Err(XbarError::Invalid(
                "the iterative solver handles linear cells with virtual-ground sensing".into(),
            ));
        }
        if !(xb.r_word_ohm > 0.0 && xb.r_bit_ohm > 0.0) {
            return Err(XbarError::Invalid(
                "the iterative solver needs nonzero word- and bit-line segment resistances".into(),
            ));
        }
        let (r, c) = (xb.rows, xb.cols);
        let gw = 1.0 / xb.r_word_ohm;
        let gb = 1.0 / xb.r_bit_ohm;
        let g_drv = 1.0 / (xb.r_driver_ohm + xb.r_word_ohm);
        let g_end = 1.0 / (xb.r_bit_ohm + xb.r_sense_ohm);
        let g = xb.g_siemens.clone();
        let mut dw = vec![0.0; r * c];
        let mut w_inv = vec![0.0; r * c];
        dw.par_chunks_mut(c)
            .zip(w_inv.par_chunks_mut(c))
            .zip(g.par_chunks(c))
            .for_each(|((dw, inv), g)| {
                let mut prev = 0.0;
                for j in 0..c {
                    let left = if j == 0 { g_drv } else { gw };
                    let right = if j + 1 < c { gw } else { 0.0 };
                    dw[j] = g[j] + left + right;
                    let piv = if j == 0 {
                        dw[j]
                    } else {
                        dw[j] - gw * gw * prev
                    };
                    inv[j] = 1.0 / piv;
                    prev = inv[j];
                }
            });
        let mut db = vec![0.0; r * c];
        let mut b_inv = vec![0.0; r * c];
        for i in 0..r {
            let up = if i > 0 { gb } else { 0.0 };
            let down = if i + 1 < r { gb } else { g_end };
            for j in 0..c {
                let k = i * c + j;
                db[k] = g[k] + up + down;
                b_inv[k] = 1.0
                    / if i == 0 {
                        db[k]
                    } else {
                        db[k] - gb * gb * b_inv[k - c]
                    };
            }
        }
        Ok(Stencil {
            rows: r,
            cols: c,
            g,
            gw,
            gb,
            g_drv,
            g_end,
            dw,
            db,
            w_inv,
            b_inv,
        })
    }

    /// Number of unknowns (word nodes then bit nodes, each row-major).
    pub fn n(&self) -> usize {
        2 * self.rows * self.cols
    }

    /// Right-hand side for row voltages `v_in`.
    pub fn rhs(&self, v_in: &[f64]) -> Vec<f64> {
        let c = self.cols;
        let mut b = vec![0.0; self.n()];
        for (i, v) in v_in.iter().enumerate().take(self.rows) {
            b[i * c] = self.g_drv * v;
        }
        b
    }

    /// Column currents into the virtual grounds from a solution.
    pub fn outputs(&self, x: &[f64]) -> Vec<f64> {
        let (r, c) = (self.rows, self.cols);
        let nb = r * c;
        x[nb + (r - 1) * c..nb + r * c]
            .iter()
            .map(|v| self.g_end * v)
            .collect()
    }

    /// y = A·x; returns x·y (rows in parallel, word and bit parts in one pass).
    fn matvec(&self, x: &[f64], y: &mut [f64]) -> f64 {
        let (r, c) = (self.rows, self.cols);
        let n = r * c;
        let (xw, xb) = x.split_at(n);
        let (yw, yb) = y.split_at_mut(n);
        let (gw, gb) = (self.gw, self.gb);
        let rb = row_block(c);
        yw.par_chunks_mut(rb * c)
            .zip(yb.par_chunks_mut(rb * c))
            .enumerate()
            .map(|(blk, (yw, yb))| {
                let mut dot = 0.0;
                let i0 = blk * rb;
                for (t, (yw, yb)) in yw.chunks_mut(c).zip(yb.chunks_mut(c)).enumerate() {
                    let i = i0 + t;
                    let o = i * c;
                    let (xw_r, xb_r) = (&xw[o..o + c], &xb[o..o + c]);
                    let (dw, db, g) = (&self.dw[o..o + c], &self.db[o..o + c], &self.g[o..o + c]);
                    for j in 0..c {
                        let mut s = dw[j] * xw_r[j] - g[j] * xb_r[j];
                        if j > 0 {
                            s -= gw * xw_r[j - 1];
                        }
                        if j + 1 < c {
                            s -= gw * xw_r[j + 1];
                        }
                        yw[j] = s;
                        dot += s * xw_r[j];
                    }
                    let up = if i > 0 { Some(&xb[o - c..o]) } else { None };
                    let down = if i + 1 < r {
                        Some(&xb[o + c..o + 2 * c])
                    } else {
                        None
                    };
                    for j in 0..c {
                        let mut s = db[j] * xb_r[j] - g[j] * xw_r[j];
                        if let Some(u) = up {
                            s -= gb * u[j];
                        }
                        if let Some(d) = down {
                            s -= gb * d[j];
                        }
                        yb[j] = s;
                        dot += s * xb_r[j];
                    }
                }
                dot
            })
            .sum()
    }

    /// One word line: z ← A_w⁻¹ z (L D Lᵀ with sub-diagonal −gw).
    #[inline]
    fn thomas_word(gw: f64, z: &mut [f64], inv: &[f64]) {
        let c = z.len();
        z[0] *= inv[0];
        for j in 1..c {
            z[j] = (z[j] + gw * z[j - 1]) * inv[j];
        }
        for j in (0..c - 1).rev() {
            z[j] += gw * inv[j] * z[j + 1];
        }
    }

    /// z = M⁻¹ r (symmetric block Gauss–Seidel: word lines, bit lines, word lines); returns r·z.
    fn precondition(&self, r: &[f64], z: &mut [f64]) -> f64 {
        let (nr, c) = (self.rows, self.cols);
        let n = nr * c;
        let gw = self.gw;
        let gb = self.gb;
        let (rw, rb) = r.split_at(n);
        let (zw, zb) = z.split_at_mut(n);
        // 1. word lines
        zw.par_chunks_mut(c)
            .zip(rw.par_chunks(c))
            .zip(self.w_inv.par_chunks(c))
            .for_each(|((z, r), inv)| {
                z.copy_from_slice(r);
                Self::thomas_word(gw, z, inv);
            });
        // 2. bit lines on r_b + g∘z_w, column blocks in parallel
        {
            let nblk = rayon::current_num_threads().max(1) * 2;
            let cb = c.div_ceil(nblk).max(64).min(c);
            // the raw writes below rely on it (the reads of rb, g, inv are bounds-checked)
            assert!(zb.len() >= n, "preconditioner output too short");
            // Column blocks of a row-major vector are not contiguous, so no safe split hands
            // each task its block. The tasks write through a raw pointer instead and never form
            // a reference into `zb` while they run (`zb` itself is not used until the loop ends).
            let (inv, g, zw) = (&self.b_inv, &self.g, &*zw);
            let zp = SendPtr(zb.as_mut_ptr());
            (0..c.div_ceil(cb)).into_par_iter().for_each(|blk| {
                let zp = &zp;
                let j0 = blk * cb;
                let j1 = (j0 + cb).min(c);
                // SAFETY (both helpers): `zp.0` points at `zb`, `n = nr·c` elements, alive and
                // not otherwise accessed during the loop. Every index passed below is `i·c + j`
                // with `i < nr` and `j0 ≤ j < j1 ≤ c`, so it is in bounds, and the blocks
                // `j0..j1` of different tasks are disjoint: no element is touched by two tasks,
                // so there is no data race and no aliasing reference.
                let get = |k: usize| unsafe { zp.0.add(k).read() };
                let set = |k: usize, v: f64| unsafe { zp.0.add(k).write(v) };
                for j in j0..j1 {
                    set(j, (rb[j] + g[j] * zw[j]) * inv[j]);
                }
                for i in 1..nr {
                    let (cur, prev) = (i * c, (i - 1) * c);
                    for j in j0..j1 {
                        let k = cur + j;
                        set(k, (rb[k] + g[k] * zw[k] + gb * get(prev + j)) * inv[k]);
                    }
                }
                for i in (0..nr - 1).rev() {
                    let (cur, next) = (i * c, (i + 1) * c);
                    for j in j0..j1 {
                        let k = cur + j;
                        set(k, get(k) + gb * inv[k] * get(next + j));
                    }
                }
            });
        }
        // 3. word lines on r_w + g∘z_b, accumulating r·z
        let zb = &*zb;
        zw.par_chunks_mut(c)
            .enumerate()
            .map(|(i, z)| {
                let o = i * c;
                let (rw, rbr, zbr, g) = (
                    &rw[o..o + c],
                    &rb[o..o + c],
                    &zb[o..o + c],
                    &self.g[o..o + c],
                );
                for j in 0..c {
                    z[j] = rw[j] + g[j] * zbr[j];
                }
                Self::thomas_word(gw, z, &self.w_inv[o..o + c]);
                let mut s = 0.0;
                for j in 0..c {
                    s += rw[j] * z[j] + rbr[j] * zbr[j];
                }
                s
            })
            .sum()
    }

    /// Solve `A·x = b` by preconditioned conjugate gradients.
    pub fn solve(&self, b: &[f64], opts: &PcgOptions) -> Result<(Vec<f64>, PcgStats), XbarError> {
        let n = self.n();
        if b.len() != n {
            return Err(XbarError::Numeric(
                "right-hand side has the wrong size".into(),
            ));
        }
        let bnorm = dot(b, b).sqrt();
        let mut x = vec![0.0; n];
        if bnorm == 0.0 {
            return Ok((x, PcgStats::default()));
        }
        let mut r = b.to_vec();
        let mut z = vec![0.0; n];
        let mut rz = self.precondition(&r, &mut z);
        let mut p = z.clone();
        let mut ap = vec![0.0; n];
        let mut rel = 1.0;
        for it in 1..=opts.max_iter {
            let pap = self.matvec(&p, &mut ap);
            if pap.is_nan() || pap <= 0.0 {
                return Err(XbarError::Numeric(
                    "CG breakdown: matrix not positive definite".into(),
                ));
            }
            let alpha = rz / pap;
            let rr: f64 = x
                .par_chunks_mut(CHUNK)
                .zip(r.par_chunks_mut(CHUNK))
                .zip(p.par_chunks(CHUNK).zip(ap.par_chunks(CHUNK)))
                .map(|((x, r), (p, ap))| {
                    let mut s = 0.0;
                    for k in 0..x.len() {
                        x[k] += alpha * p[k];
                        r[k] -= alpha * ap[k];
                        s += r[k] * r[k];
                    }
                    s
                })
                .sum();
            rel = rr.sqrt() / bnorm;
            if !rel.is_finite() {
                return Err(XbarError::Numeric("CG diverged".into()));
            }
            if rel <= opts.rel_tol {
                return Ok((
                    x,
                    PcgStats {
                        iterations: it,
                        rel_residual: rel,
                    },
                ));
            }
            let rz_new = self.precondition(&r, &mut z);
            let beta = rz_new / rz;
            rz = rz_new;
            p.par_chunks_mut(CHUNK)
                .zip(z.par_chunks(CHUNK))
                .for_each(|(p, z)| {
                    for k in 0..p.len() {
                        p[k] = z[k] + beta * p[k];
                    }
                });
        }
        Err(XbarError::NoConvergence {
            iterations: opts.max_iter,
            residual_a: rel,
        })
    }

    /// Word- and bit-line node voltages of a solution (views into it).
    pub fn split<'a>(&self, x: &'a [f64]) -> (&'a [f64], &'a [f64]) {
        x.split_at(self.rows * self.cols)
    }
}

const CHUNK: usize = 8192;

/// A pointer shared by rayon tasks that write disjoint elements through it.
struct SendPtr(*mut f64);
// SAFETY: the pointer is only dereferenced in `precondition`, where every task reads and writes
// a set of elements disjoint from every other task's (column blocks), so sharing it between
// threads cannot create a data race.
unsafe impl Sync for SendPtr {}
// SAFETY: as for `Sync`: moving the pointer to another thread is harmless for the same reason.
unsafe impl Send for SendPtr {}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>())
        .sum()
}
