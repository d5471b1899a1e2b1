//! Snapshot tests of the five reference mapping reports, and the papers' weight counts.
//!
//! Snapshots live in `tests/snapshots/<name>.txt` and are compared exactly. After an intended
//! change of the report, regenerate them with `NETC_UPDATE_SNAPSHOTS=1 cargo test --test
//! compile_reports` and review the diff.

use netc::mapping::{lower, MappingReport};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn report(name: &str) -> MappingReport {
    let path = root().join("netlists").join(format!("{name}.net"));
    let (file, ir) = netc::net::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let low = lower(&file, &ir).unwrap_or_else(|e| panic!("{e}"));
    MappingReport::new(&file, &ir, &low)
}

fn snapshot(name: &str, text: &str) {
    let p = root().join("tests/snapshots").join(format!("{name}.txt"));
    if std::env::var("NETC_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&p, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (create with NETC_UPDATE_SNAPSHOTS=1)", p.display()));
    if want != text {
        panic!(
            "report of {name} differs from {}:\n--- snapshot\n{want}\n--- now\n{text}",
            p.display()
        );
    }
}

fn check(name: &str, params: usize, weights: usize, biases: usize) -> MappingReport {
    let r = report(name);
    snapshot(name, &r.table());
    assert_eq!(r.total_params, params, "{name} parameters");
    assert_eq!(r.total_weights, weights, "{name} weights");
    assert_eq!(r.total_biases, biases, "{name} biases");
    r
}

#[test]
fn lenet_s1() {
    // 15·3·3 + 4·2·2·15 + 64·10 = 1,015 (the paper: "~1,000"), no biases.
    let r = check("lenet", 1015, 1015, 0);
    assert_eq!(r.arrays_used, 1);
    let l = |n: &str| r.layers.iter().find(|l| l.name == n).unwrap().clone();
    // Two pairs per weight on adjacent columns: 4 columns per kernel / unit.
    assert_eq!((l("c1").rows_used, l("c1").cols_used), (9, 60));
    assert_eq!((l("c2").rows_used, l("c2").cols_used), (60, 16));
    assert_eq!((l("fc").rows_used, l("fc").cols_used), (64, 40));
    // MACs: 64 positions x 15 kernels x 9, 64 x 4 x 60, 640.
    assert_eq!(l("c1").macs, 64 * 15 * 9);
    assert_eq!(l("c2").macs, 64 * 4 * 60);
    assert_eq!(r.total_macs, 8640 + 15360 + 640);
    assert_eq!(l("fc").out_shape, "10");
}

#[test]
fn convlstm_s2() {
    let r = check("convlstm", 850, 850, 0);
    let cl = r.layers.iter().find(|l| l.name == "cl").unwrap();
    assert_eq!(cl.params, 580);
    // The paper: 1,160 operations per cycle, 108 cycles, 125,280 operations = 2 x MACs.
    assert_eq!(cl.macs * 2, 125_280);
    let fc = r.layers.iter().find(|l| l.name == "fc").unwrap();
    assert_eq!(fc.params, 270);
    assert_eq!(fc.macs * 2, 540);
}

#[test]
fn mlp_1t1r_s3() {
    let r = check("mlp_1t1r", 3996, 3996, 0);
    let h = r.layers.iter().find(|l| l.name == "h").unwrap();
    let o = r.layers.iter().find(|l| l.name == "out").unwrap();
    // 6,912 and 1,080 memristors, as in the paper's Fig. 3b.
    assert_eq!(h.cells, 6912);
    assert_eq!(o.cells, 1080);
    assert_eq!(h.cols_used + o.cols_used, 64);
}

#[test]
fn mlp_passive_s4() {
    let r = check("mlp_passive", 214, 200, 14);
    let h = r.layers.iter().find(|l| l.name == "h").unwrap();
    let o = r.layers.iter().find(|l| l.name == "out").unwrap();
    assert_eq!(h.params, 170);
    assert_eq!(o.params, 44);
    assert_eq!((h.rows_used, h.cols_used), (17, 20));
    assert_eq!((o.rows_used, o.cols_used), (11, 8));
    assert_eq!((h.arrays.clone(), o.arrays.clone()), (vec![0], vec![1]));
}

#[test]
fn cnn_8pe_s5() {
    // 8·9 + 12·72 + 192·10 = 2,856, no biases.
    let r = check("cnn_8pe", 2856, 2856, 0);
    let l = |n: &str| r.layers.iter().find(|l| l.name == n).unwrap().clone();
    assert_eq!(l("c1").cols_used, 16); // "16 differential rows" in the paper's orientation
    assert_eq!(l("c3").cells, 192 * 9); // 192 differential lines of 9 cells
    assert_eq!(l("c3").parts, 8);
    assert_eq!(l("fc").parts, 12);
    assert_eq!(l("fc").cols_used, 240); // 24 differential lines per output
    assert_eq!(l("fc").arrays.len(), 2);
    assert_eq!(l("fc").arrays[0], 4);
}

#[test]
fn cnn_8pe_three_replicated_convolvers() {
    // S5's parallel variant: three copies of the convolution kernels.
    let src = std::fs::read_to_string(root().join("netlists/cnn_8pe.net"))
        .unwrap()
        .replace(
            "layer c3 { split_rows 9; }",
            "layer c1 { replicas 3; }\n  layer c3 { split_rows 9; replicas 3; }",
        );
    let (file, ir) = netc::net::load_str(&src, "cnn3.net", &root().join("netlists"))
        .unwrap_or_else(|e| panic!("{e}"));
    let low = lower(&file, &ir).unwrap_or_else(|e| panic!("{e}"));
    let r = MappingReport::new(&file, &ir, &low);
    let l = |n: &str| r.layers.iter().find(|l| l.name == n).unwrap().clone();
    assert_eq!(l("c1").cells, 3 * 144);
    assert_eq!(l("c3").cells, 3 * 1728);
    assert_eq!(l("c1").replicas, 3);
    assert_eq!(r.total_params, 2856, "replicas add cells, not weights");
    // every tile inside its array, no two tiles overlapping
    let tiles: Vec<_> = low.matrices.iter().flat_map(|m| m.tiles.iter()).collect();
    for (i, a) in tiles.iter().enumerate() {
        assert!(a.row0 + a.n_rows <= 16 && a.col0 + a.n_cols <= 128);
        for b in &tiles[i + 1..] {
            let apart = a.array != b.array
                || a.row0 + a.n_rows <= b.row0
                || b.row0 + b.n_rows <= a.row0
                || a.col0 + a.n_cols <= b.col0
                || b.col0 + b.n_cols <= a.col0;
            assert!(apart, "{a:?} overlaps {b:?}");
        }
    }
    // ten copies do not fit on eight arrays, and the error says how many would
    let src10 = src.replace("replicas 3", "replicas 10");
    let (file, ir) = netc::net::load_str(&src10, "cnn10.net", &root().join("netlists")).unwrap();
    let e = lower(&file, &ir).unwrap_err().to_string();
    assert!(e.contains("would fit on `arrays"), "{e}");
}
