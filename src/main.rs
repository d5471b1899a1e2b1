use clap::{Parser, Subcommand};
use netc::cli;

/// netc — circuit-level simulator and compiler for memristor crossbar neural networks.
#[derive(Parser)]
#[command(name = "netc", version, about)]
struct Cli {
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
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Solve(a) => cli::solve::run(&a)?,
        Command::Compile(a) => cli::compile::run(&a)?,
        Command::Xbar(a) => cli::xbar::run(&a)?,
        Command::Train(a) => cli::train::run(&a)?,
        Command::Eval(a) => cli::eval::run(&a)?,
        Command::Data(a) => cli::data::run(&a)?,
    }
    Ok(())
}

fn main() {
    // freed memory stays with the process for reuse (see the function's docs)
    netc::retain_freed_memory();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
