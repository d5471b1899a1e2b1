//! Exact nonlinear arrays in bulk (`Engine::infer`: Newton on the cell currents for arrays whose
//! lines are paths held at one end, the chord iteration on the small-signal factor for the
//! vectors it does not finish) against the independent references: per-vector damped Newton on
//! the generic level-1 MOSFET (`Engine::infer_per_vector`, the factored 2-D network) to 1e-9
//! relative, and ngspice on the emitted netlist for one vector (skipped when ngspice is missing, a
//! failure under CI=true). Every case asserts which path solved how many vectors.

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
/// floor of 1e-6 of the largest (outputs that cancel to near zero carry absolute errors only),
/// and which path solved the vectors (from `Engine::last_bulk_times`).
fn bulk_vs_newton(xb: &Crossbar, k: usize, v_lo: f64, v_hi: f64, block: usize) -> (f64, BulkTimes) {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let inputs = Mat::from_fn(k, xb.rows, |_, _| rng.gen_range(v_lo..v_hi));
    let opts = SolveOptions {
        block,
        ..SolveOptions::default()
    };
    compare(xb, &inputs, opts)
}

fn compare(xb: &Crossbar, inputs: &Mat<f64>, opts: SolveOptions) -> (f64, BulkTimes) {
    let k = inputs.nrows();
    let mut bulk = Engine::new(xb, opts).unwrap();
    let got = bulk.infer(inputs.as_ref()).unwrap();
    let times = bulk.last_bulk_times().expect("bulk path ran");
    assert_eq!(times.current_vectors + times.chord_vectors, k);
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
    (worst, times)
}

#[test]
fn bulk_1t1r_equals_per_vector_newton() {
    // deep triode (3 V gates), bipolar inputs: both channel directions, drain junction near 0 V
    let xb = one_t1r(16, 12, 1, 3.0, 0.0);
    let (worst, times) = bulk_vs_newton(&xb, 50, -0.5, 0.5, 16);
    assert!(worst <= 1e-9, "bulk vs Newton, triode: {worst:e}");
    assert_eq!(
        times.current_vectors, 50,
        "cell-current Newton solved them all"
    );
    // body effect
    let xb = one_t1r(9, 7, 2, 2.5, 0.45);
    let (worst, times) = bulk_vs_newton(&xb, 30, -0.4, 0.6, 8);
    assert!(worst <= 1e-9, "bulk vs Newton, body effect: {worst:e}");
    assert_eq!(times.current_vectors, 30);
    // near saturation (1 V gates, up to 1.5 V)
    let xb = one_t1r(6, 5, 3, 1.0, 0.0);
    let (worst, times) = bulk_vs_newton(&xb, 20, 0.0, 1.5, 7);
    assert!(worst <= 1e-9, "bulk vs Newton, saturating: {worst:e}");
    assert!(times.current_vectors > 0);
}

#[test]
fn bulk_1t1r_merged_lines_equal_per_vector_newton() {
    // zero word-line segments (each word line one node behind its driver resistance) and zero
    // bit-line segments (each bit line one node in front of its sense resistance): the paths
    // degenerate to one resistor, the unknowns to one node per line
    let mut xb = one_t1r(7, 6, 5, 3.0, 0.0);
    xb.r_word_ohm = 0.0;
    xb.r_driver_ohm = 20.0;
    let (worst, times) = bulk_vs_newton(&xb, 12, -0.5, 0.5, 5);
    assert!(worst <= 1e-9, "merged word lines: {worst:e}");
    assert_eq!(times.current_vectors, 12);
    let mut xb = one_t1r(7, 6, 6, 3.0, 0.0);
    xb.r_bit_ohm = 0.0;
    xb.r_sense_ohm = 15.0;
    let (worst, times) = bulk_vs_newton(&xb, 12, -0.5, 0.5, 5);
    assert!(worst <= 1e-9, "merged bit lines: {worst:e}");
    assert_eq!(times.current_vectors, 12);
    // no sense resistance and ideal bit lines: the bit nodes are the virtual grounds themselves
    let mut xb = one_t1r(5, 4, 7, 3.0, 0.0);
    xb.r_bit_ohm = 0.0;
    xb.r_sense_ohm = 0.0;
    let (worst, times) = bulk_vs_newton(&xb, 10, -0.5, 0.5, 5);
    assert!(worst <= 1e-9, "bit lines at the virtual grounds: {worst:e}");
    assert_eq!(times.current_vectors, 10);
}

#[test]
fn bulk_fallback_to_the_chord_path_keeps_every_answer() {
    // one Newton step on the cell currents is not enough for a nonzero input (the step from the
    // zero-drop start is the whole IR drop, far above the step test), while a zero input is
    // solved at once: a mixed batch exercises the hand-over of single vectors to the chord
    // path and back into their places in the output
    let xb = one_t1r(8, 6, 9, 3.0, 0.2);
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let inputs = Mat::from_fn(15, xb.rows, |t, _| {
        if t % 3 == 1 {
            0.0
        } else {
            rng.gen_range(-0.5..0.5)
        }
    });
    let opts = SolveOptions {
        block: 4,
        max_current_steps: 1,
        ..SolveOptions::default()
    };
    let (worst, times) = compare(&xb, &inputs, opts);
    assert!(worst <= 1e-9, "mixed batch: {worst:e}");
    assert_eq!(times.current_vectors, 5, "the zero inputs: {times:?}");
    assert_eq!(times.chord_vectors, 10, "the others: {times:?}");
    // and with the cell-current iteration switched off, the chord path alone
    let opts = SolveOptions {
        max_current_steps: 0,
        ..SolveOptions::default()
    };
    let (worst, times) = compare(&xb, &inputs, opts);
    assert!(worst <= 1e-9, "chord path: {worst:e}");
    assert_eq!((times.current_vectors, times.chord_vectors), (0, 15));
}

#[test]
fn bulk_sinh_equals_per_vector_newton() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (r, c) = (12, 9);
    let xb = Crossbar {
        rows: r,
        cols: c,
        g_siemens: (0..r * c).map(|_| rng.gen_range(1e-6..1e-4)).collect(),
        cell: CellKind::Sinh { k_per_v: 3.0 },
        r_word_ohm: 2.5,
        r_bit_ohm: 2.5,
        r_driver_ohm: 1.0,
        r_sense_ohm: 0.5,
        sense: SenseKind::VirtualGround,
    };
    let (worst, times) = bulk_vs_newton(&xb, 25, -0.4, 0.4, 9);
    assert!(worst <= 1e-9, "sinh: {worst:e}");
    assert_eq!(times.current_vectors, 25);
}

#[test]
fn bulk_1t1r_one_vector_matches_ngspice() {
    let xb = one_t1r(6, 4, 4, 3.0, 0.3);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let v: Vec<f64> = (0..xb.rows).map(|_| rng.gen_range(-0.4..0.5)).collect();
    let mut eng = Engine::new(&xb, SolveOptions::default()).unwrap();
    let out = eng
        .infer(faer::MatRef::from_row_major_slice(&v, 1, v.len()))
        .unwrap();
    let times = eng.last_bulk_times().expect("bulk path ran");
    assert_eq!(times.current_vectors, 1, "solved by cell-current Newton");
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
