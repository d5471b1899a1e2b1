//! The trainer runs behind each paper's experiments, at each scale, and their records.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::insitu::{self, Overrides, RunOptions, TrainMode};
use super::{Paper, ReproduceError, Scale};
use crate::net::spec::Optimizer;

/// One trainer run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// File stem of its JSON in `DIR/runs/` (unique within a reproduction).
    pub id: String,
    pub paper: Paper,
    /// What the run is in the paper's experiment (the tables select runs by it).
    pub kind: String,
    /// Stuck-OFF fraction of a sweep point (S3).
    pub fraction: Option<f64>,
    pub seed: u64,
    pub label: String,
    pub net: PathBuf,
    pub ov: Overrides,
    /// Ages (s) at which the final chip is read again (S5 drift).
    pub drift_ages_seconds: Vec<f64>,
    /// Keep the per-update curve and the conductances (plots).
    pub keep_curves: bool,
    pub scale: Scale,
}

/// Train and test accuracy as fractions (0–1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AccRec {
    pub train: f64,
    pub test: f64,
}

impl From<insitu::Acc> for AccRec {
    fn from(a: insitu::Acc) -> Self {
        AccRec {
            train: a.train,
            test: a.test,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchRec {
    pub update: usize,
    pub loss: f64,
    pub batch_acc: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftRec {
    pub age_seconds: f64,
    pub acc: AccRec,
}

/// What one run measured (written to `DIR/runs/ID.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub paper: Paper,
    pub kind: String,
    pub fraction: Option<f64>,
    pub seed: u64,
    pub label: String,
    pub net: String,
    pub scale: Scale,
    /// The overrides on top of the `.net` file (a run is reused only if these match).
    pub settings: Value,
    pub mode: String,
    pub software: Option<AccRec>,
    pub quantised: Option<AccRec>,
    pub transferred: Option<AccRec>,
    pub chip_final: AccRec,
    pub batches: Vec<BatchRec>,
    pub g_before_siemens: Vec<f64>,
    pub g_after_siemens: Vec<f64>,
    pub drift: Vec<DriftRec>,
    pub updates: usize,
    pub cells_written: u64,
    pub pulses: u64,
    pub seconds: f64,
}

/// The overrides as JSON, with the SHA-256 of the `.net` file's text (what makes two runs the
/// same experiment: an edited device block or training key is a new experiment, never a stale
/// reuse).
pub fn settings_of(spec: &RunSpec) -> Value {
    let o = &spec.ov;
    // the chip manifest's hash of the same text
    let net_sha256 = std::fs::read_to_string(&spec.net)
        .ok()
        .map(|t| crate::device::chip::network_hash(&t));
    let mut settings = json!({
        "net": spec.net.file_name().map(|n| n.to_string_lossy().into_owned()),
        "net_sha256": net_sha256,
        "mode": o.mode.map(|m| format!("{m:?}").to_lowercase()),
        "epochs": o.epochs,
        "max_updates": o.max_updates,
        "limit_train": o.limit_train,
        "limit_test": o.limit_test,
        "seed": o.seed,
        "program_noise_siemens": o.program_noise_siemens,
        "stuck_off_fraction": o.stuck_off_fraction,
        "miswrite_fraction": o.miswrite_fraction,
        "write_tolerance_rel": o.write_tolerance_rel,
        "optimizer": o.optimizer.as_ref().map(|x| serde_json::to_value(x).unwrap_or(Value::Null)),
        "hardware_aware": o.hardware_aware,
        "trainable": o.trainable,
        "insitu_epochs": o.insitu_epochs,
        "insitu_limit_train": o.insitu_limit_train,
        "batch": o.batch,
        "drift_ages_seconds": spec.drift_ages_seconds,
    });
    // written only when set, so that the records of runs from before the key stay the same
    // experiment
    if o.ideal_lines {
        settings["ideal_lines"] = json!(true);
    }
    settings
}

/// A run's stored record, if it is the same experiment (same overrides); `None` = run it again.
pub fn load_record(path: &Path, spec: &RunSpec) -> Result<Option<RunRecord>, ReproduceError> {
    let bytes = std::fs::read(path).map_err(|source| ReproduceError::Io {
        path: path.into(),
        source,
    })?;
    // a damaged or older file is run again, not an error
    let Ok(mut rec) = serde_json::from_slice::<RunRecord>(&bytes) else {
        return Ok(None);
    };
    // a record written before the unit renames names its optimiser's keys the old way
    rec.settings = rename_optimizer_keys(rec.settings, true);
    Ok(
        (rec.settings == settings_of(spec) && rec.id == spec.id && rec.scale == spec.scale)
            .then_some(rec),
    )
}

/// The optimiser override's keys as a netc before the unit renames wrote them into a run's
/// settings (`step_s`, `threshold_s`, both siemens), and their names now.
const LEGACY_OPTIMIZER_KEYS: [(&str, &str); 2] = [
    ("step_s", "step_siemens"),
    ("threshold_s", "threshold_siemens"),
];

/// `settings` with the keys of its `optimizer` renamed from the old names to the current ones
/// (`to_current`) or back (order kept).
fn rename_optimizer_keys(mut settings: Value, to_current: bool) -> Value {
    if let Some(Value::Object(opt)) = settings.get_mut("optimizer") {
        *opt = std::mem::take(opt)
            .into_iter()
            .map(|(k, v)| {
                let renamed = LEGACY_OPTIMIZER_KEYS.iter().find_map(|&(old, new)| {
                    let (from, to) = if to_current { (old, new) } else { (new, old) };
                    (k == from).then(|| to.to_string())
                });
                (renamed.unwrap_or(k), v)
            })
            .collect();
    }
    settings
}

/// `DIR/runs/ID-HASH`, HASH the first bytes of the SHA-256 of `settings`.
fn settings_dir(spec: &RunSpec, out_dir: &Path, settings: &Value) -> PathBuf {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(settings.to_string().as_bytes());
    let hex: String = h.iter().take(4).map(|b| format!("{b:02x}")).collect();
    out_dir.join("runs").join(format!("{}-{hex}", spec.id))
}

/// The trainer's own directory of a run (chip, checkpoints): named by the run and a hash of its
/// settings, so that a checkpoint is only ever resumed by the same experiment. When it does not
/// exist but the same run's directory of a netc before the unit renames does (its settings hashed
/// with the old optimiser keys), that one.
pub fn run_dir(spec: &RunSpec, out_dir: &Path) -> PathBuf {
    let settings = settings_of(spec);
    let dir = settings_dir(spec, out_dir, &settings);
    if !dir.exists() {
        let legacy = settings_dir(spec, out_dir, &rename_optimizer_keys(settings, false));
        if legacy != dir && legacy.is_dir() {
            return legacy;
        }
    }
    dir
}

/// Run one trainer run (and its drift reads).
pub fn execute(
    spec: &RunSpec,
    out_dir: &Path,
    progress: bool,
) -> Result<RunRecord, ReproduceError> {
    let err = |source| ReproduceError::Run {
        id: spec.id.clone(),
        source: Box::new(source),
    };
    let opts = RunOptions {
        out_dir: Some(run_dir(spec, out_dir)),
        resume: true,
        progress,
        stop_after_updates: None,
    };
    let r = insitu::run(&spec.net, &spec.ov, &opts).map_err(err)?;
    let mut drift = Vec::new();
    for (i, &age) in spec.drift_ages_seconds.iter().enumerate() {
        let a = insitu::chip_accuracy_at(&spec.net, &spec.ov, &r, age, spec.seed * 1000 + i as u64)
            .map_err(err)?;
        drift.push(DriftRec {
            age_seconds: age,
            acc: a.into(),
        });
    }
    let keep = spec.keep_curves;
    Ok(RunRecord {
        id: spec.id.clone(),
        paper: spec.paper,
        kind: spec.kind.clone(),
        fraction: spec.fraction,
        seed: spec.seed,
        label: spec.label.clone(),
        net: spec.net.display().to_string(),
        scale: spec.scale,
        settings: settings_of(spec),
        mode: format!("{:?}", r.mode).to_lowercase(),
        software: r.software.map(Into::into),
        quantised: r.quantised.map(Into::into),
        transferred: r.transferred.map(Into::into),
        chip_final: r.chip_final.into(),
        batches: r
            .batches
            .iter()
            .map(|b| BatchRec {
                update: b.update,
                loss: b.loss,
                batch_acc: b.batch_acc,
            })
            .collect(),
        g_before_siemens: if keep {
            r.g_before_siemens.clone()
        } else {
            Vec::new()
        },
        g_after_siemens: if keep {
            r.g_after_siemens.clone()
        } else {
            Vec::new()
        },
        drift,
        updates: r.updates,
        cells_written: r.cells_written,
        pulses: r.pulses,
        seconds: r.seconds,
    })
}

/// Sizes of every experiment at one scale.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Training / test samples (None = all of the bundled split).
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    pub s1_updates: usize,
    pub s2_limit_train: Option<usize>,
    pub s2_limit_test: Option<usize>,
    pub s2_updates: usize,
    /// Seeds of both S2 runs (curves and conductances kept for the first).
    pub s2_seeds: Vec<u64>,
    /// In-situ updates of the defect / defect-free comparison, and its seeds.
    pub s3_updates: usize,
    pub s3_defect_seeds: Vec<u64>,
    /// In-situ updates of each sweep point.
    pub s3_sweep_updates: usize,
    /// Stuck-OFF fractions of the ex-situ sweep, and the subset also trained in situ.
    pub s3_fractions: Vec<f64>,
    pub s3_insitu_fractions: Vec<f64>,
    pub s3_seeds: Vec<u64>,
    pub s4_seeds: Vec<u64>,
    pub s4_epochs: Option<usize>,
    pub s4_limit_test: Option<usize>,
    /// Updates of the in-situ Manhattan run (first seed only: its V/2 pulses are solved on the
    /// array, about a second per update).
    pub s4_manhattan_updates: usize,
    /// How many of `s4_seeds` (the first ones) also run the in-situ Manhattan experiment.
    pub s4_manhattan_seeds: usize,
    pub s5_updates: usize,
    pub s5_miswrite_updates: usize,
    /// Epochs of S5's ex-situ (software) phase (None: the file's `exsitu_epochs`).
    pub s5_exsitu_epochs: Option<usize>,
    pub s5_drift_ages_seconds: Vec<f64>,
}

/// Training samples of the bundled data sets (`data/`: 8,000 / 2,000 digits; S2's sequences
/// built from them by S2's rules: 798; S4: 40 letters).
pub const MNIST_TRAIN: usize = 8000;
pub const MNIST_TEST: usize = 2000;
pub const SEQ_TRAIN: usize = 798;

/// The papers' numbers of device writes (mini-batch updates) that netc matches.
pub const S1_PAPER_UPDATES: usize = 1200; // 2 epochs × 60,000 / 100
pub const S2_PAPER_UPDATES: usize = 120; // the .net's 2 epochs × 5,958 sequences / 100
pub const S5_PAPER_UPDATES: usize = 550; // "550 hybrid-training iteration cycles"
/// S3's paper gives no update count; its in-situ runs get as many updates as the ex-situ
/// runs' software phase: `mlp_1t1r.net`'s 20 epochs × 8,000 digits / batch 50.
pub const S3_EXSITU_UPDATES: usize = 3200;

pub fn sizes(scale: Scale) -> Sizes {
    match scale {
        Scale::Full => Sizes {
            limit_train: None,
            limit_test: None,
            s1_updates: S1_PAPER_UPDATES,
            s2_limit_train: None,
            s2_limit_test: None,
            s2_updates: S2_PAPER_UPDATES,
            // 193 test sequences: one is 0.52 points, and one seed's noise-free − noisy
            // difference moved by ±5 points between seeds
            s2_seeds: (1..=5).collect(),
            s3_updates: S3_EXSITU_UPDATES,
            s3_defect_seeds: vec![1, 2],
            // in situ gets the software phase's budget: at 400 updates the in-situ network was
            // far from its plateau (76 % defect-free), at 1,600 still short of it (80 % defect-
            // free, 84.6 % at 3,200), while ex situ trained 3,200 updates to convergence
            s3_sweep_updates: S3_EXSITU_UPDATES,
            s3_fractions: vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
            s3_insitu_fractions: vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
            s3_seeds: vec![1, 2, 3],
            // one training pattern is 2.5 points: ten seeds brought the mean's standard error of
            // a ±7-point spread (three seeds, session 11) to about two points; twenty (session 13)
            // to about 1.5, for the 5 % vs 30 % row whose difference (−1.0) sat at the dead band
            s4_seeds: (1..=20).collect(),
            s4_epochs: None,
            s4_limit_test: None,
            s4_manhattan_updates: 100,
            s4_manhattan_seeds: 3,
            s5_updates: S5_PAPER_UPDATES,
            s5_miswrite_updates: S5_PAPER_UPDATES,
            s5_exsitu_epochs: None,
            s5_drift_ages_seconds: vec![0.0, 600.0, 3600.0, 7200.0],
        },
        Scale::Quick => Sizes {
            limit_train: Some(400),
            limit_test: Some(200),
            s1_updates: 20,
            s2_limit_train: Some(200),
            s2_limit_test: Some(100),
            s2_updates: 6,
            s2_seeds: vec![1],
            s3_updates: 20,
            s3_defect_seeds: vec![1],
            s3_sweep_updates: 10,
            s3_fractions: vec![0.0, 0.5],
            s3_insitu_fractions: vec![0.0, 0.5],
            s3_seeds: vec![1],
            s4_seeds: vec![1],
            s4_epochs: Some(60),
            s4_limit_test: None,
            s4_manhattan_updates: 10,
            s4_manhattan_seeds: 1,
            s5_updates: 10,
            s5_miswrite_updates: 10,
            s5_exsitu_epochs: Some(1),
            s5_drift_ages_seconds: vec![0.0, 7200.0],
        },
        Scale::Tiny => Sizes {
            limit_train: Some(100),
            limit_test: Some(50),
            s1_updates: 2,
            s2_limit_train: Some(60),
            s2_limit_test: Some(30),
            s2_updates: 2,
            s2_seeds: vec![1],
            s3_updates: 1,
            s3_defect_seeds: vec![1],
            s3_sweep_updates: 1,
            s3_fractions: vec![0.0, 0.5],
            s3_insitu_fractions: vec![0.5],
            s3_seeds: vec![1],
            s4_seeds: vec![1],
            s4_epochs: Some(3),
            s4_limit_test: Some(64),
            s4_manhattan_updates: 2,
            s4_manhattan_seeds: 1,
            s5_updates: 1,
            s5_miswrite_updates: 1,
            s5_exsitu_epochs: Some(1),
            s5_drift_ages_seconds: vec![0.0, 7200.0],
        },
    }
}

/// Epochs needed for `updates` mini-batch updates over `n_train` samples at `batch`.
pub fn epochs_for(updates: usize, batch: usize, n_train: usize) -> usize {
    let per_epoch = n_train.div_ceil(batch.max(1)).max(1);
    updates.div_ceil(per_epoch).max(1)
}

/// The mini-batch size declared in a `.net` file (its `training` block).
fn batch_of(net: &Path) -> Result<usize, ReproduceError> {
    let (nf, _) = crate::net::load(net)?;
    nf.training
        .map(|t| t.batch)
        .ok_or_else(|| ReproduceError::Usage(format!("{}: no `training` block", net.display())))
}

fn net_path(netlists: &Path, p: Paper) -> Result<PathBuf, ReproduceError> {
    let path = netlists.join(p.net_file());
    if !path.is_file() {
        return Err(ReproduceError::Usage(format!(
            "{}: not found (pass --netlists DIR, the directory with the reference .net files)",
            path.display()
        )));
    }
    Ok(path)
}

struct Planner {
    paper: Paper,
    scale: Scale,
    net: PathBuf,
    specs: Vec<RunSpec>,
}

impl Planner {
    #[allow(clippy::too_many_arguments)]
    fn add(&mut self, kind: &str, fraction: Option<f64>, seed: u64, label: String, ov: Overrides) {
        let id = match fraction {
            Some(f) => format!(
                "{}_{kind}_f{:02}_seed{seed}",
                self.paper.id(),
                (f * 100.0).round() as u32
            ),
            None => format!("{}_{kind}_seed{seed}", self.paper.id()),
        };
        self.specs.push(RunSpec {
            id,
            paper: self.paper,
            kind: kind.into(),
            fraction,
            seed,
            label,
            net: self.net.clone(),
            ov: Overrides {
                seed: Some(seed),
                ..ov
            },
            drift_ages_seconds: Vec::new(),
            keep_curves: false,
            scale: self.scale,
        });
    }

    fn last(&mut self) -> &mut RunSpec {
        let n = self.specs.len();
        &mut self.specs[n - 1]
    }
}

/// The S5 variant with three replicated convolvers (`replicas 3` on `c1` and `c3`), written into
/// the output directory with copies of its model cards beside it (same relative names), so that
/// its text — and with it the hash that keys the reuse of finished runs — does not depend on
/// where the checkout lives. A card named by an absolute path or one leaving its directory
/// (`..`) keeps an absolute path.
pub fn write_replicas_variant(net: &Path, out_dir: &Path) -> Result<PathBuf, ReproduceError> {
    let src = std::fs::read_to_string(net).map_err(|source| ReproduceError::Io {
        path: net.into(),
        source,
    })?;
    let base = net.parent().unwrap_or(Path::new("."));
    let mut text = String::with_capacity(src.len() + 256);
    for line in src.lines() {
        let mut l = line.to_string();
        // model cards: absolute paths (the variant does not sit next to models/)
        for key in ["model \"", "transistor \""] {
            if let Some(start) = l.find(key) {
                let from = start + key.len();
                if let Some(len) = l[from..].find('"') {
                    let name = &l[from..from + len];
                    let found = [
                        base.join(name),
                        base.join("models").join(name),
                        base.join("..").join("models").join(name),
                    ]
                    .into_iter()
                    .find(|c| c.is_file());
                    if let Some(c) = found {
                        let rel = Path::new(name);
                        let stays_inside = rel
                            .components()
                            .all(|k| matches!(k, std::path::Component::Normal(_)));
                        if stays_inside {
                            copy_beside(&c, &out_dir.join(rel))?;
                        } else {
                            let abs = std::fs::canonicalize(&c).unwrap_or(c);
                            l = format!("{}{}{}", &l[..from], abs.display(), &l[from + len..]);
                        }
                    }
                }
            }
        }
        let (is_c3, is_seed) = {
            let t = l.trim_start();
            (t.starts_with("layer c3 {"), t.starts_with("seed "))
        };
        if is_c3 {
            l = l.replacen("layer c3 {", "layer c3 { replicas 3;", 1);
        }
        text.push_str(&l);
        text.push('\n');
        if is_seed && text.contains("mapping {") && !text.contains("layer c1") {
            text.push_str(
                "  layer c1 { replicas 3; }   // three replicated convolvers (variant)\n",
            );
        }
    }
    if !text.contains("layer c1 { replicas 3; }") || !text.contains("layer c3 { replicas 3;") {
        return Err(ReproduceError::Usage(format!(
            "{}: could not add `replicas 3` to layers c1 and c3",
            net.display()
        )));
    }
    let header =
        "// Written by `netc reproduce s5`: cnn_8pe.net with three replicated convolvers\n\
                  // (`replicas 3` on c1 and c3), the paper's parallel-convolver experiment.\n";
    let path = out_dir.join("cnn_8pe_replicas3.net");
    crate::data::write_atomic(&path, format!("{header}{text}").as_bytes())?;
    // it must compile: parse it now, before any training
    crate::net::load(&path)?;
    Ok(path)
}

/// Copy the model card `from` to `to` (written whole, parents created).
fn copy_beside(from: &Path, to: &Path) -> Result<(), ReproduceError> {
    let bytes = std::fs::read(from).map_err(|source| ReproduceError::Io {
        path: from.into(),
        source,
    })?;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ReproduceError::Io {
            path: dir.into(),
            source,
        })?;
    }
    crate::data::write_atomic(to, &bytes)?;
    Ok(())
}

/// The runs of one paper's experiments at one scale.
pub fn plan(
    paper: Paper,
    scale: Scale,
    netlists: &Path,
    out_dir: &Path,
) -> Result<Vec<RunSpec>, ReproduceError> {
    let net = net_path(netlists, paper)?;
    let batch = batch_of(&net)?;
    let z = sizes(scale);
    let mut p = Planner {
        paper,
        scale,
        net: net.clone(),
        specs: Vec::new(),
    };
    let mnist_n = z.limit_train.unwrap_or(MNIST_TRAIN);
    let base = Overrides {
        limit_train: z.limit_train,
        limit_test: z.limit_test,
        ..Default::default()
    };
    match paper {
        Paper::S1 => {
            let ins = Overrides {
                mode: Some(TrainMode::Insitu),
                max_updates: Some(z.s1_updates),
                epochs: Some(epochs_for(z.s1_updates, batch, mnist_n)),
                ..base.clone()
            };
            p.add(
                "noise",
                None,
                1,
                format!(
                    "in situ, programming noise σ = 10 µS, {} updates",
                    z.s1_updates
                ),
                Overrides {
                    program_noise_siemens: Some(10e-6),
                    ..ins.clone()
                },
            );
            p.last().keep_curves = true;
            p.add(
                "noisefree",
                None,
                1,
                format!("in situ, noise-free programming, {} updates", z.s1_updates),
                Overrides {
                    program_noise_siemens: Some(0.0),
                    ..ins
                },
            );
            p.last().keep_curves = true;
        }
        Paper::S2 => {
            let n = z.s2_limit_train.unwrap_or(SEQ_TRAIN).min(SEQ_TRAIN);
            let ins = Overrides {
                mode: Some(TrainMode::Insitu),
                limit_train: z.s2_limit_train,
                limit_test: z.s2_limit_test,
                max_updates: Some(z.s2_updates),
                epochs: Some(epochs_for(z.s2_updates, batch, n)),
                ..Default::default()
            };
            for &seed in &z.s2_seeds {
                p.add(
                    "noise",
                    None,
                    seed,
                    format!("ConvLSTM in situ, σ = 10 µS, {} updates", z.s2_updates),
                    Overrides {
                        program_noise_siemens: Some(10e-6),
                        ..ins.clone()
                    },
                );
                p.last().keep_curves = seed == z.s2_seeds[0];
                p.add(
                    "noisefree",
                    None,
                    seed,
                    format!("ConvLSTM in situ, noise-free, {} updates", z.s2_updates),
                    Overrides {
                        program_noise_siemens: Some(0.0),
                        ..ins.clone()
                    },
                );
                p.last().keep_curves = seed == z.s2_seeds[0];
            }
        }
        Paper::S3 => {
            let ins = |updates: usize| Overrides {
                mode: Some(TrainMode::Insitu),
                max_updates: Some(updates),
                epochs: Some(epochs_for(updates, batch, mnist_n)),
                ..base.clone()
            };
            for &seed in &z.s3_defect_seeds {
                p.add(
                    "defects",
                    None,
                    seed,
                    "in situ, 11 % stuck at 10 µS, ≈2 % update variation (as declared)".into(),
                    ins(z.s3_updates),
                );
                p.add(
                    "defectfree",
                    None,
                    seed,
                    "in situ, defect-free (no stuck devices, no programming noise)".into(),
                    Overrides {
                        stuck_off_fraction: Some(0.0),
                        program_noise_siemens: Some(0.0),
                        ..ins(z.s3_updates)
                    },
                );
            }
            for &f in &z.s3_fractions {
                for &seed in &z.s3_seeds {
                    if z.s3_insitu_fractions.contains(&f) {
                        p.add(
                            "sweep_insitu",
                            Some(f),
                            seed,
                            format!("in situ, {:.0} % stuck OFF", f * 100.0),
                            Overrides {
                                stuck_off_fraction: Some(f),
                                ..ins(z.s3_sweep_updates)
                            },
                        );
                    }
                    p.add(
                        "sweep_exsitu",
                        Some(f),
                        seed,
                        format!("ex situ, {:.0} % stuck OFF", f * 100.0),
                        Overrides {
                            mode: Some(TrainMode::Exsitu),
                            stuck_off_fraction: Some(f),
                            ..base.clone()
                        },
                    );
                }
            }
        }
        Paper::S4 => {
            let ex = Overrides {
                mode: Some(TrainMode::Exsitu),
                epochs: z.s4_epochs,
                limit_test: z.s4_limit_test,
                stuck_off_fraction: Some(S4_STUCK_FRACTION),
                ..Default::default()
            };
            for &seed in &z.s4_seeds {
                p.add(
                    "oblivious5",
                    None,
                    seed,
                    "ex situ, hardware-oblivious, write-verify to 5 %".into(),
                    Overrides {
                        write_tolerance_rel: Some(0.05),
                        ..ex.clone()
                    },
                );
                p.add(
                    "oblivious30",
                    None,
                    seed,
                    "ex situ, hardware-oblivious, write-verify to 30 %".into(),
                    Overrides {
                        write_tolerance_rel: Some(0.30),
                        ..ex.clone()
                    },
                );
                // the paper's 30 % claim comes from its simulation, which ignores the wires:
                // both tolerances again with ideal lines
                for (kind, tol) in [("oblivious5_ideal", 0.05), ("oblivious30_ideal", 0.30)] {
                    p.add(
                        kind,
                        None,
                        seed,
                        format!(
                            "ex situ, hardware-oblivious, write-verify to {:.0} %, ideal lines (0 Ω)",
                            100.0 * tol
                        ),
                        Overrides {
                            write_tolerance_rel: Some(tol),
                            ideal_lines: true,
                            ..ex.clone()
                        },
                    );
                }
                p.add(
                    "aware30",
                    None,
                    seed,
                    "ex situ, hardware-aware (knows the stuck devices), write-verify to 30 %"
                        .into(),
                    Overrides {
                        write_tolerance_rel: Some(0.30),
                        hardware_aware: true,
                        ..ex.clone()
                    },
                );
                if z.s4_seeds[..z.s4_manhattan_seeds.min(z.s4_seeds.len())].contains(&seed) {
                    p.add(
                        "manhattan",
                        None,
                        seed,
                        format!(
                            "in situ, Manhattan rule (one fixed-amplitude pulse per weight), {} updates",
                            z.s4_manhattan_updates
                        ),
                        Overrides {
                            mode: Some(TrainMode::Insitu),
                            optimizer: Some(Optimizer::Manhattan { step_siemens: 1e-6 }),
                            max_updates: Some(z.s4_manhattan_updates),
                            epochs: Some(z.s4_manhattan_updates),
                            ..ex.clone()
                        },
                    );
                }
            }
        }
        Paper::S5 => {
            // hybrid: `epochs` is the ex-situ phase, `insitu_epochs` the in-situ one
            let hyb = |updates: usize, n: usize| Overrides {
                mode: Some(TrainMode::Hybrid),
                epochs: z.s5_exsitu_epochs,
                max_updates: Some(updates),
                insitu_epochs: Some(epochs_for(updates, batch, n)),
                ..base.clone()
            };
            p.add(
                "chain",
                None,
                1,
                format!(
                    "hybrid: ex situ → quantised → transferred → FC in situ ({} updates)",
                    z.s5_updates
                ),
                hyb(z.s5_updates, mnist_n),
            );
            p.last().keep_curves = true;
            p.last().drift_ages_seconds = z.s5_drift_ages_seconds.clone();
            let tenth = (mnist_n / 10).max(batch);
            p.add(
                "miswrite",
                None,
                1,
                format!(
                    "10 % of weights mis-written, then hybrid on 10 % of the data ({} updates)",
                    z.s5_miswrite_updates
                ),
                Overrides {
                    miswrite_fraction: Some(0.1),
                    insitu_limit_train: Some(tenth),
                    ..hyb(z.s5_miswrite_updates, tenth)
                },
            );
            let variant = write_replicas_variant(&net, out_dir)?;
            p.add(
                "replicas",
                None,
                1,
                format!(
                    "three replicated convolvers (`replicas 3`), hybrid ({} updates)",
                    z.s5_updates
                ),
                hyb(z.s5_updates, mnist_n),
            );
            p.last().net = variant;
        }
    }
    Ok(p.specs)
}

/// S4: "5 % of the devices … i.e. 10 or less out of 400 total, could not be formed": devices
/// stuck (here at the low bound) in every S4 run, so that the hardware-aware training has
/// something to know.
pub const S4_STUCK_FRACTION: f64 = 0.025;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_cover_the_updates() {
        assert_eq!(epochs_for(1200, 100, 8000), 15); // 80 per epoch
        assert_eq!(epochs_for(1201, 100, 8000), 16);
        assert_eq!(epochs_for(120, 100, 798), 15); // 8 per epoch (the last one partial)
        assert_eq!(epochs_for(3, 100, 50), 3); // fewer samples than a batch: one update per epoch
        assert_eq!(epochs_for(0, 100, 8000), 1);
    }

    #[test]
    fn s3_in_situ_gets_the_software_phases_budget() {
        let net = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netlists/mlp_1t1r.net");
        let (file, _) = crate::net::load(&net).unwrap();
        let t = file.training.as_ref().unwrap();
        assert_eq!(S3_EXSITU_UPDATES, t.epochs * MNIST_TRAIN / t.batch);
    }

    #[test]
    fn plans_are_unique_and_parse() {
        let netlists = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netlists");
        let out = tempfile::tempdir().unwrap();
        for scale in [Scale::Full, Scale::Quick, Scale::Tiny] {
            let mut ids = std::collections::BTreeSet::new();
            for p in Paper::ALL {
                for s in plan(p, scale, &netlists, out.path()).unwrap() {
                    assert!(ids.insert(s.id.clone()), "duplicate id {}", s.id);
                    assert_eq!(s.ov.seed, Some(s.seed));
                }
            }
        }
        // the S5 variant carries three replicas of both convolutions
        let v = std::fs::read_to_string(out.path().join("cnn_8pe_replicas3.net")).unwrap();
        assert!(v.contains("layer c1 { replicas 3; }"));
        assert!(v.contains("layer c3 { replicas 3; split_rows 9; }"));
        // and is the same text wherever the checkout and the output directory are: a copy of
        // the netlists elsewhere writes it byte for byte (its hash keys the reuse of runs)
        let elsewhere = tempfile::tempdir().unwrap();
        let copy = elsewhere.path().join("netlists");
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::create_dir_all(elsewhere.path().join("models")).unwrap();
        std::fs::copy(netlists.join("cnn_8pe.net"), copy.join("cnn_8pe.net")).unwrap();
        for e in std::fs::read_dir(netlists.join("../models")).unwrap() {
            let e = e.unwrap();
            let to = elsewhere.path().join("models").join(e.file_name());
            std::fs::copy(e.path(), to).unwrap();
        }
        let out2 = elsewhere.path().join("out");
        std::fs::create_dir_all(&out2).unwrap();
        let p2 = write_replicas_variant(&copy.join("cnn_8pe.net"), &out2).unwrap();
        assert_eq!(std::fs::read_to_string(p2).unwrap(), v);
    }

    /// A small S1 record of `spec`'s run with its current settings.
    fn record_of(spec: &RunSpec) -> RunRecord {
        RunRecord {
            id: spec.id.clone(),
            paper: Paper::S1,
            kind: spec.kind.clone(),
            fraction: None,
            seed: 1,
            label: String::new(),
            net: String::new(),
            scale: Scale::Tiny,
            settings: settings_of(spec),
            mode: "insitu".into(),
            software: None,
            quantised: None,
            transferred: None,
            chip_final: AccRec {
                train: 0.5,
                test: 0.5,
            },
            batches: vec![],
            g_before_siemens: vec![],
            g_after_siemens: vec![],
            drift: vec![],
            updates: 2,
            cells_written: 0,
            pulses: 0,
            seconds: 0.0,
        }
    }

    /// S4's ideal-lines runs are their own experiments, and a run without the key keeps the
    /// settings (and so the record) it had before the key existed.
    #[test]
    fn ideal_lines_is_a_setting_only_when_set() {
        let netlists = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netlists");
        let out = tempfile::tempdir().unwrap();
        let specs = plan(Paper::S4, Scale::Tiny, &netlists, out.path()).unwrap();
        let kind = |k: &str| specs.iter().find(|s| s.kind == k).unwrap();
        let (real, ideal) = (kind("oblivious5"), kind("oblivious5_ideal"));
        assert!(!real.ov.ideal_lines && ideal.ov.ideal_lines);
        assert_eq!(settings_of(real).get("ideal_lines"), None);
        assert_eq!(settings_of(ideal)["ideal_lines"], json!(true));
        let mut same = settings_of(ideal);
        same.as_object_mut().unwrap().remove("ideal_lines");
        assert_eq!(same, settings_of(real));
        // the override zeroes every line resistance of the run, and only then
        let declared = crate::insitu::setup(&real.net, &real.ov).unwrap();
        let hw = &declared.file.hardware;
        assert!(hw.r_wire_ohm > 0.0 && hw.r_driver_ohm > 0.0 && hw.r_sense_ohm > 0.0);
        let zeroed = crate::insitu::setup(&ideal.net, &ideal.ov).unwrap();
        let hw = &zeroed.file.hardware;
        assert_eq!(
            (hw.r_wire_ohm, hw.r_driver_ohm, hw.r_sense_ohm),
            (0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn a_changed_setting_is_run_again() {
        let netlists = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netlists");
        let out = tempfile::tempdir().unwrap();
        let specs = plan(Paper::S1, Scale::Tiny, &netlists, out.path()).unwrap();
        let rec = record_of(&specs[0]);
        let path = out.path().join("r.json");
        std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
        assert_eq!(load_record(&path, &specs[0]).unwrap(), Some(rec.clone()));
        // the other run (noise-free) has other settings: not reused
        assert_eq!(load_record(&path, &specs[1]).unwrap(), None);
        let mut other = specs[0].clone();
        other.ov.max_updates = Some(99);
        assert_eq!(load_record(&path, &other).unwrap(), None);
        // the same settings on an edited `.net` file of the same name (one comment more): run again
        std::fs::create_dir(out.path().join("edited")).unwrap();
        let edited = out
            .path()
            .join("edited")
            .join(specs[0].net.file_name().unwrap());
        let mut text = std::fs::read_to_string(&specs[0].net).unwrap();
        text.push_str("\n// edited\n");
        std::fs::write(&edited, text).unwrap();
        let mut other = specs[0].clone();
        other.net = edited;
        assert_eq!(load_record(&path, &other).unwrap(), None);
        std::fs::write(&path, b"{ damaged").unwrap();
        assert_eq!(load_record(&path, &specs[0]).unwrap(), None);
    }

    #[test]
    fn a_record_and_run_dir_of_the_old_optimizer_keys_are_reused() {
        let netlists = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netlists");
        let out = tempfile::tempdir().unwrap();
        let mut spec = plan(Paper::S1, Scale::Tiny, &netlists, out.path()).unwrap()[0].clone();
        spec.ov.optimizer = Some(Optimizer::Manhattan { step_siemens: 1e-6 });
        let rec = record_of(&spec);
        let text = serde_json::to_string(&rec).unwrap();
        assert!(text.contains("\"step_siemens\""));
        // as the previous netc wrote it
        let old = text.replace("\"step_siemens\"", "\"step_s\"");
        let path = out.path().join("r.json");
        std::fs::write(&path, old).unwrap();
        assert_eq!(load_record(&path, &spec).unwrap(), Some(rec));
        // the old run directory (settings hashed with `step_s`) is resumed when it is the only one
        let fresh = run_dir(&spec, out.path());
        let legacy = settings_dir(
            &spec,
            out.path(),
            &rename_optimizer_keys(settings_of(&spec), false),
        );
        assert_ne!(fresh, legacy);
        std::fs::create_dir_all(&legacy).unwrap();
        assert_eq!(run_dir(&spec, out.path()), legacy);
        std::fs::create_dir_all(&fresh).unwrap();
        assert_eq!(run_dir(&spec, out.path()), fresh);
        // the optimisers read by their old key names
        let m: Optimizer =
            serde_json::from_str(r#"{"type": "manhattan", "step_s": 1e-6}"#).unwrap();
        assert_eq!(m, Optimizer::Manhattan { step_siemens: 1e-6 });
        let t: Optimizer =
            serde_json::from_str(r#"{"type": "threshold", "lr": 0.1, "threshold_s": 1.5e-6}"#)
                .unwrap();
        assert_eq!(
            t,
            Optimizer::Threshold {
                lr: 0.1,
                threshold_siemens: 1.5e-6
            }
        );
    }
}
