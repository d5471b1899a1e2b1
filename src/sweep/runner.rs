//! Running points: one point in this process (`netc sweep run-point`, what a Slurm task runs)
//! and the local runner (`netc sweep run`), which runs every unfinished point as a child process
//! of the netc binary, several at a time, so that a crash, a panic or an out-of-memory kill of
//! one point leaves the others and the runner untouched.

use super::jobs::{Metrics, PointCtx};
use super::plan::{Manifest, Point};
use super::{host_name, io_err, write_atomic, SweepError};
use serde_json::Value as Json;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

pub const RESULTS_DIR: &str = "results";
pub const POINTS_DIR: &str = "points";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
}

/// `results/<id>.json`: everything needed to use a point's result without the manifest.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PointResult {
    pub id: String,
    pub index: usize,
    pub status: Status,
    /// Exit status of the process that ran the point (0 when it succeeded; a failed job exits 1;
    /// a crash has the signal's shell code 128 + N).
    pub exit_status: Option<i32>,
    pub error: Option<String>,
    pub metrics: Metrics,
    pub kind: String,
    pub params: serde_json::Map<String, Json>,
    pub replicate: Option<usize>,
    pub seed: u64,
    pub netc_version: String,
    pub manifest_hash: String,
    pub wall_time_seconds: f64,
    pub host: String,
    /// Which attempt this was (1 = first run).
    pub attempt: usize,
    /// Slurm job and task that ran it, when it ran under Slurm.
    pub slurm: Option<String>,
}

pub fn result_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(RESULTS_DIR).join(format!("{id}.json"))
}

/// A point's result, if its file exists and is whole.
pub fn read_result(dir: &Path, id: &str) -> Option<PointResult> {
    let text = std::fs::read_to_string(result_path(dir, id)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_result(dir: &Path, r: &PointResult) -> Result<(), SweepError> {
    let text = serde_json::to_string_pretty(r).expect("result serialises");
    write_atomic(&result_path(dir, &r.id), text.as_bytes())
}

fn slurm_tag() -> Option<String> {
    let job = std::env::var("SLURM_ARRAY_JOB_ID")
        .or_else(|_| std::env::var("SLURM_JOB_ID"))
        .ok()?;
    Some(match std::env::var("SLURM_ARRAY_TASK_ID") {
        Ok(t) => format!("{job}_{t}"),
        Err(_) => job,
    })
}

fn base_result(m: &Manifest, p: &Point, attempt: usize) -> PointResult {
    PointResult {
        id: p.id.clone(),
        index: p.index,
        status: Status::Failed,
        exit_status: None,
        error: None,
        metrics: Metrics::new(),
        kind: m.spec.kind.name().into(),
        params: p.params.clone(),
        replicate: p.replicate,
        seed: p.seed,
        netc_version: env!("CARGO_PKG_VERSION").into(),
        manifest_hash: m.hash.clone(),
        wall_time_seconds: 0.0,
        host: host_name(),
        attempt,
        slurm: slurm_tag(),
    }
}

/// Run one point in this process and write its result (a panic in the job is caught and recorded
/// as a failure).
pub fn run_point(dir: &Path, m: &Manifest, p: &Point, attempt: usize) -> PointResult {
    let work_dir = dir.join(POINTS_DIR).join(&p.id);
    let t0 = Instant::now();
    let outcome = std::fs::create_dir_all(&work_dir)
        .map_err(|e| format!("{}: {e}", work_dir.display()))
        .and_then(|_| {
            let ctx = PointCtx {
                spec: &m.spec,
                point: p,
                work_dir: work_dir.clone(),
            };
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.spec.kind.run(&ctx)))
                .unwrap_or_else(|e| {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    Err(format!("panic: {msg}"))
                })
        });
    let mut r = base_result(m, p, attempt);
    r.wall_time_seconds = t0.elapsed().as_secs_f64();
    match outcome {
        Ok(metrics) => {
            r.status = Status::Ok;
            r.exit_status = Some(0);
            r.metrics = metrics;
        }
        Err(e) => {
            r.exit_status = Some(1);
            r.error = Some(e);
        }
    }
    if let Err(e) = write_result(dir, &r) {
        eprintln!("error: {e}");
    }
    r
}

/// Which points a `run-point` call runs.
pub enum Selection {
    /// Task `index` of a task list (`slurm/tasks-N.json`), or the manifest's point `index`.
    Index {
        index: usize,
        tasks: Option<PathBuf>,
    },
    /// One point by id.
    Id(String),
}

/// Task list of a submission: `tasks[i]` are the point ids array task `i` runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskList {
    pub manifest_hash: String,
    pub tasks: Vec<Vec<String>>,
}

/// `netc sweep run-point`: run the selected points here, one after the other, skipping those
/// with an `ok` result unless `force`. Threads: `SLURM_CPUS_PER_TASK` when set.
pub fn run_points(
    dir: &Path,
    sel: &Selection,
    attempt: usize,
    force: bool,
) -> Result<Vec<PointResult>, SweepError> {
    if let Some(n) = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        // the first call wins; a second one in the same process changes nothing
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    let m = Manifest::read(dir)?;
    let ids: Vec<String> = match sel {
        Selection::Id(id) => vec![id.clone()],
        Selection::Index { index, tasks: None } => vec![m
            .points
            .get(*index)
            .ok_or_else(|| {
                SweepError::Usage(format!(
                    "--index {index}: the sweep has {} points",
                    m.points.len()
                ))
            })?
            .id
            .clone()],
        Selection::Index {
            index,
            tasks: Some(t),
        } => {
            let text = std::fs::read_to_string(t).map_err(|e| io_err(t, e))?;
            let list: TaskList = serde_json::from_str(&text).map_err(|e| io_err(t, e))?;
            list.tasks
                .get(*index)
                .ok_or_else(|| {
                    SweepError::Usage(format!(
                        "--index {index}: {} has {} tasks",
                        t.display(),
                        list.tasks.len()
                    ))
                })?
                .clone()
        }
    };
    let mut out = Vec::new();
    for id in ids {
        let p = m
            .point(&id)
            .ok_or_else(|| SweepError::Usage(format!("no point {id} in the manifest")))?;
        if !force {
            if let Some(r) = read_result(dir, &id).filter(|r| r.status == Status::Ok) {
                out.push(r);
                continue;
            }
        }
        out.push(run_point(dir, &m, p, attempt));
    }
    Ok(out)
}

/// Options of the local runner.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Points at a time (default: the machine's cores).
    pub jobs: usize,
    /// Extra attempts for a failing point.
    pub retry: usize,
    /// Run points that already have an `ok` result again.
    pub force: bool,
    pub progress: bool,
}

/// Counts after a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    pub total: usize,
    pub skipped: usize,
    pub ok: usize,
    pub failed: usize,
}

/// `netc sweep run`: every point without an `ok` result, `opts.jobs` at a time, each as a child
/// process `exe sweep run-point DIR --point ID`. A child that dies without writing its result
/// (crash, signal) gets a failed result with its exit status and the end of its stderr.
pub fn run_local(dir: &Path, exe: &Path, opts: &RunOptions) -> Result<RunSummary, SweepError> {
    let m = Manifest::read(dir)?;
    let mut summary = RunSummary {
        total: m.points.len(),
        ..Default::default()
    };
    let todo: VecDeque<(usize, usize)> = m
        .points
        .iter()
        .filter(|p| {
            let done =
                !opts.force && read_result(dir, &p.id).is_some_and(|r| r.status == Status::Ok);
            if done {
                summary.skipped += 1;
            }
            !done
        })
        .map(|p| (p.index, 1))
        .collect();
    let jobs = opts.jobs.max(1).min(todo.len().max(1));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads_per_point = (cores / jobs).max(1);
    let bar = if opts.progress {
        indicatif::ProgressBar::new(todo.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} points  {elapsed_precise} (eta {eta})  {msg}",
        )
        .expect("static template"),
    );
    let queue = Mutex::new(todo);
    let counts = Mutex::new((0usize, 0usize));
    let first_err: Mutex<Option<SweepError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let next = queue.lock().expect("queue").pop_front();
                let Some((index, attempt)) = next else { break };
                let p = &m.points[index];
                match run_child(dir, exe, &m, p, attempt, threads_per_point) {
                    Ok(r) if r.status == Status::Failed && attempt <= opts.retry => {
                        queue.lock().expect("queue").push_back((index, attempt + 1));
                    }
                    Ok(r) => {
                        let mut c = counts.lock().expect("counts");
                        if r.status == Status::Ok {
                            c.0 += 1;
                        } else {
                            c.1 += 1;
                        }
                        bar.set_message(if c.1 > 0 {
                            format!("{} failed", c.1)
                        } else {
                            String::new()
                        });
                        bar.inc(1);
                    }
                    Err(e) => {
                        first_err.lock().expect("err").get_or_insert(e);
                        break;
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = first_err.into_inner().expect("err") {
        return Err(e);
    }
    let (ok, failed) = counts.into_inner().expect("counts");
    summary.ok = ok;
    summary.failed = failed;
    Ok(summary)
}

fn run_child(
    dir: &Path,
    exe: &Path,
    m: &Manifest,
    p: &Point,
    attempt: usize,
    threads: usize,
) -> Result<PointResult, SweepError> {
    let t0 = Instant::now();
    // what the result file held before (file times are too coarse to tell a fresh result)
    let before = std::fs::read(result_path(dir, &p.id)).ok();
    let out = Command::new(exe)
        .arg("sweep")
        .arg("run-point")
        .arg(dir)
        .arg("--point")
        .arg(&p.id)
        .arg("--attempt")
        .arg(attempt.to_string())
        .arg("--force")
        .env("RAYON_NUM_THREADS", threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| io_err(exe, e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        let log = dir.join(POINTS_DIR).join(&p.id).join("stderr.txt");
        let _ = write_atomic(&log, stderr.as_bytes());
    }
    let code = out.status.code().or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        out.status.signal().map(|s| 128 + s)
    });
    // a result counts only if this child wrote it (not one left by an earlier run)
    let fresh = std::fs::read(result_path(dir, &p.id))
        .ok()
        .is_some_and(|now| Some(&now) != before.as_ref());
    match read_result(dir, &p.id).filter(|_| fresh) {
        Some(r) => Ok(r),
        _ => {
            // the child died before writing its result
            let mut r = base_result(m, p, attempt);
            r.exit_status = code;
            r.wall_time_seconds = t0.elapsed().as_secs_f64();
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            r.error = Some(format!(
                "the point's process ended with status {} without a result{}",
                code.map_or("?".into(), |c| c.to_string()),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tail.join(" | "))
                }
            ));
            write_result(dir, &r)?;
            Ok(r)
        }
    }
}
