//! `netc data fetch mnist [--dir CACHE]`, `netc data info [DIR]`.

use crate::data::fetch::{default_cache_dir, fetch_mnist};
use crate::data::idx::{bundled_mnist, read_dir};
use crate::data::DataError;
use clap::{Args as ClapArgs, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: DataCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DataCmd {
    /// Download a dataset (only `mnist`) with checksums into a cache directory.
    Fetch {
        /// Dataset name: mnist.
        name: String,
        /// Cache directory (default: ~/.cache/netc/mnist).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Summarise a directory of IDX files (default: the bundled subset).
    Info { dir: Option<PathBuf> },
}

pub fn run(a: &Args) -> Result<(), DataError> {
    match &a.cmd {
        DataCmd::Fetch { name, dir } => {
            if name != "mnist" {
                return Err(DataError::Invalid(format!(
                    "unknown dataset {name:?} (known: mnist)"
                )));
            }
            let dir = dir.clone().unwrap_or_else(default_cache_dir);
            fetch_mnist(&dir, |l| eprintln!("{l}"))?;
            super::with_stdout(|o| writeln!(o, "{}", dir.display())).map_err(stdout_err)?;
        }
        DataCmd::Info { dir } => {
            let (tr, te) = match dir {
                Some(d) => read_dir(d)?,
                None => bundled_mnist()?,
            };
            for (name, s) in [("train", &tr), ("test", &te)] {
                let mut counts = [0usize; 256];
                s.labels.iter().for_each(|&l| counts[l as usize] += 1);
                let per: Vec<String> = counts
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c > 0)
                    .map(|(l, c)| format!("{l}:{c}"))
                    .collect();
                super::with_stdout(|o| {
                    writeln!(
                        o,
                        "{name}: {} images {}x{}; labels {}",
                        s.len(),
                        s.rows,
                        s.cols,
                        per.join(" ")
                    )
                })
                .map_err(stdout_err)?;
            }
        }
    }
    Ok(())
}

fn stdout_err(source: std::io::Error) -> DataError {
    DataError::Io {
        path: PathBuf::from("<stdout>"),
        source,
    }
}
