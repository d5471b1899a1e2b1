//! `.op` of N×N passive crossbars (2.5 Ω wire segments), `netc solve` vs ngspice on the same netlist
//! file, whole process (start-up, parsing, solving, output), timed in the same run.
//!
//! cargo bench --bench solve_vs_ngspice            # N = 32, 64, 128 against ngspice; netc to 512
//! NETC_BENCH_MAX_N=128 cargo bench --bench solve_vs_ngspice
//!
//! Last, the front end alone (parse + elaborate, in process) on the 512×512 netlist: lines per second.
//!
//! Peak memory and CPU time (user + system) come from `/usr/bin/time -v` (apt-get install time);
//! the table prints the wall-time ratio and the CPU-time ratio, medians of the runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The N×N passive array of docs/crossbar.md's conventions as a netlist (the crossbar engine's writer),
/// conductances uniform in [10 µS, 100 µS] and inputs in [−0.2, 0.2] V from a fixed LCG.
fn crossbar(n: usize, seed: u64) -> String {
    let mut s = seed;
    let mut rnd = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let g: Vec<f64> = (0..n * n).map(|_| 10e-6 + 90e-6 * rnd()).collect();
    let v: Vec<f64> = (0..n).map(|_| -0.2 + 0.4 * rnd()).collect();
    netc::xbar::Crossbar::passive(n, n, g, 2.5)
        .expect("valid array")
        .emit(&v)
        .expect("emit")
}

/// One run of a command: wall seconds, peak RSS in MiB, CPU seconds (user + system; NaN without
/// `/usr/bin/time`). On a loaded machine the CPU time is the steadier figure: a short process
/// waits for a core as long as a long one, relative to its work it waits more.
#[derive(Clone, Copy)]
struct Run {
    wall_seconds: f64,
    rss_mib: f64,
    cpu_seconds: f64,
}

/// Run a command under `/usr/bin/time -v`.
fn measure(cmd: &[&str]) -> Run {
    let timed = Path::new("/usr/bin/time").exists();
    let t0 = Instant::now();
    let out = if timed {
        Command::new("/usr/bin/time")
            .arg("-v")
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
    } else {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
    }
    .expect("command runs");
    let wall = t0.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        panic!("{cmd:?} failed: {err}");
    }
    let field = |name: &str| {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Run {
        wall_seconds: wall,
        rss_mib: field("Maximum resident set size (kbytes):") / 1024.0,
        cpu_seconds: field("User time (seconds):") + field("System time (seconds):"),
    }
}

/// Medians of wall time, peak RSS and CPU time, each over the runs.
fn median(runs: Vec<Run>) -> Run {
    let med = |f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Run {
        wall_seconds: med(|r| r.wall_seconds),
        rss_mib: med(|r| r.rss_mib),
        cpu_seconds: med(|r| r.cpu_seconds),
    }
}

/// Parse + elaborate throughput of the SPICE front end (`spice::parse_str`: logical lines, cards,
/// parameters, flattening) on the N×N netlist, in lines per second; median of `runs`.
fn front_end_throughput(n: usize, runs: usize) {
    let text = crossbar(n, 7);
    let lines = text.lines().count();
    // element cards: every line after the title that starts with a letter (not `*`, not `.`)
    let cards = text
        .lines()
        .skip(1)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()))
        .count();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            let nl = netc::spice::parse_str(&text, "xbar.cir").expect("netlist parses");
            let dt = t0.elapsed().as_secs_f64();
            assert_eq!(nl.elements.len(), cards, "every card became an element");
            dt
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let t = times[times.len() / 2];
    println!(
        "front end (parse + elaborate), {n}×{n}: {lines} lines, {:.1} MB in {t:.3} s = {:.2} M lines/s, {:.0} MB/s (median of {runs})",
        text.len() as f64 / 1e6,
        lines as f64 / t / 1e6,
        text.len() as f64 / t / 1e6
    );
}

fn main() {
    let netc = env!("CARGO_BIN_EXE_netc");
    let max_n: usize = std::env::var("NETC_BENCH_MAX_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let have_ngspice = Command::new("ngspice").arg("-v").output().is_ok();
    let dir = tempfile::tempdir().expect("temp dir");
    println!("N×N passive crossbar .op, 2.5 Ω segments, whole process (median of runs)");
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10} {:>10}",
        "N",
        "unknowns",
        "netc s",
        "netc CPU s",
        "netc MiB",
        "ngspice s",
        "ngspice CPU",
        "ratio",
        "CPU ratio"
    );
    for n in [32usize, 64, 128, 256, 512] {
        if n > max_n {
            break;
        }
        let file = dir.path().join(format!("xbar{n}.cir"));
        std::fs::write(&file, crossbar(n, 7)).expect("write netlist");
        let f = file.to_str().expect("utf-8 path");
        let runs = if n <= 128 { 5 } else { 3 };
        let ours = median(
            (0..runs)
                .map(|_| measure(&[netc, "solve", f, "--json"]))
                .collect(),
        );
        let theirs = if have_ngspice && n <= 128 {
            // ngspice takes seconds at 64 and minutes at 128: three runs up to 64, one above
            let k = if n <= 64 { 3 } else { 1 };
            Some(median(
                (0..k).map(|_| measure(&["ngspice", "-b", f])).collect(),
            ))
        } else {
            None
        };
        let unknowns = 2 * n * n + 2 * n + 2 * n;
        match theirs {
            Some(t) => println!(
                "{n:>6} {unknowns:>10} {:>10.4} {:>10.4} {:>10.1} {:>12.3} {:>12.3} {:>9.0}× {:>9.0}×",
                ours.wall_seconds,
                ours.cpu_seconds,
                ours.rss_mib,
                t.wall_seconds,
                t.cpu_seconds,
                t.wall_seconds / ours.wall_seconds,
                t.cpu_seconds / ours.cpu_seconds
            ),
            None => println!(
                "{n:>6} {unknowns:>10} {:>10.4} {:>10.4} {:>10.1} {:>12} {:>12} {:>10} {:>10}",
                ours.wall_seconds, ours.cpu_seconds, ours.rss_mib, "-", "-", "-", "-"
            ),
        }
    }
    println!(
        "ratio: wall time (medians); CPU ratio: user + system time (medians), steadier under load"
    );
    println!("targets: ≥100× faster than ngspice at 64, ≥300× at 128; 512×512 within 4 GiB");
    // always 512×512 (786k lines): parsing alone takes seconds, unlike the whole-process solves
    front_end_throughput(512, 3);
}
