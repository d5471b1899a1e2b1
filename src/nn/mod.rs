//! Layers with backprop, optimisers, matmul backends and the training loop.

pub mod backend;
pub mod circuit;
pub mod convlstm;
pub mod from_net;
pub mod layers;
pub mod loss;
pub mod matrix;
pub mod model;
pub mod optim;
pub mod plot;
pub mod presets;
pub mod train;

use std::path::PathBuf;
use thiserror::Error;

pub use backend::{
    BackendError, EncodedBackend, ForwardCtx, IdealBackend, LayerId, LinearCodec, MatmulBackend,
    Pass, Update, UpdateCtx, UpdateReport, WeightCodec,
};
pub use layers::{LayerSpec, Pad};
pub use loss::LossSpec;
pub use matrix::Matrix;
pub use model::{Model, ModelBuilder, ModelSpec, WeightsFile};
pub use optim::{Optimizer, OptimizerSpec};

#[derive(Debug, Error)]
pub enum NnError {
    #[error("shape error: {0}")]
    Shape(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("{0}")]
    Format(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("plot {path}: {msg}")]
    Plot { path: PathBuf, msg: String },
    #[error("unknown preset {0:?} (known: s1, s2, s3, s4, s5)")]
    UnknownPreset(String),
}
