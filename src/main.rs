use clap::{Parser, Subcommand};
use netc::cli;

#[derive(Parser)]
#[command(
    name = "netc",
    version,
    about = "Circuit-level simulator and compiler for memristor crossbar neural networks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a network (ideal or encoded backend).
    Train(cli::train::Args),
    /// Evaluate trained weights; compare backends.
    Eval(cli::eval::Args),
    /// Datasets: fetch MNIST, inspect IDX files.
    Data(cli::data::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Train(a) => cli::train::run(&a)?,
        Cmd::Eval(a) => cli::eval::run(&a)?,
        Cmd::Data(a) => cli::data::run(&a)?,
    }
    Ok(())
}
