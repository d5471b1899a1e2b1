//! TEMPORARY compile shim for the `crate::insitu` API (branch `insitu`), deleted when that branch
//! is merged. It produces no numbers: `run` and `chip_accuracy_at` always fail.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub use crate::net::spec::TrainMode;

#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub mode: Option<TrainMode>,
    pub epochs: Option<usize>,
    pub max_updates: Option<usize>,
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    pub seed: Option<u64>,
    pub program_noise_siemens: Option<f64>,
    pub stuck_off_fraction: Option<f64>,
    pub miswrite_fraction: Option<f64>,
    pub write_tolerance_rel: Option<f64>,
    pub optimizer: Option<crate::net::spec::Optimizer>,
    pub hardware_aware: bool,
    pub trainable: Option<Vec<String>>,
    pub insitu_epochs: Option<usize>,
    pub batch: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub out_dir: Option<PathBuf>,
    pub resume: bool,
    pub progress: bool,
    pub stop_after_updates: Option<usize>,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Acc {
    pub train: f64,
    pub test: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchPoint {
    pub update: usize,
    pub loss: f64,
    pub batch_acc: f64,
}

pub struct RunResult {
    pub network: String,
    pub mode: TrainMode,
    pub software: Option<Acc>,
    pub quantised: Option<Acc>,
    pub transferred: Option<Acc>,
    pub chip_final: Acc,
    pub batches: Vec<BatchPoint>,
    pub epochs: Vec<crate::nn::train::EpochMetrics>,
    pub g_before_siemens: Vec<f64>,
    pub g_after_siemens: Vec<f64>,
    pub updates: usize,
    pub cells_written: u64,
    pub pulses: u64,
    pub seconds: f64,
    pub interrupted: bool,
    pub chip: crate::device::chip::Chip,
    pub model: crate::nn::model::Model,
}

#[derive(Debug, thiserror::Error)]
pub enum InsituError {
    #[error("the in-situ trainer (branch `insitu`) is not merged yet")]
    NotLanded,
}

pub fn run(_net: &Path, _ov: &Overrides, _opts: &RunOptions) -> Result<RunResult, InsituError> {
    Err(InsituError::NotLanded)
}

pub fn chip_accuracy_at(
    _net: &Path,
    _ov: &Overrides,
    _r: &RunResult,
    _age_seconds: f64,
    _read_seed: u64,
) -> Result<Acc, InsituError> {
    Err(InsituError::NotLanded)
}
