//! Mapping a checked network onto crossbar tiles: lowering and placement ([`lower`]), weight
//! encoding ([`encode`]), weights file and programming ([`weights`]), the mapping report
//! ([`report`]), the floorplan picture ([`floorplan`]) and SPICE netlist emission ([`emit`]).

pub mod array;
pub mod emit;
pub mod encode;
pub mod floorplan;
pub mod lower;
pub mod report;
pub mod weights;

pub use array::{crossbar, crossbar_of};
pub use encode::{Encoder, Pair};
pub use lower::{lower, Lowering, MappedMatrix, Tile};
pub use report::MappingReport;
pub use weights::{ArrayConductances, LayerWeights, Programmed, WeightsFile};

use crate::span::Span;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error(transparent)]
    Net(Box<crate::net::NetError>),
    #[error("{}", .span.render(&format!("layer `{layer}` does not fit: {message}")))]
    DoesNotFit {
        span: Span,
        layer: String,
        message: String,
    },
    #[error("weights file {path}: {message}")]
    Weights { path: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{}", .span.render(&format!("cannot emit: {message}")))]
    Emit { span: Span, message: String },
    #[error("{}", .span.render(&format!("cannot build the array: {message}")))]
    Lower { span: Span, message: String },
    #[error("floorplan: {0}")]
    Plot(String),
}

impl From<crate::net::NetError> for MappingError {
    fn from(e: crate::net::NetError) -> Self {
        MappingError::Net(Box::new(e))
    }
}

/// Write a file whole or not at all ([`crate::atomic::write`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MappingError> {
    crate::atomic::write(path, bytes).map_err(|e| MappingError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}
