//! `netc train (NET | --preset P) [--backend ideal|encoded|circuit] [--epochs N] [--seed S] [--out DIR] [--resume]`

use crate::nn::backend::{EncodedBackend, IdealBackend, LinearCodec, MatmulBackend};
use crate::nn::model::Model;
use crate::nn::presets::{preset, ImageSource, Preset};
use crate::nn::train::{read_json, train, TrainOptions};
use crate::nn::NnError;
use clap::{Args as ClapArgs, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Float weights, exact products.
    Ideal,
    /// Weights through the linear differential conductance codec.
    Encoded,
    /// The compiled arrays of the `.net` file solved at circuit level (wire resistance, cells,
    /// sense circuit as declared).
    Circuit,
    /// The circuit backend with the conductances of a programmed chip (`netc eval --chip`), read
    /// at `--age` with the device's drift and read noise.
    Chip,
}

/// Options shared by `train` and `eval` to pick the network, data and backend.
/// Samples planned when checking a dataset against the memory budget: the bundled set's 10,000
/// (a larger directory set is checked by its IDX headers as it is read).
const MIN_PLANNED_SAMPLES: u128 = 10_000;

#[derive(Debug, Clone, ClapArgs)]
pub struct NetArgs {
    /// Network file: a `.net` description (network, hardware, training) or a JSON preset
    /// (network + data + training defaults).
    pub net: Option<PathBuf>,
    /// Built-in network: s1 | s2 | s3 | s4 | s5 (docs/architecture.md, "Reference systems").
    #[arg(long, conflicts_with = "net")]
    pub preset: Option<String>,
    /// Read images from a directory of standard IDX files instead of the bundled subset.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use only the first N training samples.
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Use only the first N test samples.
    #[arg(long)]
    pub limit_test: Option<usize>,
    /// Encoded backend: smallest device conductance (S).
    #[arg(long, default_value_t = 2.5e-6)]
    pub g_min: f64,
    /// Encoded backend: largest device conductance (S).
    #[arg(long, default_value_t = 20e-6)]
    pub g_max: f64,
    /// Encoded backend: conductance levels per device (omit for analog).
    #[arg(long)]
    pub levels: Option<usize>,
    /// Circuit backend: wire segment resistance (Ω) instead of the `.net` file's.
    #[arg(long = "rw")]
    pub r_wire_ohm: Option<f64>,
    /// Circuit backend: solve nonlinear arrays (1T1R, sinh) by Newton for every vector instead
    /// of using their small-signal matrix (exact, but tens of ms per vector).
    #[arg(long)]
    pub exact_nonlinear: bool,
}

impl NetArgs {
    /// The recipe, and the network IR when it comes from a `.net` file.
    pub fn recipe_ir(&self) -> Result<(Preset, Option<crate::net::NetworkIr>), NnError> {
        let mut ir = None;
        let mut p = match (&self.net, &self.preset) {
            (Some(path), _) => {
                if path.extension().is_some_and(|e| e == "net") {
                    let (p, i) = crate::nn::from_net::recipe(path)?;
                    ir = Some(i);
                    p
                } else {
                    read_json::<Preset>(path)?
                }
            }
            (None, Some(name)) => preset(name)?,
            (None, None) => {
                return Err(NnError::Format(
                    "give a network file or --preset s1|s2|s3|s4|s5".into(),
                ))
            }
        };
        if let Some(dir) = &self.data_dir {
            use crate::nn::presets::DataSpec;
            match &mut p.data {
                DataSpec::Mnist { source, .. } | DataSpec::MnistSequence { source, .. } => {
                    *source = ImageSource::Dir { path: dir.clone() }
                }
                DataSpec::Letters { .. } => {
                    return Err(NnError::Format(
                        "--data-dir does not apply to the letters set".into(),
                    ))
                }
            }
        }
        Ok((p, ir))
    }

    pub fn recipe(&self) -> Result<Preset, NnError> {
        Ok(self.recipe_ir()?.0)
    }

    /// The recipe's data with its sample counts applied, then `--limit-train` / `--limit-test`.
    pub fn split(&self, p: &Preset) -> Result<crate::data::Split, NnError> {
        // Every sample becomes `input` f64 values (and a preprocessed copy on the way): a
        // 3000×3000 input over the bundled 10,000 digits is refused before loading.
        let input_len = p.model.input.iter().fold(1u128, |a, &d| a * d as u128);
        let samples = (self.limit_train.unwrap_or(usize::MAX) as u128)
            .saturating_add(self.limit_test.unwrap_or(usize::MAX) as u128)
            .min(MIN_PLANNED_SAMPLES);
        crate::limits::check(
            || {
                format!(
                    "the dataset of {} at network input {:?} ({samples} samples of {input_len} values)",
                    p.name, p.model.input
                )
            },
            samples.saturating_mul(input_len).saturating_mul(16),
        )
        .map_err(|e| NnError::Format(e.to_string()))?;
        let mut warnings = Vec::new();
        let mut s = p.samples.apply(p.data.load()?, &mut warnings)?;
        for w in warnings {
            eprintln!("{w}");
        }
        if let Some(n) = self.limit_train {
            s.train = s.train.take(n);
        }
        if let Some(n) = self.limit_test {
            s.test = s.test.take(n);
        }
        Ok(s)
    }

    pub fn backend(
        &self,
        kind: BackendKind,
        model: &Model,
    ) -> Result<Box<dyn MatmulBackend>, NnError> {
        Ok(match kind {
            BackendKind::Circuit => {
                let path = match &self.net {
                    Some(p) if p.extension().is_some_and(|e| e == "net") => p,
                    _ => {
                        return Err(NnError::Format(
                            "the circuit backend needs a .net file (it holds the hardware)".into(),
                        ))
                    }
                };
                let (file, ir) =
                    crate::net::load(path).map_err(|e| NnError::Format(e.to_string()))?;
                let ov = crate::nn::circuit::CircuitOverrides {
                    r_wire_ohm: self.r_wire_ohm,
                    exact_nonlinear: self.exact_nonlinear,
                    weight_scale: None,
                };
                Box::new(crate::nn::circuit::CircuitBackend::for_model(
                    &file, &ir, model, ov,
                )?)
            }
            BackendKind::Chip => return Err(NnError::Format(
                "the chip backend reads a programmed chip: `netc eval NET --weights W --chip CHIP`"
                    .into(),
            )),
            BackendKind::Ideal => Box::new(IdealBackend::new()),
            BackendKind::Encoded => Box::new(EncodedBackend::new(LinearCodec::new(
                self.g_min,
                self.g_max,
                self.levels,
            )?)),
        })
    }
}

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    /// Software training through this backend (presets and JSON recipes: ideal by default).
    /// Without it, a `.net` file is trained as its `training { mode }` says (`insitu`, `exsitu`,
    /// `hybrid`: `crate::insitu`).
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Training mode instead of the `.net` file's (`.net` files without `--backend`).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Stop the in-situ phase after this many mini-batch updates.
    #[arg(long)]
    pub max_updates: Option<usize>,
    /// Epochs (default: the preset's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed of weight initialisation and shuffling (default: the preset's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Mini-batch size (default: the preset's).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate (or Manhattan step) of the first epoch (default: the preset's).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Per-epoch learning-rate factor (default: the preset's).
    #[arg(long)]
    pub lr_decay: Option<f64>,
    /// Output directory (default: runs/<preset name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from <out>/checkpoint.json.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar or per-epoch lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Exsitu,
    Insitu,
    Hybrid,
}

impl From<ModeArg> for crate::insitu::TrainMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Exsitu => crate::insitu::TrainMode::Exsitu,
            ModeArg::Insitu => crate::insitu::TrainMode::Insitu,
            ModeArg::Hybrid => crate::insitu::TrainMode::Hybrid,
        }
    }
}

/// True when `netc train` runs the `.net` file's training mode on its chip ([`crate::insitu`]):
/// a `.net` file and no `--backend`.
pub fn chip_run(a: &Args) -> bool {
    a.backend.is_none()
        && a.net
            .net
            .as_ref()
            .is_some_and(|p| p.extension().is_some_and(|e| e == "net"))
}

/// The outcome of [`train_net`].
#[derive(Debug, Clone)]
pub struct Trained {
    /// The recipe's name.
    pub name: String,
    pub report: crate::nn::train::TrainReport,
    /// Where `model.json`, `metrics.json` and the checkpoint went.
    pub out_dir: PathBuf,
    /// The compiler's weights (`netc-weights/1`), for networks from a `.net` file.
    pub compiler_weights: Option<PathBuf>,
}

/// Train as `netc train` does (and the Python `netc.train`), writing into the output directory.
pub fn train_net(a: &Args) -> Result<Trained, NnError> {
    let (p, ir) = a.net.recipe_ir()?;
    for w in &p.not_applied {
        eprintln!("{w}");
    }
    let mut cfg = p.train.clone();
    if let Some(e) = a.epochs {
        if e == 0 {
            return Err(NnError::Format(
                "--epochs 0: nothing to train (give at least 1)".into(),
            ));
        }
        cfg.epochs = e;
    }
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    if let Some(b) = a.batch_size {
        cfg.batch_size = b;
    }
    if let Some(lr) = a.lr {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(NnError::Format(format!(
                "--lr must be finite and > 0, got {lr}"
            )));
        }
        cfg.optimizer = cfg.optimizer.with_lr(lr);
    }
    if let Some(d) = a.lr_decay {
        cfg.lr_decay = d;
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&p.name));
    // temporary files of a killed run are never outputs (outputs are published by rename)
    let stale = crate::data::remove_stale_temps(&out);
    if stale > 0 && !a.quiet {
        eprintln!(
            "note: removed {stale} temporary file(s) a killed run left in {}",
            out.display()
        );
    }
    if a.resume && !out.join(crate::nn::train::CHECKPOINT_FILE).is_file() {
        eprintln!(
            "warning: --resume: no {} in {}: training from the start",
            crate::nn::train::CHECKPOINT_FILE,
            out.display()
        );
    }
    let split = a.net.split(&p)?;
    let mut model = Model::new(p.model.clone())?;
    let mut backend = a
        .net
        .backend(a.backend.unwrap_or(BackendKind::Ideal), &model)?;
    if !a.quiet {
        eprintln!(
            "training {} on {} samples ({} test), {} weights, backend {}, {} epochs, batch {}",
            p.name,
            split.train.len(),
            split.test.len(),
            model.weights.iter().map(|w| w.data.len()).sum::<usize>(),
            backend.name(),
            cfg.epochs,
            cfg.batch_size
        );
    }
    let opts = TrainOptions {
        out_dir: Some(out.clone()),
        resume: a.resume,
        progress: !a.quiet,
        readback: false,
        stop_after: None,
    };
    let report = train(&mut model, backend.as_mut(), &split, &cfg, &opts)?;
    let mut compiler_weights = None;
    if let Some(ir) = &ir {
        let cw = crate::nn::from_net::compiler_weights(&model, ir)?;
        let path = out.join("weights.json");
        cw.save(&path).map_err(|e| NnError::Format(e.to_string()))?;
        compiler_weights = Some(path);
    }
    Ok(Trained {
        name: p.name,
        report,
        out_dir: out,
        compiler_weights,
    })
}

/// `netc train NET` on the chip: the `.net` file's mode (or `--mode`) through [`crate::insitu::run`].
pub fn run_chip(a: &Args) -> Result<crate::insitu::RunResult, crate::insitu::InsituError> {
    use crate::insitu::InsituError;
    let path = a
        .net
        .net
        .clone()
        .ok_or_else(|| InsituError::Usage("no .net file".into()))?;
    if a.batch_size.is_some() && a.batch_size == Some(0) {
        return Err(InsituError::Usage("--batch-size must be at least 1".into()));
    }
    if a.lr.is_some() || a.lr_decay.is_some() {
        return Err(InsituError::Usage(
            "--lr and --lr-decay apply to software training (--backend); a chip run uses the \
             .net file's optimizer"
                .into(),
        ));
    }
    let ov = crate::insitu::Overrides {
        mode: a.mode.map(Into::into),
        epochs: a.epochs,
        max_updates: a.max_updates,
        limit_train: a.net.limit_train,
        limit_test: a.net.limit_test,
        seed: a.seed,
        batch: a.batch_size,
        ..Default::default()
    };
    let (p, _) = a.net.recipe_ir()?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&p.name));
    let opts = crate::insitu::RunOptions {
        out_dir: Some(out.clone()),
        resume: a.resume,
        progress: !a.quiet,
        stop_after_updates: None,
    };
    let r = crate::insitu::run(&path, &ov, &opts)?;
    // the compiler's weights of the final model (what the chip holds)
    if let Ok((_, ir)) = crate::net::load(&path) {
        let cw = crate::nn::from_net::compiler_weights(&r.model, &ir)?;
        cw.save(&out.join("weights.json"))?;
    }
    let pct = |x: Option<crate::insitu::Acc>| match x {
        Some(a) => format!("train {:.2}%, test {:.2}%", 100.0 * a.train, 100.0 * a.test),
        None => "-".into(),
    };
    let mut lines = vec![format!(
        "{} ({:?}): {} in-situ updates, {} cells written, {} pulses, {:.1} s",
        r.network, r.mode, r.updates, r.cells_written, r.pulses, r.seconds
    )];
    if r.weights_skipped > 0 {
        lines.push(format!(
            "  {} weight updates below the write threshold were skipped",
            r.weights_skipped
        ));
    }
    if r.software.is_some() {
        lines.push(format!("  software     {}", pct(r.software)));
        lines.push(format!("  quantised    {}", pct(r.quantised)));
        lines.push(format!("  transferred  {}", pct(r.transferred)));
    }
    lines.push(format!("  chip (final) {}", pct(Some(r.chip_final))));
    lines.push(format!(
        "wrote {} (chip/, result.json, batches.csv, model.json, weights.json, plots)",
        out.display()
    ));
    super::with_stdout(|o| {
        for l in &lines {
            writeln!(o, "{l}")?;
        }
        Ok(())
    })
    .map_err(|e| InsituError::Io {
        path: "<stdout>".into(),
        message: e.to_string(),
    })?;
    Ok(r)
}

pub fn run(a: &Args) -> Result<(), NnError> {
    let t = train_net(a)?;
    if let Some(path) = &t.compiler_weights {
        super::with_stdout(|o| {
            writeln!(o, "compiler weights (netc-weights/1) in {}", path.display())
        })
        .map_err(stdout_err)?;
    }
    if let Some(m) = t.report.metrics.last() {
        super::with_stdout(|o| {
            writeln!(
                o,
                "{}: {} epochs, loss {:.4}, train {:.2}%, test {:.2}%; model in {}",
                t.name,
                m.epoch,
                m.loss,
                100.0 * m.train_acc,
                100.0 * m.test_acc,
                t.out_dir.join(crate::nn::train::MODEL_FILE).display()
            )
        })
        .map_err(stdout_err)?;
    }
    Ok(())
}

fn stdout_err(source: std::io::Error) -> NnError {
    NnError::Io {
        path: PathBuf::from("<stdout>"),
        source,
    }
}
