//! Command implementations: thin argument structs (clap) and a `run` per command; the work
//! lives in the library modules.
pub mod compile;
pub mod solve;
pub mod xbar;
