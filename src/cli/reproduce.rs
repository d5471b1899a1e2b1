//! `netc reproduce s1|s2|s3|s4|s5|all [--quick] [--out DIR] [--force]`: the reference papers'
//! experiments (`crate::reproduce`), each number next to the paper's with the direction of every
//! effect, into `results.md`, `results.json` and plots.

use std::path::PathBuf;

use crate::reproduce::{self, Config, Paper, Scale};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Which papers: s1, s2, s3, s4, s5 (comma-separated) or all.
    pub which: String,
    /// Every experiment on a small subset (a few minutes; what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// Smaller still (the debug-build integration test); numbers mean nothing.
    #[arg(long, hide = true)]
    pub tiny: bool,
    /// Output directory.
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// Run experiments again even if their JSON is already in the output directory.
    #[arg(long)]
    pub force: bool,
    /// Directory with the reference `.net` files (default: ./netlists, else the source tree's).
    #[arg(long)]
    pub netlists: Option<PathBuf>,
    /// No progress bars, no per-run lines.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(a: &Args) -> Result<(), reproduce::ReproduceError> {
    let cfg = Config {
        papers: Paper::parse_list(&a.which)?,
        scale: if a.tiny {
            Scale::Tiny
        } else if a.quick {
            Scale::Quick
        } else {
            Scale::Full
        },
        out_dir: a.out.clone(),
        netlists_dir: a
            .netlists
            .clone()
            .unwrap_or_else(reproduce::default_netlists_dir),
        force: a.force,
        progress: !a.quiet,
    };
    let s = reproduce::run(&cfg)?;
    let io = |source| reproduce::ReproduceError::Io {
        path: PathBuf::from("<stdout>"),
        source,
    };
    crate::cli::with_stdout(|o| {
        for t in &s.tables {
            writeln!(o, "{}", t.title)?;
            for r in &t.rows {
                writeln!(
                    o,
                    "  {:<62} paper {:<28} netc {:<34} agrees: {}",
                    r.experiment,
                    r.paper_effect,
                    r.netc_effect,
                    r.agrees.word()
                )?;
            }
        }
        for (p, secs) in &s.seconds_per_paper {
            if *secs > 0.0 {
                writeln!(o, "{}: {:.1} s of runs", p.id(), secs)?;
            }
        }
        writeln!(
            o,
            "{} runs done, {} reused; results in {}",
            s.ran.len(),
            s.reused.len(),
            cfg.out_dir.join("results.md").display()
        )
    })
    .map_err(io)
}
