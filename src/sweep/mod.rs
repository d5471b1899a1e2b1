//! Parameter sweeps: a TOML sweep file ([`file`]) expands into points with stable ids and
//! derived seeds ([`plan`]); points run locally in parallel ([`runner`]) or as Slurm job-array
//! tasks ([`slurm`]), each writing its own result file atomically; [`collect`] merges the results
//! into CSV/JSON tables and plots. Job kinds (train, eval, xbar) live in [`jobs`].
//!
//! A sweep directory holds `manifest.json`, `results/<id>.json` (one per finished point),
//! `points/<id>/` (files a job writes), `slurm/` (scripts, task lists, logs, job ids) and what
//! `collect` writes (`collected.csv`, `collected.json`, `plots/`).

pub mod collect;
pub mod file;
pub mod jobs;
pub mod plan;
pub mod runner;
pub mod slurm;

use crate::span::Span;
use std::path::Path;

pub use file::{load as load_file, SweepSpec};
pub use jobs::JobKind;
pub use plan::{plan, Manifest, Point};
pub use runner::{PointResult, Status};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{}", .span.render(.message))]
    Invalid { span: Span, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Slurm(String),
    #[error("{0}")]
    Plot(String),
    /// Some points failed (the sweep itself ran).
    #[error("{failed} of {total} points failed (see `netc sweep status`)")]
    PointsFailed { failed: usize, total: usize },
}

pub(crate) fn io_err(path: &Path, e: impl std::fmt::Display) -> SweepError {
    SweepError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Write a file whole or not at all ([`crate::atomic::write`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SweepError> {
    crate::atomic::write(path, bytes).map_err(|e| io_err(path, e))
}

/// This machine's host name (stamped into results).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
