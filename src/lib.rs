//! netc — circuit-level simulator and compiler for memristor crossbar neural networks.

pub mod expr;
pub mod netlist;
pub mod span;
pub mod circuit;
pub mod peers;
pub mod xbar;
