//! `netc xbar` end to end on small arrays.

use crate::common::netc;

#[test]
fn infer_json_matches_the_ideal_product_without_wires() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("g.csv");
    std::fs::write(&g, "1e-4, 2e-4\n3e-4 4e-4\n# comment\n5e-4,6e-4\n").unwrap();
    let inp = dir.path().join("v.txt");
    std::fs::write(&inp, "1 0.5 0.25\n0 0 1\n").unwrap();
    let (ok, out, err) = netc(&[
        "xbar",
        "--g",
        g.to_str().unwrap(),
        "--rw",
        "0",
        "--inputs",
        inp.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let outs = v["outputs"].as_array().unwrap();
    let want = [
        [1e-4 + 1.5e-4 + 1.25e-4, 2e-4 + 2e-4 + 1.5e-4],
        [5e-4, 6e-4],
    ];
    for t in 0..2 {
        for j in 0..2 {
            let got = outs[t][j].as_f64().unwrap();
            assert!((got - want[t][j]).abs() < 1e-18, "{got} vs {}", want[t][j]);
        }
    }
    assert!(v["error"]["max_rel"].as_f64().unwrap() < 1e-14);
}

#[test]
fn read_program_emit_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let cir = dir.path().join("read.cir");
    let plots = dir.path().join("plots");
    let (ok, out, err) = netc(&[
        "xbar",
        "--rows",
        "6",
        "--cols",
        "5",
        "--g-random",
        "1e-5,1e-3",
        "--seed",
        "3",
        "--rw",
        "2.5",
        "--op",
        "read",
        "--at",
        "2,3",
        "--scheme",
        "v/3",
        "--json",
        "--emit",
        cir.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v["result"];
    let (m, c, s) = (
        r["measured_a"].as_f64().unwrap(),
        r["cell_a"].as_f64().unwrap(),
        r["sneak_a"].as_f64().unwrap(),
    );
    assert!((m - c - s).abs() < 1e-18);
    let net = std::fs::read_to_string(&cir).unwrap();
    assert!(net.contains("vin_2 in_2 0 DC") && net.contains(".op"));
    for f in [
        "word_voltage.png",
        "bit_voltage.png",
        "sneak_current.png",
        "sneak_current.svg",
    ] {
        assert!(
            plots
                .join(f)
                .metadata()
                .map(|m| m.len() > 1000)
                .unwrap_or(false),
            "{f}"
        );
    }
    let (ok, out, err) = netc(&[
        "xbar",
        "--rows",
        "4",
        "--cols",
        "4",
        "--g-uniform",
        "1e-4",
        "--rw",
        "1",
        "--op",
        "program",
        "--at",
        "1,1",
        "--v",
        "2",
        "--scheme",
        "v/2",
        "--plot",
        plots.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("half-selected"), "{out}");
    assert!(plots.join("half_select_voltage.png").exists());
}

#[test]
fn nonlinear_cells_tia_and_cg_from_flags_and_spec() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("a.json");
    std::fs::write(
        &spec,
        r#"{"rows": 3, "cols": 4, "g_uniform": 1e-4, "rw": 2.0, "cell": "1t1r", "v_gate": [3.0, 2.0, 1.0],
            "tia": {"gain": 1e4, "r_f": 1e3, "vsat": 1.0}}"#,
    )
    .unwrap();
    let (ok, out, err) = netc(&[
        "xbar",
        "--spec",
        spec.to_str().unwrap(),
        "--vectors",
        "4",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unit"], "V");
    assert!(v["newton"]["iterations_total"].as_u64().unwrap() >= 4);
    let (ok, out, err) = netc(&[
        "xbar",
        "--rows",
        "20",
        "--cols",
        "30",
        "--g-random",
        "1e-6,1e-4",
        "--rw",
        "2.5",
        "--solver",
        "cg",
        "--tol",
        "1e-12",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("CG:"), "{out}");
    // bad input is reported, not a panic
    let (ok, _, err) = netc(&["xbar", "--rows", "2", "--cols", "2", "--g-uniform=-1"]);
    assert!(!ok && err.contains("conductance"), "{err}");
    let (ok, _, err) = netc(&[
        "xbar",
        "--rows",
        "2",
        "--cols",
        "2",
        "--g-uniform",
        "1e-3",
        "--cell",
        "foo",
    ]);
    assert!(!ok && err.contains("unknown cell kind"), "{err}");
}
