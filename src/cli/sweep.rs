//! `netc sweep plan|run|submit|status|resubmit|collect` (+ hidden `run-point`): thin wrappers over
//! [`crate::sweep`].

use crate::sweep::runner::{run_local, run_points, RunOptions, Selection};
use crate::sweep::slurm::{queued, submissions, submit, unfinished, SubmitOptions};
use crate::sweep::{collect, file, plan, Manifest, Status, SweepError};
use clap::{Args as ClapArgs, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Cmd {
    /// Check a sweep file and write DIR/manifest.json (every point, its id and seed).
    Plan {
        /// The sweep file (TOML).
        file: PathBuf,
        /// Sweep directory (default: runs/sweeps/<name>).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run the unfinished points here, several at a time (a sweep file is planned first).
    Run {
        /// Sweep directory, or a sweep file (planned into --dir or runs/sweeps/<name>).
        target: PathBuf,
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Points at a time (default: the machine's cores).
        #[arg(long, short)]
        jobs: Option<usize>,
        /// Extra attempts for a failing point.
        #[arg(long, default_value_t = 0)]
        retry: usize,
        /// Run points that already have a result again.
        #[arg(long)]
        force: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Submit the unfinished points to Slurm as one job array.
    Submit {
        dir: PathBuf,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// Points done, failed and missing (and the sweep's Slurm tasks still queued).
    Status {
        dir: PathBuf,
        /// Wait until no task of this sweep is queued or running in Slurm.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Submit only the missing and failed points again.
    Resubmit {
        dir: PathBuf,
        #[command(flatten)]
        slurm: SlurmArgs,
        /// Submit even if tasks of this sweep are still queued or running.
        #[arg(long)]
        force: bool,
    },
    /// Merge results into collected.csv / collected.json / summary.csv and draw plots/.
    Collect {
        dir: PathBuf,
        #[arg(long)]
        no_plots: bool,
    },
    /// Run points in this process (what Slurm tasks and the local runner call).
    #[command(hide = true)]
    RunPoint {
        dir: PathBuf,
        /// Task index in --tasks, or the point's index in the manifest.
        #[arg(long, conflicts_with = "point", required_unless_present = "point")]
        index: Option<usize>,
        /// Task list written by `submit`.
        #[arg(long, requires = "index")]
        tasks: Option<PathBuf>,
        /// One point by id.
        #[arg(long)]
        point: Option<String>,
        #[arg(long, default_value_t = 1)]
        attempt: usize,
        /// Run even if the point has an `ok` result.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, ClapArgs)]
pub struct SlurmArgs {
    /// Submit with Slurm's sbatch (the only engine).
    #[arg(long, required = true)]
    pub slurm: bool,
    /// Points per array task.
    #[arg(long, default_value_t = 1)]
    pub chunk: usize,
    /// At most this many tasks running at once (`--array=…%N`).
    #[arg(long)]
    pub throttle: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per task, e.g. 00:30:00.
    #[arg(long)]
    pub time: Option<String>,
    /// Memory per task, e.g. 2G.
    #[arg(long)]
    pub mem: Option<String>,
    /// Extra sbatch option, one `#SBATCH` line each (repeatable), e.g. --sbatch=--account=abc.
    #[arg(long = "sbatch", allow_hyphen_values = true)]
    pub extra: Vec<String>,
    /// Write the script and task list, do not submit.
    #[arg(long)]
    pub dry_run: bool,
}

fn exe() -> Result<PathBuf, SweepError> {
    std::env::current_exe().map_err(|e| SweepError::Usage(format!("cannot find netc itself: {e}")))
}

impl SlurmArgs {
    fn options(&self) -> Result<SubmitOptions, SweepError> {
        Ok(SubmitOptions {
            exe: exe()?,
            chunk: self.chunk,
            throttle: self.throttle,
            cpus_per_task: self.cpus_per_task,
            partition: self.partition.clone(),
            time: self.time.clone(),
            mem: self.mem.clone(),
            extra: self.extra.clone(),
            dry_run: self.dry_run,
        })
    }
}

fn plan_into(file_path: &Path, dir: Option<&Path>) -> Result<(PathBuf, Manifest), SweepError> {
    let spec = file::load(file_path)?;
    let m = plan(&spec)?;
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("runs").join("sweeps").join(&spec.name));
    m.write(&dir)?;
    Ok((dir, m))
}

fn do_submit(dir: &Path, s: &SlurmArgs) -> Result<(), SweepError> {
    match submit(dir, &s.options()?)? {
        None => println!("nothing to submit: every point has a result"),
        Some(sub) => println!(
            "{} {} points in {} array tasks; script {}",
            match &sub.job_id {
                Some(id) => format!("submitted job {id}:"),
                None => "dry run (not submitted):".into(),
            },
            sub.points,
            sub.tasks,
            sub.script.display()
        ),
    }
    Ok(())
}

pub fn run(a: &Args) -> Result<(), SweepError> {
    match &a.cmd {
        Cmd::Plan { file, dir } => {
            let (dir, m) = plan_into(file, dir.as_deref())?;
            println!(
                "{} points ({} kind, manifest {}) in {}",
                m.points.len(),
                m.spec.kind.name(),
                m.hash,
                dir.join(crate::sweep::plan::MANIFEST_FILE).display()
            );
        }
        Cmd::Run {
            target,
            dir,
            jobs,
            retry,
            force,
            quiet,
        } => {
            let dir = if target.is_file() {
                plan_into(target, dir.as_deref())?.0
            } else {
                target.clone()
            };
            let opts = RunOptions {
                jobs: jobs
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                retry: *retry,
                force: *force,
                progress: !quiet,
            };
            let s = run_local(&dir, &exe()?, &opts)?;
            println!(
                "{}: {} points, {} already done, {} ran ok, {} failed",
                dir.display(),
                s.total,
                s.skipped,
                s.ok,
                s.failed
            );
            if s.failed > 0 {
                return Err(SweepError::PointsFailed {
                    failed: s.failed,
                    total: s.total,
                });
            }
        }
        Cmd::Submit { dir, slurm } => do_submit(dir, slurm)?,
        Cmd::Resubmit { dir, slurm, force } => {
            if !force {
                if let Some(q) = queued(dir) {
                    if !q.is_empty() {
                        return Err(SweepError::Slurm(format!(
                            "{} tasks of this sweep are still queued or running (wait with `netc sweep status --wait`, or --force)",
                            q.len()
                        )));
                    }
                }
            }
            do_submit(dir, slurm)?
        }
        Cmd::Status { dir, wait, timeout } => {
            let t0 = std::time::Instant::now();
            if *wait {
                loop {
                    match queued(dir) {
                        Some(q) if !q.is_empty() => {
                            if t0.elapsed().as_secs() > *timeout {
                                return Err(SweepError::Slurm(format!(
                                    "still {} tasks queued after {timeout} s",
                                    q.len()
                                )));
                            }
                            std::thread::sleep(std::time::Duration::from_millis(1000));
                        }
                        _ => break,
                    }
                }
            }
            status(dir)?;
        }
        Cmd::Collect { dir, no_plots } => {
            let c = collect::collect(dir, !no_plots)?;
            println!(
                "{} points: {} ok, {} failed, {} missing; {}, {}, {}",
                c.total,
                c.ok,
                c.failed,
                c.missing,
                c.csv.display(),
                c.json.display(),
                c.summary.display()
            );
            for p in &c.plots {
                println!("  {}", p.display());
            }
        }
        Cmd::RunPoint {
            dir,
            index,
            tasks,
            point,
            attempt,
            force,
        } => {
            let sel = match (point, index) {
                (Some(id), _) => Selection::Id(id.clone()),
                (None, Some(i)) => Selection::Index {
                    index: *i,
                    tasks: tasks.clone(),
                },
                (None, None) => return Err(SweepError::Usage("give --index or --point".into())),
            };
            let rs = run_points(dir, &sel, *attempt, *force)?;
            let failed = rs.iter().filter(|r| r.status == Status::Failed).count();
            for r in rs.iter().filter(|r| r.status == Status::Failed) {
                eprintln!(
                    "point {} ({}) failed: {}",
                    r.index,
                    r.id,
                    r.error.as_deref().unwrap_or("")
                );
            }
            if failed > 0 {
                return Err(SweepError::PointsFailed {
                    failed,
                    total: rs.len(),
                });
            }
        }
    }
    Ok(())
}

/// Print the state of every point (counts, then the failed ones with their errors).
fn status(dir: &Path) -> Result<(), SweepError> {
    let m = Manifest::read(dir)?;
    let (mut ok, mut failed) = (vec![], vec![]);
    for p in &m.points {
        match crate::sweep::runner::read_result(dir, &p.id) {
            Some(r) if r.status == Status::Ok => ok.push(r),
            Some(r) => failed.push(r),
            None => {}
        }
    }
    let missing = unfinished(dir, &m).len() - failed.len();
    println!(
        "{}: {} points: {} ok, {} failed, {} missing",
        m.spec.name,
        m.points.len(),
        ok.len(),
        failed.len(),
        missing
    );
    for r in &failed {
        println!(
            "  failed: point {} ({}) exit status {}: {}",
            r.index,
            r.id,
            r.exit_status.map_or("?".into(), |c| c.to_string()),
            r.error
                .as_deref()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
        );
    }
    let subs = submissions(dir);
    if !subs.is_empty() {
        match queued(dir) {
            Some(q) => {
                let running = q.iter().filter(|t| t.1 == "RUNNING").count();
                println!(
                    "slurm: {} submissions, {} tasks queued or running ({} running)",
                    subs.len(),
                    q.len(),
                    running
                );
                for (id, state, reason) in q.iter().take(20) {
                    println!("  {id} {state} {reason}");
                }
            }
            None => println!("slurm: {} submissions (squeue not available)", subs.len()),
        }
    }
    Ok(())
}
