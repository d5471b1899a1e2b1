//! The `netc compile` command end to end, and `netc solve` on what it wrote.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn compile_then_solve_whole_s4_circuit() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["compile", "--whole", "-o"])
        .arg(dir.path())
        .arg(root().join("netlists/mlp_passive.net"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("parameters: 214 (200 weights + 14 biases)"),
        "{stdout}"
    );
    assert!(stdout.contains("network.cir"), "{stdout}");
    let out = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["solve", "--json"])
        .arg(dir.path().join("network.cir"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let values = &json["analyses"][0]["values"];
    for k in 0..4 {
        assert!(values[format!("v(out{k})")].is_f64(), "{values}");
    }
    for j in 0..10 {
        let h = values[format!("v(h0_{j})")].as_f64().unwrap();
        assert!(h.abs() <= 0.2 + 1e-12);
    }
}

#[test]
fn compile_error_is_located_and_exit_code_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("bad.net");
    std::fs::write(
        &net,
        "network b { input 4; dense fc { units 2; } }\nhardware { arrays 1 x 4x4; g_min 1uS; g_max 1uS; }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netc"))
        .arg("compile")
        .arg(&net)
        .arg("-o")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.net:2:45: impossible conductance window"),
        "{err}"
    );
    assert!(err.contains('^'), "{err}");
    assert!(!dir.path().join("o").exists(), "nothing written on error");
}
