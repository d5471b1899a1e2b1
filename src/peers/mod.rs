//! Independent verification peers (ngspice), run as external processes.

pub mod ngspice;
