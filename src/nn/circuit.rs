//! The circuit backend: every product of the network computed by the compiled crossbar arrays,
//! solved at circuit level by the crossbar engine.
//!
//! On `prepare`, the software weights of every slot go through the compiler: the `.net` file's
//! lowering places them on tiles, the weight encoder turns them into conductance pairs within the
//! device window (quantised when the hardware declares levels), and each physical array is built
//! with its declared wire, driver and sense resistances and cell kind.
//!
//! Linear arrays (passive linear cells, virtual-ground sensing) are factored once per conductance
//! state and their exact effective matrix `T` (`I = Tᵀ·V`, `crate::xbar::Engine`) is decoded
//! back to a weight-unit matrix `W_eff` per slot, honouring pair orientation, several pairs per
//! weight, partial sums over split layers and bias rows (replicas are copies; replica 0 is read).
//! After that, a batch costs one dense product `X·W_eff`, which is exact for linear circuits.
//!
//! Outputs pass through the declared ADC (`adc_bits`, see [`adc`]).
//!
//! Nonlinear arrays (sinh cells, 1T1R) use by default their small-signal array at 0 V (sinh cells
//! have slope `g`; a 1T1R cell is its memristor in series with the transistor's channel
//! conductance): fast, and accurate while the cell voltages stay small. With `exact_nonlinear`,
//! every vector is solved exactly instead: the layer's inputs are scaled into the hardware's
//! input range, every tile is driven with the whole batch and solved by [`Engine::infer`] (the
//! bulk solver of `crate::xbar::bulk`: blocks of vectors by a chord iteration on the small-signal
//! factor with the inline 1T1R cell kernel, the same answers as per-vector Newton; timings in
//! docs/speed.md), and the column currents are decoded. Backprop uses `effective_weights`, the
//! small-signal `W_eff`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use faer::Mat;

use super::backend::{
    save_weights, BackendError, ForwardCtx, LayerId, MatmulBackend, Update, UpdateCtx, UpdateReport,
};
use super::from_net::{weights_from_slots, SlotRows};
use super::matrix::Matrix;
use crate::mapping::weights::{program, Programmed};
use crate::mapping::Lowering;
use crate::net::spec::{HardwareSpec, SenseSpec, WeightScale};
use crate::net::NetFile;
use crate::xbar::{Crossbar, Engine, SenseKind, SolveOptions};

/// Overrides of the declared hardware, for "what if" evaluations.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CircuitOverrides {
    /// Wire segment resistance (Ω) instead of the declared one.
    pub r_wire_ohm: Option<f64>,
    /// Nonlinear arrays: solve every vector exactly (the bulk solver of [`Engine::infer`])
    /// instead of using the small-signal effective matrix at 0 V.
    pub exact_nonlinear: bool,
    /// Siemens per weight unit instead of the mapping's `weight_scale` (in-situ training from
    /// scratch programs at the mapping's `insitu_weight_scale`; its read-back must decode at it).
    pub weight_scale: Option<WeightScale>,
}

/// Everything computed from one conductance state.
struct Solved {
    /// Per slot: the effective weight-unit matrix (small-signal for nonlinear arrays).
    w_eff: BTreeMap<LayerId, Matrix>,
    /// Per slot: the ADC's full scale per unit input ([`column_abs_sums`] of `w_eff`).
    col_abs: BTreeMap<LayerId, Vec<f64>>,
    programmed: Programmed,
    /// Engines of nonlinear arrays (one per array), for per-vector solves.
    engines: Vec<Option<Mutex<Engine>>>,
}

/// The compiled arrays of a `.net` file as a [`MatmulBackend`].
pub struct CircuitBackend {
    hw: HardwareSpec,
    scale: WeightScale,
    lowering: Lowering,
    network: String,
    slots: Vec<SlotRows>,
    weights: BTreeMap<LayerId, Matrix>,
    solved: Mutex<Option<Arc<Solved>>>,
    /// The linear (small-signal) engine of every array, kept across conductance states: a new
    /// state refactors numerically over the same network and symbolic analysis.
    lin_engines: Mutex<Vec<Option<Engine>>>,
    exact_nonlinear: bool,
    /// Every array linear end to end (decided once from the hardware).
    linear: bool,
    /// Conductances read from a programmed chip (per physical array, row-major), used instead of
    /// encoding the weights: see [`CircuitBackend::with_chip_conductances`].
    chip_g_siemens: Option<Vec<Vec<f64>>>,
}

fn other(e: impl std::fmt::Display) -> BackendError {
    BackendError::Other(e.to_string())
}

impl CircuitBackend {
    /// A backend for the arrays of `file`; `slots` maps the model's matmul slots onto the
    /// compiler's matrices (see [`super::from_net::slot_rows`]).
    pub fn new(
        file: &NetFile,
        lowering: Lowering,
        slots: Vec<SlotRows>,
        overrides: CircuitOverrides,
    ) -> Result<CircuitBackend, BackendError> {
        let mut hw = file.hardware.clone();
        if let Some(r) = overrides.r_wire_ohm {
            if !(r >= 0.0 && r.is_finite()) {
                return Err(other(format!(
                    "wire resistance (--rw) must be finite and ≥ 0 Ω, got {r}"
                )));
            }
            hw.r_wire_ohm = r;
        }
        let linear = crate::xbar::ops::is_linear(
            &crate::mapping::crossbar(&hw, 1, 1, &[1e-5]).map_err(other)?,
        );
        Ok(CircuitBackend {
            linear,
            hw,
            scale: overrides.weight_scale.unwrap_or(file.mapping.weight_scale),
            lowering,
            network: file.network.name.clone(),
            slots,
            weights: BTreeMap::new(),
            solved: Mutex::new(None),
            lin_engines: Mutex::new(Vec::new()),
            exact_nonlinear: overrides.exact_nonlinear,
            chip_g_siemens: None,
        })
    }

    /// Compute with the conductances of a programmed chip (`crate::device::chip::Chip::read`: one
    /// array per physical array of the lowering, drift and read noise already applied) instead of
    /// the ones encoded from the weights. The weights still give each matrix's encoder scale, so
    /// the effective weights are decoded exactly as for encoded conductances (the chip must have
    /// been programmed from the same weights for the decoded values to mean the same units).
    pub fn with_chip_conductances(mut self, g_siemens: Vec<Vec<f64>>) -> CircuitBackend {
        self.chip_g_siemens = Some(g_siemens);
        self
    }

    /// Replace the chip conductances (per physical array, row-major; see
    /// [`CircuitBackend::with_chip_conductances`]) and drop the solved state: the next product
    /// solves the arrays for the new conductances (in-situ training: one read per mini-batch).
    pub fn set_chip_conductances(&mut self, g_siemens: Vec<Vec<f64>>) -> Result<(), BackendError> {
        self.chip_g_siemens = Some(g_siemens);
        *self.solved.lock().map_err(other)? = None;
        Ok(())
    }

    /// The encoder of every compiled matrix for the prepared weights (its `scale_siemens` is the
    /// conductance per weight unit of each pair).
    pub fn encoders(&self) -> Result<Vec<crate::mapping::encode::Encoder>, BackendError> {
        Ok(self.solve_state()?.programmed.encoders.clone())
    }

    /// The backend of `model` on the arrays of a `.net` file: lowering and slot map included.
    pub fn for_model(
        file: &NetFile,
        ir: &crate::net::NetworkIr,
        model: &super::model::Model,
        overrides: CircuitOverrides,
    ) -> Result<CircuitBackend, BackendError> {
        let lowering = crate::mapping::lower(file, ir).map_err(other)?;
        let slots = super::from_net::slot_rows(model, ir).map_err(other)?;
        CircuitBackend::new(file, lowering, slots, overrides)
    }

    /// The structured arrays of the current conductance state, as the backend lowers them from
    /// the hardware ([`crate::mapping::crossbar`]; index = physical array). The backend solves
    /// these (or, for nonlinear arrays by default, their [`Crossbar::small_signal`] versions).
    pub fn arrays(&self) -> Result<Vec<Crossbar>, BackendError> {
        let st = self.solve_state()?;
        st.programmed
            .arrays
            .iter()
            .map(|a| crate::mapping::crossbar_of(&self.hw, a).map_err(other))
            .collect()
    }

    /// True when every array is linear (products are exact dense products of `W_eff`).
    pub fn is_linear(&self) -> bool {
        self.linear
    }

    fn solve_state(&self) -> Result<Arc<Solved>, BackendError> {
        let mut guard = self.solved.lock().map_err(other)?;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        if self.weights.len() != self.slots.len() {
            return Err(other(format!(
                "{} of {} slots prepared",
                self.weights.len(),
                self.slots.len()
            )));
        }
        let t0 = std::time::Instant::now();
        let ws: Vec<&Matrix> = self.weights.values().collect();
        let wf = weights_from_slots(&self.slots, &ws, &self.network).map_err(other)?;
        let mut programmed = program(&self.lowering, &self.hw, self.scale, &wf).map_err(other)?;
        if let Some(chip) = &self.chip_g_siemens {
            if chip.len() != programmed.arrays.len() {
                return Err(other(format!(
                    "the chip has {} arrays, the network is compiled onto {}",
                    chip.len(),
                    programmed.arrays.len()
                )));
            }
            for (a, g) in programmed.arrays.iter_mut().zip(chip) {
                if g.len() != a.g_siemens.len() {
                    return Err(other(format!(
                        "chip array {} has {} cells, the compiled array {}×{}",
                        a.index,
                        g.len(),
                        a.rows,
                        a.cols
                    )));
                }
                a.g_siemens.clone_from(g);
            }
        }
        let linear = self.is_linear();
        // Every logical output of every tile (replica 0) is a signed combination of columns of
        // its array's effective matrix T; one adjoint solve per combination gives its weights.
        let mut combos: Vec<Vec<Vec<(usize, f64)>>> = vec![Vec::new(); programmed.arrays.len()];
        let mut combo_of: BTreeMap<(usize, usize, usize), usize> = BTreeMap::new();
        for (mi, m) in self.lowering.matrices.iter().enumerate() {
            for (ti, t) in m.tiles.iter().enumerate().filter(|(_, t)| t.replica == 0) {
                for j in t.out_start..t.out_start + t.out_len {
                    combo_of.insert((mi, ti, j), combos[t.array].len());
                    combos[t.array].push(t.output_cols(m, j));
                }
            }
        }
        // Rows no decoded tile drives are held at 0 V in every product (an unused input), so
        // their weights are never read: the elimination grounds them instead of keeping them
        // as terminals (`Engine::combined_weights_of_rows`; S1's array drives 73 of 128 rows).
        let mut read: Vec<Vec<bool>> = programmed
            .arrays
            .iter()
            .map(|a| vec![false; a.rows])
            .collect();
        for m in &self.lowering.matrices {
            for t in m.tiles.iter().filter(|t| t.replica == 0) {
                for i in t.in_start..t.in_start + t.in_len {
                    for (r, _) in t.input_rows(m, i) {
                        if let Some(x) = read.get_mut(t.array).and_then(|v| v.get_mut(r)) {
                            *x = true;
                        }
                    }
                }
            }
        }
        // The exact (linear) or small-signal (nonlinear) combinations of every array.
        let mut ms: Vec<Mat<f64>> = Vec::with_capacity(programmed.arrays.len());
        let mut engines = Vec::with_capacity(programmed.arrays.len());
        let mut lin_engines = self.lin_engines.lock().map_err(other)?;
        lin_engines.resize_with(programmed.arrays.len(), || None);
        for (((a, combo), cached), read) in programmed
            .arrays
            .iter()
            .zip(&combos)
            .zip(lin_engines.iter_mut())
            .zip(&read)
        {
            let xb = crate::mapping::crossbar_of(&self.hw, a).map_err(other)?;
            // every row is driven and every column held by its sense amplifier: no node floats,
            // so no gmin is added (the answers are those of the bare circuit)
            let opts = SolveOptions::default();
            // the small-signal array at 0 V read through ideal virtual grounds (the decoded
            // weights are currents per volt)
            let lin_xb = Crossbar {
                sense: SenseKind::VirtualGround,
                ..xb.small_signal()
            };
            let t1 = std::time::Instant::now();
            let e = match cached {
                Some(e) if e.crossbar().rows == a.rows && e.crossbar().cols == a.cols => {
                    e.set_conductances(&lin_xb.g_siemens).map_err(other)?;
                    e
                }
                slot => slot.insert(Engine::new(&lin_xb, opts).map_err(other)?),
            };
            let t2 = std::time::Instant::now();
            ms.push(e.combined_weights_of_rows(combo, read).map_err(other)?);
            if std::env::var_os("NETC_TRACE").is_some() {
                eprintln!(
                    "circuit: program {:.1} ms, factor {:.1} ms, {} solves {:.1} ms",
                    (t1 - t0).as_secs_f64() * 1e3,
                    (t2 - t1).as_secs_f64() * 1e3,
                    combo.len(),
                    t2.elapsed().as_secs_f64() * 1e3
                );
            }
            engines.push(if linear || !self.exact_nonlinear {
                None
            } else {
                Some(Mutex::new(Engine::new(&xb, opts).map_err(other)?))
            });
        }
        // Decode into logical per-matrix effective weights (weight units).
        let mut by_layer: BTreeMap<&str, Matrix> = BTreeMap::new();
        for (mi, m) in self.lowering.matrices.iter().enumerate() {
            // every pair holds the whole weight: the pairs' currents add
            let scale_siemens = programmed.encoders[mi].scale_siemens * m.pairs as f64;
            let mut c = Matrix::zeros(m.logical_rows(), m.cols);
            for (ti, t) in m.tiles.iter().enumerate().filter(|(_, t)| t.replica == 0) {
                let mm = &ms[t.array];
                for i in t.in_start..t.in_start + t.in_len {
                    let rows = t.input_rows(m, i);
                    for j in t.out_start..t.out_start + t.out_len {
                        let k = combo_of[&(mi, ti, j)];
                        let acc: f64 = rows.iter().map(|&(r, sr)| sr * mm[(r, k)]).sum();
                        c.set(i, j, c.get(i, j) + acc / scale_siemens);
                    }
                }
            }
            by_layer.insert(m.layer.as_str(), c);
        }
        let mut w_eff = BTreeMap::new();
        for ((&id, w), s) in self.weights.iter().zip(&self.slots) {
            let m = self
                .lowering
                .matrix(&s.layer)
                .ok_or_else(|| other(format!("layer {} is not mapped", s.layer)))?;
            let c = &by_layer[s.layer.as_str()];
            let mut e = Matrix::zeros(w.rows, w.cols);
            for (r, &lr) in s.rows.iter().enumerate() {
                e.row_mut(r).copy_from_slice(c.row(lr));
            }
            if s.bias {
                let last = w.rows - 1;
                for j in 0..w.cols {
                    let b: f64 = (m.weight_rows..m.logical_rows()).map(|i| c.get(i, j)).sum();
                    e.set(last, j, b);
                }
            }
            w_eff.insert(id, e);
        }
        let col_abs = w_eff
            .iter()
            .map(|(&id, w)| (id, column_abs_sums(w)))
            .collect();
        let solved = Arc::new(Solved {
            w_eff,
            col_abs,
            programmed,
            engines,
        });
        *guard = Some(solved.clone());
        Ok(solved)
    }

    /// Nonlinear forward: drive every tile of the slot's matrix with the scaled inputs of the
    /// whole batch, solve them exactly in bulk ([`Engine::infer`]) and decode the column currents.
    fn forward_nonlinear(
        &self,
        st: &Solved,
        id: LayerId,
        x: &Matrix,
    ) -> Result<Matrix, BackendError> {
        let s = &self.slots[id];
        let (mi, m) = self
            .lowering
            .matrices
            .iter()
            .enumerate()
            .find(|(_, m)| m.layer == s.layer)
            .ok_or_else(|| other(format!("layer {} is not mapped", s.layer)))?;
        let scale_siemens = st.programmed.encoders[mi].scale_siemens * m.pairs as f64;
        // inputs (weight units) → volts, per vector: its largest magnitude maps to the edge of the
        // hardware's input range (a per-vector input scale, undone after the read)
        let v_max = self.hw.v_in_v[0]
            .abs()
            .max(self.hw.v_in_v[1].abs())
            .max(1e-12);
        let n = x.rows;
        let v_per_unit: Vec<f64> = (0..n)
            .map(|v| {
                v_max
                    / x.row(v)
                        .iter()
                        .fold(0.0f64, |a, e| a.max(e.abs()))
                        .max(1e-300)
            })
            .collect();
        let mut y = Matrix::zeros(n, m.cols);
        let nb = s.rows.len();
        for t in m.tiles.iter().filter(|t| t.replica == 0) {
            let rows_total = self.lowering.rows;
            let mut drive = Mat::<f64>::zeros(n, rows_total);
            for (r_slot, &lr) in s.rows.iter().enumerate() {
                if lr < t.in_start || lr >= t.in_start + t.in_len {
                    continue;
                }
                for (pr, sg) in t.input_rows(m, lr) {
                    for v in 0..n {
                        drive[(v, pr)] = sg * x.get(v, r_slot) * v_per_unit[v];
                    }
                }
            }
            if s.bias {
                for lr in m.weight_rows..m.logical_rows() {
                    if lr < t.in_start || lr >= t.in_start + t.in_len {
                        continue;
                    }
                    for (pr, sg) in t.input_rows(m, lr) {
                        for v in 0..n {
                            drive[(v, pr)] = sg * x.get(v, nb) * v_per_unit[v];
                        }
                    }
                }
            }
            let eng = st.engines[t.array]
                .as_ref()
                .ok_or_else(|| other("no nonlinear engine"))?;
            let out = eng
                .lock()
                .map_err(other)?
                .infer(drive.as_ref())
                .map_err(other)?;
            // amplifier outputs are volts: an inverting TIA gives −R_f·I while it is linear (and
            // saturates beyond); read them back as the current that would give that voltage
            let to_amps = match self.hw.sense {
                SenseSpec::Ideal => 1.0,
                SenseSpec::Opamp { r_feedback_ohm, .. } => -1.0 / r_feedback_ohm,
            };
            for j in t.out_start..t.out_start + t.out_len {
                let cols = t.output_cols(m, j);
                for v in 0..n {
                    let i_a: f64 = cols.iter().map(|&(c, sg)| sg * out[(v, c)] * to_amps).sum();
                    y.set(v, j, y.get(v, j) + i_a / (scale_siemens * v_per_unit[v]));
                }
            }
        }
        Ok(y)
    }
}

/// A bipolar ADC of `bits` bits on every output: the full scale of output j for input vector v is
/// the largest output the column could give for inputs of that vector's magnitude,
/// `max_i |x_vi| · Σ_i |W_eff[i, j]|` (the per-vector input scale undone), and the output is
/// rounded to the nearest of the 2^(bits−1) − 1 steps on each side.
pub fn adc(y: &mut Matrix, x: &Matrix, w: &Matrix, bits: u32) {
    adc_with_sums(y, x, &column_abs_sums(w), bits);
}

/// `Σ_i |W[i, j]|` for every column j: the ADC's full scale per unit input (see [`adc`]).
pub fn column_abs_sums(w: &Matrix) -> Vec<f64> {
    (0..w.cols)
        .map(|j| (0..w.rows).map(|i| w.get(i, j).abs()).sum())
        .collect()
}

/// Outputs per parallel task of the ADC (smaller outputs are quantised on the calling thread).
const ADC_TASK_VALUES: usize = 1 << 14;

/// [`adc`] with the column sums of `W_eff` already made ([`column_abs_sums`]; the circuit backend
/// keeps them per conductance state). Row blocks are quantised in parallel; every output is
/// computed by the same operations as a plain loop, so the result does not depend on threads.
pub fn adc_with_sums(y: &mut Matrix, x: &Matrix, col_abs: &[f64], bits: u32) {
    let steps = (2f64.powi(bits.clamp(2, 52) as i32 - 1) - 1.0).max(1.0);
    if y.cols == 0 || x.cols == 0 || col_abs.len() != y.cols || x.rows != y.rows {
        // nothing to quantise (no outputs, or all-zero full scales), or shapes the caller
        // checked already: left as they are
        return;
    }
    let quantise_rows = |ys: &mut [f64], xs: &[f64]| quantise_rows(ys, xs, x.cols, col_abs, steps);
    let rows_per_task = (ADC_TASK_VALUES / y.cols).max(1);
    if y.rows <= rows_per_task {
        quantise_rows(&mut y.data, &x.data);
    } else {
        use rayon::prelude::*;
        y.data
            .par_chunks_mut(rows_per_task * y.cols)
            .zip(x.data.par_chunks(rows_per_task * x.cols))
            .for_each(|(ys, xs)| quantise_rows(ys, xs));
    }
}

/// Quantise output rows `ys` (`col_abs.len()` values each) against their input rows `xs`
/// (`x_cols` values each), with AVX2 when the CPU has it. Both copies do the same IEEE
/// operations on every output (no reciprocal, no fused multiply-add), so the results are the
/// same bit for bit; the wide copy only lets the outputs of a row run in vector lanes.
fn quantise_rows(ys: &mut [f64], xs: &[f64], x_cols: usize, col_abs: &[f64], steps: f64) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports the feature the function is compiled for.
        unsafe { quantise_rows_avx2(ys, xs, x_cols, col_abs, steps) };
        return;
    }
    quantise_rows_body(ys, xs, x_cols, col_abs, steps);
}

/// # Safety
/// Only call on a CPU with AVX2 (checked by `quantise_rows` before the call).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantise_rows_avx2(
    ys: &mut [f64],
    xs: &[f64],
    x_cols: usize,
    col_abs: &[f64],
    steps: f64,
) {
    quantise_rows_body(ys, xs, x_cols, col_abs, steps);
}

/// The ADC of [`adc_with_sums`] on whole rows: output j of a row becomes
/// `round_half_away(v / fs · steps) · fs / steps` with `fs = max_i |x_i| · col_abs[j]`, and is
/// left as it is when `fs` is not positive.
#[inline(always)]
fn quantise_rows_body(ys: &mut [f64], xs: &[f64], x_cols: usize, col_abs: &[f64], steps: f64) {
    if col_abs.is_empty() || x_cols == 0 {
        return;
    }
    for (yr, xr) in ys
        .chunks_exact_mut(col_abs.len())
        .zip(xs.chunks_exact(x_cols))
    {
        let x_max = max_abs(xr);
        for (v, &ca) in yr.iter_mut().zip(col_abs) {
            let fs = x_max * ca;
            let t = *v / fs * steps;
            let out = round_half_away(t, steps) * fs / steps;
            *v = if fs > 0.0 { out } else { *v };
        }
    }
}

/// `t.round().clamp(-steps, steps)` for an integral `steps` below 2^52, without a branch, so
/// that it vectorises: clamping first gives the same value (the bounds are integers and rounding
/// is monotonic); clamp by comparisons (a NaN is put back last), `trunc` of the magnitude and the
/// fraction `|c| − trunc|c|` are exact, so halves round away from zero exactly as `f64::round`;
/// the sign (also of a zero) is put back last. (`trunc` is one instruction with SSE4.1/AVX and
/// on other architectures; the baseline x86-64 copy calls libm for it.)
#[inline(always)]
fn round_half_away(t: f64, steps: f64) -> f64 {
    let lo = if t > -steps { t } else { -steps };
    let c = if lo < steps { lo } else { steps };
    let a = c.abs();
    let r = a.trunc();
    let up = if a - r >= 0.5 { 1.0 } else { 0.0 };
    let q = (r + up).copysign(c);
    if t.is_nan() {
        t
    } else {
        q
    }
}

/// `xs.iter().fold(0.0, |a, e| a.max(e.abs()))` in eight independent lanes (two vectors of
/// four; a tail of four or more into the first, the last few one after another): the largest of
/// magnitudes does not depend on the order they are compared in (NaNs are skipped either way,
/// and every magnitude is ≥ +0), so the value is the same, without one long dependency chain.
#[inline(always)]
fn max_abs(xs: &[f64]) -> f64 {
    let pick = |l: f64, a: f64| if a > l { a } else { l };
    let (mut lo, mut hi) = ([0.0f64; 4], [0.0f64; 4]);
    let mut octs = xs.chunks_exact(8);
    for o in &mut octs {
        for k in 0..4 {
            lo[k] = pick(lo[k], o[k].abs());
            hi[k] = pick(hi[k], o[4 + k].abs());
        }
    }
    let mut quads = octs.remainder().chunks_exact(4);
    for q in &mut quads {
        for k in 0..4 {
            lo[k] = pick(lo[k], q[k].abs());
        }
    }
    let mut m = quads
        .remainder()
        .iter()
        .fold(0.0f64, |m, e| pick(m, e.abs()));
    for k in 0..4 {
        m = pick(pick(m, lo[k]), hi[k]);
    }
    m
}

impl MatmulBackend for CircuitBackend {
    fn name(&self) -> String {
        if self.chip_g_siemens.is_some() {
            "chip".into()
        } else if self.is_linear() {
            "circuit".into()
        } else if self.exact_nonlinear {
            "circuit-exact".into()
        } else {
            "circuit-small-signal".into()
        }
    }

    fn prepare(&mut self, id: LayerId, w: &Matrix) -> Result<(), BackendError> {
        if id >= self.slots.len() {
            return Err(other(format!("slot {id} does not exist")));
        }
        self.weights.insert(id, w.clone());
        *self.solved.lock().map_err(other)? = None;
        Ok(())
    }

    fn forward(
        &mut self,
        id: LayerId,
        x: &Matrix,
        _ctx: &mut ForwardCtx,
    ) -> Result<Matrix, BackendError> {
        let st = self.solve_state()?;
        let w = st.w_eff.get(&id).ok_or(BackendError::NotPrepared(id))?;
        super::backend::check_inputs(id, x, w)?;
        let mut y = if self.is_linear() || !self.exact_nonlinear {
            x.matmul(w)
        } else {
            self.forward_nonlinear(&st, id, x)?
        };
        if let Some(bits) = self.hw.adc_bits {
            let col_abs = st.col_abs.get(&id).ok_or(BackendError::NotPrepared(id))?;
            adc_with_sums(&mut y, x, col_abs, bits);
        }
        Ok(y)
    }

    /// Every slot is set first; the arrays are solved once for the new conductance state, at the
    /// next product or read-back. Steps apply to the weights as prepared (software weights).
    fn update(
        &mut self,
        updates: Vec<(LayerId, Update)>,
        _ctx: &mut UpdateCtx,
    ) -> Result<UpdateReport, BackendError> {
        for (id, u) in updates {
            let w0 = self.weights.get(&id).ok_or(BackendError::NotPrepared(id))?;
            let w = u.apply_to(id, w0)?;
            self.prepare(id, &w)?;
        }
        Ok(UpdateReport::default())
    }

    /// The prepared (software) weights; chip conductances are the chip backend's state.
    fn save_state(&self, dir: &std::path::Path) -> Result<(), BackendError> {
        save_weights(dir, &self.weights)
    }

    fn effective_weights(&self, id: LayerId) -> Result<Matrix, BackendError> {
        let st = self.solve_state()?;
        st.w_eff
            .get(&id)
            .cloned()
            .ok_or(BackendError::NotPrepared(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The eight-lane largest magnitude equals the plain fold, NaNs and signed zeros included.
    #[test]
    fn max_abs_is_the_plain_fold() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        for len in 0..80 {
            for _ in 0..50 {
                let xs: Vec<f64> = (0..len)
                    .map(|_| match rng.gen_range(0..10) {
                        0 => f64::NAN,
                        1 => -0.0,
                        2 => f64::NEG_INFINITY,
                        _ => rng.gen_range(-1.0..1.0),
                    })
                    .collect();
                let want = xs.iter().fold(0.0f64, |a, e| a.max(e.abs()));
                assert_eq!(max_abs(&xs).to_bits(), want.to_bits(), "{xs:?}");
            }
        }
    }

    /// The branch-free rounding equals `f64::round` then `clamp`, bit for bit: halves, values
    /// just below a half, signed zeros, the clamp edges, infinities and NaN.
    #[test]
    fn round_half_away_is_round_then_clamp() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for bits in [2u32, 8, 16, 52] {
            let steps = (2f64.powi(bits as i32 - 1) - 1.0).max(1.0);
            let mut cases = vec![
                0.0,
                -0.0,
                0.5,
                -0.5,
                1.5,
                -2.5,
                0.49999999999999994,
                -0.49999999999999994,
                steps,
                -steps,
                steps + 0.5,
                -steps - 0.5,
                steps - 0.5,
                1e300,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
                f64::MIN_POSITIVE,
                -f64::MIN_POSITIVE,
            ];
            for _ in 0..100_000 {
                let k: f64 = rng.gen_range(-1.2 * steps..1.2 * steps);
                cases.push(k);
                cases.push(k.trunc() + 0.5);
                cases.push(k.trunc() - 0.5);
            }
            for t in cases {
                let want = t.round().clamp(-steps, steps);
                let got = round_half_away(t, steps);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{t:e} with {steps} steps: {got:e} vs {want:e}"
                );
            }
        }
    }

    /// The ADC (the copy the CPU picks, and the baseline one) equals its definition written as a
    /// plain loop with `f64::round` and `clamp`, bit for bit: outputs and inputs with zeros,
    /// NaNs, infinities, huge and tiny values, zero full scales, row
    /// widths around the vector width, and blocks large enough for the parallel split.
    #[test]
    fn adc_is_its_definition() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let draw = |rng: &mut rand_chacha::ChaCha8Rng| match rng.gen_range(0..40) {
            0 => f64::NAN,
            1 => 0.0,
            2 => -0.0,
            3 => f64::INFINITY,
            4 => 1e300,
            5 => 1e-300,
            _ => rng.gen_range(-1.0..1.0),
        };
        for &(rows, x_cols, y_cols) in
            &[(1, 1, 1), (3, 9, 15), (5, 60, 4), (7, 3, 9), (2000, 9, 15)]
        {
            for bits in [2u32, 8, 16] {
                let mut x = Matrix::zeros(rows, x_cols);
                x.data.iter_mut().for_each(|v| *v = draw(&mut rng));
                let mut y = Matrix::zeros(rows, y_cols);
                y.data.iter_mut().for_each(|v| *v = draw(&mut rng) * 3.0);
                let col_abs: Vec<f64> = (0..y_cols)
                    .map(|j| {
                        if j % 7 == 3 {
                            0.0
                        } else {
                            draw(&mut rng).abs() + 0.1 * (j % 2) as f64
                        }
                    })
                    .collect();
                let steps = (2f64.powi(bits as i32 - 1) - 1.0).max(1.0);
                let mut want = y.clone();
                for i in 0..rows {
                    let x_max = x.row(i).iter().fold(0.0f64, |a, e| a.max(e.abs()));
                    for (j, &ca) in col_abs.iter().enumerate() {
                        let fs = x_max * ca;
                        if fs > 0.0 {
                            let q = (want.get(i, j) / fs * steps).round().clamp(-steps, steps);
                            want.set(i, j, q * fs / steps);
                        }
                    }
                }
                let same = |a: &Matrix| {
                    a.data
                        .iter()
                        .zip(&want.data)
                        .all(|(g, w)| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()))
                };
                let mut got = y.clone();
                adc_with_sums(&mut got, &x, &col_abs, bits);
                assert!(same(&got), "{rows}×{y_cols}, {bits} bits");
                let mut scalar = y.clone();
                quantise_rows_body(&mut scalar.data, &x.data, x_cols, &col_abs, steps);
                assert!(same(&scalar), "scalar copy, {rows}×{y_cols}, {bits} bits");
            }
        }
    }
}
