//! `netc solve FILE [--json | --csv]`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::netlist::Netlist;

use crate::solver::{self, AnalysisResult, SolveError};
use crate::spice::{self, SpiceError};

/// Solve a netlist's analyses (`.op`, `.dc`) and print the node voltages and source currents.
#[derive(Debug, Clone, clap::Args)]
pub struct SolveArgs {
    /// Netlist in netc's SPICE dialect.
    pub file: PathBuf,
    /// Print one JSON object (docs/spice-dialect.md: analyses in file order, `v(node)`, `i(vname)`).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV in long form: analysis,type,sweep,point,name,value.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SolveCmdError {
    #[error(transparent)]
    Parse(Box<SpiceError>),
    /// A solver error carries no source line of its own (or names one inside): the file is
    /// named in front.
    #[error("{}", with_file(path, source))]
    Solve {
        path: String,
        source: Box<SolveError>,
    },
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

/// `path: message`, unless the message is located in the file already.
fn with_file(path: &str, e: &SolveError) -> String {
    let m = e.to_string();
    if m.starts_with(path) {
        m
    } else {
        format!("{path}: {m}")
    }
}

/// Where a netlist comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    File(&'a Path),
    /// Netlist text; `name` stands for the file in located messages.
    Text {
        text: &'a str,
        name: &'a str,
    },
}

/// Parse a netlist (its front-end warnings are in `warnings`): the first step of `netc solve` and of
/// the Python `netc.solve`; the second is [`solver::run`], the JSON form [`solver::to_json`].
pub fn parse(source: Source<'_>) -> Result<Netlist, SolveCmdError> {
    match source {
        Source::File(p) => spice::parse_file(p),
        Source::Text { text, name } => spice::parse_str(text, name),
    }
    .map_err(|e| SolveCmdError::Parse(Box::new(e)))
}

/// `netc solve`: the process's last step. It does not free the netlist and the results (see the
/// end); library callers use [`parse`] and [`solver::run`] instead.
pub fn run(args: &SolveArgs) -> Result<(), SolveCmdError> {
    let netlist = parse(Source::File(&args.file))?;
    for w in &netlist.warnings {
        eprintln!("warning: {w}");
    }
    let results = solver::run(&netlist).map_err(|source| SolveCmdError::Solve {
        path: args.file.display().to_string(),
        source: Box::new(source),
    })?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        solver::write_json(&mut out, &results).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else if args.csv {
        write_csv(&mut out, &results)?;
    } else {
        write_table(&mut out, &netlist.title, &results)?;
    }
    out.flush()?;
    // The process ends here: freeing the netlist, the solver's results and their tens of
    // thousands of strings one by one cost ~5 % of a 64×64 crossbar's whole run, and the
    // operating system reclaims the memory at exit anyway.
    std::mem::forget(netlist);
    std::mem::forget(results);
    Ok(())
}

fn unit(name: &str) -> &'static str {
    if name.starts_with("i(") {
        "A"
    } else {
        "V"
    }
}

/// Long-form CSV: one row per value.
pub fn write_csv(out: &mut impl Write, results: &[AnalysisResult]) -> std::io::Result<()> {
    writeln!(out, "analysis,type,sweep,point,name,value")?;
    for (k, r) in results.iter().enumerate() {
        match r {
            AnalysisResult::Op { values } => {
                for (n, v) in values {
                    writeln!(out, "{k},op,,,{n},{v:e}")?;
                }
            }
            AnalysisResult::Dc { sweep, points } => {
                for (p, vals) in points {
                    for (n, v) in vals {
                        writeln!(out, "{k},dc,{sweep},{p:e},{n},{v:e}")?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Human-readable tables.
pub fn write_table(
    out: &mut impl Write,
    title: &str,
    results: &[AnalysisResult],
) -> std::io::Result<()> {
    writeln!(out, "{title}")?;
    for r in results {
        match r {
            AnalysisResult::Op { values } => {
                writeln!(out, "\nOperating point")?;
                // Names are padded to a common column by hand: a `{:<w$}` width above 65535
                // (a 65k-character node name) panics in `format!`.
                let w = values
                    .keys()
                    .map(|k| k.chars().count())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                for (n, v) in values {
                    let pad = " ".repeat(w - n.chars().count());
                    writeln!(out, "  {n}{pad}  {v:>+.9e} {}", unit(n))?;
                }
            }
            AnalysisResult::Dc { sweep, points } => {
                writeln!(out, "\nDC sweep of {sweep}")?;
                let Some((_, first)) = points.first() else {
                    continue;
                };
                let names: Vec<&String> = first.keys().collect();
                write!(out, "  {sweep:>16}")?;
                for n in &names {
                    write!(out, "  {n:>16}")?;
                }
                writeln!(out)?;
                for (p, vals) in points {
                    write!(out, "  {:>+16.6e}", p)?;
                    for n in &names {
                        write!(out, "  {:>+16.9e}", vals[*n])?;
                    }
                    writeln!(out)?;
                }
            }
        }
    }
    Ok(())
}
