//! Exact nonlinear arrays in bulk (`Engine::infer`: the chord iteration on the small-signal factor
//! with the inline 1T1R kernel) against the independent references: per-vector damped Newton on
//! the generic level-1 MOSFET (`Engine::infer_per_vector`) to 1e-9 relative, and ngspice on the
//! emitted netlist for one vector (skipped when ngspice is missing, a failure under CI=true).

use std::collections::BTreeMap;

use faer::Mat;
use netc::peers::ngspice;
use netc::xbar::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn one_t1r(r: usize, c: usize, seed: u64, v_gate_v: f64, gamma: f64) -> Crossbar {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mos = default_access_mos();
    mos.model.gamma_sqrt_v = gamma;
    Crossbar {
        rows: r,
        cols: c,
        g_siemens: (0..r * c).map(|_| rng.gen_range(1e-6..1e-4)).collect(),
        cell: CellKind::OneT1R {
            mos,
            v_gate_v: vec![v_gate_v; r],
        },
        r_word_ohm: 2.5,
        r_bit_ohm: 2.5,
        r_driver_ohm: 1.0,
        r_sense_ohm: 0.5,
        sense: SenseKind::VirtualGround,
    }
}

/// Worst relative difference of bulk against per-vector Newton, relative to each output with a
/// floor of 1e-6 of the largest (outputs that cancel to near zero carry absolute errors only).
fn bulk_vs_newton(xb: &Crossbar, k: usize, v_lo: f64, v_hi: f64, block: usize) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let inputs = Mat::from_fn(k, xb.rows, |_, _| rng.gen_range(v_lo..v_hi));
    let opts = SolveOptions {
        block,
        ..SolveOptions::default()
    };
    let got = Engine::new(xb, opts)
        .unwrap()
        .infer(inputs.as_ref())
        .unwrap();
    let want = Engine::new(xb, opts)
        .unwrap()
        .infer_per_vector(inputs.as_ref())
        .unwrap();
    let mut scale = 0.0f64;
    for t in 0..k {
        for j in 0..xb.cols {
            scale = scale.max(want[(t, j)].abs());
        }
    }
    assert!(scale > 0.0);
    let mut worst = 0.0f64;
    for t in 0..k {
        for j in 0..xb.cols {
            let (a, b) = (got[(t, j)], want[(t, j)]);
            assert!(a.is_finite());
            worst = worst.max((a - b).abs() / b.abs().max(1e-6 * scale));
        }
    }
    worst
}

#[test]
fn bulk_1t1r_equals_per_vector_newton() {
    // deep triode (3 V gates), bipolar inputs: both channel directions, drain junction near 0 V
    let xb = one_t1r(16, 12, 1, 3.0, 0.0);
    let worst = bulk_vs_newton(&xb, 50, -0.5, 0.5, 16);
    assert!(worst <= 1e-9, "bulk vs Newton, triode: {worst:e}");
    // body effect
    let xb = one_t1r(9, 7, 2, 2.5, 0.45);
    let worst = bulk_vs_newton(&xb, 30, -0.4, 0.6, 8);
    assert!(worst <= 1e-9, "bulk vs Newton, body effect: {worst:e}");
    // near saturation (1 V gates, up to 1.5 V): the chord hands vectors to Newton
    let xb = one_t1r(6, 5, 3, 1.0, 0.0);
    let worst = bulk_vs_newton(&xb, 20, 0.0, 1.5, 7);
    assert!(worst <= 1e-9, "bulk vs Newton, saturating: {worst:e}");
}

#[test]
fn bulk_1t1r_one_vector_matches_ngspice() {
    let xb = one_t1r(6, 4, 4, 3.0, 0.3);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let v: Vec<f64> = (0..xb.rows).map(|_| rng.gen_range(-0.4..0.5)).collect();
    let out = Engine::new(&xb, SolveOptions::default())
        .unwrap()
        .infer(faer::MatRef::from_row_major_slice(&v, 1, v.len()))
        .unwrap();
    if ngspice::require_for_test().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bulk.cir");
    std::fs::write(&path, xb.emit(&v).unwrap()).unwrap();
    let plots = ngspice::run(&path).unwrap_or_else(|e| panic!("ngspice failed: {e}"));
    let op: BTreeMap<String, f64> = plots
        .iter()
        .find(|p| p.kind == "op")
        .expect("an op plot")
        .point_map(0);
    let imax = (0..xb.cols).fold(0.0f64, |m, j| m.max(out[(0, j)].abs()));
    for j in 0..xb.cols {
        let want = op[&format!("i(vs_{j})")];
        let got = out[(0, j)];
        // ngspice's own tolerances (reltol 1e-3 by default, tighter in the emitted options)
        assert!(
            (got - want).abs() <= 1e-5 * want.abs() + 1e-9 * imax,
            "column {j}: bulk {got:e}, ngspice {want:e}"
        );
    }
}
