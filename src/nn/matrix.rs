//! Dense row-major `f64` matrix and the few products training needs.
//!
//! All products are faer's blocked kernel, parallelised with rayon over bands
//! of *output rows*; every output element is a sum taken in the kernel's fixed
//! order, so results are bit-identical whatever the number of threads.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
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

/// Minimum number of multiply–adds before a product is cut into [`BANDS`] output bands.
const PAR_THRESHOLD: usize = 1 << 15;
/// Minimum number of multiply–adds before the bands run on rayon threads: below it they run one
/// after another on the calling thread (the same bands, so the same sums), because waking the
/// pool costs more than S3's 50×65×54 products (~0.2 M multiply–adds; perf on a quiet machine:
/// ~40 % of an S3 epoch in scheduler calls).
const PAR_RUN_THRESHOLD: usize = 1 << 20;

/// Output-row bands of a parallel product (multiples of the kernel's 8-row register tile).
/// Fixed, not derived from the thread count: faer's kernel sums a row in a different order
/// depending on the band shape around it (a lone last row vs the same row inside an 8-row
/// tile), so bands that followed the threads made results depend on `RAYON_NUM_THREADS`.
/// Eight bands keep two threads busy with a few bands each (the results of the earlier
/// `4 × threads` rule at 2 threads, unchanged) and use at most 8 threads per product.
const BANDS: usize = 8;

/// `out = a · b` (`out` n×m, row-major) with faer's blocked kernel. Parallel over [`BANDS`]
/// bands of output rows, each band a sequential product; the bands depend only on the shape, so
/// the result does not depend on the number of threads (test
/// `products_do_not_depend_on_the_thread_count`).
fn gemm(out: &mut Matrix, a: MatRef<'_, f64>, b: MatRef<'_, f64>) {
    let (n, k, m) = (a.nrows(), a.ncols(), b.ncols());
    if n == 0 || m == 0 {
        return;
    }
    let band = if n * k * m >= PAR_THRESHOLD {
        n.div_ceil(BANDS).div_ceil(8) * 8
    } else {
        n
    };
    let one_band = |(q, o): (usize, &mut [f64])| {
        let rows = o.len() / m;
        matmul(
            MatMut::from_row_major_slice_mut(o, rows, m),
            Accum::Replace,
            a.subrows(q * band, rows),
            b,
            1.0,
            Par::Seq,
        );
        // faer's AVX-512 kernels leave the upper vector state dirty: without this, every
        // later libm call on this thread pays SSE/AVX transition penalties (crate::fastmath)
        crate::fastmath::clear_upper_vector_state();
    };
    if n * k * m >= PAR_RUN_THRESHOLD {
        out.data
            .par_chunks_mut(band * m)
            .enumerate()
            .for_each(one_band);
    } else {
        out.data.chunks_mut(band * m).enumerate().for_each(one_band);
    }
}

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
        let mut out = Matrix::zeros(self.rows, b.cols);
        gemm(
            &mut out,
            MatRef::from_row_major_slice(&self.data, self.rows, self.cols),
            MatRef::from_row_major_slice(&b.data, b.rows, b.cols),
        );
        out
    }

    /// `selfᵀ · b` (self n×k, b n×m → k×m) without forming the transpose.
    pub fn t_matmul(&self, b: &Matrix) -> Matrix {
        assert_eq!(self.rows, b.rows, "t_matmul shape mismatch");
        let mut out = Matrix::zeros(self.cols, b.cols);
        gemm(
            &mut out,
            MatRef::from_row_major_slice(&self.data, self.rows, self.cols).transpose(),
            MatRef::from_row_major_slice(&b.data, b.rows, b.cols),
        );
        out
    }

    /// `self · bᵀ` (self n×k, b m×k → n×m).
    pub fn matmul_t(&self, b: &Matrix) -> Matrix {
        assert_eq!(self.cols, b.cols, "matmul_t shape mismatch");
        let mut out = Matrix::zeros(self.rows, b.rows);
        gemm(
            &mut out,
            MatRef::from_row_major_slice(&self.data, self.rows, self.cols),
            MatRef::from_row_major_slice(&b.data, b.rows, b.cols).transpose(),
        );
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

    /// Output bands must not depend on the thread count: faer sums a 1-row band in another
    /// order than the same row inside an 8-row tile (S5's first-layer weight gradient, 9 rows,
    /// differed in the last digits between 1 and 2 threads when the bands followed the threads).
    #[test]
    fn products_do_not_depend_on_the_thread_count() {
        let (n, k, m) = (9, 2000, 6);
        let a = Matrix::from_vec(
            n,
            k,
            (0..n * k)
                .map(|i| ((i * 7919) % 1013) as f64 / 1013.0 - 0.5)
                .collect(),
        )
        .unwrap();
        let b = Matrix::from_vec(
            k,
            m,
            (0..k * m)
                .map(|i| ((i * 104729) % 997) as f64 / 997.0 - 0.5)
                .collect(),
        )
        .unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| (a.matmul(&b), a.transpose().t_matmul(&b)))
        };
        let one = run(1);
        for t in [2, 3, 4] {
            assert_eq!(run(t), one, "{t} threads");
        }
    }

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
