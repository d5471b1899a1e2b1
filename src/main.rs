use clap::{Parser, Subcommand};
use netc::cli;

/// netc — circuit-level simulator and compiler for memristor crossbar neural networks.
#[derive(Parser)]
#[command(name = "netc", version, about)]
struct Cli {
    /// Memory netc may plan to use (e.g. 512M, 8G); requests estimated above it are refused
    /// before anything is allocated. Default: the memory the system reports as available.
    #[arg(long, global = true, value_parser = parse_max_memory)]
    max_memory: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Solve a SPICE-dialect netlist (.op, .dc) with sparse nodal analysis.
    Solve(cli::solve::SolveArgs),
    /// Map a `.net` network onto crossbar arrays: report, mapping.json, floorplan, netlists.
    Compile(cli::compile::CompileArgs),
    /// Solve a crossbar array: inference, single-cell read (sneak paths), programming pulse.
    Xbar(Box<cli::xbar::XbarArgs>),
    /// Train a network (ideal, encoded or circuit backend); metrics.csv, weights, checkpoint.
    Train(cli::train::Args),
    /// Evaluate trained weights; compare backends.
    Eval(cli::eval::Args),
    /// Datasets: fetch MNIST, inspect IDX files.
    Data(cli::data::Args),
    /// Parameter sweeps: plan, run locally, submit to Slurm, collect.
    Sweep(cli::sweep::Args),
    /// Program every array of a compiled network into a chip (device physics, write operations).
    Program(cli::program::ProgramArgs),
    /// Reproduce the reference papers' experiments (S1–S5): results.md, results.json, plots.
    Reproduce(cli::reproduce::Args),
}

fn parse_max_memory(s: &str) -> Result<u64, String> {
    netc::limits::parse_size(s).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(b) = cli.max_memory {
        netc::limits::set_max_memory(b);
    }
    match cli.command {
        Command::Solve(a) => cli::solve::run(&a)?,
        Command::Compile(a) => cli::compile::run(&a)?,
        Command::Xbar(a) => cli::xbar::run(&a)?,
        Command::Train(a) if cli::train::chip_run(&a) => {
            cli::train::run_chip(&a)?;
        }
        Command::Train(a) => cli::train::run(&a)?,
        Command::Eval(a) => cli::eval::run(&a)?,
        Command::Data(a) => cli::data::run(&a)?,
        Command::Sweep(a) => cli::sweep::run(&a)?,
        Command::Program(a) => cli::program::run(&a)?,
        Command::Reproduce(a) => cli::reproduce::run(&a)?,
    }
    Ok(())
}

fn main() {
    // A closed pipe (`netc eval … | head -1`) ends the process quietly, as it does any Unix tool:
    // Rust ignores SIGPIPE by default, which turns every later write into an EPIPE error.
    netc::cli::restore_sigpipe();
    // freed memory stays with the process for reuse (see the function's docs)
    netc::retain_freed_memory();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {}", netc::cli::error_chain(e.as_ref()));
        std::process::exit(1);
    }
}
