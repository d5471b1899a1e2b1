//! The elaborated circuit as nodal equations: devices stamping into a fixed sparse pattern.

pub mod mos1;
