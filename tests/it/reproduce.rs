//! `netc reproduce --quick`: the papers' experiments end to end at the smallest scale (hidden
//! `--tiny`, for the debug build), all five papers: the files it writes, every row with a number
//! and a direction, the table numbers recomputed from the per-run JSON files, and resumption (a
//! second call reuses every run).

use std::path::Path;

use serde_json::Value;

use super::common::netc;

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn test_acc(runs: &[Value], kind: &str) -> f64 {
    let xs: Vec<f64> = runs
        .iter()
        .filter(|r| r["kind"] == kind)
        .map(|r| r["chip_final"]["test"].as_f64().unwrap())
        .collect();
    assert!(!xs.is_empty(), "no run of kind {kind}");
    100.0 * xs.iter().sum::<f64>() / xs.len() as f64
}

#[test]
fn reproduce_all_quick_writes_every_table_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rep");
    let out_s = out.to_str().unwrap();
    let (ok, stdout, stderr) = netc(&[
        "reproduce",
        "all",
        "--quick",
        "--tiny",
        "-q",
        "--out",
        out_s,
    ]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    for f in [
        "results.md",
        "results.json",
        "s1_inbatch.png",
        "s1_inbatch.svg",
        "s2_inbatch.png",
        "s1_noise_seed1_conductance.png",
        "s3_stuck_sweep.png",
        "s5_chain.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let j = read_json(&out.join("results.json"));
    let tables = j["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 5);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    let directions = ["higher", "lower", "same"];
    for t in tables {
        let rows = t["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{}: no rows", t["paper"]);
        for r in rows {
            let name = r["experiment"].as_str().unwrap();
            assert!(
                r["netc_number"].as_f64().is_some_and(f64::is_finite),
                "{name}: no number"
            );
            assert!(
                directions.contains(&r["netc_direction"].as_str().unwrap()),
                "{name}: no direction"
            );
            assert!(
                !r["paper"].as_str().unwrap().is_empty(),
                "{name}: no paper value"
            );
            let agrees = r["agrees"].as_str().unwrap();
            assert!(
                ["yes", "direction_only", "no", "not_applicable"].contains(&agrees),
                "{name}: {agrees}"
            );
            assert!(md.contains(name), "results.md lacks row {name}");
        }
    }
    // the tables' numbers are the stored runs' numbers: S1's effect row recomputed from runs/
    let runs: Vec<Value> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension().is_some_and(|x| x == "json")).then(|| read_json(&p))
        })
        .collect();
    let s1: Vec<Value> = runs
        .iter()
        .filter(|r| r["paper"] == "s1")
        .cloned()
        .collect();
    let want = test_acc(&s1, "noisefree") - test_acc(&s1, "noise");
    let row = tables[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["experiment"]
                .as_str()
                .unwrap()
                .starts_with("noise-free vs")
        })
        .unwrap();
    assert!((row["netc_number"].as_f64().unwrap() - want).abs() < 1e-9);
    let n_runs = j["runs"].as_array().unwrap().len();
    assert_eq!(n_runs, runs.len());

    // again: every run is reused, the tables are the same
    let (ok, stdout, stderr) = netc(&[
        "reproduce",
        "all",
        "--quick",
        "--tiny",
        "-q",
        "--out",
        out_s,
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("0 runs done, {n_runs} reused")),
        "{stdout}"
    );
    let j2 = read_json(&out.join("results.json"));
    assert_eq!(j["tables"], j2["tables"]);
}

#[test]
fn reproduce_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let (ok, _, stderr) = netc(&["reproduce", "s9", "--out", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("unknown paper `s9`"), "{stderr}");
    let (ok, _, stderr) = netc(&[
        "reproduce",
        "s1",
        "--tiny",
        "--netlists",
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("lenet.net: not found"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
