//! Local runner overhead per point: a sweep of trivial xbar points (2×2 array, one vector) run by
//! `netc sweep run -j 1`; the overhead is the runner's wall time minus the time of the same
//! jobs run in-process one after the other with no runner (the ideal), per point. Also printed:
//! the runner's time beyond the jobs' own `wall_time_seconds`. Target: < 50 ms per point.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const POINTS: usize = 40;

fn main() {
    let exe = Path::new(env!("CARGO_BIN_EXE_netc"));
    let t = tempfile::tempdir().expect("tempdir");
    let f = t.path().join("trivial.toml");
    std::fs::write(
        &f,
        format!(
            "kind = \"xbar\"\nseeds = {POINTS}\n[job]\nrows = 2\ncols = 2\ng_uniform = 1e-5\nrw = 1.0\n"
        ),
    )
    .expect("write sweep");
    let spec = netc::sweep::load_file(&f).expect("sweep file");
    let m = netc::sweep::plan(&spec).expect("plan");
    let dir = t.path().join("sw");
    m.write(&dir).expect("manifest");

    // the ideal: the same jobs in this process, no runner
    let t0 = Instant::now();
    for p in &m.points {
        let ctx = netc::sweep::jobs::PointCtx {
            spec: &m.spec,
            point: p,
            work_dir: t.path().join("inproc"),
        };
        spec.kind.run(&ctx).expect("job");
    }
    let inproc = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let st = Command::new(exe)
        .args(["sweep", "run", dir.to_str().expect("utf8"), "-q", "-j", "1"])
        .status()
        .expect("run netc");
    let total = t0.elapsed().as_secs_f64();
    assert!(st.success());
    let jobs: f64 = m
        .points
        .iter()
        .map(|p| {
            netc::sweep::runner::read_result(&dir, &p.id)
                .expect("result")
                .wall_time_seconds
        })
        .sum();
    // overhead: everything the runner adds to running the jobs in one process (process start,
    // manifest read, result write, the child's cold start); and, for reference, the runner's
    // time beyond what the jobs report from inside their processes
    let per_point_ms = 1e3 * (total - inproc) / POINTS as f64;
    let outside_ms = 1e3 * (total - jobs) / POINTS as f64;
    println!(
        "{POINTS} trivial points, 1 at a time: runner {total:.3} s, jobs' own time in their \
         processes {jobs:.4} s, same jobs in-process without runner {inproc:.4} s"
    );
    println!(
        "runner overhead per point: {per_point_ms:.1} ms against in-process (target < 50 ms: {}); \
         {outside_ms:.1} ms outside the jobs' own time",
        if per_point_ms < 50.0 {
            "met"
        } else {
            "NOT met"
        },
    );
}
