//! netc — circuit-level simulator and compiler for memristor crossbar neural networks.
pub mod circuit;
pub mod cli;
pub mod data;
pub mod expr;
pub mod mapping;
pub mod net;
pub mod netlist;
pub mod nn;
pub mod peers;
pub mod solver;
pub mod span;
pub mod spice;
pub mod xbar;
