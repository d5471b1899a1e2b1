//! Dense row-major `f64` matrix and the few products training needs.
//!
//! All products are parallelised with rayon over *output rows*; every output
//! element is a sum taken in a fixed order, so results are bit-identical
//! whatever the number of threads.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Row-major dense matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols` values, row after row.
    pub data: Vec<f64>,
}

/// Minimum number of multiply–adds before a product goes parallel.
const PAR_THRESHOLD: usize = 1 << 15;

impl Matrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Build from row-major data; `None` when the length does not match.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Option<Self> {
        (data.len() == rows * cols).then_some(Matrix { rows, cols, data })
    }

    #[inline]
    pub fn get(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    #[inline]
    pub fn set(&mut self, r: usize, c: usize, v: f64) {
        self.data[r * self.cols + c] = v;
    }

    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn row_mut(&mut self, r: usize) -> &mut [f64] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn transpose(&self) -> Matrix {
        let mut t = Matrix::zeros(self.cols, self.rows);
        for r in 0..self.rows {
            for c in 0..self.cols {
                t.data[c * self.rows + r] = self.data[r * self.cols + c];
            }
        }
        t
    }

    /// `self · b` (n×k · k×m). Panics on a shape mismatch (internal use;
    /// callers validate shapes first).
    pub fn matmul(&self, b: &Matrix) -> Matrix {
        assert_eq!(self.cols, b.rows, "matmul shape mismatch");
        let (n, k, m) = (self.rows, self.cols, b.cols);
        let mut out = Matrix::zeros(n, m);
        if m == 0 {
            return out;
        }
        let kernel = |(i, orow): (usize, &mut [f64])| {
            let arow = &self.data[i * k..(i + 1) * k];
            for (p, &a) in arow.iter().enumerate() {
                if a == 0.0 {
                    continue;
                }
                let brow = &b.data[p * m..(p + 1) * m];
                for (o, &bv) in orow.iter_mut().zip(brow) {
                    *o += a * bv;
                }
            }
        };
        if n * k * m >= PAR_THRESHOLD {
            out.data.par_chunks_mut(m).enumerate().for_each(kernel);
        } else {
            out.data.chunks_mut(m).enumerate().for_each(kernel);
        }
        out
    }

    /// `selfᵀ · b` (self n×k, b n×m → k×m) without forming the transpose;
    /// every output element sums over the n rows in order.
    pub fn t_matmul(&self, b: &Matrix) -> Matrix {
        assert_eq!(self.rows, b.rows, "t_matmul shape mismatch");
        self.transpose().matmul(b)
    }

    /// `self · bᵀ` (self n×k, b m×k → n×m).
    pub fn matmul_t(&self, b: &Matrix) -> Matrix {
        assert_eq!(self.cols, b.cols, "matmul_t shape mismatch");
        let (n, k, m) = (self.rows, self.cols, b.rows);
        let mut out = Matrix::zeros(n, m);
        if m == 0 {
            return out;
        }
        let kernel = |(i, orow): (usize, &mut [f64])| {
            let arow = &self.data[i * k..(i + 1) * k];
            for (j, o) in orow.iter_mut().enumerate() {
                let brow = &b.data[j * k..(j + 1) * k];
                let mut s = 0.0;
                for (x, y) in arow.iter().zip(brow) {
                    s += x * y;
                }
                *o = s;
            }
        };
        if n * k * m >= PAR_THRESHOLD {
            out.data.par_chunks_mut(m).enumerate().for_each(kernel);
        } else {
            out.data.chunks_mut(m).enumerate().for_each(kernel);
        }
        out
    }

    /// Largest absolute element-wise difference (∞ on a shape mismatch).
    pub fn max_abs_diff(&self, other: &Matrix) -> f64 {
        if self.rows != other.rows || self.cols != other.cols {
            return f64::INFINITY;
        }
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_agree() {
        let a = Matrix::from_vec(2, 3, vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let b = Matrix::from_vec(3, 2, vec![7., 8., 9., 10., 11., 12.]).unwrap();
        let c = a.matmul(&b);
        assert_eq!(c.data, vec![58., 64., 139., 154.]);
        assert_eq!(a.matmul_t(&b.transpose()).data, c.data);
        assert_eq!(a.transpose().t_matmul(&b).data, c.data);
    }
}
