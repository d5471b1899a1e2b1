//! A structured iterative solver for the largest linear arrays: conjugate gradients preconditioned
//! by a symmetric block Gauss–Seidel sweep over the two families of lines (word lines, then bit
//! lines, then word lines again), each line solved exactly as a tridiagonal system.

use rayon::prelude::*;
use serde::Serialize;

use super::linear::LinearSystem;
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

/// Factored tridiagonal lines (Thomas algorithm): `n_lines` lines of length `len`, line l's entry k
/// at `idx(l, k)`.
struct Lines {
    /// Modified diagonal inverse and sub-diagonal per entry.
    inv_d: Vec<f64>,
    sub: Vec<f64>,
}

/// The preconditioner.
struct LinePrecond {
    r: usize,
    c: usize,
    word: Lines, // stored row-major like the unknowns: entry (i, j) at i·C + j
    bit: Lines,  // same layout; the lines run down the columns
    /// Cell coupling entries A[w(i,j), b(i,j)] (row-major).
    coup: Vec<f64>,
}

impl LinePrecond {
    fn new(lin: &LinearSystem) -> LinePrecond {
        let net = &lin.net;
        let (r, c) = (net.rows, net.cols);
        let n = r * c;
        let a = |p: usize, q: usize| lin.values[net.slot(p as u32, q as u32)];
        let mut coup = vec![0.0; n];
        for (k, v) in coup.iter_mut().enumerate() {
            *v = a(k, n + k);
        }
        // Word lines along j: off-diagonal between (i, j−1) and (i, j).
        let mut w_inv = vec![0.0; n];
        let mut w_sub = vec![0.0; n];
        for i in 0..r {
            let mut prev_inv = 0.0;
            for j in 0..c {
                let k = i * c + j;
                let d = a(k, k);
                let (e, dm) = if j == 0 {
                    (0.0, d)
                } else {
                    let e = a(k - 1, k);
                    (e, d - e * e * prev_inv)
                };
                w_sub[k] = e;
                w_inv[k] = 1.0 / dm;
                prev_inv = w_inv[k];
            }
        }
        // Bit lines along i: off-diagonal between (i−1, j) and (i, j).
        let mut b_inv = vec![0.0; n];
        let mut b_sub = vec![0.0; n];
        for i in 0..r {
            for j in 0..c {
                let k = i * c + j;
                let d = a(n + k, n + k);
                let (e, dm) = if i == 0 {
                    (0.0, d)
                } else {
                    let e = a(n + k - c, n + k);
                    (e, d - e * e * b_inv[k - c])
                };
                b_sub[k] = e;
                b_inv[k] = 1.0 / dm;
            }
        }
        LinePrecond {
            r,
            c,
            word: Lines {
                inv_d: w_inv,
                sub: w_sub,
            },
            bit: Lines {
                inv_d: b_inv,
                sub: b_sub,
            },
            coup,
        }
    }

    /// Solve the word-line tridiagonal systems in place (rows in parallel).
    fn solve_word(&self, z: &mut [f64]) {
        let c = self.c;
        z.par_chunks_mut(c)
            .zip(self.word.inv_d.par_chunks(c))
            .zip(self.word.sub.par_chunks(c))
            .for_each(|((z, inv), sub)| {
                // forward: y_j = (z_j − e_j y_{j−1}) / d'_j  (stored as inv)
                for j in 0..c {
                    if j > 0 {
                        z[j] -= sub[j] * z[j - 1];
                    }
                    z[j] *= inv[j];
                }
                // backward: x_j = y_j − (e_{j+1}/d'_j) x_{j+1}
                for j in (0..c.saturating_sub(1)).rev() {
                    z[j] -= sub[j + 1] * inv[j] * z[j + 1];
                }
            });
    }

    /// Solve the bit-line tridiagonal systems in place (all columns swept together, row by row).
    fn solve_bit(&self, z: &mut [f64]) {
        let (r, c) = (self.r, self.c);
        let (inv, sub) = (&self.bit.inv_d, &self.bit.sub);
        for i in 0..r {
            let (head, cur) = z.split_at_mut(i * c);
            let cur = &mut cur[..c];
            if i > 0 {
                let prev = &head[(i - 1) * c..i * c];
                for j in 0..c {
                    cur[j] -= sub[i * c + j] * prev[j];
                }
            }
            for j in 0..c {
                cur[j] *= inv[i * c + j];
            }
        }
        for i in (0..r.saturating_sub(1)).rev() {
            let (head, tail) = z.split_at_mut((i + 1) * c);
            let cur = &mut head[i * c..];
            let next = &tail[..c];
            for j in 0..c {
                cur[j] -= sub[(i + 1) * c + j] * inv[i * c + j] * next[j];
            }
        }
    }

    /// z = M⁻¹ r (symmetric block Gauss–Seidel: word, bit, word).
    fn apply(&self, r: &[f64], z: &mut [f64], tmp: &mut [f64]) {
        let n = self.r * self.c;
        let (rw, rb) = r.split_at(n);
        let (zw, zb) = z.split_at_mut(n);
        zw.copy_from_slice(rw);
        self.solve_word(zw);
        // z_b = A_b⁻¹ (r_b − A_bw z_w)
        zb.par_iter_mut()
            .zip(rb.par_iter())
            .zip(zw.par_iter().zip(self.coup.par_iter()))
            .for_each(|((zb, rb), (zw, cp))| *zb = rb - cp * zw);
        self.solve_bit(zb);
        // z_w = A_w⁻¹ (r_w − A_wb z_b)
        tmp[..n]
            .par_iter_mut()
            .zip(rw.par_iter())
            .zip(zb.par_iter().zip(self.coup.par_iter()))
            .for_each(|((t, rw), (zb, cp))| *t = rw - cp * zb);
        zw.copy_from_slice(&tmp[..n]);
        self.solve_word(zw);
    }
}

/// y = A·x over the symmetric full pattern (column-parallel dot products).
fn matvec(lin: &LinearSystem, x: &[f64], y: &mut [f64]) {
    let cp = lin.net.pattern.col_ptr();
    let ri = lin.net.pattern.row_idx();
    let vals = &lin.values;
    y.par_iter_mut().enumerate().with_min_len(4096).for_each(|(col, yc)| {
        let (lo, hi) = (cp[col] as usize, cp[col + 1] as usize);
        let mut s = 0.0;
        for k in lo..hi {
            s += vals[k] * x[ri[k] as usize];
        }
        *yc = s;
    });
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.par_chunks(8192)
        .zip(b.par_chunks(8192))
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>())
        .sum()
}

/// Solve `A·x = b` for the assembled structured linear array.
pub fn pcg_solve(lin: &LinearSystem, b: &[f64], opts: &PcgOptions) -> Result<(Vec<f64>, PcgStats), XbarError> {
    let net = &lin.net;
    let n = net.n_free;
    if !net.structured || !net.tia.is_empty() || n != 2 * net.rows * net.cols {
        return Err(XbarError::Invalid(
            "the iterative solver needs separate word- and bit-line nodes and no amplifiers".into(),
        ));
    }
    if b.len() != n {
        return Err(XbarError::Numeric("right-hand side has the wrong size".into()));
    }
    let pre = LinePrecond::new(lin);
    let bnorm = dot(b, b).sqrt();
    let mut x = vec![0.0; n];
    if bnorm == 0.0 {
        return Ok((x, PcgStats::default()));
    }
    let mut r = b.to_vec();
    let mut z = vec![0.0; n];
    let mut tmp = vec![0.0; n];
    pre.apply(&r, &mut z, &mut tmp);
    let mut p = z.clone();
    let mut ap = vec![0.0; n];
    let mut rz = dot(&r, &z);
    let mut rel = 1.0;
    for it in 1..=opts.max_iter {
        matvec(lin, &p, &mut ap);
        let pap = dot(&p, &ap);
        if !(pap > 0.0) {
            return Err(XbarError::Numeric("CG breakdown: matrix not positive definite".into()));
        }
        let alpha = rz / pap;
        x.par_iter_mut()
            .zip(p.par_iter())
            .for_each(|(x, p)| *x += alpha * p);
        r.par_iter_mut()
            .zip(ap.par_iter())
            .for_each(|(r, ap)| *r -= alpha * ap);
        rel = dot(&r, &r).sqrt() / bnorm;
        if rel <= opts.rel_tol {
            return Ok((
                x,
                PcgStats {
                    iterations: it,
                    rel_residual: rel,
                },
            ));
        }
        pre.apply(&r, &mut z, &mut tmp);
        let rz_new = dot(&r, &z);
        let beta = rz_new / rz;
        rz = rz_new;
        p.par_iter_mut()
            .zip(z.par_iter())
            .for_each(|(p, z)| *p = z + beta * *p);
    }
    Err(XbarError::NoConvergence {
        iterations: opts.max_iter,
        residual_a: rel,
    })
}
