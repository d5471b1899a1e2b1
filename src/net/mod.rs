//! The `.net` network description language: what the network is (`network`), what it runs on
//! (`hardware`), how it is placed (`mapping`) and how it is trained (`training`).
//!
//! Phases: [`parse`] (pest grammar `grammar/net.pest`, `include` resolution) → [`ast`] (generic
//! statements with spans) → [`spec`] (typed, validated blocks, device model cards loaded) →
//! [`ir`] (shape inference, parameter and MAC counts). [`load`] runs them all.

pub mod ast;
pub mod card;
pub mod ir;
pub mod parse;
pub mod spec;
pub mod units;

use crate::span::Span;
use std::path::Path;

pub use card::{CardError, MemristorCard, MosCard};
pub use ir::{LayerIr, MatrixShape, NetworkIr, Shape};
pub use spec::{
    CellKind, HardwareSpec, LayerKind, LayerMapping, LayerSpec, MappingSpec, NetFile, NetworkSpec,
    Optimizer, Orientation, Padding, Placement, SenseSpec, TrainMode, TrainingSpec, TransistorSpec,
    WeightScale,
};

/// Every error of the language front end. Variants with a span render as
/// `file:line:col: message` followed by the source line and a caret.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{}", .span.render(&format!("cannot read included file `{path}`: {message}")))]
    Include {
        span: Span,
        path: String,
        message: String,
    },
    #[error("{}", .span.render(&format!("include cycle: `{path}` includes itself")))]
    IncludeCycle { span: Span, path: String },
    #[error("{}", .span.render(&format!("syntax error: {message}")))]
    Syntax { span: Span, message: String },
    #[error("{}", .span.render(.message))]
    Invalid { span: Span, message: String },
    #[error("{}", .span.render(&format!("shape mismatch: {message}")))]
    Shape { span: Span, message: String },
    #[error("{}", .span.render(&format!("duplicate name `{name}` (first defined at {first})")))]
    Duplicate {
        span: Span,
        name: String,
        first: Box<Span>,
    },
    #[error("{}", .span.render(&format!("unknown name `{name}`: {message}")))]
    UnknownName {
        span: Span,
        name: String,
        message: String,
    },
    #[error("{}", .span.render(&format!("unused name `{name}`: {message}")))]
    Unused {
        span: Span,
        name: String,
        message: String,
    },
    #[error("{}", .span.render(&format!("unknown model file `{path}` (looked in {searched})")))]
    UnknownModel {
        span: Span,
        path: String,
        searched: String,
    },
    #[error("{}", .span.render(&format!("impossible conductance window: {message}")))]
    Window { span: Span, message: String },
    #[error("{}\n{source}", .span.render(&format!("model card `{card}`")))]
    Card {
        span: Span,
        card: String,
        source: Box<card::CardError>,
    },
    /// A size beyond the memory budget (see `crate::limits`).
    #[error("{}", .span.render(&format!("too large: {message}")))]
    TooLarge { span: Span, message: String },
}

impl NetError {
    /// The source location of the error, when there is one.
    pub fn span(&self) -> Option<&Span> {
        match self {
            NetError::Io { .. } => None,
            NetError::Include { span, .. }
            | NetError::IncludeCycle { span, .. }
            | NetError::Syntax { span, .. }
            | NetError::Invalid { span, .. }
            | NetError::Shape { span, .. }
            | NetError::Duplicate { span, .. }
            | NetError::UnknownName { span, .. }
            | NetError::Unused { span, .. }
            | NetError::UnknownModel { span, .. }
            | NetError::Window { span, .. }
            | NetError::Card { span, .. }
            | NetError::TooLarge { span, .. } => Some(span),
        }
    }
}

/// Parse, check and shape-infer a `.net` file: the one call most users need.
pub fn load(path: &Path) -> Result<(NetFile, NetworkIr), NetError> {
    let stmts = parse::parse_file(path)?;
    let file = spec::NetFile::from_ast(&stmts, path)?;
    let ir = ir::NetworkIr::infer(&file.network)?;
    file.check_against(&ir)?;
    Ok((file, ir))
}

/// Like [`load`] but from source text (`name` is used in spans; includes resolve against `base_dir`).
pub fn load_str(src: &str, name: &str, base_dir: &Path) -> Result<(NetFile, NetworkIr), NetError> {
    let stmts = parse::parse_str(src, name, base_dir)?;
    let file = spec::NetFile::from_ast(&stmts, &base_dir.join(name))?;
    let ir = ir::NetworkIr::infer(&file.network)?;
    file.check_against(&ir)?;
    Ok((file, ir))
}
