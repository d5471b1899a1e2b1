//! Image preprocessing: central crop, bicubic resize (Keys, a = −0.5),
//! linear map of pixel intensity to an input voltage range.

use super::idx::RawImages;
use super::{DataError, Dataset};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Keys' cubic convolution kernel with `a = −0.5`.
pub fn keys_kernel(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x <= 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// Sample `j` of a line, extended beyond its ends by linear extrapolation of
/// the two edge samples (so that linear images resize exactly).
fn ext(line: &[f64], j: isize) -> f64 {
    let n = line.len() as isize;
    if n == 1 {
        return line[0];
    }
    if j < 0 {
        line[0] + j as f64 * (line[1] - line[0])
    } else if j >= n {
        let (a, b) = (line[(n - 2) as usize], line[(n - 1) as usize]);
        b + (j - n + 1) as f64 * (b - a)
    } else {
        line[j as usize]
    }
}

/// Resize a line of `src.len()` samples to `m` with pixel-centre alignment:
/// output `i` samples the source at `(i + ½)·n/m − ½`.
fn resize_line(src: &[f64], m: usize) -> Vec<f64> {
    let scale = src.len() as f64 / m as f64;
    (0..m)
        .map(|i| {
            let x = (i as f64 + 0.5) * scale - 0.5;
            let x0 = x.floor();
            let mut s = 0.0;
            for t in -1..=2isize {
                let j = x0 as isize + t;
                s += keys_kernel(x - j as f64) * ext(src, j);
            }
            s
        })
        .collect()
}

/// Bicubic resize of an `h × w` row-major image to `oh × ow` (separable).
pub fn resize_bicubic(img: &[f64], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f64> {
    let rows: Vec<Vec<f64>> = (0..h)
        .map(|y| resize_line(&img[y * w..(y + 1) * w], ow))
        .collect();
    let mut out = vec![0.0; oh * ow];
    for x in 0..ow {
        let col: Vec<f64> = rows.iter().map(|r| r[x]).collect();
        for (y, v) in resize_line(&col, oh).into_iter().enumerate() {
            out[y * ow + x] = v;
        }
    }
    out
}

/// Central `size × size` crop.
pub fn crop_center(img: &[f64], h: usize, w: usize, size: usize) -> Vec<f64> {
    let (y0, x0) = ((h - size) / 2, (w - size) / 2);
    let mut out = Vec::with_capacity(size * size);
    for y in y0..y0 + size {
        out.extend_from_slice(&img[y * w + x0..y * w + x0 + size]);
    }
    out
}

/// Preprocessing pipeline for 8-bit grey images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Central crop to this square size first.
    pub crop: Option<usize>,
    /// Then bicubic resize to this square size.
    pub resize: Option<usize>,
    /// Intensity 0 maps to `v_lo_volt`, 255 to `v_hi_volt` (after clamping
    /// the resized intensity to [0, 255]).
    pub v_lo_volt: f64,
    pub v_hi_volt: f64,
}

impl Preprocess {
    /// S1: central 20×20 crop, bicubic to 8×8, pixels to [−0.2 V, 0.2 V].
    pub fn s1() -> Self {
        Preprocess {
            crop: Some(20),
            resize: Some(8),
            v_lo_volt: -0.2,
            v_hi_volt: 0.2,
        }
    }
    /// Full-size images mapped to `[lo, hi]`.
    pub fn full(v_lo_volt: f64, v_hi_volt: f64) -> Self {
        Preprocess {
            crop: None,
            resize: None,
            v_lo_volt,
            v_hi_volt,
        }
    }

    pub fn out_size(&self, rows: usize, cols: usize) -> (usize, usize) {
        let (h, w) = self.crop.map_or((rows, cols), |c| (c, c));
        self.resize.map_or((h, w), |r| (r, r))
    }

    pub fn apply_one(&self, img: &[u8], rows: usize, cols: usize) -> Vec<f64> {
        let mut v: Vec<f64> = img.iter().map(|&p| p as f64 / 255.0).collect();
        let (mut h, mut w) = (rows, cols);
        if let Some(c) = self.crop {
            v = crop_center(&v, h, w, c);
            (h, w) = (c, c);
        }
        if let Some(r) = self.resize {
            v = resize_bicubic(&v, h, w, r, r);
        }
        v.iter()
            .map(|p| self.v_lo_volt + p.clamp(0.0, 1.0) * (self.v_hi_volt - self.v_lo_volt))
            .collect()
    }

    pub fn apply(&self, raw: &RawImages) -> Result<Dataset, DataError> {
        if let Some(c) = self.crop {
            if c == 0 || c > raw.rows || c > raw.cols {
                return Err(DataError::Invalid(format!(
                    "cannot crop {}x{} images to {c}x{c}",
                    raw.rows, raw.cols
                )));
            }
        }
        if self.resize == Some(0) {
            return Err(DataError::Invalid("resize to 0x0".into()));
        }
        let (h, w) = self.out_size(raw.rows, raw.cols);
        let x: Vec<f64> = (0..raw.len())
            .into_par_iter()
            .flat_map_iter(|i| self.apply_one(raw.image(i), raw.rows, raw.cols))
            .collect();
        let n_classes = raw
            .labels
            .iter()
            .map(|&l| l as usize + 1)
            .max()
            .unwrap_or(0)
            .max(10);
        Ok(Dataset {
            shape: [1, h, w],
            x,
            labels: raw.labels.iter().map(|&l| l as usize).collect(),
            n_classes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_interpolates() {
        assert_eq!(keys_kernel(0.0), 1.0);
        assert_eq!(keys_kernel(1.0), 0.0);
        assert_eq!(keys_kernel(2.0), 0.0);
        // partition of unity
        for k in 0..10 {
            let t = k as f64 / 10.0;
            let s: f64 = (-1..=2).map(|j| keys_kernel(t - j as f64)).sum();
            assert!((s - 1.0).abs() < 1e-14);
        }
    }
}
