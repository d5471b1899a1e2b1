use clap::{Parser, Subcommand};
use netc::cli;

/// netc — circuit-level simulator and compiler for memristor crossbar neural networks.
#[derive(Debug, Parser)]
#[command(name = "netc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Solve a SPICE-dialect netlist (.op, .dc) with sparse nodal analysis.
    Solve(cli::solve::SolveArgs),
}

fn main() {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match &cli.command {
        Command::Solve(a) => cli::solve::run(a).map_err(anyhow::Error::from),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
