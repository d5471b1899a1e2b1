//! Optimisers on small closed-form cases.

use netc::nn::matrix::Matrix;
use netc::nn::optim::{Optimizer, OptimizerSpec};

fn m(v: &[f64]) -> Matrix {
    Matrix::from_vec(1, v.len(), v.to_vec()).unwrap()
}

#[test]
fn sgd_momentum_two_steps() {
    let mut o = Optimizer::new(OptimizerSpec::Sgd {
        lr: 0.1,
        momentum: 0.9,
    });
    let mut p = vec![m(&[1.0, -2.0])];
    let g = vec![m(&[0.5, -1.0])];
    o.step(&mut p, &g).unwrap();
    assert_eq!(p[0].data, vec![1.0 - 0.05, -2.0 + 0.1]);
    let d = o.step(&mut p, &g).unwrap();
    // v2 = 0.9·v1 − lr·g = −lr·g·1.9
    assert!((d[0].data[0] + 0.05 * 1.9).abs() < 1e-15);
    assert!((d[0].data[1] - 0.1 * 1.9).abs() < 1e-15);
}

#[test]
fn sgd_minimises_quadratic() {
    // f(w) = ½(w − 3)²
    let mut o = Optimizer::new(OptimizerSpec::Sgd {
        lr: 0.1,
        momentum: 0.5,
    });
    let mut p = vec![m(&[0.0])];
    for _ in 0..200 {
        let g = vec![m(&[p[0].data[0] - 3.0])];
        o.step(&mut p, &g).unwrap();
    }
    assert!((p[0].data[0] - 3.0).abs() < 1e-9);
}

#[test]
fn rmsprop_closed_form() {
    let (lr, rho, eps) = (0.01, 0.9, 1e-8);
    let mut o = Optimizer::new(OptimizerSpec::RmsProp {
        lr,
        decay: rho,
        eps,
    });
    let mut p = vec![m(&[0.0, 0.0])];
    let g1 = vec![m(&[2.0, -0.5])];
    let d1 = o.step(&mut p, &g1).unwrap();
    for (i, gv) in [2.0f64, -0.5].iter().enumerate() {
        let s: f64 = (1.0 - rho) * gv * gv;
        assert!((d1[0].data[i] + lr * gv / (s.sqrt() + eps)).abs() < 1e-15);
    }
    let g2 = vec![m(&[1.0, 1.0])];
    let d2 = o.step(&mut p, &g2).unwrap();
    let s0: f64 = rho * 0.1 * 4.0 + 0.1;
    assert!((d2[0].data[0] + lr / (s0.sqrt() + eps)).abs() < 1e-15);
    assert_eq!(o.state[0].len(), 2);
}

#[test]
fn manhattan_is_sign_only() {
    let mut o = Optimizer::new(OptimizerSpec::Manhattan { step: 0.25 });
    let mut p = vec![m(&[1.0, 1.0, 1.0])];
    o.step(&mut p, &[m(&[1e-9, -300.0, 0.0])]).unwrap();
    assert_eq!(p[0].data, vec![0.75, 1.25, 1.0]);
}

#[test]
fn threshold_rule_skips_small_updates() {
    let mut o = Optimizer::new(OptimizerSpec::Threshold {
        lr: 1.0,
        threshold: 0.5,
    });
    let mut p = vec![m(&[0.0, 0.0, 0.0, 0.0])];
    o.step(&mut p, &[m(&[0.4, -0.6, 0.5, -0.49])]).unwrap();
    assert_eq!(p[0].data, vec![0.0, 0.6, -0.5, 0.0]);
}

#[test]
fn mismatched_gradients_are_errors() {
    let mut o = Optimizer::new(OptimizerSpec::Manhattan { step: 1.0 });
    let mut p = vec![m(&[1.0, 2.0])];
    assert!(o.step(&mut p, &[m(&[1.0])]).is_err());
    assert!(o.step(&mut p, &[]).is_err());
}
