//! In-situ, ex-situ and hybrid training on a programmed chip (`training { mode … }`).
//!
//! * `exsitu`: train in software (ideal backend; or hardware-aware: the weights held by stuck
//!   devices frozen at what those devices give), report the software and quantised accuracy,
//!   program the chip with the declared algorithm (`crate::device::program`), evaluate the chip.
//! * `insitu`: program the initial weights; for every mini-batch read the chip (drift, read
//!   noise), forward through its solved arrays (the circuit backend on the chip's conductances),
//!   backprop in software with the read-back weights and the activations the chip produced, take
//!   the optimiser's step and turn it into device writes by the paper's rule ([`rules`]). The
//!   model's weights are always what the chip holds.
//! * `hybrid`: ex-situ, quantise, transfer, then in situ on the `trainable` layers only.
//!
//! The weight scale (siemens per weight unit) of every matrix is frozen at the first programming:
//! the chip backend is always prepared with the weights of that programming, so an update is a
//! conductance change and updates beyond the window clip at the device bounds.
//! `docs/insitu.md` describes the rules and what is a guess.

pub mod chip_backend;
pub mod rules;

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::device::chip::{network_hash, ArrayState, Chip, Manifest, CHIP_FORMAT};
use crate::device::program::{self as devprog, Algorithm};
use crate::device::{DeviceError, DeviceSpec, Fault};
use crate::mapping::weights::Programmed;
use crate::mapping::Lowering;
use crate::nn::backend::{ForwardCtx, IdealBackend, MatmulBackend, Pass, Update, UpdateCtx};
use crate::nn::circuit::{CircuitBackend, CircuitOverrides};
use crate::nn::from_net::{slot_rows, weights_from_slots, SlotRows};
use crate::nn::loss;
use crate::nn::matrix::Matrix;
use crate::nn::model::{Model, WeightsFile};
use crate::nn::optim::{Optimizer as NnOptimizer, OptimizerSpec};
use crate::nn::presets::{Preset, TrainConfig};
use crate::nn::train::{batch_matrix, evaluate, read_json, write_json, EpochMetrics, RngState};
use crate::nn::NnError;

pub use crate::net::spec::TrainMode;
pub use chip_backend::ChipBackend;
pub use rules::{Rule, UpdateStats};

/// Experiment knobs on top of the `.net` file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub mode: Option<TrainMode>,
    pub epochs: Option<usize>,
    /// Stop after this many mini-batch device updates.
    pub max_updates: Option<usize>,
    /// First N training samples.
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    pub seed: Option<u64>,
    /// Some(0.0) = noise-free programming.
    pub program_noise_siemens: Option<f64>,
    /// Fraction of devices stuck (at the declared stuck-OFF value, or g_min).
    pub stuck_off_fraction: Option<f64>,
    pub miswrite_fraction: Option<f64>,
    /// Write-verify relative tolerance (S4: 0.05, 0.30).
    pub write_tolerance_rel: Option<f64>,
    /// e.g. Manhattan for S4 in situ.
    pub optimizer: Option<crate::net::spec::Optimizer>,
    /// Ex-situ training that knows the stuck devices (S4 "aware").
    pub hardware_aware: bool,
    /// Hybrid: layers trained in situ.
    pub trainable: Option<Vec<String>>,
    /// Epochs of the in-situ phase of a hybrid run (default: `epochs`).
    pub insitu_epochs: Option<usize>,
    /// The in-situ phase trains on the first N training samples only (S5's mis-write recovery:
    /// 10 % of the data); the ex-situ phase and the reported train accuracy use the whole split.
    pub insitu_limit_train: Option<usize>,
    /// Mini-batch size (default: the file's).
    pub batch: Option<usize>,
    /// Lines without resistance (segments, drivers and sense inputs at 0 Ω) for every solve of
    /// the run: the conditions of a paper's simulation that ignores the wires (S4's claim that
    /// 30 % write-verify is "adequate import precision").
    pub ideal_lines: bool,
}

/// How a run is driven.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub out_dir: Option<PathBuf>,
    pub resume: bool,
    pub progress: bool,
    /// Simulate a kill after this many in-situ updates (a checkpoint is written first).
    pub stop_after_updates: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Acc {
    pub train: f64,
    pub test: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPoint {
    pub update: usize,
    pub loss: f64,
    pub batch_acc: f64,
    /// Cells this update wrote.
    #[serde(default)]
    pub cells_written: u64,
    /// Weights this update skipped (threshold rule).
    #[serde(default)]
    pub skipped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub network: String,
    pub mode: TrainMode,
    /// The float model (ex-situ, hybrid's ex-situ phase).
    pub software: Option<Acc>,
    /// Float model with weights quantised to the device levels.
    pub quantised: Option<Acc>,
    /// The chip right after programming the (software) weights.
    pub transferred: Option<Acc>,
    /// The chip at the end of the run.
    pub chip_final: Acc,
    /// In-batch loss/accuracy of every in-situ update (S1 Fig. 2b,c).
    pub batches: Vec<BatchPoint>,
    pub epochs: Vec<EpochMetrics>,
    /// Used cells, before/after in-situ training.
    pub g_before_siemens: Vec<f64>,
    pub g_after_siemens: Vec<f64>,
    pub updates: usize,
    pub cells_written: u64,
    pub pulses: u64,
    /// Weight updates skipped by the threshold rule (S5: |ΔG| < 1.5 µS).
    pub weights_skipped: u64,
    pub seconds: f64,
    /// True when a simulated kill (`stop_after_updates`) ended the run early.
    pub interrupted: bool,
    /// Where the in-situ loop's time went (this process's part of the run).
    pub timing: LoopTiming,
    #[serde(skip)]
    pub chip: Chip,
    #[serde(skip)]
    pub model: Model,
    /// The weights of the first programming: their encoder scales (siemens per weight unit,
    /// frozen) decode the chip's conductances into weights.
    #[serde(skip)]
    pub scale_weights: Vec<Matrix>,
    /// The software weights (ex-situ and hybrid: the float model before transfer; in situ: the
    /// initial weights programmed first).
    #[serde(skip)]
    pub software_weights: Vec<Matrix>,
}

/// Seconds spent in each phase of the in-situ loop.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LoopTiming {
    /// Reading the chip and solving its arrays for the new conductances (effective weights).
    pub read_solve_seconds: f64,
    /// Forward through the solved arrays, loss, backprop and the optimiser step.
    pub forward_backward_seconds: f64,
    /// Turning the step into device writes (the write rule, compliance/verify solves).
    pub write_seconds: f64,
    /// Test-set evaluations at the ends of epochs.
    pub eval_seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum InsituError {
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error(transparent)]
    Mapping(#[from] crate::mapping::MappingError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Nn(#[from] NnError),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

fn nn_backend(e: crate::nn::BackendError) -> InsituError {
    InsituError::Nn(NnError::Backend(e))
}

/// Everything a run derives from the `.net` file and the overrides.
pub struct Setup {
    pub path: PathBuf,
    pub text: String,
    pub file: crate::net::NetFile,
    pub ir: crate::net::NetworkIr,
    pub preset: Preset,
    pub split: crate::data::Split,
    pub cfg: TrainConfig,
    pub mode: TrainMode,
    pub spec: DeviceSpec,
    pub lowering: Lowering,
    pub algorithm: Algorithm,
    /// The optimiser of in-situ updates as declared (or overridden).
    pub net_optimizer: crate::net::spec::Optimizer,
    /// Layers trained in situ (empty = all).
    pub trainable: Vec<String>,
    pub insitu_epochs: usize,
    /// The software phase (exsitu, hybrid): its optimiser and epochs.
    pub software_optimizer: OptimizerSpec,
    pub software_epochs: usize,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> InsituError {
    InsituError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn nn_optimizer(o: &crate::net::spec::Optimizer) -> OptimizerSpec {
    use crate::net::spec::Optimizer as O;
    match *o {
        O::Sgd { lr, momentum } => OptimizerSpec::Sgd { lr, momentum },
        O::Rmsprop { lr, decay, eps, .. } => OptimizerSpec::RmsProp { lr, decay, eps },
        O::Manhattan { step_siemens } => OptimizerSpec::Manhattan { step: step_siemens },
        O::Threshold {
            lr,
            threshold_siemens,
        } => OptimizerSpec::Threshold {
            lr,
            threshold: threshold_siemens,
        },
    }
}

/// Load the `.net` file, its data and device, with the overrides applied.
pub fn setup(net_path: &Path, ov: &Overrides) -> Result<Setup, InsituError> {
    let text = std::fs::read_to_string(net_path).map_err(|e| io_err(net_path, e))?;
    let (mut file, ir) = crate::net::load(net_path)?;
    if ov.ideal_lines {
        file.hardware.r_wire_ohm = 0.0;
        file.hardware.r_driver_ohm = 0.0;
        file.hardware.r_sense_ohm = 0.0;
    }
    let t = file
        .training
        .clone()
        .ok_or_else(|| InsituError::Usage(format!("{}: no training block", net_path.display())))?;
    let (preset, ir) = crate::nn::from_net::recipe_from(&file, ir, net_path)?;
    let args = crate::cli::train::NetArgs {
        net: Some(net_path.to_path_buf()),
        preset: None,
        data_dir: None,
        limit_train: ov.limit_train,
        limit_test: ov.limit_test,
        g_min: 2.5e-6,
        g_max: 20e-6,
        levels: None,
        r_wire_ohm: None,
        exact_nonlinear: false,
    };
    let split = args.split(&preset)?;
    let mut cfg = preset.train.clone();
    if let Some(e) = ov.epochs {
        if e == 0 {
            return Err(InsituError::Usage("epochs must be at least 1".into()));
        }
        cfg.epochs = e;
    }
    if let Some(s) = ov.seed {
        cfg.seed = s;
    }
    if let Some(b) = ov.batch {
        if b == 0 {
            return Err(InsituError::Usage("batch must be at least 1".into()));
        }
        cfg.batch_size = b;
    }
    let net_optimizer = ov.optimizer.clone().unwrap_or(t.optimizer.clone());
    cfg.optimizer = nn_optimizer(&net_optimizer);
    let hw = &file.hardware;
    let mut spec = devprog::device_of(hw);
    // the training block's `noise` is the programming noise of in-situ updates (S1, S2); the
    // device block's `program_noise` otherwise
    if t.noise_siemens > 0.0 {
        spec.program_noise_siemens = t.noise_siemens;
    }
    if t.write_tolerance > 0.0 {
        spec.verify.tolerance_rel = Some(t.write_tolerance);
        spec.verify.tolerance_a = None;
    }
    if let Some(n) = ov.program_noise_siemens {
        spec.program_noise_siemens = n;
    }
    if let Some(f) = ov.stuck_off_fraction {
        spec.stuck_off_fraction = f;
    }
    if let Some(f) = ov.miswrite_fraction {
        spec.miswrite_fraction = f;
    }
    if let Some(tol) = ov.write_tolerance_rel {
        spec.verify.tolerance_rel = Some(tol);
        spec.verify.tolerance_a = None;
    }
    spec.validate()?;
    let lowering = crate::mapping::lower(&file, &ir)?;
    let algorithm = devprog::choose_algorithm(hw, None)?;
    let mode = ov.mode.unwrap_or(t.mode);
    let trainable = ov.trainable.clone().unwrap_or(t.trainable.clone());
    for name in &trainable {
        if !ir
            .layers
            .iter()
            .any(|l| &l.name == name && l.matrix.is_some())
        {
            return Err(InsituError::Usage(format!(
                "trainable layer `{name}` is not a weighted layer of `{}`",
                ir.name
            )));
        }
    }
    let insitu_epochs = ov.insitu_epochs.unwrap_or(cfg.epochs).max(1);
    // The software phase: the file's `exsitu_optimizer` / `exsitu_epochs` when given (an
    // optimiser override replaces both optimisers); a threshold in siemens means nothing to float
    // weights, so a threshold optimiser trains in software as plain SGD at its rate.
    let software_optimizer = match (&ov.optimizer, &t.exsitu_optimizer) {
        (None, Some(o)) => nn_optimizer(o),
        _ => match cfg.optimizer {
            OptimizerSpec::Threshold { lr, .. } => OptimizerSpec::Sgd { lr, momentum: 0.0 },
            ref o => o.clone(),
        },
    };
    let software_epochs = ov.epochs.or(t.exsitu_epochs).unwrap_or(cfg.epochs);
    Ok(Setup {
        path: net_path.to_path_buf(),
        text,
        file,
        ir,
        preset,
        split,
        cfg,
        mode,
        spec,
        lowering,
        algorithm,
        net_optimizer,
        trainable,
        insitu_epochs,
        software_optimizer,
        software_epochs,
    })
}

impl Setup {
    /// The chip backend of `model` prepared with `scale_weights` (their encoder scales are the
    /// frozen siemens-per-unit of every matrix).
    pub fn chip_backend(
        &self,
        model: &Model,
        scale_weights: &[Matrix],
    ) -> Result<CircuitBackend, InsituError> {
        let ov = CircuitOverrides {
            weight_scale: Some(self.weight_scale()),
            ..CircuitOverrides::default()
        };
        let mut b =
            CircuitBackend::for_model(&self.file, &self.ir, model, ov).map_err(nn_backend)?;
        for (id, w) in scale_weights.iter().enumerate() {
            b.prepare(id, w).map_err(nn_backend)?;
        }
        Ok(b)
    }

    /// The compiler's conductances of `weights` (targets of a programming), at the mapping's
    /// weight scale (in-situ training from scratch: its `insitu_weight_scale` when declared).
    pub fn programmed(&self, model: &Model, weights: &[Matrix]) -> Result<Programmed, InsituError> {
        let slots = slot_rows(model, &self.ir)?;
        let ws: Vec<&Matrix> = weights.iter().collect();
        let wf = weights_from_slots(&slots, &ws, &self.ir.name)?;
        Ok(crate::mapping::weights::program(
            &self.lowering,
            &self.file.hardware,
            self.weight_scale(),
            &wf,
        )?)
    }

    /// The mapping's siemens per weight unit for this run: in-situ training from scratch uses
    /// `insitu_weight_scale` when declared (programming and read-back alike).
    pub fn weight_scale(&self) -> crate::net::spec::WeightScale {
        let m = &self.file.mapping;
        match (self.mode, m.insitu_weight_scale_siemens) {
            (TrainMode::Insitu, Some(s)) => crate::net::spec::WeightScale::SiemensPerUnit(s),
            _ => m.weight_scale,
        }
    }

    fn empty_chip(&self, seed: u64, arrays: Vec<ArrayState>) -> Result<Chip, InsituError> {
        Ok(Chip {
            manifest: Manifest {
                format: CHIP_FORMAT,
                netc_version: env!("CARGO_PKG_VERSION").into(),
                network: self.ir.name.clone(),
                network_sha256: network_hash(&self.text),
                hardware: serde_json::to_value(&self.file.hardware)
                    .map_err(|e| InsituError::Usage(e.to_string()))?,
                device: self.spec.clone(),
                seed,
                now_seconds: 0.0,
                arrays: arrays.iter().map(|s| [s.rows, s.cols]).collect(),
                scale_weights: None,
            },
            arrays,
        })
    }
}

/// Where every weight of every slot sits on the chip: per slot, per element (row-major), the
/// cells `(array, cell, sign, share)` — sign +1 for g⁺, −1 for g⁻; share = the fraction of the
/// weight the cell's pair carries (1, or 1/bias_rows for a bias split over several rows). Every
/// pair and every replica holds the whole weight.
#[derive(Debug, Clone)]
pub struct CellMap {
    pub slots: Vec<Vec<Vec<CellRef>>>,
    /// Matrix index (in the lowering) of every slot.
    pub matrix_of_slot: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellRef {
    pub array: usize,
    pub cell: usize,
    pub sign: f64,
    pub share: f64,
}

impl CellMap {
    pub fn new(
        lowering: &Lowering,
        slots: &[SlotRows],
        model: &Model,
    ) -> Result<Self, InsituError> {
        let mut out = Vec::with_capacity(slots.len());
        let mut matrix_of_slot = Vec::with_capacity(slots.len());
        for (id, s) in slots.iter().enumerate() {
            let mi = lowering
                .matrices
                .iter()
                .position(|m| m.layer == s.layer)
                .ok_or_else(|| InsituError::Usage(format!("layer {} is not mapped", s.layer)))?;
            let m = &lowering.matrices[mi];
            let shape = &model.slots[id];
            let mut cells = vec![Vec::new(); shape.rows * shape.cols];
            let add = |r: usize, lr: usize, share: f64, cells: &mut Vec<Vec<CellRef>>| {
                for j in 0..shape.cols {
                    for t in m.tiles.iter().filter(|t| t.contains(lr, j)) {
                        for k in 0..m.pairs {
                            for (side, sign) in [(0, 1.0), (1, -1.0)] {
                                let (row, col) = t.cell(m, lr, j, k, side);
                                cells[r * shape.cols + j].push(CellRef {
                                    array: t.array,
                                    cell: row * lowering.cols + col,
                                    sign,
                                    share,
                                });
                            }
                        }
                    }
                }
            };
            for (r, &lr) in s.rows.iter().enumerate() {
                add(r, lr, 1.0, &mut cells);
            }
            if s.bias {
                let share = 1.0 / m.bias_rows.max(1) as f64;
                for lr in m.weight_rows..m.logical_rows() {
                    add(shape.rows - 1, lr, share, &mut cells);
                }
            }
            out.push(cells);
            matrix_of_slot.push(mi);
        }
        Ok(CellMap {
            slots: out,
            matrix_of_slot,
        })
    }
}

/// Progress bar in the project's style (hidden unless `show`).
/// Program every cell of `chip` that holds a weight of `prog` to its target conductance with the
/// declared algorithm at chip time 0 (the ex-situ transfer and the in-situ initial programming),
/// with a progress bar named `what`.
fn program_owned(
    setup: &Setup,
    chip: &mut Chip,
    prog: &Programmed,
    progress: bool,
    what: &str,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<devprog::CellWrite>, InsituError> {
    let total: usize = prog
        .arrays
        .iter()
        .map(|a| a.owner.iter().filter(|o| o.is_some()).count())
        .sum();
    let pb = bar(
        progress,
        total as u64,
        &format!("{what} [{{bar:30}}] {{pos}}/{{len}} cells {{elapsed}} eta {{eta}}"),
    );
    let targets: Vec<Vec<f64>> = prog.arrays.iter().map(|a| a.g_siemens.clone()).collect();
    let owned = |a: usize, k: usize| prog.arrays[a].owner[k].is_some();
    let writes = devprog::program_cells(
        &setup.file.hardware,
        &setup.spec,
        &mut chip.arrays,
        &targets,
        &owned,
        setup.algorithm,
        0.0,
        rng,
        &pb,
    )?;
    pb.finish_and_clear();
    Ok(writes)
}

fn bar(show: bool, len: u64, template: &str) -> ProgressBar {
    let pb = if show {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(st) = ProgressStyle::with_template(template) {
        pb.set_style(st.progress_chars("=> "));
    }
    pb
}

/// Train and test accuracy (a chip backend: with the read it holds, or one from `ctx`).
fn accuracy(
    model: &Model,
    backend: &mut dyn MatmulBackend,
    split: &crate::data::Split,
    ctx: &mut ForwardCtx,
) -> Result<Acc, InsituError> {
    Ok(Acc {
        train: evaluate(model, backend, &split.train, 500, ctx)?.accuracy,
        test: evaluate(model, backend, &split.test, 500, ctx)?.accuracy,
    })
}

/// The accuracy of a model on a backend without devices (nothing is read).
fn software_accuracy(
    model: &Model,
    backend: &mut dyn MatmulBackend,
    split: &crate::data::Split,
) -> Result<Acc, InsituError> {
    let mut unused = ChaCha8Rng::seed_from_u64(0);
    accuracy(
        model,
        backend,
        split,
        &mut ForwardCtx::new(&mut unused, Pass::Test),
    )
}

/// A read of the whole chip held by `b` (age 0, read noise from a generator seeded with
/// `read_seed`, as [`Chip::read`]) and the model's weights set to what it reads back.
fn read_back(
    b: &mut ChipBackend,
    model: &mut Model,
    age_seconds: f64,
    read_seed: u64,
) -> Result<(), InsituError> {
    let mut rng = ChaCha8Rng::seed_from_u64(read_seed);
    let mut ctx = ForwardCtx {
        read_rng: &mut rng,
        age_seconds,
        pass: Pass::Test,
    };
    b.read(&mut ctx).map_err(nn_backend)?;
    for id in 0..model.weights.len() {
        model.weights[id] = b.effective_weights(id).map_err(nn_backend)?;
    }
    Ok(())
}

/// Which slots an in-situ phase writes: all, or (hybrid) those of the `trainable` layers.
fn trainable_slots(setup: &Setup, model: &Model, map: &CellMap) -> Vec<bool> {
    model
        .slots
        .iter()
        .map(|s| {
            setup.trainable.is_empty() || {
                let layer = &setup.lowering.matrices[map.matrix_of_slot[s.id]].layer;
                setup.trainable.contains(layer)
            }
        })
        .collect()
}

/// The weights quantised by the compiler's encoders (what a perfect programming would hold).
fn quantised_weights(
    setup: &Setup,
    model: &Model,
    weights: &[Matrix],
) -> Result<Vec<Matrix>, InsituError> {
    let prog = setup.programmed(model, weights)?;
    let slots = slot_rows(model, &setup.ir)?;
    let mut out = Vec::with_capacity(weights.len());
    for (w, s) in weights.iter().zip(&slots) {
        let mi = setup
            .lowering
            .matrices
            .iter()
            .position(|m| m.layer == s.layer)
            .ok_or_else(|| InsituError::Usage(format!("layer {} is not mapped", s.layer)))?;
        let enc = &prog.encoders[mi];
        let br = setup.lowering.matrices[mi].bias_rows.max(1) as f64;
        let mut q = w.clone();
        let nb = s.rows.len();
        for r in 0..w.rows {
            for j in 0..w.cols {
                let v = w.get(r, j);
                q.set(
                    r,
                    j,
                    if r < nb {
                        enc.quantise(v)
                    } else {
                        enc.quantise(v / br) * br
                    },
                );
            }
        }
        out.push(q);
    }
    Ok(out)
}

/// Hardware-aware software training (S4, Bayat et al. 2018: "the software model utilized
/// additional information about the defective memristors … whose conductances … could not be
/// changed during tuning"): a weight whose cells hold a stuck device is kept inside the interval
/// the pair can still realise — the stuck device at its value, the free one anywhere in the
/// window. A pair with one device stuck at g_min still holds every weight of the other sign;
/// freezing such a weight at 0 (as an earlier version did) threw that away and made the aware
/// network weaker than the oblivious one.
struct FrozenBackend {
    inner: IdealBackend,
    frozen: WeightIntervals,
}

/// Per slot, per weight: the interval `[lo, hi]` a weight with a stuck device can hold (`None`:
/// no stuck device).
type WeightIntervals = Vec<Vec<Option<(f64, f64)>>>;

impl FrozenBackend {
    fn apply(&self, id: usize, w: &Matrix) -> Matrix {
        let mut w = w.clone();
        if let Some(f) = self.frozen.get(id) {
            for (v, fz) in w.data.iter_mut().zip(f) {
                if let Some((lo, hi)) = fz {
                    *v = v.clamp(*lo, *hi);
                }
            }
        }
        w
    }
}

impl MatmulBackend for FrozenBackend {
    fn name(&self) -> String {
        "ideal-hardware-aware".into()
    }
    fn prepare(&mut self, id: usize, w: &Matrix) -> Result<(), crate::nn::BackendError> {
        let w = self.apply(id, w);
        self.inner.prepare(id, &w)
    }
    fn forward(
        &mut self,
        id: usize,
        x: &Matrix,
        ctx: &mut ForwardCtx,
    ) -> Result<Matrix, crate::nn::BackendError> {
        self.inner.forward(id, x, ctx)
    }
    fn effective_weights(&self, id: usize) -> Result<Matrix, crate::nn::BackendError> {
        self.inner.effective_weights(id)
    }
    fn save_state(&self, dir: &Path) -> Result<(), crate::nn::BackendError> {
        self.inner.save_state(dir)
    }
    fn load_state(&mut self, dir: &Path) -> Result<(), crate::nn::BackendError> {
        self.inner.load_state(dir)
    }
}

/// The weight interval `[lo, hi]` of every slot element touched by a stuck device (`None`: no
/// stuck device), with `w = mean over copies of (g⁺ − g⁻)/scale`: each stuck cell contributes its
/// fixed conductance, each free cell anything in `g_lo_siemens..=g_hi_siemens` (the window the
/// mapping decodes). An element whose cells are all stuck gets `lo == hi`. With `free_unbounded`
/// (the mapping's `weight_scale auto`: the transfer's scale puts the largest trained weight at the
/// window's edge, so the free device's far end is wherever training needs it) a free cell only
/// bounds the sign; the stuck cells' terms use `scale_siemens` (exact for a device stuck at
/// `g_lo_siemens`, which contributes nothing).
fn frozen_intervals(
    map: &CellMap,
    arrays: &[ArrayState],
    (g_lo_siemens, g_hi_siemens): (f64, f64),
    free_unbounded: bool,
    scale_siemens: &[f64],
) -> WeightIntervals {
    map.slots
        .iter()
        .enumerate()
        .map(|(id, elems)| {
            elems
                .iter()
                .map(|cells| {
                    let stuck = cells.iter().any(|c| {
                        matches!(arrays[c.array].params[c.cell].fault, Fault::Stuck { .. })
                    });
                    if !stuck {
                        return None;
                    }
                    // Σ sign·(g − g_lo)/share over the cells, bounded term by term
                    let (mut lo, mut hi) = (0.0, 0.0);
                    for c in cells {
                        let share = c.share.max(1e-300);
                        match arrays[c.array].params[c.cell].fault {
                            Fault::Stuck { g_siemens } => {
                                let t = c.sign * (g_siemens - g_lo_siemens) / share;
                                lo += t;
                                hi += t;
                            }
                            _ => {
                                let reach = if free_unbounded {
                                    f64::INFINITY
                                } else {
                                    g_hi_siemens - g_lo_siemens
                                };
                                let t = c.sign * reach / share;
                                lo += t.min(0.0);
                                hi += t.max(0.0);
                            }
                        }
                    }
                    let k = 2.0 / (cells.len() as f64 * scale_siemens[id]);
                    Some((k * lo, k * hi))
                })
                .collect()
        })
        .collect()
}

/// Train `model` in software (ideal, or hardware-aware with `frozen`) with the run's config.
fn software_train(
    setup: &Setup,
    model: &mut Model,
    frozen: Option<WeightIntervals>,
    opts: &RunOptions,
) -> Result<Vec<EpochMetrics>, InsituError> {
    let mut cfg = setup.cfg.clone();
    cfg.optimizer = setup.software_optimizer.clone();
    cfg.epochs = setup.software_epochs;
    let topts = crate::nn::train::TrainOptions {
        out_dir: opts.out_dir.as_ref().map(|d| d.join("software")),
        resume: opts.resume,
        progress: opts.progress,
        readback: frozen.is_some(),
        stop_after: None,
    };
    if let Some(d) = &topts.out_dir {
        std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
    }
    let rep = match frozen {
        Some(f) => {
            let mut b = FrozenBackend {
                inner: IdealBackend::new(),
                frozen: f,
            };
            let r = crate::nn::train::train(model, &mut b, &setup.split, &cfg, &topts)?;
            // the published weights are the frozen ones
            for (id, w) in model.weights.iter_mut().enumerate() {
                *w = b.apply(id, w);
            }
            r
        }
        None => {
            let mut b = IdealBackend::new();
            crate::nn::train::train(model, &mut b, &setup.split, &cfg, &topts)?
        }
    };
    Ok(rep.metrics)
}

/// Conductances of the used cells (cells holding a weight), in array then cell order.
fn used_g(chip: &Chip, prog: &Programmed) -> Vec<f64> {
    let mut out = Vec::new();
    for (st, a) in chip.arrays.iter().zip(&prog.arrays) {
        for (k, o) in a.owner.iter().enumerate() {
            if o.is_some() {
                out.push(st.g_siemens[k]);
            }
        }
    }
    out
}

/// Per slot: the siemens per weight unit of each pair (frozen encoder scales).
fn slot_scales(map: &CellMap, prog: &Programmed) -> Vec<f64> {
    map.matrix_of_slot
        .iter()
        .map(|&mi| prog.encoders[mi].scale_siemens)
        .collect()
}

/// Run one experiment: the mode declared in the `.net` file (or `ov.mode`).
pub fn run(net_path: &Path, ov: &Overrides, opts: &RunOptions) -> Result<RunResult, InsituError> {
    let t0 = Instant::now();
    let setup = setup(net_path, ov)?;
    if let Some(d) = &opts.out_dir {
        std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
    }
    let mut model = Model::new(setup.preset.model.clone())?;
    let slots = slot_rows(&model, &setup.ir)?;
    let map = CellMap::new(&setup.lowering, &slots, &model)?;
    let seed = setup.cfg.seed;
    // device draws and write noise: their own stream of the run's seed
    let mut dev_rng = ChaCha8Rng::seed_from_u64(seed);
    dev_rng.set_stream(1);
    match setup.mode {
        TrainMode::Exsitu | TrainMode::Hybrid => {
            // the devices exist before training (a hardware-aware run knows their faults)
            let init_prog = {
                let mut m0 = model.clone();
                m0.init(&mut ChaCha8Rng::seed_from_u64(seed));
                setup.programmed(&m0, &m0.weights)?
            };
            let arrays = devprog::fresh_arrays(&setup.spec, &init_prog, &mut dev_rng);
            let frozen = if ov.hardware_aware {
                let scales = slot_scales(&map, &init_prog);
                let window = rules::operating_window(&setup.spec, &setup.file.hardware);
                let auto = matches!(
                    setup.file.mapping.weight_scale,
                    crate::net::spec::WeightScale::Auto
                );
                Some(frozen_intervals(&map, &arrays, window, auto, &scales))
            } else {
                None
            };
            let sw_epochs = software_train(&setup, &mut model, frozen, opts)?;
            let mut ib = IdealBackend::new();
            model.prepare_backend(&mut ib)?;
            let software = software_accuracy(&model, &mut ib, &setup.split)?;
            let q = quantised_weights(&setup, &model, &model.weights)?;
            let mut qm = model.clone();
            qm.weights = q;
            let mut qb = IdealBackend::new();
            qm.prepare_backend(&mut qb)?;
            let quantised = software_accuracy(&qm, &mut qb, &setup.split)?;
            // transfer: program the software weights with the declared algorithm
            let prog = setup.programmed(&model, &model.weights)?;
            let mut chip = setup.empty_chip(seed, arrays)?;
            let writes = program_owned(
                &setup,
                &mut chip,
                &prog,
                opts.progress,
                "transfer",
                &mut dev_rng,
            )?;
            let scale_weights = model.weights.clone();
            let trainable = trainable_slots(&setup, &model, &map);
            let mut cb = ChipBackend::new(
                &setup,
                &model,
                chip,
                scale_weights.clone(),
                map.clone(),
                trainable,
            )?;
            // the transferred chip, read at age 0 with the run's seed
            let mut chip_model = model.clone();
            read_back(&mut cb, &mut chip_model, 0.0, seed)?;
            let mut unused = ChaCha8Rng::seed_from_u64(seed);
            let transferred = accuracy(
                &chip_model,
                &mut cb,
                &setup.split,
                &mut ForwardCtx::new(&mut unused, Pass::Test),
            )?;
            let cells0 = writes.len() as u64;
            let pulses0: u64 = writes.iter().map(|w| w.pulses as u64).sum();
            let g_before = used_g(cb.chip(), &prog);
            if setup.mode == TrainMode::Exsitu {
                let res = RunResult {
                    network: setup.ir.name.clone(),
                    mode: setup.mode,
                    software: Some(software),
                    quantised: Some(quantised),
                    transferred: Some(transferred),
                    chip_final: transferred,
                    batches: vec![],
                    epochs: sw_epochs,
                    g_after_siemens: g_before.clone(),
                    g_before_siemens: g_before,
                    updates: 0,
                    cells_written: cells0,
                    pulses: pulses0,
                    weights_skipped: 0,
                    seconds: t0.elapsed().as_secs_f64(),
                    interrupted: false,
                    timing: LoopTiming::default(),
                    chip: cb.into_chip(),
                    model: chip_model,
                    software_weights: scale_weights.clone(),
                    scale_weights,
                };
                publish(opts, &res)?;
                return Ok(res);
            }
            let mut res = insitu_loop(&setup, chip_model, cb, &map, &prog, dev_rng, ov, opts)?;
            res.software = Some(software);
            res.quantised = Some(quantised);
            res.transferred = Some(transferred);
            let mut epochs = sw_epochs;
            epochs.extend(res.epochs);
            res.epochs = epochs;
            res.cells_written += cells0;
            res.pulses += pulses0;
            res.seconds = t0.elapsed().as_secs_f64();
            publish(opts, &res)?;
            Ok(res)
        }
        TrainMode::Insitu => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            model.init(&mut rng);
            let prog = setup.programmed(&model, &model.weights)?;
            let arrays = devprog::fresh_arrays(&setup.spec, &prog, &mut dev_rng);
            let mut chip = setup.empty_chip(seed, arrays)?;
            let writes = program_owned(
                &setup,
                &mut chip,
                &prog,
                opts.progress,
                "initial programming",
                &mut dev_rng,
            )?;
            let trainable = trainable_slots(&setup, &model, &map);
            let cb = ChipBackend::new(
                &setup,
                &model,
                chip,
                model.weights.clone(),
                map.clone(),
                trainable,
            )?;
            let mut res = insitu_loop(&setup, model, cb, &map, &prog, dev_rng, ov, opts)?;
            res.cells_written += writes.len() as u64;
            res.pulses += writes.iter().map(|w| w.pulses as u64).sum::<u64>();
            res.seconds = t0.elapsed().as_secs_f64();
            publish(opts, &res)?;
            Ok(res)
        }
    }
}

/// The in-situ checkpoint (`insitu_checkpoint/state.json` next to its `chip/` directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InsituCheckpoint {
    network_sha256: String,
    updates: usize,
    epoch: usize,
    /// Position in the current epoch's order (batches done).
    batch_in_epoch: usize,
    order: Vec<usize>,
    loss_sum: f64,
    correct: usize,
    seen: usize,
    optimizer: NnOptimizer,
    shuffle_rng: RngState,
    device_rng: RngState,
    read_rng: RngState,
    batches: Vec<BatchPoint>,
    epochs: Vec<EpochMetrics>,
    scale_weights: WeightsFile,
    cells_written: u64,
    pulses: u64,
    #[serde(default)]
    weights_skipped: u64,
    g_before_siemens: Vec<f64>,
}

const CKPT_DIR: &str = "insitu_checkpoint";

fn save_checkpoint(
    dir: &Path,
    ck: &InsituCheckpoint,
    backend: &ChipBackend,
) -> Result<(), InsituError> {
    let d = dir.join(CKPT_DIR);
    std::fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
    // the chip first, then the state that refers to it: a kill between the two leaves a chip one
    // step ahead of its state, so the state carries the update count the chip was saved at
    backend
        .save_state(&d.join(format!("chip_{}", ck.updates)))
        .map_err(nn_backend)?;
    write_json(&d.join("state.json"), ck)?;
    // older chips are no longer referenced
    if let Ok(rd) = std::fs::read_dir(&d) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("chip_") && n != format!("chip_{}", ck.updates) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

/// The checkpoint's state and the directory of the chip it refers to.
fn load_checkpoint(
    dir: &Path,
    text: &str,
) -> Result<Option<(InsituCheckpoint, PathBuf)>, InsituError> {
    let d = dir.join(CKPT_DIR);
    let p = d.join("state.json");
    if !p.is_file() {
        return Ok(None);
    }
    let ck: InsituCheckpoint = read_json(&p)?;
    if ck.network_sha256 != network_hash(text) {
        return Err(InsituError::Usage(format!(
            "{}: the checkpoint belongs to a different network file",
            p.display()
        )));
    }
    let chip_dir = d.join(format!("chip_{}", ck.updates));
    Ok(Some((ck, chip_dir)))
}

/// In-situ training of `model` on the chip of `backend` (already programmed): every mini-batch
/// is one read, one forward pass and one update through the backend.
#[allow(clippy::too_many_arguments)]
fn insitu_loop(
    setup: &Setup,
    mut model: Model,
    mut backend: ChipBackend,
    map: &CellMap,
    prog: &Programmed,
    dev_rng: ChaCha8Rng,
    ov: &Overrides,
    opts: &RunOptions,
) -> Result<RunResult, InsituError> {
    let t0 = Instant::now();
    let seed = setup.cfg.seed;
    let split = &setup.split;
    if split.train.is_empty() {
        return Err(InsituError::Usage("the training set is empty".into()));
    }
    let n = split
        .train
        .len()
        .min(ov.insitu_limit_train.unwrap_or(usize::MAX).max(1));
    let bs = setup.cfg.batch_size;
    let epochs_total = if setup.mode == TrainMode::Hybrid {
        setup.insitu_epochs
    } else {
        setup.cfg.epochs
    };
    let batches_per_epoch = n.div_ceil(bs);
    let max_updates = ov
        .max_updates
        .unwrap_or(usize::MAX)
        .min(epochs_total * batches_per_epoch);
    let rule = backend.rule();
    let mut state = {
        let mut shuffle_rng = ChaCha8Rng::seed_from_u64(seed);
        shuffle_rng.set_stream(2);
        let mut read_rng = ChaCha8Rng::seed_from_u64(seed);
        read_rng.set_stream(3);
        let g_before = used_g(backend.chip(), prog);
        InsituCheckpoint {
            network_sha256: network_hash(&setup.text),
            updates: 0,
            epoch: 0,
            batch_in_epoch: 0,
            order: vec![],
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
            optimizer: NnOptimizer::new(setup.cfg.optimizer.clone()),
            shuffle_rng: RngState::of(&shuffle_rng),
            device_rng: RngState::of(&dev_rng),
            read_rng: RngState::of(&read_rng),
            batches: vec![],
            epochs: vec![],
            scale_weights: {
                let mut m = model.clone();
                m.weights = backend.scale_weights().to_vec();
                m.to_weights_file()
            },
            cells_written: 0,
            pulses: 0,
            weights_skipped: 0,
            g_before_siemens: g_before,
        }
    };
    if let (Some(dir), true) = (&opts.out_dir, opts.resume) {
        if let Some((ck, chip_dir)) = load_checkpoint(dir, &setup.text)? {
            // the backend of the checkpoint's scale weights, holding the checkpoint's chip
            let sm = Model::from_weights_file(&ck.scale_weights)?;
            let trainable = trainable_slots(setup, &model, map);
            backend = ChipBackend::new(
                setup,
                &model,
                backend.into_chip(),
                sm.weights,
                map.clone(),
                trainable,
            )?;
            backend.load_state(&chip_dir).map_err(nn_backend)?;
            state = ck;
        }
    }
    let mut shuffle_rng = state.shuffle_rng.restore()?;
    let mut dev_rng = state.device_rng.restore()?;
    let mut read_rng = state.read_rng.restore()?;
    let pb = bar(
        opts.progress,
        max_updates as u64,
        "in-situ {pos}/{len} updates [{bar:30}] {msg} {elapsed} eta {eta}",
    );
    pb.set_position(state.updates as u64);
    let mut interrupted = false;
    let mut timing = LoopTiming::default();
    let mut since_ckpt = 0usize;
    let mut stop_now = false;
    while state.updates < max_updates && state.epoch < epochs_total {
        let t_epoch = Instant::now();
        if state.batch_in_epoch == 0 {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut shuffle_rng);
            state.order = order;
            state.loss_sum = 0.0;
            state.correct = 0;
            state.seen = 0;
        }
        let order = state.order.clone();
        let chunks: Vec<&[usize]> = order.chunks(bs).collect();
        while state.batch_in_epoch < chunks.len() && state.updates < max_updates {
            let idx = chunks[state.batch_in_epoch];
            let t_read = Instant::now();
            // read the chip (drift since each cell's write, read noise from the run's stream)
            // and back-propagate through the weights it reads back
            let mut ctx = ForwardCtx::new(&mut read_rng, Pass::Train);
            backend.read(&mut ctx).map_err(nn_backend)?;
            for id in 0..model.weights.len() {
                model.weights[id] = backend.effective_weights(id).map_err(nn_backend)?;
            }
            let t_fb = Instant::now();
            timing.read_solve_seconds += (t_fb - t_read).as_secs_f64();
            let x = batch_matrix(&split.train, idx);
            let labels: Vec<usize> = idx.iter().map(|&i| split.train.labels[i]).collect();
            let (out, caches) = model.forward(&mut backend, &x, &mut ctx)?;
            let l = loss::evaluate(&model.spec.loss, &out, &labels)?;
            if !l.loss.is_finite() {
                return Err(InsituError::Usage(format!(
                    "in-situ loss diverged to {} at update {}",
                    l.loss, state.updates
                )));
            }
            let grads = model.backward(&backend, &caches, &l.grad)?;
            state.optimizer.spec = setup.cfg.optimizer.scaled(
                setup
                    .cfg
                    .lr_decay
                    .powi(state.epoch.min(i32::MAX as usize) as i32),
            );
            let deltas = rule.deltas(&mut state.optimizer, &model.weights, &grads, idx.len())?;
            let t_write = Instant::now();
            timing.forward_backward_seconds += (t_write - t_fb).as_secs_f64();
            let steps = deltas.into_iter().map(Update::Step).enumerate().collect();
            let stats = backend
                .update(steps, &mut UpdateCtx::new(&mut dev_rng))
                .map_err(nn_backend)?;
            timing.write_seconds += t_write.elapsed().as_secs_f64();
            state.cells_written += stats.cells_written;
            state.weights_skipped += stats.skipped;
            state.pulses += stats.pulses;
            state.updates += 1;
            state.batch_in_epoch += 1;
            state.loss_sum += l.loss * idx.len() as f64;
            state.correct += l.correct;
            state.seen += idx.len();
            state.batches.push(BatchPoint {
                update: state.updates,
                loss: l.loss,
                batch_acc: l.correct as f64 / idx.len().max(1) as f64,
                cells_written: stats.cells_written,
                skipped: stats.skipped,
            });
            pb.set_position(state.updates as u64);
            pb.set_message(format!("loss {:.3}", l.loss));
            since_ckpt += 1;
            if opts.stop_after_updates.is_some_and(|s| state.updates >= s) {
                stop_now = true;
                break;
            }
            if since_ckpt >= 50 {
                if let Some(dir) = &opts.out_dir {
                    save_state(dir, &mut state, &shuffle_rng, &dev_rng, &read_rng, &backend)?;
                }
                since_ckpt = 0;
            }
        }
        if stop_now {
            interrupted = true;
            break;
        }
        if state.batch_in_epoch >= chunks.len() {
            // epoch done: test accuracy of the chip as it is now (a held read of the run's stream)
            let t_eval = Instant::now();
            let mut ctx = ForwardCtx::new(&mut read_rng, Pass::Test);
            backend.read(&mut ctx).map_err(nn_backend)?;
            let test = evaluate(&model, &mut backend, &split.test, 500, &mut ctx)?;
            timing.eval_seconds += t_eval.elapsed().as_secs_f64();
            state.epochs.push(EpochMetrics {
                epoch: state.epoch + 1,
                loss: state.loss_sum / state.seen.max(1) as f64,
                train_acc: state.correct as f64 / state.seen.max(1) as f64,
                test_acc: test.accuracy,
                seconds: t_epoch.elapsed().as_secs_f64(),
            });
            if opts.progress {
                let m = state.epochs.last().expect("just pushed");
                pb.suspend(|| {
                    eprintln!(
                        "in-situ epoch {}: loss {:.4}  train {:.2}%  test {:.2}%",
                        m.epoch,
                        m.loss,
                        100.0 * m.train_acc,
                        100.0 * m.test_acc
                    )
                });
            }
            state.epoch += 1;
            state.batch_in_epoch = 0;
        } else {
            break; // max_updates reached mid-epoch
        }
    }
    pb.finish_and_clear();
    if let Some(dir) = &opts.out_dir {
        save_state(dir, &mut state, &shuffle_rng, &dev_rng, &read_rng, &backend)?;
    }
    // the final chip, read as `chip_accuracy_at` reads it (age 0, seed of the run)
    read_back(&mut backend, &mut model, 0.0, seed)?;
    let mut unused = ChaCha8Rng::seed_from_u64(seed);
    let chip_final = accuracy(
        &model,
        &mut backend,
        split,
        &mut ForwardCtx::new(&mut unused, Pass::Test),
    )?;
    let scale_weights = backend.scale_weights().to_vec();
    let chip = backend.into_chip();
    Ok(RunResult {
        network: setup.ir.name.clone(),
        mode: setup.mode,
        software: None,
        quantised: None,
        transferred: None,
        chip_final,
        batches: state.batches.clone(),
        epochs: state.epochs.clone(),
        g_before_siemens: state.g_before_siemens.clone(),
        g_after_siemens: used_g(&chip, prog),
        updates: state.updates,
        cells_written: state.cells_written,
        pulses: state.pulses,
        weights_skipped: state.weights_skipped,
        seconds: t0.elapsed().as_secs_f64(),
        interrupted,
        timing,
        chip,
        model,
        software_weights: scale_weights.clone(),
        scale_weights,
    })
}

fn save_state(
    dir: &Path,
    state: &mut InsituCheckpoint,
    shuffle_rng: &ChaCha8Rng,
    dev_rng: &ChaCha8Rng,
    read_rng: &ChaCha8Rng,
    backend: &ChipBackend,
) -> Result<(), InsituError> {
    state.shuffle_rng = RngState::of(shuffle_rng);
    state.device_rng = RngState::of(dev_rng);
    state.read_rng = RngState::of(read_rng);
    save_checkpoint(dir, state, backend)
}

/// One read of every cell: drift since its last write at the chip's clock, then read noise.
pub fn read_chip(chip: &Chip, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    chip.read_with(0.0, rng)
}

/// Write the run's outputs: the chip, `result.json`, `batches.csv` and the plots.
fn publish(opts: &RunOptions, r: &RunResult) -> Result<(), InsituError> {
    let Some(dir) = &opts.out_dir else {
        return Ok(());
    };
    r.chip.save(&dir.join("chip"))?;
    write_json(&dir.join("result.json"), r)?;
    write_json(&dir.join("model.json"), &r.model.to_weights_file())?;
    let mut csv = String::from("update,loss,batch_acc,cells_written,skipped\n");
    for b in &r.batches {
        csv += &format!(
            "{},{},{},{},{}\n",
            b.update, b.loss, b.batch_acc, b.cells_written, b.skipped
        );
    }
    crate::data::write_atomic(&dir.join("batches.csv"), csv.as_bytes())
        .map_err(|e| io_err(dir, e))?;
    plots::all(dir, r).map_err(|e| io_err(dir, e))?;
    Ok(())
}

pub mod plots;

/// Test (and train) accuracy of a run's chip read `age_seconds` after its last write (drift,
/// read noise).
pub fn chip_accuracy_at(
    net_path: &Path,
    ov: &Overrides,
    r: &RunResult,
    age_seconds: f64,
    read_seed: u64,
) -> Result<Acc, InsituError> {
    if !(age_seconds.is_finite() && age_seconds >= 0.0) {
        return Err(InsituError::Usage(format!(
            "age must be finite and ≥ 0 s, got {age_seconds}"
        )));
    }
    let setup = setup(net_path, ov)?;
    if r.chip.manifest.network_sha256 != network_hash(&setup.text) {
        return Err(InsituError::Usage(
            "the run's chip was programmed for another network file".into(),
        ));
    }
    let slots = slot_rows(&r.model, &setup.ir)?;
    let map = CellMap::new(&setup.lowering, &slots, &r.model)?;
    let trainable = trainable_slots(&setup, &r.model, &map);
    let mut b = ChipBackend::new(
        &setup,
        &r.model,
        r.chip.clone(),
        r.scale_weights.clone(),
        map,
        trainable,
    )?;
    let mut m = r.model.clone();
    read_back(&mut b, &mut m, age_seconds, read_seed)?;
    let mut unused = ChaCha8Rng::seed_from_u64(read_seed);
    accuracy(
        &m,
        &mut b,
        &setup.split,
        &mut ForwardCtx::new(&mut unused, Pass::Test),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceParams;

    /// One array of 4 cells: element 0 is a pair (cells 0 = +, 1 = −), element 1 another pair
    /// (cells 2, 3). `faults[k]` is cell k's fault.
    fn one_pair_map(faults: [Fault; 4]) -> (CellMap, Vec<ArrayState>) {
        let spec = DeviceSpec::ideal(10e-6, 100e-6);
        let params = faults
            .iter()
            .map(|f| DeviceParams {
                fault: *f,
                ..DeviceParams::nominal(&spec)
            })
            .collect();
        let arr = ArrayState {
            rows: 1,
            cols: 4,
            g_siemens: vec![10e-6; 4],
            params,
            pulses: vec![0; 4],
            t_written_seconds: vec![0.0; 4],
            v_gate_v: vec![0.0; 4],
        };
        let cell = |cell, sign| CellRef {
            array: 0,
            cell,
            sign,
            share: 1.0,
        };
        let map = CellMap {
            slots: vec![vec![
                vec![cell(0, 1.0), cell(1, -1.0)],
                vec![cell(2, 1.0), cell(3, -1.0)],
            ]],
            matrix_of_slot: vec![0],
        };
        (map, vec![arr])
    }

    #[test]
    fn a_pair_with_a_device_stuck_off_keeps_the_other_sign() {
        // w = (g⁺ − g⁻)/scale with scale 9e-5 S per unit: window 10..100 µS gives |w| ≤ 1
        let stuck = Fault::Stuck { g_siemens: 10e-6 };
        let (map, arrays) = one_pair_map([stuck, Fault::None, Fault::None, stuck]);
        let iv = frozen_intervals(&map, &arrays, (10e-6, 100e-6), false, &[9e-5]);
        // g⁺ stuck at g_min: w = −g⁻'/scale ∈ [−1, 0]; g⁻ stuck: w ∈ [0, 1]
        let (lo0, hi0) = iv[0][0].expect("element 0 has a stuck device");
        let (lo1, hi1) = iv[0][1].expect("element 1 has a stuck device");
        assert!((lo0 + 1.0).abs() < 1e-12 && hi0 == 0.0, "{lo0} {hi0}");
        assert!(lo1 == 0.0 && (hi1 - 1.0).abs() < 1e-12, "{lo1} {hi1}");
        // under `weight_scale auto` only the sign is bounded
        let iv = frozen_intervals(&map, &arrays, (10e-6, 100e-6), true, &[9e-5]);
        assert_eq!(iv[0][0], Some((f64::NEG_INFINITY, 0.0)));
        assert_eq!(iv[0][1], Some((0.0, f64::INFINITY)));
        // a device stuck at 55 µS: w ∈ [(55 − 100)/90, (55 − 10)/90] = [−0.5, 0.5]
        let mid = Fault::Stuck { g_siemens: 55e-6 };
        let (map, arrays) = one_pair_map([mid, Fault::None, mid, mid]);
        let iv = frozen_intervals(&map, &arrays, (10e-6, 100e-6), false, &[9e-5]);
        let (lo, hi) = iv[0][0].expect("stuck");
        assert!(
            (lo + 0.5).abs() < 1e-12 && (hi - 0.5).abs() < 1e-12,
            "{lo} {hi}"
        );
        // both devices stuck at the same value: the weight is fixed at 0
        assert_eq!(iv[0][1], Some((0.0, 0.0)));
    }

    #[test]
    fn hardware_aware_training_clamps_into_the_intervals() {
        let b = FrozenBackend {
            inner: IdealBackend::new(),
            frozen: vec![vec![Some((-1.0, 0.0)), None, Some((0.25, 0.25))]],
        };
        let w = Matrix::from_vec(1, 3, vec![0.7, 3.0, -2.0]).expect("1×3");
        assert_eq!(b.apply(0, &w).data, vec![0.0, 3.0, 0.25]);
    }
}
