//! Slurm job arrays: `submit` writes a readable sbatch script and a task list into
//! `DIR/slurm/`, and submits the script as one array whose task `i` runs
//! `netc sweep run-point DIR --tasks slurm/tasks-N.json --index i` (the points bundled into that
//! task). Slurm schedules; results come back as files on the shared filesystem. Task indices only
//! select from the task list: ids and seeds belong to the points, so resubmitting a subset is safe.

use super::plan::Manifest;
use super::runner::{read_result, Status, TaskList};
use super::{io_err, write_atomic, SweepError};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SLURM_DIR: &str = "slurm";
const JOBS_FILE: &str = "jobs.json";

#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// The netc binary the tasks run (absolute).
    pub exe: PathBuf,
    /// Points per array task.
    pub chunk: usize,
    /// At most this many tasks at once (`--array=0-K%N`).
    pub throttle: Option<usize>,
    pub cpus_per_task: usize,
    pub partition: Option<String>,
    /// Time limit per task (`--time`, e.g. `00:10:00`).
    pub time: Option<String>,
    /// Memory per task (`--mem`, e.g. `2G`).
    pub mem: Option<String>,
    /// Further sbatch options, each written as one `#SBATCH` line (e.g. `--account=abc`).
    pub extra: Vec<String>,
    /// Write the script and task list but do not call sbatch.
    pub dry_run: bool,
}

/// One submission, as recorded in `slurm/jobs.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Submission {
    /// Slurm job id (`None` for a dry run).
    pub job_id: Option<String>,
    pub script: PathBuf,
    pub tasks_file: PathBuf,
    pub points: usize,
    pub tasks: usize,
}

fn jobs_path(dir: &Path) -> PathBuf {
    dir.join(SLURM_DIR).join(JOBS_FILE)
}

pub fn submissions(dir: &Path) -> Vec<Submission> {
    std::fs::read_to_string(jobs_path(dir))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Quote for a POSIX shell (single quotes).
fn sh(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The sbatch script of a submission.
pub fn script(
    dir: &Path,
    m: &Manifest,
    tasks_file: &Path,
    n_tasks: usize,
    o: &SubmitOptions,
) -> Result<String, SweepError> {
    for (what, v) in [
        ("--partition", &o.partition),
        ("--time", &o.time),
        ("--mem", &o.mem),
    ] {
        if let Some(v) = v {
            if v.is_empty() || v.chars().any(|c| c.is_whitespace()) {
                return Err(SweepError::Usage(format!("{what} {v:?}: one word")));
            }
        }
    }
    for e in &o.extra {
        if !e.starts_with("--") || e.contains('\n') {
            return Err(SweepError::Usage(format!(
                "--sbatch {e:?}: an sbatch option like --account=NAME"
            )));
        }
    }
    let logs = dir.join(SLURM_DIR).join("logs");
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!(
        "# netc sweep `{}`: {} points of manifest {} in {} array tasks.\n\
         # Written by `netc sweep submit`; edit and run `sbatch` on it again if needed.\n",
        m.spec.name,
        m.points.len(),
        m.hash,
        n_tasks
    ));
    s.push_str(&format!("#SBATCH --job-name=netc-{}\n", m.spec.name));
    let throttle = o.throttle.map(|n| format!("%{n}")).unwrap_or_default();
    s.push_str(&format!(
        "#SBATCH --array=0-{}{throttle}\n",
        n_tasks.saturating_sub(1)
    ));
    s.push_str(&format!(
        "#SBATCH --cpus-per-task={}\n",
        o.cpus_per_task.max(1)
    ));
    s.push_str("#SBATCH --ntasks=1\n");
    s.push_str(&format!("#SBATCH --output={}/%A_%a.out\n", logs.display()));
    if let Some(p) = &o.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &o.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(mm) = &o.mem {
        s.push_str(&format!("#SBATCH --mem={mm}\n"));
    }
    for e in &o.extra {
        s.push_str(&format!("#SBATCH {e}\n"));
    }
    s.push_str(
        "\n# one thread pool per task, sized by Slurm (netc reads SLURM_CPUS_PER_TASK itself too)\n",
    );
    s.push_str("export RAYON_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n");
    s.push_str(&format!(
        "exec {} sweep run-point {} --tasks {} --index \"$SLURM_ARRAY_TASK_ID\"\n",
        sh(&o.exe.display().to_string()),
        sh(&dir.display().to_string()),
        sh(&tasks_file.display().to_string()),
    ));
    Ok(s)
}

/// Points that have no `ok` result.
pub fn unfinished(dir: &Path, m: &Manifest) -> Vec<String> {
    m.points
        .iter()
        .filter(|p| !read_result(dir, &p.id).is_some_and(|r| r.status == Status::Ok))
        .map(|p| p.id.clone())
        .collect()
}

/// Submit the points without an `ok` result as one job array. Returns `None` when nothing is
/// left to run.
pub fn submit(dir: &Path, o: &SubmitOptions) -> Result<Option<Submission>, SweepError> {
    let dir = std::fs::canonicalize(dir).map_err(|e| io_err(dir, e))?;
    let m = Manifest::read(&dir)?;
    let ids = unfinished(&dir, &m);
    if ids.is_empty() {
        return Ok(None);
    }
    let chunk = o.chunk.max(1);
    let tasks: Vec<Vec<String>> = ids.chunks(chunk).map(|c| c.to_vec()).collect();
    let sdir = dir.join(SLURM_DIR);
    std::fs::create_dir_all(sdir.join("logs")).map_err(|e| io_err(&sdir, e))?;
    let mut prior = submissions(&dir);
    let n = prior.len() + 1;
    let tasks_file = sdir.join(format!("tasks-{n}.json"));
    let script_file = sdir.join(format!("submit-{n}.sbatch"));
    let list = TaskList {
        manifest_hash: m.hash.clone(),
        tasks,
    };
    write_atomic(
        &tasks_file,
        serde_json::to_string_pretty(&list)
            .expect("serialises")
            .as_bytes(),
    )?;
    let text = script(&dir, &m, &tasks_file, list.tasks.len(), o)?;
    write_atomic(&script_file, text.as_bytes())?;
    let job_id = if o.dry_run {
        None
    } else {
        let out = Command::new("sbatch")
            .arg("--parsable")
            .arg(&script_file)
            .output()
            .map_err(|e| SweepError::Slurm(format!("cannot run sbatch: {e}")))?;
        if !out.status.success() {
            return Err(SweepError::Slurm(format!(
                "sbatch {} failed: {}",
                script_file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(SweepError::Slurm(format!(
                "sbatch printed no job id: {text:?}"
            )));
        }
        Some(id)
    };
    let sub = Submission {
        job_id,
        script: script_file,
        tasks_file,
        points: ids.len(),
        tasks: list.tasks.len(),
    };
    prior.push(sub.clone());
    write_atomic(
        &jobs_path(&dir),
        serde_json::to_string_pretty(&prior)
            .expect("serialises")
            .as_bytes(),
    )?;
    Ok(Some(sub))
}

/// Array tasks of this sweep's jobs that Slurm still lists (pending or running), as
/// `(job_task, state, reason)`; `None` when squeue is not available.
pub fn queued(dir: &Path) -> Option<Vec<(String, String, String)>> {
    let ids: Vec<String> = submissions(dir)
        .into_iter()
        .filter_map(|s| s.job_id)
        .collect();
    if ids.is_empty() {
        return Some(vec![]);
    }
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i|%T|%r", "-j", &ids.join(",")])
        .output()
        .ok()?;
    if !out.status.success() {
        // squeue rejects job ids it has forgotten (all finished long ago): nothing queued
        let err = String::from_utf8_lossy(&out.stderr);
        return if err.contains("Invalid job id") {
            Some(vec![])
        } else {
            None
        };
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split('|');
                Some((
                    it.next()?.to_string(),
                    it.next()?.to_string(),
                    it.next().unwrap_or("").to_string(),
                ))
            })
            .collect(),
    )
}
