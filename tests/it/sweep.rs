//! `netc sweep`: the sweep file and plan (overrides against hand-edited `.net` source, ids and
//! seeds independent of position), the local runner (results against `netc xbar` run directly and
//! the ideal product, failure isolation and retry, resume after a kill, whole result files) and a
//! real one-node Slurm (fail, fix, resubmit one point, same table as the local runner).

use crate::common::netc;
use netc::sweep::{self, jobs, runner, Status};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `netc sweep run FILE --dir DIR -q` and any further arguments.
fn sweep_run(file: &Path, dir: &Path, more: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "sweep",
        "run",
        file.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(more);
    netc(&args)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn net_overrides_equal_the_edited_source() {
    let t = tempfile::tempdir().unwrap();
    let base = repo().join("netlists/lenet.net");
    let f = write(
        t.path(),
        "s.toml",
        &format!(
            "kind = \"train\"\nbase = \"{}\"\nseeds = [42]\n[params]\n\
             \"hardware.r_wire\" = [3]\n\"hardware.arrays\" = [\"1 x 256x128\"]\n\
             \"training.epochs\" = [5]\n\"training.optimizer.lr\" = [0.02]\n",
            base.display()
        ),
    );
    let spec = sweep::load_file(&f).unwrap();
    let m = sweep::plan(&spec).unwrap();
    assert_eq!(m.points.len(), 1);
    let p = &m.points[0];
    assert_eq!(p.seed, 42);
    let (file, _) = jobs::net_with_overrides(&spec, p).unwrap();
    // the same edits made by hand in the source text
    let src = std::fs::read_to_string(&base).unwrap();
    let edited = src
        .replace("r_wire 1ohm;", "r_wire 3;")
        .replace("arrays 1 x 128x64;", "arrays 1 x 256x128;")
        .replace("epochs 2;", "epochs 5;")
        .replace("rmsprop { lr 0.01;", "rmsprop { lr 0.02;")
        .replace("  seed 1;\n}\n\ntraining", "  seed 42;\n}\n\ntraining")
        .replace(
            "noise 10uS;                  // simulated programming noise sigma\n  seed 1;",
            "noise 10uS;\n  seed 42;",
        );
    assert_ne!(src, edited);
    assert_eq!(edited.matches("seed 42;").count(), 2, "{edited}");
    let (want, _) = netc::net::load_str(&edited, "lenet.net", base.parent().unwrap()).unwrap();
    // the spec structs serialise without their spans
    let js = |v: serde_json::Result<Value>| v.unwrap();
    assert_eq!(
        js(serde_json::to_value(&file.hardware)),
        js(serde_json::to_value(&want.hardware))
    );
    assert_eq!(
        js(serde_json::to_value(&file.mapping)),
        js(serde_json::to_value(&want.mapping))
    );
    assert_eq!(
        js(serde_json::to_value(&file.training)),
        js(serde_json::to_value(&want.training))
    );
    assert_eq!(file.hardware.r_wire_ohm, 3.0);
    assert_eq!((file.hardware.rows, file.hardware.cols), (256, 128));

    // a bad value is caught at plan time by the `.net` checker, located in the sweep file
    let f = write(
        t.path(),
        "bad.toml",
        &format!(
            "kind = \"train\"\nbase = \"{}\"\n[params]\n\"hardware.r_wire\" = [1, -2]\n",
            base.display()
        ),
    );
    let e = sweep::plan(&sweep::load_file(&f).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.toml:4:1:"), "{e}");
    assert!(e.contains("must be ≥ 0"), "{e}");
    // an unknown block
    let f = write(
        t.path(),
        "bad2.toml",
        &format!(
            "kind = \"train\"\nbase = \"{}\"\n[params]\n\"hardwire.r_wire\" = [1]\n",
            base.display()
        ),
    );
    let e = sweep::plan(&sweep::load_file(&f).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no block `hardwire`"), "{e}");
}

#[test]
fn ids_and_seeds_belong_to_the_point_not_its_position() {
    let t = tempfile::tempdir().unwrap();
    let a = write(
        t.path(),
        "a.toml",
        "kind = \"xbar\"\nseeds = 2\n[job]\ncols = 3\n[params]\nrows = [2, 3, 4]\n",
    );
    let b = write(
        t.path(),
        "b.toml",
        "kind = \"xbar\"\nseeds = 2\n[job]\ncols = 3\n[params]\nrows = [4, 2]\n",
    );
    let ma = sweep::plan(&sweep::load_file(&a).unwrap()).unwrap();
    let mb = sweep::plan(&sweep::load_file(&b).unwrap()).unwrap();
    assert_eq!(ma.points.len(), 6);
    assert_eq!(mb.points.len(), 4);
    for q in &mb.points {
        let p = ma
            .points
            .iter()
            .find(|p| p.params == q.params && p.replicate == q.replicate)
            .unwrap();
        assert_eq!(p.id, q.id);
        assert_eq!(p.seed, q.seed);
    }
    // replicates have different seeds; planning again gives the same manifest
    assert_ne!(ma.points[0].seed, ma.points[1].seed);
    let again = sweep::plan(&sweep::load_file(&a).unwrap()).unwrap();
    assert_eq!(again, ma);
}

fn xbar_json(args: &[String]) -> Value {
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let (ok, out, err) = netc(&a);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn local_run_matches_netc_xbar_and_the_ideal_product() {
    let t = tempfile::tempdir().unwrap();
    let f = write(
        t.path(),
        "s.toml",
        "kind = \"xbar\"\nseeds = [7]\nmetrics = [\"error.mean_rel\", \"error.max_abs\"]\n\
         [job]\ncols = 3\ng_random = [1e-6, 1e-4]\nvectors = 2\n\
         [params]\nrows = [4, 6]\nrw = [0.0, 2.5]\n",
    );
    let dir = t.path().join("sw");
    let (ok, out, err) = sweep_run(&f, &dir, &[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("4 ran ok"), "{out}");
    let m = sweep::Manifest::read(&dir).unwrap();
    for p in &m.points {
        let r = runner::read_result(&dir, &p.id).unwrap();
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.manifest_hash, m.hash);
        assert_eq!(r.netc_version, env!("CARGO_PKG_VERSION"));
        assert!(r.wall_time_seconds > 0.0 && !r.host.is_empty());
        let rows = p.params["rows"].as_u64().unwrap();
        let rw = p.params["rw"].as_f64().unwrap();
        let want = xbar_json(&[
            "xbar".into(),
            format!("--rows={rows}"),
            "--cols=3".into(),
            "--g-random=1e-6,1e-4".into(),
            "--vectors=2".into(),
            format!("--rw={rw}"),
            "--seed=7".into(),
            "--json".into(),
        ]);
        assert_eq!(
            r.metrics["error.mean_rel"],
            want["error"]["mean_rel"].as_f64().unwrap()
        );
        assert_eq!(
            r.metrics["error.max_abs"],
            want["error"]["max_abs"].as_f64().unwrap()
        );
        if rw == 0.0 {
            // no wire resistance: the array computes Gᵀ·V
            assert!(r.metrics["error.mean_rel"] < 1e-9, "{:?}", r.metrics);
        } else {
            assert!(r.metrics["error.mean_rel"] > 1e-4, "{:?}", r.metrics);
        }
    }
    let (ok, out, err) = netc(&["sweep", "collect", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("4 ok, 0 failed, 0 missing"), "{out}");
    let csv = std::fs::read_to_string(dir.join("collected.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.starts_with(
        "index,id,rows,rw,replicate,seed,status,error.mean_rel,error.max_abs,error\n"
    ));
    for name in [
        "error_mean_rel_vs_rows.png",
        "error_mean_rel_vs_rw.png",
        "error_mean_rel_heatmap_rows_rw.png",
    ] {
        assert!(dir.join("plots").join(name).is_file(), "{name}");
    }
}

/// A sweep file written before the unit renames asks for the xbar report's time by its old name
/// (`solve_time_s`): it still gets the number the report now calls `solve_time_seconds`.
#[test]
fn the_old_name_of_the_xbar_solve_time_still_finds_it() {
    let t = tempfile::tempdir().unwrap();
    let f = write(
        t.path(),
        "s.toml",
        "kind = \"xbar\"\nseeds = [7]\nmetrics = [\"solve_time_seconds\", \"solve_time_s\"]\n\
         [job]\ncols = 3\ng_random = [1e-6, 1e-4]\nvectors = 2\n[params]\nrows = [4]\n",
    );
    let dir = t.path().join("sw");
    let (ok, out, err) = sweep_run(&f, &dir, &[]);
    assert!(ok, "{out}{err}");
    let m = sweep::Manifest::read(&dir).unwrap();
    assert_eq!(m.points.len(), 1);
    let r = runner::read_result(&dir, &m.points[0].id).unwrap();
    assert_eq!(r.status, Status::Ok, "{:?}", r.error);
    assert!(r.metrics["solve_time_seconds"] >= 0.0, "{:?}", r.metrics);
    assert_eq!(r.metrics["solve_time_s"], r.metrics["solve_time_seconds"]);
}

/// 8 points, one `g` file per point; `g5.txt` is missing at first.
fn failing_sweep(dir: &Path) -> PathBuf {
    for i in 0..8 {
        if i != 5 {
            write_g(dir, i);
        }
    }
    write(
        dir,
        "fail.toml",
        "name = \"fail8\"\nkind = \"xbar\"\ncombine = \"zip\"\nseeds = [3]\n\
         metrics = [\"error.mean_rel\", \"error.max_abs\"]\n[job]\nvectors = 2\n[params]\n\
         g = [\"g0.txt\", \"g1.txt\", \"g2.txt\", \"g3.txt\", \"g4.txt\", \"g5.txt\", \"g6.txt\", \"g7.txt\"]\n\
         rw = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]\n",
    )
}

fn write_g(dir: &Path, i: usize) {
    let rows: Vec<String> = (0..3 + i % 3)
        .map(|r| {
            (0..3)
                .map(|c| format!("{:e}", 1e-5 * (1 + r + c + i) as f64))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    write(dir, &format!("g{i}.txt"), &(rows.join("\n") + "\n"));
}

#[test]
fn a_failing_point_is_recorded_retried_and_rerun_alone() {
    let t = tempfile::tempdir().unwrap();
    let f = failing_sweep(t.path());
    let dir = t.path().join("sw");
    let d = dir.to_str().unwrap();
    let (ok, out, _) = sweep_run(&f, &dir, &["--retry", "1", "-j", "2"]);
    assert!(!ok, "a failed point makes `run` fail");
    assert!(out.contains("7 ran ok, 1 failed"), "{out}");
    let m = sweep::Manifest::read(&dir).unwrap();
    let bad = &m.points[5];
    let r = runner::read_result(&dir, &bad.id).unwrap();
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.exit_status, Some(1));
    assert_eq!(r.attempt, 2, "retried once");
    assert!(r.error.as_deref().unwrap().contains("g5.txt"), "{r:?}");
    let (_, out, _) = netc(&["sweep", "status", d]);
    assert!(out.contains("7 ok, 1 failed, 0 missing"), "{out}");
    assert!(out.contains(&bad.id), "{out}");
    // fix it: only that point runs again
    write_g(t.path(), 5);
    let (ok, out, err) = netc(&["sweep", "run", d, "-q"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("7 already done, 1 ran ok, 0 failed"), "{out}");
}

#[test]
fn resume_after_kill_with_whole_result_files() {
    let t = tempfile::tempdir().unwrap();
    // points big enough to take a moment each
    let f = write(
        t.path(),
        "slow.toml",
        "kind = \"xbar\"\nseeds = 10\n[job]\nrows = 96\ncols = 96\nrw = 1.0\n\
         g_random = [1e-6, 1e-4]\nvectors = 4\n",
    );
    let dir = t.path().join("sw");
    let d = dir.to_str().unwrap();
    let (ok, _, err) = netc(&["sweep", "plan", f.to_str().unwrap(), "--dir", d]);
    assert!(ok, "{err}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["sweep", "run", d, "-q", "-j", "1"])
        .spawn()
        .unwrap();
    let results = dir.join("results");
    let t0 = Instant::now();
    let mut checks = 0;
    loop {
        // every result file that can be seen is whole
        let mut n = 0;
        if let Ok(rd) = std::fs::read_dir(&results) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.ends_with(".json") && !name.starts_with('.') {
                    let text = std::fs::read_to_string(e.path()).unwrap();
                    let r: runner::PointResult = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("half-written {name}: {e}\n{text}"));
                    assert_eq!(r.status, Status::Ok);
                    n += 1;
                }
            }
        }
        checks += 1;
        if n >= 2 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no results");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    // a child running when the runner died finishes its own point
    std::thread::sleep(Duration::from_secs(3));
    let done: Vec<(PathBuf, std::time::SystemTime)> = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| (e.path(), e.metadata().unwrap().modified().unwrap()))
        .collect();
    assert!(done.len() < 10, "killed too late: {}", done.len());
    assert!(checks > 1);
    let (ok, out, err) = netc(&["sweep", "run", d, "-q"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!(
            "{} already done, {} ran ok, 0 failed",
            done.len(),
            10 - done.len()
        )),
        "{out}"
    );
    // finished points were not run again
    for (p, t) in &done {
        assert_eq!(std::fs::metadata(p).unwrap().modified().unwrap(), *t);
    }
    let (_, out, _) = netc(&["sweep", "status", d]);
    assert!(out.contains("10 ok, 0 failed, 0 missing"), "{out}");
}

/// A one-node Slurm that answers (`.ci/slurm-up.sh`).
fn slurm_ready() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| {
            let s = String::from_utf8_lossy(&o.stdout);
            o.status.success() && ["idle", "mixed", "allocated"].iter().any(|k| s.contains(k))
        })
}

#[test]
fn slurm_fail_fix_resubmit_collect_same_as_local() {
    if !slurm_ready() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but no Slurm cluster answers `sinfo` (run .ci/slurm-up.sh)");
        }
        eprintln!("skipped: no Slurm cluster (start one with .ci/slurm-up.sh)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let f = failing_sweep(t.path());
    let dir = t.path().join("slurm-sw");
    let d = dir.to_str().unwrap();
    let (ok, _, err) = netc(&["sweep", "plan", f.to_str().unwrap(), "--dir", d]);
    assert!(ok, "{err}");
    let (ok, out, err) = netc(&[
        "sweep",
        "submit",
        d,
        "--slurm",
        "--chunk",
        "2",
        "--throttle",
        "2",
        "--time",
        "00:05:00",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("8 points in 4 array tasks"), "{out}");
    let script = std::fs::read_to_string(dir.join("slurm/submit-1.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3%2"), "{script}");
    assert!(
        script.contains("--index \"$SLURM_ARRAY_TASK_ID\""),
        "{script}"
    );
    assert!(script.contains("SLURM_CPUS_PER_TASK"), "{script}");
    let (ok, out, err) = netc(&["sweep", "status", d, "--wait", "--timeout", "300"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("7 ok, 1 failed, 0 missing"), "{out}");
    let m = sweep::Manifest::read(&dir).unwrap();
    let bad = runner::read_result(&dir, &m.points[5].id).unwrap();
    assert_eq!(bad.exit_status, Some(1));
    assert!(bad.slurm.is_some(), "{bad:?}");
    assert!(bad.error.unwrap().contains("g5.txt"));
    // fix, resubmit only that point
    write_g(t.path(), 5);
    let (ok, out, err) = netc(&["sweep", "resubmit", d, "--slurm"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 points in 1 array tasks"), "{out}");
    let tasks: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("slurm/tasks-2.json")).unwrap())
            .unwrap();
    assert_eq!(tasks["tasks"], serde_json::json!([[m.points[5].id]]));
    let (ok, out, err) = netc(&["sweep", "status", d, "--wait", "--timeout", "300"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("8 ok, 0 failed, 0 missing"), "{out}");
    let (ok, out, err) = netc(&["sweep", "collect", d, "--no-plots"]);
    assert!(ok, "{out}{err}");
    for p in &m.points {
        let r = runner::read_result(&dir, &p.id).unwrap();
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.seed, 3);
        assert!(r.metrics["error.mean_rel"] > 0.0);
    }
    // the same sweep file, run locally, gives the same table
    let local = t.path().join("local-sw");
    let (ok, out, err) = sweep_run(&f, &local, &[]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = netc(&["sweep", "collect", local.to_str().unwrap(), "--no-plots"]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("collected.csv")).unwrap(),
        std::fs::read_to_string(local.join("collected.csv")).unwrap()
    );
}
