//! Command-line front ends (thin: the work lives in the library).

pub mod data;
pub mod eval;
pub mod train;
