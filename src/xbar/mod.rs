//! The crossbar engine: a structured array model (passive, sinh, 1T1R cells; wire, driver and sense
//! resistances; virtual-ground or transimpedance sensing), exact fast solvers (sparse Cholesky with
//! nested dissection and the effective weight matrix `T`, a line-preconditioned conjugate-gradient
//! solver, nonlinear arrays in bulk by a chord iteration on the small-signal factor with Newton per
//! vector as fallback and reference), the operations inference / read / program,
//! and a netlist writer so that every case can be checked by ngspice.
//!
//! Library entry points for other modules (e.g. a training backend):
//! - [`Crossbar::passive`] (or the struct literal) to build an array from a conductance matrix;
//! - [`Engine::new`] then [`Engine::effective_weights`] → `T` (R × C, `I = Tᵀ·V`) and
//!   [`Engine::infer`] (k × R inputs → k × C outputs); [`Engine::set_conductances`] for a new
//!   conductance state of the same array (network and orderings kept);
//! - [`read`] and [`program`] for single-cell operations.

pub mod array;
pub mod badcrossbar;
pub mod budget;
pub mod bulk;
pub mod emit;
pub mod eval;
pub mod factor;
pub mod frontal;
pub mod kernel;
pub mod linear;
pub mod lines;
pub mod network;
pub mod newton;
pub mod ops;
pub mod pcg;
pub mod plot;
pub mod rows;
pub mod spec;

pub use array::{default_access_mos, CellKind, Crossbar, SenseKind};
pub use emit::emit_with;
pub use eval::Solved;
pub use network::{ColEnd, Network, RowEnd, Topology};
pub use newton::NewtonOptions;
pub use ops::{
    program, read, select_bias, solve_biased, BulkTimes, Engine, LinearMethod, ProgramResult,
    ReadResult, Scheme, SolveOptions,
};
pub use pcg::PcgOptions;

/// Errors of the crossbar engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum XbarError {
    #[error("invalid crossbar: {0}")]
    Invalid(String),
    #[error("numerical failure: {0}")]
    Numeric(String),
    #[error("no convergence after {iterations} iterations (residual {residual_a:e})")]
    NoConvergence { iterations: usize, residual_a: f64 },
    #[error("{0}")]
    Io(String),
}

/// True when `NETC_XBAR_TRACE` is set: stage timings go to stderr (read once per process).
pub(crate) fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("NETC_XBAR_TRACE").is_some())
}
