//! Command implementations: thin argument structs (clap) and a `run` per command; the work
//! lives in the library modules.
pub mod compile;
pub mod data;
pub mod eval;
pub mod solve;
pub mod train;
pub mod xbar;
