//! Datasets: IDX files (MNIST, Fashion-MNIST), the bundled 10k MNIST subset,
//! S1 preprocessing, S2's MNIST-sequence set and S4's 4×4 letters.

pub mod fetch;
pub mod idx;
pub mod letters;
pub mod preprocess;
pub mod sequence;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid gzip stream: {msg}")]
    Gzip { path: String, msg: String },
    #[error("{path}: expected magic 0x{expected:08x} for {what}, found 0x{found:08x}")]
    Magic {
        path: String,
        what: &'static str,
        expected: u32,
        found: u32,
    },
    #[error("{path}: truncated {what}: header promises {expected} bytes, file has {found}")]
    Truncated {
        path: String,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{path}: {msg}")]
    Header { path: String, msg: String },
    #[error("label count {labels} differs from image count {images}")]
    Count { images: usize, labels: usize },
    #[error("{dir}: no {what} file found (tried {tried})")]
    Missing {
        dir: PathBuf,
        what: &'static str,
        tried: String,
    },
    #[error("download of {url} failed: {msg}")]
    Fetch { url: String, msg: String },
    #[error("{file}: SHA-256 mismatch: expected {expected}, got {found}")]
    Checksum {
        file: String,
        expected: String,
        found: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A labelled dataset: one sample per row of `x` (`sample_len` values each,
/// channel-major `[c, h, w]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub shape: [usize; 3],
    pub x: Vec<f64>,
    pub labels: Vec<usize>,
    pub n_classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn sample(&self, i: usize) -> &[f64] {
        let l = self.sample_len();
        &self.x[i * l..(i + 1) * l]
    }
    /// The first `n` samples (all if fewer).
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            shape: self.shape,
            x: self.x[..n * self.sample_len()].to_vec(),
            labels: self.labels[..n].to_vec(),
            n_classes: self.n_classes,
        }
    }
}

/// A train / test pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
}

/// Remove the temporary files a killed run left in `dir`: the `.tmpXXXXXX` files of
/// [`write_atomic`] (tempfile's names) and the hidden `.floorplan-PID.png` of the compiler.
/// Returns how many were removed. Outputs are published by rename, so a temporary file is
/// never an output; a run owns its output directory while it runs.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let tmp = name.len() == 10 && name.starts_with(".tmp");
        let plan = name.starts_with(".floorplan-") && name.ends_with(".png");
        if (tmp || plan)
            && e.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(e.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Write `bytes` to `path` whole or not at all ([`crate::atomic::write`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    crate::atomic::write(path, bytes).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}
