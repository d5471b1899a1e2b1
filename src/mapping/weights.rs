//! The weights file (what the trainer writes, what `netc compile --weights` reads), the seeded
//! initialisation, and programming: weights → per-array conductance matrices.
//!
//! Format (`format` = `"netc-weights/1"`), one entry per weighted layer, matrices in the layouts of
//! [`crate::net::ir`] (row-major, `rows × cols`):
//! ```json
//! {"format":"netc-weights/1","network":"lenet","layers":[
//!   {"name":"c1","rows":9,"cols":15,"weights":[…135 numbers…],"bias":[]}, …]}
//! ```
//! `bias` has `cols` entries when the layer has a bias and is empty otherwise.

use super::encode::Encoder;
use super::lower::Lowering;
use super::MappingError;
use crate::net::spec::{HardwareSpec, WeightScale};
use crate::net::NetworkIr;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const FORMAT: &str = "netc-weights/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerWeights {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    /// Row-major `rows × cols`.
    pub weights: Vec<f64>,
    #[serde(default)]
    pub bias: Vec<f64>,
}

impl LayerWeights {
    pub fn w(&self, i: usize, j: usize) -> f64 {
        self.weights[i * self.cols + j]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsFile {
    pub format: String,
    pub network: String,
    pub layers: Vec<LayerWeights>,
}

impl WeightsFile {
    pub fn layer(&self, name: &str) -> Option<&LayerWeights> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Deterministic initialisation: weights uniform in ±1/√fan_in, biases uniform in ±0.1/√fan_in
    /// (ChaCha8, `seed`).
    pub fn init(ir: &NetworkIr, seed: u64) -> WeightsFile {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let layers = ir
            .layers
            .iter()
            .filter_map(|l| {
                let m = l.matrix?;
                let a = 1.0 / (m.rows as f64).sqrt();
                let weights = (0..m.rows * m.cols)
                    .map(|_| rng.gen_range(-a..=a))
                    .collect();
                let bias = if m.bias {
                    (0..m.cols)
                        .map(|_| rng.gen_range(-0.1 * a..=0.1 * a))
                        .collect()
                } else {
                    vec![]
                };
                Some(LayerWeights {
                    name: l.name.clone(),
                    rows: m.rows,
                    cols: m.cols,
                    weights,
                    bias,
                })
            })
            .collect();
        WeightsFile {
            format: FORMAT.into(),
            network: ir.name.clone(),
            layers,
        }
    }

    pub fn load(path: &Path) -> Result<WeightsFile, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|e| MappingError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let w: WeightsFile = serde_json::from_str(&text).map_err(|e| MappingError::Weights {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if w.format != FORMAT {
            return Err(MappingError::Weights {
                path: path.display().to_string(),
                message: format!("format is `{}`, expected `{FORMAT}`", w.format),
            });
        }
        Ok(w)
    }

    pub fn save(&self, path: &Path) -> Result<(), MappingError> {
        let text = serde_json::to_string(self).map_err(|e| MappingError::Weights {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        super::write_atomic(path, text.as_bytes())
    }

    /// Check that every weighted layer has a matrix of the right size (and nothing else is there).
    pub fn check(&self, ir: &NetworkIr, path: &str) -> Result<(), MappingError> {
        let bad = |m: String| MappingError::Weights {
            path: path.to_string(),
            message: m,
        };
        for l in &ir.layers {
            let Some(m) = l.matrix else { continue };
            let w = self
                .layer(&l.name)
                .ok_or_else(|| bad(format!("no weights for layer `{}`", l.name)))?;
            if w.rows != m.rows || w.cols != m.cols || w.weights.len() != m.rows * m.cols {
                return Err(bad(format!(
                    "layer `{}` needs a {}×{} matrix ({} numbers), the file has {}×{} ({} numbers)",
                    l.name,
                    m.rows,
                    m.cols,
                    m.rows * m.cols,
                    w.rows,
                    w.cols,
                    w.weights.len()
                )));
            }
            let nb = if m.bias { m.cols } else { 0 };
            if w.bias.len() != nb {
                return Err(bad(format!(
                    "layer `{}` needs {nb} biases, the file has {}",
                    l.name,
                    w.bias.len()
                )));
            }
            if let Some(x) = w.weights.iter().chain(&w.bias).find(|x| !x.is_finite()) {
                return Err(bad(format!(
                    "layer `{}` has a non-finite value {x}",
                    l.name
                )));
            }
        }
        for w in &self.layers {
            if ir.layer(&w.name).and_then(|l| l.matrix).is_none() {
                return Err(bad(format!(
                    "layer `{}` is not a weighted layer of network `{}`",
                    w.name, ir.name
                )));
            }
        }
        Ok(())
    }
}

/// Conductances of one physical array. Unused cells sit at `g_min`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArrayConductances {
    pub index: usize,
    pub rows: usize,
    pub cols: usize,
    /// Row-major conductances (S).
    pub g_siemens: Vec<f64>,
    /// Index into `Lowering::matrices` of the matrix owning each cell, if any.
    pub owner: Vec<Option<usize>>,
}

impl ArrayConductances {
    pub fn g(&self, r: usize, c: usize) -> f64 {
        self.g_siemens[r * self.cols + c]
    }
}

/// Programmed crossbars: the encoder of every matrix and every array's conductances.
#[derive(Debug, Clone, Serialize)]
pub struct Programmed {
    pub encoders: Vec<Encoder>,
    pub arrays: Vec<ArrayConductances>,
    /// Weights clipped by the window.
    pub clipped: usize,
}

/// Logical value of row `i` of a matrix: weight row or bias row (bias split over the bias rows).
pub fn logical_value(
    lw: &LayerWeights,
    weight_rows: usize,
    bias_rows: usize,
    i: usize,
    j: usize,
) -> f64 {
    if i < weight_rows {
        lw.w(i, j)
    } else {
        lw.bias[j] / bias_rows as f64
    }
}

/// Encode every weight onto its cells.
pub fn program(
    lowering: &Lowering,
    hw: &HardwareSpec,
    scale: WeightScale,
    weights: &WeightsFile,
) -> Result<Programmed, MappingError> {
    let mut arrays: Vec<ArrayConductances> = (0..lowering.arrays)
        .map(|index| ArrayConductances {
            index,
            rows: lowering.rows,
            cols: lowering.cols,
            g_siemens: vec![hw.g_min_siemens; lowering.rows * lowering.cols],
            owner: vec![None; lowering.rows * lowering.cols],
        })
        .collect();
    let mut encoders = Vec::new();
    let mut clipped = 0;
    for (mi, m) in lowering.matrices.iter().enumerate() {
        let lw = weights
            .layer(&m.layer)
            .ok_or_else(|| MappingError::Weights {
                path: "weights".into(),
                message: format!("no weights for layer `{}`", m.layer),
            })?;
        let want_bias = if m.bias_rows > 0 { m.cols } else { 0 };
        if lw.rows != m.weight_rows
            || lw.cols != m.cols
            || lw.weights.len() != m.weight_rows * m.cols
            || lw.bias.len() != want_bias
        {
            return Err(MappingError::Weights {
                path: "weights".into(),
                message: format!(
                    "layer `{}` needs {}×{} weights and {want_bias} biases",
                    m.layer, m.weight_rows, m.cols
                ),
            });
        }
        let value = |i: usize, j: usize| logical_value(lw, m.weight_rows, m.bias_rows, i, j);
        let scale_siemens = match scale {
            WeightScale::SiemensPerUnit(s) => s,
            WeightScale::Auto => {
                let mut wmax = 0.0f64;
                for i in 0..m.logical_rows() {
                    for j in 0..m.cols {
                        wmax = wmax.max(value(i, j).abs());
                    }
                }
                if wmax > 0.0 {
                    (hw.g_max_siemens - hw.g_min_siemens) / wmax
                } else {
                    hw.g_max_siemens - hw.g_min_siemens
                }
            }
        };
        let enc = Encoder {
            g_min_siemens: hw.g_min_siemens,
            g_max_siemens: hw.g_max_siemens,
            levels: hw.levels,
            scale_siemens,
        };
        for t in &m.tiles {
            for i in t.in_start..t.in_start + t.in_len {
                for j in t.out_start..t.out_start + t.out_len {
                    let p = enc.encode(value(i, j));
                    if p.clipped && t.replica == 0 {
                        clipped += 1;
                    }
                    for k in 0..m.pairs {
                        for (s, g) in [(0, p.g_plus_siemens), (1, p.g_minus_siemens)] {
                            let (r, c) = t.cell(m, i, j, k, s);
                            let a = &mut arrays[t.array];
                            a.g_siemens[r * a.cols + c] = g;
                            a.owner[r * a.cols + c] = Some(mi);
                        }
                    }
                }
            }
        }
        encoders.push(enc);
    }
    Ok(Programmed {
        encoders,
        arrays,
        clipped,
    })
}

/// Row voltages of tile `ti` of matrix `mi` for logical inputs `x_v` (volts, one per weight row;
/// bias rows get `v_bias`). Only that tile's rows are driven (`rows` orientation drives the g⁻ rows
/// with the opposite voltage); every other row of the array is at 0 V.
pub fn drive_tile(
    lowering: &Lowering,
    hw: &HardwareSpec,
    mi: usize,
    ti: usize,
    x_v: &[f64],
) -> Vec<f64> {
    let mut v = vec![0.0; lowering.rows];
    let m = &lowering.matrices[mi];
    let t = &m.tiles[ti];
    for i in t.in_start..t.in_start + t.in_len {
        let xi = if i < m.weight_rows {
            x_v.get(i).copied().unwrap_or(0.0)
        } else {
            hw.v_bias_v
        };
        for (r, sign) in t.input_rows(m, i) {
            v[r] = sign * xi;
        }
    }
    v
}

/// Logical outputs of tile `ti` from the array's column currents (A, positive into the sense
/// amplifier): `Σ_k (I(c⁺_k) − I(c⁻_k))` for column pairs, `I(c)` for row pairs.
pub fn tile_outputs(lowering: &Lowering, mi: usize, ti: usize, col_i_a: &[f64]) -> Vec<f64> {
    let m = &lowering.matrices[mi];
    let t = &m.tiles[ti];
    (t.out_start..t.out_start + t.out_len)
        .map(|j| {
            t.output_cols(m, j)
                .iter()
                .map(|&(c, sign)| sign * col_i_a[c])
                .sum()
        })
        .collect()
}

/// The ideal (Ohm + Kirchhoff) outputs of tile `ti` for inputs `x_v`, computed from the
/// programmed conductances: `Σ_i Σ_k v_i·(g⁺ − g⁻)`.
pub fn tile_ideal_outputs(
    lowering: &Lowering,
    hw: &HardwareSpec,
    prog: &Programmed,
    mi: usize,
    ti: usize,
    x_v: &[f64],
) -> Vec<f64> {
    let m = &lowering.matrices[mi];
    let t = &m.tiles[ti];
    let a = &prog.arrays[t.array];
    (t.out_start..t.out_start + t.out_len)
        .map(|j| {
            let mut acc = 0.0;
            for i in t.in_start..t.in_start + t.in_len {
                let xi = if i < m.weight_rows {
                    x_v.get(i).copied().unwrap_or(0.0)
                } else {
                    hw.v_bias_v
                };
                for k in 0..m.pairs {
                    let (rp, cp) = t.cell(m, i, j, k, 0);
                    let (rm, cm) = t.cell(m, i, j, k, 1);
                    acc += xi * (a.g(rp, cp) - a.g(rm, cm));
                }
            }
            acc
        })
        .collect()
}
