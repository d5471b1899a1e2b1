//! Programming speed: all of S5 (`netlists/cnn_8pe.net`, 8 arrays) by write-verify with a solved
//! verify read after every pulse, and all of S1 (`netlists/lenet.net`, 4,060 cells) one-shot with
//! a solved compliance circuit per column. Prints cells/s and pulses/s and the ratio to the
//! issue's budget (10 s for S5, 2 s for S1), medians over `NETC_BENCH_RUNS` runs (default 3).
//! Not a test: `cargo bench --bench program`.

use std::path::PathBuf;
use std::time::Instant;

use netc::cli::program::{run, Algorithm, ProgramArgs};

fn main() {
    netc::retain_freed_memory();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, algorithm, budget_seconds) in [
        ("cnn_8pe", Algorithm::WriteVerify, 10.0),
        ("lenet", Algorithm::Oneshot, 2.0),
    ] {
        let out = dir.path().join(name);
        let args = ProgramArgs {
            net: root.join("netlists").join(format!("{name}.net")),
            weights: None,
            out: out.clone(),
            algorithm: Some(algorithm),
            seed: 1,
        };
        let runs: usize = std::env::var("NETC_BENCH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
            .max(1);
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let t0 = Instant::now();
                run(&args).expect("programming");
                t0.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let t_seconds = times[runs / 2];
        let rep: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("report.json")).expect("report"),
        )
        .expect("json");
        let cells = rep["cells"].as_f64().unwrap_or(0.0);
        let pulses: f64 = rep["layers"]
            .as_array()
            .map(|ls| {
                ls.iter()
                    .map(|l| {
                        l["pulses_mean"].as_f64().unwrap_or(0.0)
                            * l["cells"].as_f64().unwrap_or(0.0)
                    })
                    .sum()
            })
            .unwrap_or(0.0);
        println!(
            "{name} ({algorithm:?}): {cells} cells, {pulses} pulses, median {t_seconds:.2} s of {runs} runs (min {:.2} s): {:.0} cells/s, {:.0} pulses/s; {:.2}× the {budget_seconds} s budget",
            times[0],
            cells / t_seconds,
            pulses / t_seconds,
            t_seconds / budget_seconds
        );
    }
}
