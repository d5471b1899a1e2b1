use clap::{Parser, Subcommand};

/// netc — circuit-level simulator and compiler for memristor crossbar neural networks.
#[derive(Parser)]
#[command(name = "netc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Map a `.net` network onto crossbar arrays: report, mapping.json, floorplan, netlists.
    Compile(netc::cli::compile::CompileArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Compile(args) => netc::cli::compile::run(&args)?,
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
