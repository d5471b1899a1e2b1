//! netc — circuit-level simulator and compiler for memristor crossbar neural networks.

pub mod cli;
pub mod data;
pub mod expr;
pub mod netlist;
pub mod nn;
pub mod span;
