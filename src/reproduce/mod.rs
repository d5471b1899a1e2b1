//! `netc reproduce`: the five reference papers' experiments run from their `.net` files through
//! the in-situ trainer ([`crate::insitu`]), each number next to the paper's, with the direction
//! and size of every effect (who beats whom, by how much) and whether netc agrees.
//!
//! Every experiment is a set of trainer runs ([`experiments::RunSpec`]); each run's result is
//! written to `DIR/runs/ID.json` as soon as it finishes, and a run whose JSON is already there is
//! not run again (`force` redoes it). The tables ([`tables`]), `results.md`, `results.json` and
//! the plots are then built from those JSON files alone, so an interrupted reproduction resumes
//! where it stopped and a finished one can be re-rendered without training.

pub mod effect;
pub mod experiments;
pub mod plot;
pub mod report;
pub mod tables;

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::insitu;

pub use experiments::{RunRecord, RunSpec};
pub use tables::{PaperTable, Row};

/// One error type for `netc reproduce`.
#[derive(Debug, thiserror::Error)]
pub enum ReproduceError {
    #[error("{0}")]
    Usage(String),
    #[error("run `{id}`: {source}")]
    Run {
        id: String,
        #[source]
        source: Box<insitu::InsituError>,
    },
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::data::DataError),
    #[error("plot {path}: {msg}")]
    Plot { path: PathBuf, msg: String },
}

/// A reference paper (system S1–S5 of `/work/shared/REFERENCE.md`, `netlists/*.net`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Paper {
    S1,
    S2,
    S3,
    S4,
    S5,
}

impl Paper {
    pub const ALL: [Paper; 5] = [Paper::S1, Paper::S2, Paper::S3, Paper::S4, Paper::S5];

    /// `s1` … `s5`, or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<Paper>, ReproduceError> {
        let mut out = Vec::new();
        for w in s.split(',') {
            match w.trim().to_ascii_lowercase().as_str() {
                "all" => return Ok(Paper::ALL.to_vec()),
                "s1" => out.push(Paper::S1),
                "s2" => out.push(Paper::S2),
                "s3" => out.push(Paper::S3),
                "s4" => out.push(Paper::S4),
                "s5" => out.push(Paper::S5),
                other => {
                    return Err(ReproduceError::Usage(format!(
                        "unknown paper `{other}`: expected s1, s2, s3, s4, s5 or all"
                    )))
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub fn id(self) -> &'static str {
        match self {
            Paper::S1 => "s1",
            Paper::S2 => "s2",
            Paper::S3 => "s3",
            Paper::S4 => "s4",
            Paper::S5 => "s5",
        }
    }

    /// The `.net` file in `netlists/`.
    pub fn net_file(self) -> &'static str {
        match self {
            Paper::S1 => "lenet.net",
            Paper::S2 => "convlstm.net",
            Paper::S3 => "mlp_1t1r.net",
            Paper::S4 => "mlp_passive.net",
            Paper::S5 => "cnn_8pe.net",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Paper::S1 => "S1 — 1T1R CNN, in-situ training (Wang et al., Nat. Mach. Intell. 2019)",
            Paper::S2 => {
                "S2 — 1T1R ConvLSTM, in-situ training (Wang et al., Nat. Mach. Intell. 2019)"
            }
            Paper::S3 => "S3 — 1T1R MLP, in-situ training (Li et al., Nat. Commun. 2018)",
            Paper::S4 => "S4 — passive 0T1R MLP (Bayat et al., Nat. Commun. 2018)",
            Paper::S5 => "S5 — 8-PE 1T1R CNN, hybrid training (Yao et al., Nature 2020)",
        }
    }
}

/// How much of each experiment to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// The full protocol (what README quotes).
    Full,
    /// Every experiment on a small subset (CI; a few minutes in a release build).
    Quick,
    /// Even smaller: the debug-build integration test.
    Tiny,
}

/// A reproduction to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub papers: Vec<Paper>,
    pub scale: Scale,
    pub out_dir: PathBuf,
    /// Directory holding `lenet.net` … `cnn_8pe.net`.
    pub netlists_dir: PathBuf,
    /// Re-run experiments whose JSON is already in `out_dir`.
    pub force: bool,
    pub progress: bool,
}

/// `netlists/` of the working directory, else the one next to this crate's sources.
pub fn default_netlists_dir() -> PathBuf {
    let here = PathBuf::from("netlists");
    if here.join(Paper::S1.net_file()).is_file() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netlists")
}

/// What a reproduction did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub tables: Vec<PaperTable>,
    /// Runs done now (the others were read from their JSON files).
    pub ran: Vec<String>,
    pub reused: Vec<String>,
    /// Wall seconds per paper spent on runs done now.
    pub seconds_per_paper: Vec<(Paper, f64)>,
    pub files: Vec<PathBuf>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReproduceError + '_ {
    move |source| ReproduceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Run (or reuse) every experiment of the configured papers, then write `results.md`,
/// `results.json` and the plots into `out_dir`.
pub fn run(cfg: &Config) -> Result<Summary, ReproduceError> {
    if cfg.papers.is_empty() {
        return Err(ReproduceError::Usage("no paper to reproduce".into()));
    }
    let runs_dir = cfg.out_dir.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(io_err(&runs_dir))?;
    // plan everything first: a bad .net fails before any training
    let mut specs = Vec::new();
    for &p in &cfg.papers {
        specs.extend(experiments::plan(
            p,
            cfg.scale,
            &cfg.netlists_dir,
            &cfg.out_dir,
        )?);
    }
    let bar = if cfg.progress {
        let b = ProgressBar::new(specs.len() as u64);
        b.set_style(
            ProgressStyle::with_template(
                "reproduce {pos}/{len} runs [{bar:30}] {msg} {elapsed} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut summary = Summary {
        tables: Vec::new(),
        ran: Vec::new(),
        reused: Vec::new(),
        seconds_per_paper: cfg.papers.iter().map(|&p| (p, 0.0)).collect(),
        files: Vec::new(),
    };
    let mut records = Vec::new();
    for spec in &specs {
        bar.set_message(spec.id.clone());
        let path = runs_dir.join(format!("{}.json", spec.id));
        if !cfg.force && path.is_file() {
            if let Some(r) = experiments::load_record(&path, spec)? {
                records.push(r);
                summary.reused.push(spec.id.clone());
                bar.inc(1);
                continue;
            }
        }
        if cfg.force {
            // a forced run starts over: no checkpoint of an earlier attempt is resumed
            let d = experiments::run_dir(spec, &cfg.out_dir);
            if d.is_dir() {
                std::fs::remove_dir_all(&d).map_err(io_err(&d))?;
            }
        }
        let t0 = Instant::now();
        // the trainer draws its own bars; ours steps aside while it runs
        let rec = bar.suspend(|| {
            if cfg.progress {
                eprintln!("[{}] {}", spec.id, spec.label);
            }
            experiments::execute(spec, &cfg.out_dir, cfg.progress)
        })?;
        let secs = t0.elapsed().as_secs_f64();
        if let Some(e) = summary
            .seconds_per_paper
            .iter_mut()
            .find(|(p, _)| *p == spec.paper)
        {
            e.1 += secs;
        }
        let bytes = serde_json::to_vec_pretty(&rec).map_err(|source| ReproduceError::Json {
            path: path.clone(),
            source,
        })?;
        crate::data::write_atomic(&path, &bytes)?;
        records.push(rec);
        summary.ran.push(spec.id.clone());
        bar.inc(1);
    }
    bar.finish_and_clear();
    for &p in &cfg.papers {
        let recs: Vec<&RunRecord> = records.iter().filter(|r| r.paper == p).collect();
        summary.tables.push(tables::build(p, cfg.scale, &recs));
    }
    summary.files = report::write_all(&cfg.out_dir, cfg.scale, &summary.tables, &records)?;
    Ok(summary)
}
