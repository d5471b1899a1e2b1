//! Every netlist under netlists/verify/ solved by netc and by ngspice: agreement to
//! 1e-6·|ref| + 1e-12 A (currents) / 1e-9 V (voltages) for linear circuits and 1e-5 relative for
//! nonlinear ones. A missing ngspice skips the test, except under CI=true where it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use netc::circuit::Circuit;
use netc::peers::ngspice;
use netc::solver::{self, AnalysisResult};
use netc::spice;

fn verify_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists/verify");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("netlists/verify exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cir"))
        .collect();
    v.sort();
    v
}

fn tolerance(name: &str, reference: f64, linear: bool) -> f64 {
    let current = name.starts_with("i(");
    match (linear, current) {
        (true, true) => 1e-6 * reference.abs() + 1e-12,
        (true, false) => 1e-9,
        (false, true) => 1e-5 * reference.abs() + 1e-12,
        (false, false) => 1e-5 * reference.abs() + 1e-9,
    }
}

fn compare(
    file: &Path,
    what: &str,
    ours: &BTreeMap<String, f64>,
    theirs: &BTreeMap<String, f64>,
    linear: bool,
    failures: &mut Vec<String>,
) -> usize {
    let mut n = 0;
    for (name, &v) in ours {
        let Some(&r) = theirs.get(name) else {
            failures.push(format!(
                "{}: {what}: ngspice has no `{name}`",
                file.display()
            ));
            continue;
        };
        let tol = tolerance(name, r, linear);
        if (v - r).abs() > tol || !v.is_finite() {
            failures.push(format!(
                "{}: {what}: {name} netc {v:e} ngspice {r:e} (diff {:e} > tol {tol:e})",
                file.display(),
                (v - r).abs()
            ));
        }
        n += 1;
    }
    n
}

#[test]
fn every_verify_netlist_agrees_with_ngspice() {
    if ngspice::require_for_test().is_none() {
        return;
    }
    let files = verify_files();
    assert!(
        files.len() >= 9,
        "expected the verification set, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    let mut compared = 0usize;
    for file in &files {
        let nl = spice::parse_file(file).unwrap_or_else(|e| panic!("{e}"));
        let linear = Circuit::build(&nl)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_linear();
        let ours = solver::run(&nl).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let theirs = ngspice::run(file).unwrap_or_else(|e| panic!("{e}"));
        let mut ops = theirs.iter().filter(|p| p.kind == "op");
        let mut dcs = theirs.iter().filter(|p| p.kind == "dc");
        for r in &ours {
            match r {
                AnalysisResult::Op { values } => {
                    let p = ops.next().expect("ngspice op plot");
                    compared += compare(file, "op", values, &p.point_map(0), linear, &mut failures);
                }
                AnalysisResult::Dc { points, .. } => {
                    let p = dcs.next().expect("ngspice dc plot");
                    assert_eq!(
                        p.points.len(),
                        points.len(),
                        "{}: sweep length",
                        file.display()
                    );
                    for (k, (sv, values)) in points.iter().enumerate() {
                        let m = p.point_map(k);
                        assert!((m["sweep"] - sv).abs() < 1e-9, "sweep values differ");
                        let what = format!("dc point {k} ({sv})");
                        compared += compare(file, &what, values, &m, linear, &mut failures);
                    }
                }
            }
        }
    }
    eprintln!("compared {compared} values over {} netlists", files.len());
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
