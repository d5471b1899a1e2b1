//! Nonlinear arrays in bulk: many input vectors solved together by a chord iteration whose fixed
//! matrix is the factored small-signal array (the linear stand-in that also gives Newton its
//! start), with the vectors of a block as one block of right-hand sides.
//!
//! Why a chord iteration: in the operating range of a crossbar (1T1R access transistors in deep
//! triode, sinh cells at small voltages) the Jacobian differs from the small-signal matrix `M` by a
//! fraction of a percent, so `x ← x − M⁻¹·F(x)` contracts the error by about that fraction per
//! step — a few steps to Newton's tolerance — and every step for every vector uses the one factor
//! of `M` (no factorisation per vector, one triangular solve per block of vectors). Each step
//! evaluates the cells once per vector (the 1T1R internal nodes warm-started from the previous
//! step). The stopping test is Newton's (`NewtonProblem::solve`): the last step below
//! `reltol·max(|x_new|, |x_old|) + vntol` on every unknown and the KCL residual at the new point
//! below `reltol·scale·1e3 + abstol`. A vector whose residual stops falling (strongly nonlinear
//! cells, saturated amplifiers) is finished by per-vector damped Newton from where it stands,
//! so the answer meets the same test either way.
#![allow(clippy::needless_range_loop)] // parallel arrays indexed together

use faer::MatMut;
use rayon::prelude::*;

use super::kernel::{Kcl, KclScratch};
use super::linear::LinearSystem;
use super::newton::{NewtonOptions, NewtonProblem};
use super::XbarError;

/// Chord steps before a vector that has not converged is handed to per-vector Newton.
const MAX_CHORD_STEPS: usize = 30;

/// What the bulk solver did for one block.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BulkStats {
    /// Chord steps taken by the block (the slowest vector's count).
    pub chord_steps: usize,
    /// Vectors finished by per-vector Newton.
    pub newton_fallbacks: usize,
    /// Newton iterations spent on those vectors.
    pub newton_iterations: usize,
    /// Wall time in residual evaluations (cells and wires) and in the block solves (s).
    pub residual_seconds: f64,
    pub solve_seconds: f64,
}

/// Solve the nonlinear array for the `k` input vectors in the columns of `v_rows` (R × k,
/// column-major, `v_rows[t·R + i]`) with the column sources at `v_col`. `x` (n × k,
/// column-major) holds the start on entry (e.g. the small-signal solution) and the solution on
/// exit. `lin` must be the small-signal array of the same network (its factor is the chord
/// matrix).
pub fn solve_block(
    problem: &NewtonProblem<'_>,
    lin: &mut LinearSystem,
    v_rows: &[f64],
    v_col: &[f64],
    x: &mut [f64],
    opts: &NewtonOptions,
) -> Result<BulkStats, XbarError> {
    let net = problem.net;
    let (n, r) = (net.n_free, net.rows);
    let cells = net.w.len();
    if r == 0 || !v_rows.len().is_multiple_of(r) {
        return Err(XbarError::Invalid(format!(
            "{} input voltages are not whole vectors of {r}",
            v_rows.len()
        )));
    }
    let k = v_rows.len() / r;
    if x.len() != n * k {
        return Err(XbarError::Invalid(format!(
            "start has {} values for {k} vectors of {n} unknowns",
            x.len()
        )));
    }
    let mut stats = BulkStats::default();
    if n == 0 || k == 0 {
        return Ok(stats);
    }
    let vm_len = if problem.has_internal() { cells } else { 0 };
    // the inline residual (virtual-ground sensing); amplifier arrays use the generic one
    let kcl = Kcl::new(problem.xb, net, problem.gmin_siemens());
    // per-vector state: internal nodes, residual, its scale and norm, step test
    let mut vm = vec![0.0; vm_len.max(1) * k];
    let mut f = vec![0.0; n * k];
    let mut scale = vec![0.0f64; k];
    let mut fnorm = vec![f64::INFINITY; k];
    let mut step_ok = vec![false; k];
    let mut status = vec![Status::Active; k];
    if vm_len > 0 {
        vm.par_chunks_mut(vm_len)
            .zip(x.par_chunks(n))
            .zip(v_rows.par_chunks(r))
            .for_each(|((m, xt), vr)| match &kcl {
                Some(kcl) => kcl.internal_start(xt, vr, v_col, m),
                None => problem.internal_start(xt, vr, v_col, m),
            });
    }
    let mut rhs: Vec<f64> = Vec::new();
    let mut active: Vec<usize> = (0..k).collect();
    for step in 0..=MAX_CHORD_STEPS {
        // residuals of the active vectors at their current points
        let t_res = std::time::Instant::now();
        let vm_chunk = vm_len.max(1);
        f.par_chunks_mut(n)
            .zip(vm.par_chunks_mut(vm_chunk))
            .zip(scale.par_iter_mut())
            .zip(fnorm.par_iter_mut())
            .zip(status.par_iter_mut())
            .enumerate()
            .filter(|(_, (((_, _), _), st))| **st == Status::Active)
            .for_each_init(
                KclScratch::default,
                |ks, (t, ((((ft, vmt), sc), fnm), st))| {
                    let xt = &x[t * n..(t + 1) * n];
                    let vr = &v_rows[t * r..(t + 1) * r];
                    let vmt = &mut vmt[..vm_len];
                    let s = match &kcl {
                        Some(kcl) => kcl.residual(ks, xt, vr, v_col, ft, vmt),
                        None => problem.residual(xt, vr, v_col, ft, vmt, None),
                    };
                    *sc = sc.max(s);
                    let norm = ft.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    if !norm.is_finite() {
                        *st = Status::Newton;
                    } else if step_ok[t] && norm <= opts.reltol * *sc * 1e3 + opts.abstol_a {
                        *st = Status::Done;
                    } else if step >= 2 && norm > 0.5 * *fnm {
                        // the fixed matrix no longer contracts this vector's error: Newton's turn
                        *st = Status::Newton;
                    }
                    *fnm = norm;
                },
            );
        stats.residual_seconds += t_res.elapsed().as_secs_f64();
        active.retain(|&t| status[t] == Status::Active);
        if active.is_empty() {
            break;
        }
        if step == MAX_CHORD_STEPS {
            for &t in &active {
                status[t] = Status::Newton;
            }
            break;
        }
        stats.chord_steps = step + 1;
        // one block solve for every active vector: M·dx = −F
        let na = active.len();
        rhs.clear();
        rhs.resize(n * na, 0.0);
        rhs.par_chunks_mut(n)
            .zip(active.par_iter())
            .for_each(|(d, &t)| {
                for (dv, fv) in d.iter_mut().zip(&f[t * n..(t + 1) * n]) {
                    *dv = -fv;
                }
            });
        let t_solve = std::time::Instant::now();
        lin.solve_in_place_parallel(MatMut::from_column_major_slice_mut(&mut rhs, n, na))?;
        stats.solve_seconds += t_solve.elapsed().as_secs_f64();
        let mut pos = vec![usize::MAX; k];
        for (q, &t) in active.iter().enumerate() {
            pos[t] = q;
        }
        let finite = x
            .par_chunks_mut(n)
            .zip(step_ok.par_iter_mut())
            .zip(pos.par_iter())
            .filter(|(_, &q)| q != usize::MAX)
            .map(|((xt, ok), &q)| {
                let d = &rhs[q * n..(q + 1) * n];
                let mut all = true;
                let mut finite = true;
                for (xv, dv) in xt.iter_mut().zip(d) {
                    let xn = *xv + dv;
                    finite &= xn.is_finite();
                    all &= dv.abs() <= opts.reltol * xv.abs().max(xn.abs()) + opts.vntol_v;
                    *xv = xn;
                }
                *ok = all;
                finite
            })
            .reduce(|| true, |a, b| a && b);
        if !finite {
            return Err(XbarError::Numeric("chord step is not finite".into()));
        }
    }
    // Per-vector Newton for the vectors the chord did not finish (from the start point again:
    // a diverged chord iterate is no better a start than the small-signal solution).
    let rest: Vec<usize> = (0..k).filter(|&t| status[t] == Status::Newton).collect();
    if !rest.is_empty() {
        let mut x0 = vec![0.0; n * rest.len()];
        let mut vr_rest = Vec::with_capacity(r * rest.len());
        for &t in &rest {
            vr_rest.extend_from_slice(&v_rows[t * r..(t + 1) * r]);
        }
        let vr_mat = faer::MatRef::from_column_major_slice(&vr_rest, r, rest.len());
        let start = lin.solve_rows(vr_mat, v_col)?;
        for (q, d) in x0.chunks_mut(n).enumerate() {
            for (p, v) in d.iter_mut().enumerate() {
                *v = start[(p, q)];
            }
        }
        let iters: Vec<Result<usize, XbarError>> = x0
            .par_chunks_mut(n)
            .zip(vr_rest.par_chunks(r))
            .map_init(
                || problem.workspace(),
                |ws, (xt, vr)| {
                    let ws = ws.as_mut().map_err(|e| e.clone())?;
                    Ok(problem.solve(ws, xt, vr, v_col, opts)?.iterations)
                },
            )
            .collect();
        for (q, &t) in rest.iter().enumerate() {
            stats.newton_iterations += iters[q].clone()?;
            x[t * n..(t + 1) * n].copy_from_slice(&x0[q * n..(q + 1) * n]);
        }
        stats.newton_fallbacks = rest.len();
    }
    Ok(stats)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Active,
    Done,
    Newton,
}

#[cfg(test)]
mod tests {
    use faer::Mat;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::array::{default_access_mos, CellKind, Crossbar, SenseKind};
    use super::super::eval::GMIN_JUNCTION_SIEMENS;
    use super::super::linear::LinearSystem;
    use super::super::network::{linearized_cell_g, Network, Topology};
    use super::super::newton::{NewtonOptions, NewtonProblem};
    use super::super::ops::{column_outputs, Engine, SolveOptions};
    use super::solve_block;

    fn array(r: usize, c: usize, cell: CellKind, sense: SenseKind, seed: u64) -> Crossbar {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Crossbar {
            rows: r,
            cols: c,
            g_siemens: (0..r * c).map(|_| rng.gen_range(1e-6..1e-4)).collect(),
            cell,
            r_word_ohm: 2.5,
            r_bit_ohm: 2.5,
            r_driver_ohm: 1.0,
            r_sense_ohm: 0.0,
            sense,
        }
    }

    /// The bulk solver's outputs against one damped Newton solve per vector (the reference
    /// solver, ngspice's convergence test), both to reltol 1e-10: equal to 1e-9 relative.
    /// Returns (chord steps per vector, worst relative difference).
    fn check(
        xb: &Crossbar,
        v_max: f64,
        k: usize,
        block: usize,
        newton: NewtonOptions,
    ) -> (f64, f64) {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let inputs = Mat::from_fn(k, xb.rows, |_, _| rng.gen_range(-v_max..v_max));
        let opts = SolveOptions {
            block,
            newton,
            ..SolveOptions::default()
        };
        let mut bulk = Engine::new(xb, opts).expect("engine");
        let got = bulk.infer(inputs.as_ref()).expect("bulk");
        let (steps, _) = bulk.last_newton().expect("stats");
        let mut per = Engine::new(xb, opts).expect("engine");
        let want = per
            .infer_per_vector(inputs.as_ref())
            .expect("per-vector Newton");
        let scale = (0..k)
            .flat_map(|t| (0..xb.cols).map(move |j| (t, j)))
            .fold(0.0f64, |m, (t, j)| m.max(want[(t, j)].abs()));
        let mut worst = 0.0f64;
        for t in 0..k {
            for j in 0..xb.cols {
                let (a, b) = (got[(t, j)], want[(t, j)]);
                // relative to the entry, with a floor of 1e-6 of the largest output (entries
                // that cancel to near zero carry the absolute tolerance only)
                let rel = (a - b).abs() / b.abs().max(1e-6 * scale);
                worst = worst.max(rel);
            }
        }
        assert!(worst <= 1e-9, "bulk vs per-vector Newton: {worst:e}");
        (steps as f64 / k as f64, worst)
    }

    #[test]
    fn one_t1r_bulk_matches_per_vector_newton() {
        let cell = CellKind::OneT1R {
            mos: default_access_mos(),
            v_gate_v: vec![3.0; 6],
        };
        let xb = array(6, 5, cell, SenseKind::VirtualGround, 1);
        // blocks of 7 over 20 vectors: a partial last block too
        let (steps, _) = check(&xb, 0.5, 20, 7, NewtonOptions::default());
        assert!(steps < 10.0, "{steps} chord steps per vector");
    }

    #[test]
    fn one_t1r_near_saturation_falls_back_or_converges() {
        // gates at 1 V and inputs up to 1.5 V: transistors leave triode, the chord contracts
        // slowly or not at all and per-vector Newton finishes those vectors
        let cell = CellKind::OneT1R {
            mos: default_access_mos(),
            v_gate_v: vec![1.0; 4],
        };
        let xb = array(4, 3, cell, SenseKind::VirtualGround, 2);
        check(&xb, 1.5, 12, 16, NewtonOptions::default());
    }

    #[test]
    fn sinh_cells_match_per_vector_newton() {
        let xb = array(
            5,
            4,
            CellKind::Sinh { k_per_v: 3.0 },
            SenseKind::VirtualGround,
            3,
        );
        check(&xb, 0.3, 10, 4, NewtonOptions::default());
    }

    #[test]
    fn bulk_solves_amplifier_arrays_to_the_same_answers() {
        // (Engine::infer keeps amplifier arrays on per-vector Newton; the bulk solver itself
        // handles them: checked here through solve_block at tight tolerances, where the
        // outputs — sense-node voltage times the gain 1e4 — must agree to 1e-9)
        let sense = SenseKind::Tia {
            gain: 1e4,
            r_f_ohm: 1e4,
            vsat_v: 1.0,
        };
        let xb = array(5, 4, CellKind::Sinh { k_per_v: 3.0 }, sense, 3);
        let tight = NewtonOptions {
            reltol: 1e-12,
            vntol_v: 1e-16,
            ..NewtonOptions::default()
        };
        let net = Network::new(&xb, &Topology::inference(&xb)).expect("network");
        let tia_g = xb.sense.small_signal_g_siemens();
        let cell_g = linearized_cell_g(&xb, GMIN_JUNCTION_SIEMENS);
        let mut lin =
            LinearSystem::new(net.clone(), cell_g, tia_g, 0.0, faer::Par::Seq).expect("factor");
        let problem = NewtonProblem::new(&xb, &net, None, 0.0).expect("problem");
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let k = 6;
        let (r, n) = (xb.rows, net.n_free);
        let v_rows: Vec<f64> = (0..k * r).map(|_| rng.gen_range(-0.3..0.3)).collect();
        let v_col = vec![0.0; xb.cols];
        let vr = faer::MatRef::from_column_major_slice(&v_rows, r, k);
        let start = lin.solve_rows(vr, &v_col).expect("start");
        let mut x: Vec<f64> = (0..k)
            .flat_map(|t| (0..n).map(move |p| (p, t)))
            .map(|(p, t)| start[(p, t)])
            .collect();
        let mut want = x.clone();
        solve_block(&problem, &mut lin, &v_rows, &v_col, &mut x, &tight).expect("bulk");
        let mut ws = problem.workspace().expect("workspace");
        for t in 0..k {
            let vt = &v_rows[t * r..(t + 1) * r];
            problem
                .solve(&mut ws, &mut want[t * n..(t + 1) * n], vt, &v_col, &tight)
                .expect("newton");
            let a = column_outputs(&xb, &net, &x[t * n..(t + 1) * n], vt, &v_col);
            let b = column_outputs(&xb, &net, &want[t * n..(t + 1) * n], vt, &v_col);
            for (oa, ob) in a.iter().zip(&b) {
                assert!((oa - ob).abs() <= 1e-9 * ob.abs().max(1e-6), "{oa} vs {ob}");
            }
        }
    }
}
