//! One inference solve of an N×N passive array (2.5 Ω segments, conductances uniform in
//! [1 µS, 100 µS], inputs uniform in [0, 0.5] V, seeded): netc (direct and iterative) against
//! badcrossbar (whole python process, same circuit) and ngspice (emitted netlist, up to 128×128).
//! Each netc measurement is a whole process too (this binary re-run with `--one`), timed with
//! `/usr/bin/time -v` for the peak resident memory.
//!
//! `cargo bench --bench xbar_scaling` — env `XBAR_SIZES=64,128,256` to choose sizes,
//! `XBAR_NGSPICE_MAX=128`, `XBAR_BADCROSSBAR_MAX=1024`.

use std::process::Command;
use std::time::Instant;

use faer::Mat;
use netc::xbar::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const R_WIRE_OHM: f64 = 2.5;

fn array(n: usize) -> (Crossbar, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let g: Vec<f64> = (0..n * n).map(|_| rng.gen_range(1e-6..1e-4)).collect();
    let v: Vec<f64> = (0..n).map(|_| rng.gen_range(0.0..0.5)).collect();
    (
        Crossbar::passive(n, n, g, R_WIRE_OHM).expect("valid array"),
        v,
    )
}

/// Child mode: solve once and print `outputs-checksum seconds`.
fn one(n: usize, method: &str) {
    let t0 = Instant::now();
    let (xb, v) = array(n);
    let build = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let opts = SolveOptions {
        method: if method == "pcg" {
            LinearMethod::Iterative(PcgOptions {
                rel_tol: 1e-10,
                max_iter: 20_000,
            })
        } else {
            LinearMethod::Direct
        },
        ..Default::default()
    };
    let mut eng = Engine::new(&xb, opts).expect("engine");
    let out = eng
        .infer(faer::MatRef::from_row_major_slice(&v, 1, n))
        .expect("solve");
    let solve = t1.elapsed().as_secs_f64();
    let sum: f64 = (0..n).map(|j| out[(0, j)]).sum();
    let iters = eng.last_pcg().map(|s| s.iterations).unwrap_or(0);
    println!("{sum:.17e} {build} {solve} {iters}");
}

struct Run {
    wall_seconds: f64,
    cpu_seconds: f64,
    rss_mib: f64,
    stdout: String,
}

/// Run a command under `/usr/bin/time -v`: wall time and peak RSS.
fn timed(cmd: &str, args: &[String]) -> Option<Run> {
    let t0 = Instant::now();
    let o = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(cmd)
        .args(args)
        .output()
        .ok()?;
    let wall_seconds = t0.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        eprintln!(
            "{cmd} failed: {}",
            err.lines().take(5).collect::<Vec<_>>().join(" | ")
        );
        return None;
    }
    let rss_kib: f64 = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let secs = |key: &str| -> f64 {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    Some(Run {
        wall_seconds,
        cpu_seconds: secs("User time (seconds):") + secs("System time (seconds):"),
        rss_mib: rss_kib / 1024.0,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
    })
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // freed memory stays with the process for reuse (see the function's docs)
    netc::retain_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    if let Some(p) = args.iter().position(|a| a == "--one") {
        let n: usize = args[p + 1].parse().expect("size");
        let method = args.get(p + 2).map(String::as_str).unwrap_or("direct");
        one(n, method);
        return;
    }
    if !std::path::Path::new("/usr/bin/time").exists() {
        eprintln!("/usr/bin/time is missing (apt-get install time)");
        return;
    }
    let exe = std::env::current_exe()
        .expect("own path")
        .display()
        .to_string();
    let sizes = env_list("XBAR_SIZES", &[64, 128, 256, 512, 1024]);
    let ng_max = env_usize("XBAR_NGSPICE_MAX", 128);
    let bc_max = env_usize("XBAR_BADCROSSBAR_MAX", 1024);
    let have_bc = badcrossbar::available();
    let have_ng = netc::peers::ngspice::find().is_some();
    println!("one inference solve, N×N passive, {R_WIRE_OHM} Ω segments (whole processes: wall s (user+sys cpu s) peak RSS MiB)");
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", l.trim());
    }
    println!(
        "{:>6} | {:>32} | {:>40} | {:>32} | {:>32} | {:>10} | {:>10}",
        "N", "netc direct", "netc CG (iters)", "badcrossbar", "ngspice", "bc/direct", "ng/direct"
    );
    let mut rows = Vec::new();
    for &n in &sizes {
        let d = timed(&exe, &["--one".into(), n.to_string(), "direct".into()]);
        let p = timed(&exe, &["--one".into(), n.to_string(), "pcg".into()]);
        let (xb, v) = array(n);
        let bc = if have_bc && n <= bc_max {
            let prep = badcrossbar::prepare(
                &xb.g_siemens,
                n,
                n,
                std::slice::from_ref(&v),
                R_WIRE_OHM,
                R_WIRE_OHM,
            )
            .expect("prepare");
            let script_args: Vec<String> = prep_args(&prep);
            timed("python3", &script_args).map(|r| {
                // check the answer: same circuit, same numbers
                let peer = prep.run().ok();
                (r, peer)
            })
        } else {
            None
        };
        let ng = if have_ng && n <= ng_max {
            let dir = tempfile::tempdir().expect("tmp");
            let path = dir.path().join("x.cir");
            std::fs::write(&path, xb.emit(&v).expect("emit")).expect("write netlist");
            timed("ngspice", &["-b".into(), path.display().to_string()])
        } else {
            None
        };
        let fmt = |r: &Option<Run>| match r {
            Some(r) => format!(
                "{:>8.3} s ({:>7.3} cpu) {:>6.0} MiB",
                r.wall_seconds, r.cpu_seconds, r.rss_mib
            ),
            None => "—".into(),
        };
        let iters = p
            .as_ref()
            .and_then(|r| r.stdout.split_whitespace().nth(3).map(String::from))
            .unwrap_or_default();
        // agreement of netc with badcrossbar on the outputs
        let agree = match (&bc, &d) {
            (Some((_, Some(peer))), Some(_)) => {
                let mut eng = Engine::new(&xb, SolveOptions::default()).expect("engine");
                let out = eng
                    .infer(Mat::from_fn(1, n, |_, i| v[i]).as_ref())
                    .expect("solve");
                let mut m: f64 = 0.0;
                for j in 0..n {
                    m = m.max((out[(0, j)] - peer[0][j]).abs() / peer[0][j].abs().max(1e-300));
                }
                format!("max rel diff vs badcrossbar {m:.1e}")
            }
            _ => String::new(),
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:>9.1}×", a / b),
            _ => "—".into(),
        };
        let dw = d.as_ref().map(|r| r.wall_seconds);
        println!(
            "{:>6} | {:>32} | {:>32} ({:>5}) | {:>32} | {:>32} | {:>10} | {:>10}  {agree}",
            n,
            fmt(&d),
            fmt(&p),
            iters,
            fmt(&bc.as_ref().map(|(r, _)| Run {
                wall_seconds: r.wall_seconds,
                cpu_seconds: r.cpu_seconds,
                rss_mib: r.rss_mib,
                stdout: String::new()
            })),
            fmt(&ng),
            ratio(bc.as_ref().map(|(r, _)| r.wall_seconds), dw),
            ratio(ng.as_ref().map(|r| r.wall_seconds), dw),
        );
        rows.push((n, d, p, bc.map(|(r, _)| r)));
    }
    println!();
    for (n, d, p, bc) in &rows {
        for (name, run) in [("direct", d), ("CG", p)] {
            if *n == 512 {
                if let (Some(run), Some(bc)) = (run, bc) {
                    let r = bc.wall_seconds / run.wall_seconds;
                    println!(
                        "target 512×512 ({name}): ≥ 50× faster than badcrossbar — measured {r:.1}× wall, {:.1}× cpu ({})",
                        bc.cpu_seconds / run.cpu_seconds,
                        if r >= 50.0 { "met" } else { "NOT met" }
                    );
                }
            }
            if *n == 1024 {
                if let Some(run) = run {
                    println!(
                        "target 1024×1024 ({name}): < 1 s within 2 GiB — measured {:.3} s wall ({:.3} s cpu), {:.0} MiB ({})",
                        run.wall_seconds,
                        run.cpu_seconds,
                        run.rss_mib,
                        if run.wall_seconds < 1.0 && run.rss_mib < 2048.0 { "met" } else { "NOT met" }
                    );
                }
            }
        }
    }
}

fn prep_args(p: &badcrossbar::Prepared) -> Vec<String> {
    p.args().to_vec()
}
