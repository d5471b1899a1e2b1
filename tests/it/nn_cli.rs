//! `netc train` / `netc eval` / `netc data info` end to end on tiny runs.

use crate::common::netc;

#[test]
fn train_then_eval_and_compare() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().to_str().unwrap();
    let (ok, so, se) = netc(&[
        "train", "--preset", "s4", "--epochs", "30", "--out", out, "-q",
    ]);
    assert!(ok, "{so}{se}");
    assert!(so.contains("s4: 30 epochs"), "{so}");
    let w = d.path().join("model.json");
    let (ok, so, se) = netc(&[
        "eval",
        "--preset",
        "s4",
        "--weights",
        w.to_str().unwrap(),
        "--compare",
        "ideal,encoded",
    ]);
    assert!(ok, "{so}{se}");
    assert!(
        so.contains("ideal")
            && so.contains("encoded")
            && so.contains("identical predictions: 640/640"),
        "{so}"
    );
    assert!(d.path().join("confusion_ideal.png").is_file() && d.path().join("eval.json").is_file());
    let (ok, so, _) = netc(&[
        "eval",
        "--preset",
        "s4",
        "--weights",
        w.to_str().unwrap(),
        "--backend",
        "encoded",
        "--levels",
        "4",
    ]);
    assert!(ok && so.contains("test accuracy (encoded)"), "{so}");
    // weights of another network are refused
    let (ok, _, se) = netc(&["eval", "--preset", "s3", "--weights", w.to_str().unwrap()]);
    assert!(!ok && se.contains("different network"), "{se}");
    let (ok, _, se) = netc(&["train", "--preset", "s9"]);
    assert!(!ok && se.contains("unknown preset"), "{se}");
}

#[test]
fn data_info_bundled() {
    let (ok, so, _) = netc(&["data", "info"]);
    assert!(
        ok && so.contains("train: 8000 images 28x28") && so.contains("test: 2000 images"),
        "{so}"
    );
}

#[test]
fn train_from_net_file_writes_compiler_weights() {
    let d = tempfile::tempdir().unwrap();
    let net = concat!(env!("CARGO_MANIFEST_DIR"), "/netlists/mlp_passive.net");
    let (ok, so, se) = netc(&[
        "train",
        net,
        "--epochs",
        "3",
        "--out",
        d.path().to_str().unwrap(),
        "-q",
    ]);
    assert!(ok, "{so}{se}");
    let w = netc::mapping::weights::WeightsFile::load(&d.path().join("weights.json")).unwrap();
    let (_, ir) = netc::net::load(std::path::Path::new(net)).unwrap();
    w.check(&ir, "weights.json").unwrap();
    let m = d.path().join("model.json");
    let (ok, so, se) = netc(&["eval", net, "--weights", m.to_str().unwrap()]);
    assert!(ok && so.contains("test accuracy"), "{so}{se}");
}
