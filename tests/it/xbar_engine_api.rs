//! The crossbar engine's public surface: every misuse is an error (never a panic) and leaves the
//! engine usable; switching solvers and editing conductances keep the answers those of a fresh
//! engine. Checked against closed forms (zero wire resistance: `T = G`, `I = Gᵀ·V`) and against
//! the other solver (direct Cholesky vs. preconditioned conjugate gradients).

use faer::Mat;
use netc::xbar::{CellKind, Crossbar, Engine, LinearMethod, PcgOptions, SolveOptions};

fn conductances(r: usize, c: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..r * c)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            10e-6 + 90e-6 * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

fn iterative() -> SolveOptions {
    SolveOptions {
        method: LinearMethod::Iterative(PcgOptions {
            rel_tol: 1e-13,
            max_iter: 5000,
        }),
        ..SolveOptions::default()
    }
}

fn inputs(r: usize) -> Mat<f64> {
    Mat::from_fn(3, r, |t, i| 0.1 * ((t * r + i) as f64 * 0.7).sin())
}

fn max_rel(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
    let mut scale = 0.0f64;
    let mut d = 0.0f64;
    for i in 0..a.nrows() {
        for j in 0..a.ncols() {
            scale = scale.max(a[(i, j)].abs());
            d = d.max((a[(i, j)] - b[(i, j)]).abs());
        }
    }
    d / scale
}

#[test]
fn switching_solvers_after_construction_gives_the_same_answers() {
    let xb = Crossbar::passive(12, 9, conductances(12, 9, 1), 2.5).unwrap();
    let x = inputs(12);
    let mut e = Engine::new(&xb, SolveOptions::default()).unwrap();
    let direct = e.infer(x.as_ref()).unwrap();
    e.set_options(iterative()).unwrap();
    assert!(e.network().is_none());
    let pcg = e.infer(x.as_ref()).unwrap();
    assert!(e.last_pcg().is_some());
    assert!(max_rel(&direct, &pcg) < 1e-9, "{}", max_rel(&direct, &pcg));
    // the iterative engine has no T: an error, not a panic
    assert!(e.effective_weights().is_err());
    assert!(e.combined_weights(&[vec![(0, 1.0)]]).is_err());
    e.set_options(SolveOptions::default()).unwrap();
    assert!(e.network().is_some());
    let back = e.infer(x.as_ref()).unwrap();
    assert!(max_rel(&direct, &back) < 1e-12);
    let t = e.effective_weights().unwrap().clone();
    assert!(max_rel(&direct, &(x.as_ref() * &t)) < 1e-12);
}

#[test]
fn a_solver_that_cannot_take_the_array_is_an_error_and_the_engine_stays_usable() {
    // the iterative solver needs wire resistance
    let xb = Crossbar::passive(5, 4, conductances(5, 4, 2), 0.0).unwrap();
    let mut e = Engine::new(&xb, SolveOptions::default()).unwrap();
    assert!(Engine::new(&xb, iterative()).is_err());
    assert!(e.set_options(iterative()).is_err());
    assert_eq!(e.options().method, LinearMethod::Direct);
    // zero wires: T is G exactly
    let t = e.effective_weights().unwrap();
    for i in 0..5 {
        for j in 0..4 {
            assert!((t[(i, j)] - xb.g(i, j)).abs() <= 1e-12 * xb.g(i, j));
        }
    }
}

#[test]
fn conductance_edits_keep_effective_weights_consistent() {
    let g0 = conductances(6, 5, 3);
    let g1 = conductances(6, 5, 4);
    let xb = Crossbar::passive(6, 5, g0.clone(), 0.0).unwrap();
    let mut e = Engine::new(&xb, SolveOptions::default()).unwrap();
    let _ = e.effective_weights().unwrap();
    e.set_conductances(&g1).unwrap();
    // T of the new state (closed form with ideal wires: T = G), not the cached one
    let t = e.effective_weights().unwrap().clone();
    for k in 0..30 {
        assert!((t[(k / 5, k % 5)] - g1[k]).abs() <= 1e-12 * g1[k]);
    }
    assert_eq!(e.crossbar().g_siemens, g1);
    // a wrong length and a negative conductance are errors that change nothing
    assert!(e.set_conductances(&g1[..29]).is_err());
    let mut bad = g0.clone();
    bad[7] = -1e-6;
    assert!(e.set_conductances(&bad).is_err());
    assert_eq!(e.crossbar().g_siemens, g1);
    let v = vec![0.1; 6];
    let out = e.infer(Mat::from_fn(1, 6, |_, i| v[i]).as_ref()).unwrap();
    let ideal = e.crossbar().ideal_currents(&v);
    for j in 0..5 {
        assert!((out[(0, j)] - ideal[j]).abs() <= 1e-12 * ideal[j].abs());
    }
}

#[test]
fn wrong_sizes_and_nonlinear_arrays_are_errors() {
    let xb = Crossbar {
        cell: CellKind::Sinh { k_per_v: 2.0 },
        ..Crossbar::passive(4, 3, conductances(4, 3, 5), 1.0).unwrap()
    };
    assert!(Engine::new(&xb, iterative()).is_err());
    let mut e = Engine::new(&xb, SolveOptions::default()).unwrap();
    assert!(e.effective_weights().is_err());
    assert!(e.infer(Mat::<f64>::zeros(2, 5).as_ref()).is_err());
    assert!(e.solve_detailed(&[0.1; 3]).is_err());
    let mut out = Mat::<f64>::zeros(2, 2);
    assert!(e
        .infer_into(Mat::<f64>::zeros(2, 4).as_ref(), out.as_mut())
        .is_err());
    // still usable: a sinh array at small voltage is within sinh's curvature of its linear part
    let v = [0.01, -0.02, 0.015, 0.005];
    let o = e.infer(Mat::from_fn(1, 4, |_, i| v[i]).as_ref()).unwrap();
    assert!(e.last_newton().is_some());
    assert!(o[(0, 0)].is_finite());
    let bad = Crossbar {
        rows: 0,
        ..xb.clone()
    };
    assert!(Engine::new(&bad, SolveOptions::default()).is_err());
}
