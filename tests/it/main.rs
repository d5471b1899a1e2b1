//! All integration tests in one test binary (`cargo test --test it [FILTER]`; one module per
//! former file, e.g. `cargo test --test it verify_ngspice`). One binary links once: with twenty
//! separate binaries, each ~200 MB of debug info, linking was most of `cargo test --no-run`
//! (docs/build-time.md).

#[macro_use]
mod common;
mod compile_cli;
mod compile_encode;
mod compile_errors;
mod compile_netlists;
mod compile_reports;
mod data_idx;
mod data_sets;
mod device_circuit;
mod device_laws;
mod eval_chip;
mod fuzz;
mod hostile_cli;
mod insitu;
mod nn_circuit;
mod nn_cli;
mod nn_from_net;
mod nn_gradcheck;
mod nn_optim;
mod nn_train;
mod one_lowering;
mod reproduce;
mod spice_examples;
mod spice_frontend;
mod spice_roundtrip;
mod sweep;
mod verify_ngspice;
mod xbar_bulk;
mod xbar_cli;
mod xbar_engine_api;
mod xbar_ngspice;
mod xbar_props;
