//! Crossbar engine against closed forms, properties and badcrossbar.

use faer::Mat;
use netc::xbar::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_g(r: usize, c: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..r * c).map(|_| rng.gen_range(1e-5..1e-3)).collect()
}

fn random_inputs(k: usize, r: usize, seed: u64) -> Mat<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Mat::from_fn(k, r, |_, _| rng.gen_range(-1.0..1.0))
}

fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

#[test]
fn ideal_wires_give_the_ideal_product_exactly() {
    let (r, c) = (7, 5);
    let g = random_g(r, c, 1);
    let xb = Crossbar::passive(r, c, g.clone(), 0.0).unwrap();
    let mut eng = Engine::new(&xb, SolveOptions::default()).unwrap();
    let x = random_inputs(3, r, 2);
    let out = eng.infer(x.as_ref()).unwrap();
    for t in 0..3 {
        let v: Vec<f64> = (0..r).map(|i| x[(t, i)]).collect();
        let ideal = xb.ideal_currents(&v);
        for j in 0..c {
            // Same sum, same order up to rounding of a handful of products.
            assert!(
                (out[(t, j)] - ideal[j]).abs() <= 1e-15 * ideal[j].abs().max(1e-6),
                "{} vs {}",
                out[(t, j)],
                ideal[j]
            );
        }
    }
    let t = eng.effective_weights().unwrap();
    for i in 0..r {
        for j in 0..c {
            assert_eq!(t[(i, j)], g[i * c + j], "T = G exactly without wires");
        }
    }
}

#[test]
fn one_by_one_array_in_closed_form() {
    let g = 2e-4;
    let mut xb = Crossbar::passive(1, 1, vec![g], 3.0).unwrap();
    xb.r_bit_ohm = 4.0;
    xb.r_driver_ohm = 10.0;
    xb.r_sense_ohm = 20.0;
    let mut eng = Engine::new(&xb, SolveOptions::default()).unwrap();
    let v = 0.7;
    let s = eng.solve_detailed(&[v]).unwrap();
    let want = v / (10.0 + 3.0 + 1.0 / g + 4.0 + 20.0);
    assert!(
        rel_err(s.i_col[0].unwrap(), want) < 1e-14,
        "{} vs {want}",
        s.i_col[0].unwrap()
    );
    // The word node sits one driver + segment drop below the source.
    assert!(rel_err(s.v_word[0], v - want * 13.0) < 1e-14);
    // sinh cell: I = g sinh(k V_cell)/k with V_cell = V − I·R_series, solved by bisection here.
    xb.cell = CellKind::Sinh { k_per_v: 4.0 };
    let mut eng = Engine::new(&xb, SolveOptions::default()).unwrap();
    let s = eng.solve_detailed(&[v]).unwrap();
    let rs = 37.0;
    let f = |i: f64| g * (4.0 * (v - i * rs)).sinh() / 4.0 - i;
    let (mut lo, mut hi) = (0.0, v / rs);
    for _ in 0..200 {
        let m = 0.5 * (lo + hi);
        if f(m) > 0.0 {
            lo = m
        } else {
            hi = m
        }
    }
    assert!(
        rel_err(s.i_col[0].unwrap(), lo) < 1e-10,
        "{} vs {lo}",
        s.i_col[0].unwrap()
    );
}

#[test]
fn current_is_conserved() {
    let mut xb = Crossbar::passive(9, 6, random_g(9, 6, 3), 2.5).unwrap();
    xb.r_driver_ohm = 3.0;
    xb.r_sense_ohm = 1.0;
    for cell in [CellKind::Linear, CellKind::Sinh { k_per_v: 2.0 }] {
        xb.cell = cell;
        let mut eng = Engine::new(&xb, SolveOptions::default()).unwrap();
        let v: Vec<f64> = (0..9).map(|i| 0.1 * i as f64 - 0.3).collect();
        let s = eng.solve_detailed(&v).unwrap();
        let sum_in: f64 = s.i_row.iter().map(|x| x.unwrap()).sum();
        let sum_out: f64 = s.i_col.iter().map(|x| x.unwrap()).sum();
        let scale: f64 = s.i_row.iter().map(|x| x.unwrap().abs()).sum();
        assert!(
            (sum_in - sum_out).abs() <= 1e-12 * scale,
            "{sum_in} vs {sum_out}"
        );
        // And at every bit line: the cells' currents all reach the sense amplifier.
        for j in 0..6 {
            let cells: f64 = (0..9).map(|i| s.i_cell[i * 6 + j]).sum();
            assert!((cells - s.i_col[j].unwrap()).abs() <= 1e-12 * scale);
        }
    }
}

#[test]
fn t_matrix_product_equals_the_direct_solve() {
    for (r, c) in [(6, 9), (9, 6)] {
        // both the direct (R ≤ C) and the adjoint (R > C) construction
        let mut xb = Crossbar::passive(r, c, random_g(r, c, 4), 2.5).unwrap();
        xb.r_driver_ohm = 7.0;
        xb.r_bit_ohm = 1.0;
        let x = random_inputs(4, r, 5);
        let mut eng = Engine::new(&xb, SolveOptions::default()).unwrap();
        let direct = eng.infer(x.as_ref()).unwrap(); // 4 < min(R, C): direct solves
        let t = eng.effective_weights().unwrap().clone();
        let via_t = &x * &t;
        let big = eng.infer(x.as_ref()).unwrap(); // now through T
                                                  // into a caller's buffer holding stale values: overwritten, not accumulated
        let mut into = Mat::from_fn(4, c, |_, _| 1e3);
        eng.infer_into(x.as_ref(), into.as_mut()).unwrap();
        for tt in 0..4 {
            for j in 0..c {
                assert!(rel_err(direct[(tt, j)], via_t[(tt, j)]) < 1e-10);
                assert!(rel_err(direct[(tt, j)], big[(tt, j)]) < 1e-10);
                assert!(rel_err(direct[(tt, j)], into[(tt, j)]) < 1e-10);
            }
        }
        // Wire resistance only ever lowers the weights.
        for i in 0..r {
            for j in 0..c {
                assert!(t[(i, j)] < xb.g(i, j) && t[(i, j)] > 0.0);
            }
        }
    }
}

#[test]
fn iterative_solver_agrees_with_direct_to_its_tolerance() {
    let (r, c) = (24, 17);
    let mut xb = Crossbar::passive(r, c, random_g(r, c, 6), 2.5).unwrap();
    xb.r_bit_ohm = 4.0;
    xb.r_driver_ohm = 2.0;
    let v: Vec<f64> = (0..r).map(|i| ((i * 7) % 5) as f64 * 0.2).collect();
    let mut direct = Engine::new(&xb, SolveOptions::default()).unwrap();
    let sd = direct.solve_detailed(&v).unwrap();
    for tol in [1e-6, 1e-12] {
        let opts = SolveOptions {
            method: LinearMethod::Iterative(PcgOptions {
                rel_tol: tol,
                max_iter: 10_000,
            }),
            ..Default::default()
        };
        let mut it = Engine::new(&xb, opts).unwrap();
        let si = it.solve_detailed(&v).unwrap();
        let stats = it.last_pcg().unwrap();
        assert!(stats.rel_residual <= tol);
        let imax = sd
            .i_col
            .iter()
            .map(|x| x.unwrap().abs())
            .fold(0.0, f64::max);
        for j in 0..c {
            let e = (si.i_col[j].unwrap() - sd.i_col[j].unwrap()).abs();
            // residual tolerance → output error bounded by about tol × condition; generous 1e3
            assert!(e <= 1e3 * tol * imax, "tol {tol}: column {j} error {e}");
        }
        if tol == 1e-12 {
            for (a, b) in si.v_word.iter().zip(&sd.v_word) {
                assert!((a - b).abs() < 1e-9);
            }
        }
    }
}

#[test]
fn passive_arrays_match_badcrossbar() {
    if !badcrossbar::require_for_test() {
        return;
    }
    for (r, c, rw, rb) in [
        (6, 5, 2.5, 2.5),
        (4, 7, 1.0, 5.0),
        (1, 4, 2.0, 3.0),
        (5, 1, 2.0, 3.0),
        // as many vectors as columns: through T, from the multifrontal Schur complement onto
        // the array's boundary (5,760 unknowns)
        (72, 40, 2.5, 1.5),
    ] {
        let g = random_g(r, c, 7 + r as u64);
        let mut xb = Crossbar::passive(r, c, g.clone(), rw).unwrap();
        xb.r_bit_ohm = rb;
        let k = if r * c > 1000 { c } else { 3 };
        let x = random_inputs(k, r, 8);
        let vecs: Vec<Vec<f64>> = (0..k)
            .map(|t| (0..r).map(|i| x[(t, i)]).collect())
            .collect();
        let peer = badcrossbar::prepare(&g, r, c, &vecs, rw, rb)
            .unwrap()
            .run()
            .unwrap();
        let mut eng = Engine::new(&xb, SolveOptions::default()).unwrap();
        let out = eng.infer(x.as_ref()).unwrap();
        for t in 0..k {
            for j in 0..c {
                assert!(
                    rel_err(out[(t, j)], peer[t][j]) < 1e-9,
                    "{r}x{c}: netc {} badcrossbar {}",
                    out[(t, j)],
                    peer[t][j]
                );
            }
        }
    }
}

#[test]
fn many_vectors_in_parallel_match_one_at_a_time_for_nonlinear_cells() {
    let (r, c) = (5, 4);
    let mut xb = Crossbar::passive(r, c, random_g(r, c, 9), 2.5).unwrap();
    xb.cell = CellKind::OneT1R {
        mos: default_access_mos(),
        v_gate_v: vec![2.5; r],
    };
    let x = random_inputs(37, r, 10);
    let opts = SolveOptions {
        block: 8,
        ..Default::default()
    };
    let mut eng = Engine::new(&xb, opts).unwrap();
    let out = eng.infer(x.as_ref()).unwrap();
    for t in [0, 9, 36] {
        let v: Vec<f64> = (0..r).map(|i| x[(t, i)]).collect();
        let s = eng.solve_detailed(&v).unwrap();
        for j in 0..c {
            assert!(rel_err(out[(t, j)], s.i_col[j].unwrap()) < 1e-9);
        }
    }
}

#[test]
fn read_sneak_paths_behave() {
    // A low-resistance neighbourhood around a high-resistance selected cell: floating lines give a
    // large sneak current, grounded lines almost none; with V/2 and V/3 the half-selected cells of
    // the selected column leak into the sense amplifier.
    let (r, c) = (8, 8);
    let mut g = vec![1e-3; r * c];
    g[3 * c + 4] = 1e-6;
    let xb = Crossbar::passive(r, c, g, 1.0).unwrap();
    let opts = SolveOptions::default();
    let (fl, _) = read(&xb, 3, 4, 0.2, Scheme::Floating, &opts).unwrap();
    let (gnd, _) = read(&xb, 3, 4, 0.2, Scheme::Grounded, &opts).unwrap();
    assert!(fl.sneak_fraction > 0.9, "floating: {}", fl.sneak_fraction);
    assert!(
        gnd.sneak_fraction.abs() < 0.5 * fl.sneak_fraction,
        "grounded: {}",
        gnd.sneak_fraction
    );
    // The selected cell's own current is close to g·V without sneak paths.
    assert!(rel_err(gnd.cell_a, 0.2e-6) < 0.05);
    for scheme in [
        Scheme::Floating,
        Scheme::Grounded,
        Scheme::Half,
        Scheme::Third,
    ] {
        let (res, s) = read(&xb, 3, 4, 0.2, scheme, &opts).unwrap();
        // The sneak part is what the other cells of the selected column carry (exactly, up to the
        // gmin leakage of floating bit-line nodes: at most 8 nodes × 1e-12 S × 0.2 V).
        let others: f64 = (0..r)
            .filter(|&i| i != 3)
            .map(|i| s.i_cell[i * c + 4])
            .sum();
        assert!(
            (res.sneak_a - others).abs() <= 1e-12 * res.measured_a.abs() + 2e-12,
            "{scheme:?}"
        );
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(Crossbar::passive(0, 3, vec![], 1.0).is_err());
    assert!(Crossbar::passive(2, 2, vec![1e-3; 3], 1.0).is_err());
    assert!(Crossbar::passive(2, 2, vec![1e-3, -1.0, 1e-3, 1e-3], 1.0).is_err());
    assert!(Crossbar::passive(2, 2, vec![1e-3; 4], f64::NAN).is_err());
    let xb = Crossbar::passive(2, 2, vec![1e-3; 4], 1.0).unwrap();
    let mut eng = Engine::new(&xb, SolveOptions::default()).unwrap();
    assert!(eng.infer(Mat::<f64>::zeros(1, 3).as_ref()).is_err());
    let x = Mat::<f64>::zeros(3, 2);
    assert!(eng
        .infer_into(x.as_ref(), Mat::zeros(2, 2).as_mut())
        .is_err());
    assert!(eng
        .infer_into(x.as_ref(), Mat::zeros(3, 3).as_mut())
        .is_err());
    assert!(read(&xb, 2, 0, 0.1, Scheme::Half, &SolveOptions::default()).is_err());
    assert!(program(&xb, 0, 0, 1.0, Scheme::Floating, &SolveOptions::default()).is_err());
    // A zero-conductance cell on a floating line: gmin keeps the matrix definite.
    let xb = Crossbar::passive(2, 2, vec![1e-3, 0.0, 0.0, 1e-3], 1.0).unwrap();
    let (res, _) = read(&xb, 0, 0, 0.1, Scheme::Floating, &SolveOptions::default()).unwrap();
    assert!(res.measured_a.is_finite());
}

/// A new conductance state of an existing engine answers as a fresh engine built on it, for the
/// linear path (through T: the multifrontal Schur complement), the direct solves and Newton cells.
#[test]
fn new_conductance_state_equals_a_fresh_engine() {
    let (r, c) = (72, 40);
    let (g1, g2) = (random_g(r, c, 21), random_g(r, c, 22));
    let many = random_inputs(c, r, 23); // k = min(R, C): through T
    let few = random_inputs(2, r, 24); // direct solves
    let mut linear = Crossbar::passive(r, c, g1.clone(), 2.5).unwrap();
    linear.r_driver_ohm = 4.0;
    let mut sinh = Crossbar::passive(6, 5, random_g(6, 5, 25), 2.5).unwrap();
    sinh.cell = CellKind::Sinh { k_per_v: 3.0 };
    let sinh_g2 = random_g(6, 5, 26);
    for (xb, g_new, inputs) in [
        (&linear, &g2, &many),
        (&linear, &g2, &few),
        (&sinh, &sinh_g2, &random_inputs(3, 6, 27)),
    ] {
        let mut eng = Engine::new(xb, SolveOptions::default()).unwrap();
        let before = eng.infer(inputs.as_ref()).unwrap();
        eng.set_conductances(g_new).unwrap();
        let after = eng.infer(inputs.as_ref()).unwrap();
        let mut into = Mat::from_fn(inputs.nrows(), xb.cols, |_, _| -1.0);
        eng.infer_into(inputs.as_ref(), into.as_mut()).unwrap();
        assert_eq!(into, after, "infer_into answers as infer");
        let mut fresh_xb = xb.clone();
        fresh_xb.g_siemens = g_new.clone();
        let want = Engine::new(&fresh_xb, SolveOptions::default())
            .unwrap()
            .infer(inputs.as_ref())
            .unwrap();
        let mut changed = false;
        for t in 0..inputs.nrows() {
            for j in 0..xb.cols {
                assert!(rel_err(after[(t, j)], want[(t, j)]) < 1e-10);
                changed |= rel_err(after[(t, j)], before[(t, j)]) > 1e-3;
            }
        }
        assert!(changed, "the outputs must follow the new conductances");
    }
    let mut eng = Engine::new(&linear, SolveOptions::default()).unwrap();
    assert!(eng.set_conductances(&g1[1..]).is_err());
    assert!(eng.set_conductances(&vec![-1.0; r * c]).is_err());
}
