//! 10,000 input vectors through a 128×64 array (2.5 Ω segments) against the ideal dense product
//! `X·G` on the same data (faer matmul), measured in the same run:
//! - passive array: network, the exact `T` from the Schur complement onto the sources (multifrontal
//!   elimination along the array's geometry), then one product (target ≤ 3× the ideal time);
//!   also a new conductance state of an existing engine (restamp and T only); outputs go into a
//!   kept buffer on both sides (the verdict) and, reported beside it, into fresh allocations;
//! - 1T1R array (level-1 access transistors), exact, three solvers on the same array and vectors
//!   in the same rounds: the engine's default bulk solver (Newton on the cell currents,
//!   `xbar::lines`; the chord on the small-signal factor for any vector it does not finish), the
//!   chord path alone (`SolveOptions::max_current_steps = 0`: every vector through the chord
//!   iteration on the factored small-signal array, `xbar::bulk`; timed on `XBAR_CHORD_VECTORS`,
//!   default 1000, the first vectors, scaled), per-vector Newton on the factored 2-D network
//!   (timed on `XBAR_NEWTON_VECTORS`, default 200, the first vectors, scaled: its cost per
//!   vector is flat) and the ideal product; targets < 2 s for 10,000 vectors and ≥ 50×.
//!
//! The process keeps freed memory for reuse (`netc::retain_freed_memory`, as the netc binary
//! does), for both sides alike.
//!
//! `cargo bench --bench xbar_throughput` — env `XBAR_VECTORS` (default 10000),
//! `XBAR_1T1R_VECTORS` (default: the same), `XBAR_CHORD_VECTORS` (default 1000),
//! `XBAR_NEWTON_VECTORS` (default 200), `XBAR_ROUNDS` (1T1R rounds, default 5),
//! `XBAR_SKIP_PASSIVE=1` (only the 1T1R part).

use std::time::Instant;

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat};
use netc::xbar::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // freed memory stays with the process for reuse (see the function's docs)
    netc::retain_freed_memory();
    let k: usize = std::env::var("XBAR_VECTORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let k1: usize = std::env::var("XBAR_1T1R_VECTORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(k);
    let kn: usize = std::env::var("XBAR_NEWTON_VECTORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let kc: usize = std::env::var("XBAR_CHORD_VECTORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let rounds: usize = std::env::var("XBAR_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let skip_passive = std::env::var("XBAR_SKIP_PASSIVE").is_ok_and(|v| v == "1");
    let (r, c) = (128, 64);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let g: Vec<f64> = (0..r * c).map(|_| rng.gen_range(1e-6..1e-4)).collect();
    let x = Mat::from_fn(k, r, |_, _| rng.gen_range(0.0..0.5));
    let gmat = Mat::from_fn(r, c, |i, j| g[i * c + j]);
    let xb = Crossbar::passive(r, c, g.clone(), 2.5).expect("array");

    // Ideal product and the whole passive pipeline (network, plan, T, product), interleaved so
    // warm-up and machine load fall on both alike; medians of 21 rounds. Both sides are timed
    // twice: writing into an output buffer kept across rounds (what a stream of batches does;
    // the target's verdict), and allocating a fresh k × C output each time, whose first touch of
    // fresh memory pages costs either side a varying few milliseconds on this machine.
    let par = faer::get_global_parallelism();
    // the ideal product into a kept buffer; returns its time (s)
    let ideal_into = |dst: &mut Mat<f64>| {
        let t0 = Instant::now();
        matmul(
            dst.as_mut(),
            Accum::Replace,
            x.as_ref(),
            gmat.as_ref(),
            1.0,
            par,
        );
        t0.elapsed().as_secs_f64()
    };
    let mut ideal = Mat::<f64>::zeros(k, c);
    if !skip_passive {
        let mut ideal_t = Vec::new();
        let mut pass_t = Vec::new();
        let mut ideal_alloc_t = Vec::new();
        let mut pass_alloc_t = Vec::new();
        let mut out = Mat::<f64>::zeros(k, c);
        let mut ideal_alloc = Mat::<f64>::zeros(k, c);
        let mut out_alloc = Mat::<f64>::zeros(k, c);
        for _ in 0..21 {
            ideal_t.push(ideal_into(&mut ideal));
            let t0 = Instant::now();
            let mut eng = Engine::new(&xb, SolveOptions::default()).expect("engine");
            eng.infer_into(x.as_ref(), out.as_mut()).expect("infer");
            pass_t.push(t0.elapsed().as_secs_f64());
            drop(eng);
            // (the previous results are freed outside the timed regions)
            let t0 = Instant::now();
            let p = &x * &gmat;
            ideal_alloc_t.push(t0.elapsed().as_secs_f64());
            ideal_alloc = p;
            let t0 = Instant::now();
            let mut eng = Engine::new(&xb, SolveOptions::default()).expect("engine");
            let o = eng.infer(x.as_ref()).expect("infer");
            pass_alloc_t.push(t0.elapsed().as_secs_f64());
            out_alloc = o;
        }
        assert_eq!(ideal, ideal_alloc, "the two ideal products agree");
        assert_eq!(out, out_alloc, "the two passive pipelines agree");
        let ideal_alloc_seconds = median(ideal_alloc_t);
        let pass_alloc_seconds = median(pass_alloc_t);
        let ideal_seconds = median(ideal_t);
        let pass_seconds = median(pass_t);
        // A new conductance state of an existing engine (what training does after every step):
        // restamp over the kept network and plan, T, product; interleaved with the ideal product
        // again, so that this ratio has its own reference from the same moments.
        let mut ideal_state_t = Vec::new();
        let mut eng = Engine::new(&xb, SolveOptions::default()).expect("engine");
        let g2: Vec<f64> = g.iter().map(|v| v * 1.01).collect();
        let mut scratch = Mat::<f64>::zeros(k, c);
        let mut state_t = Vec::new();
        let mut state_tt = Vec::new();
        for round in 0..21 {
            ideal_state_t.push(ideal_into(&mut ideal));
            let t0 = Instant::now();
            eng.set_conductances(if round % 2 == 0 { &g2 } else { &g })
                .expect("new state");
            eng.effective_weights().expect("T");
            state_tt.push(t0.elapsed().as_secs_f64());
            eng.infer_into(x.as_ref(), scratch.as_mut()).expect("infer");
            state_t.push(t0.elapsed().as_secs_f64());
        }
        let state_seconds = median(state_t);
        let ideal_state_seconds = median(ideal_state_t);
        let state_tt_seconds = median(state_tt);
        // Product alone once T exists.
        let mut eng = Engine::new(&xb, SolveOptions::default()).expect("engine");
        let t0 = Instant::now();
        eng.effective_weights().expect("T");
        let t_build_seconds = t0.elapsed().as_secs_f64();
        let mut prod_t = Vec::new();
        let mut ideal_prod_t = Vec::new();
        for _ in 0..11 {
            ideal_prod_t.push(ideal_into(&mut ideal));
            let t0 = Instant::now();
            eng.infer_into(x.as_ref(), scratch.as_mut()).expect("infer");
            prod_t.push(t0.elapsed().as_secs_f64());
        }
        let prod_seconds = median(prod_t);
        let ideal_prod_seconds = median(ideal_prod_t);
        // Sanity: T-based outputs equal a direct solve of a few vectors.
        let mut direct = Engine::new(&xb, SolveOptions::default()).expect("engine");
        let few = x.subrows(0, 3).to_owned();
        let d = direct.infer(few.as_ref()).expect("direct");
        let mut worst: f64 = 0.0;
        let mut ir: f64 = 0.0;
        for t in 0..3 {
            for j in 0..c {
                worst = worst.max((d[(t, j)] - out[(t, j)]).abs() / d[(t, j)].abs());
                ir = ir.max((ideal[(t, j)] - out[(t, j)]).abs() / ideal[(t, j)].abs());
            }
        }
        println!("{k} vectors through a {r}×{c} array, 2.5 Ω segments, g ∈ [1 µS, 100 µS], inputs ∈ [0, 0.5] V");
        println!(
            "ideal dense product X·G (into a kept buffer): {:.4} s",
            ideal_seconds
        );
        let verdict = |x: f64| if x <= 3.0 { "met" } else { "NOT met" };
        println!(
        "passive, exact, new engine from scratch (network + plan + T + product): {:.4} s → {:.2}× the ideal time (target ≤ 3×: {})",
        pass_seconds,
        pass_seconds / ideal_seconds,
        verdict(pass_seconds / ideal_seconds)
    );
        println!(
        "  with a freshly allocated output on both sides: ideal {:.4} s, from scratch {:.4} s → {:.2}×",
        ideal_alloc_seconds,
        pass_alloc_seconds,
        pass_alloc_seconds / ideal_alloc_seconds
    );
        println!(
        "passive, exact, new conductance state of an engine (restamp + T + product):         {:.4} s → {:.2}× the ideal time (ideal {:.4} s in these rounds; target ≤ 3×: {})",
        state_seconds,
        state_seconds / ideal_state_seconds,
        ideal_state_seconds,
        verdict(state_seconds / ideal_state_seconds)
    );
        println!(
        "  the exact T (multifrontal Schur complement onto the sources): {:.4} s for a new state, {:.4} s on a fresh engine;\n  product with T alone: {:.4} s ({:.2}× ideal)",
        state_tt_seconds,
        t_build_seconds,
        prod_seconds,
        prod_seconds / ideal_prod_seconds
    );
        println!("  T-product vs direct solve: max rel diff {worst:.1e}; IR-drop error vs ideal up to {:.1}%", ir * 100.0);
    }

    // 1T1R: same conductances (memristors) with access transistors at 3 V gates.
    let mut xb1 = xb.clone();
    xb1.cell = CellKind::OneT1R {
        mos: default_access_mos(),
        v_gate_v: vec![3.0; r],
    };
    let x1 = x.subrows(0, k1.min(k)).to_owned();
    let k1 = x1.nrows();
    let kn = kn.min(k1);
    let kc = kc.min(k1);
    let xn = x1.subrows(0, kn).to_owned();
    let xc = x1.subrows(0, kc).to_owned();
    // Bulk (the engine's default) for all vectors, the chord path alone for the first `kc` and
    // per-vector Newton for the first `kn` (both scaled to k1 vectors: their cost per vector is
    // flat), and the ideal product, interleaved; medians of `rounds` rounds.
    let chord_opts = SolveOptions {
        max_current_steps: 0,
        ..SolveOptions::default()
    };
    let mut bulk_t = Vec::new();
    let mut chord_t = Vec::new();
    let mut newton_t = Vec::new();
    let mut ideal1_t = Vec::new();
    let mut o1 = Mat::<f64>::zeros(0, 0);
    let mut oc = Mat::<f64>::zeros(0, 0);
    let mut on = Mat::<f64>::zeros(0, 0);
    let mut steps = (0, 0);
    let mut stages = Vec::new();
    let mut chord_stages = Vec::new();
    let mut chord_steps = (0, 0);
    let mut newton_iters = (0, 0);
    for _ in 0..rounds.max(1) {
        ideal1_t.push(ideal_into(&mut ideal) * k1 as f64 / k as f64);
        let t0 = Instant::now();
        let mut eng1 = Engine::new(&xb1, SolveOptions::default()).expect("engine");
        o1 = eng1.infer(x1.as_ref()).expect("1t1r bulk");
        bulk_t.push(t0.elapsed().as_secs_f64());
        steps = eng1.last_newton().unwrap_or((0, 0));
        stages.push(eng1.last_bulk_times().unwrap_or_default());
        if kc > 0 {
            let t0 = Instant::now();
            let mut eng1 = Engine::new(&xb1, chord_opts).expect("engine");
            oc = eng1.infer(xc.as_ref()).expect("1t1r chord");
            chord_t.push(t0.elapsed().as_secs_f64() * k1 as f64 / kc as f64);
            chord_steps = eng1.last_newton().unwrap_or((0, 0));
            chord_stages.push(eng1.last_bulk_times().unwrap_or_default());
        }
        let t0 = Instant::now();
        let mut eng1 = Engine::new(&xb1, SolveOptions::default()).expect("engine");
        on = eng1
            .infer_per_vector(xn.as_ref())
            .expect("1t1r per-vector Newton");
        newton_t.push(t0.elapsed().as_secs_f64() * k1 as f64 / kn as f64);
        newton_iters = eng1.last_newton().unwrap_or((0, 0));
    }
    let (bulk_seconds, newton_seconds, ideal1_seconds) =
        (median(bulk_t), median(newton_t), median(ideal1_t));
    let chord_seconds = if kc > 0 { median(chord_t) } else { f64::NAN };
    let rel_diff = |a: &Mat<f64>, rows: usize| {
        let mut worst: f64 = 0.0;
        for t in 0..rows {
            for j in 0..c {
                worst = worst.max((a[(t, j)] - on[(t, j)]).abs() / on[(t, j)].abs());
            }
        }
        worst
    };
    let worst1 = rel_diff(&o1, kn);
    let worst_c = rel_diff(&oc, kn.min(kc));
    println!(
        "1T1R (3 V gates), exact, {k1} vectors, {} threads, medians of {} rounds:",
        rayon::current_num_threads(),
        rounds.max(1)
    );
    let med = |st: &[BulkTimes], f: &dyn Fn(&BulkTimes) -> f64| median(st.iter().map(f).collect());
    let last = stages.last().copied().unwrap_or_default();
    println!(
        "  row kernels of the 1T1R cells and line sweeps: {} (NETC_XBAR_SIMD=sse2 forces SSE2)",
        if netc::xbar::rows::Simd::detect().is_avx2() {
            "AVX2 + FMA copies"
        } else {
            "SSE2 baseline"
        }
    );
    println!("  ideal product X·G ({k1} vectors): {ideal1_seconds:.5} s");
    println!(
        "  bulk, default (Newton on the cell currents): {bulk_seconds:.3} s ({:.2} Newton steps and {:.1} GMRES iterations per vector, max {} steps; {} of {k1} vectors by this path, {} by the chord fallback) → {:.0}× the ideal product; target < 2 s: {}",
        last.current_steps as f64 / last.current_vectors.max(1) as f64,
        last.current_krylov as f64 / last.current_vectors.max(1) as f64,
        steps.1,
        last.current_vectors,
        last.chord_vectors,
        bulk_seconds / ideal1_seconds,
        if bulk_seconds < 2.0 { "met" } else { "NOT met" }
    );
    if kc > 0 {
        println!(
            "  chord path alone (small-signal factor, max_current_steps = 0): {chord_seconds:.3} s (timed on {kc} vectors, scaled to {k1}; {:.2} chord steps per vector, max {}) → {:.0}× the ideal product; the default is {:.1}× faster",
            chord_steps.0 as f64 / kc as f64,
            chord_steps.1,
            chord_seconds / ideal1_seconds,
            chord_seconds / bulk_seconds
        );
        println!(
            "    chord stages (medians, unscaled): start solves {:.3} s, chord-step solves {:.3} s, residuals {:.3} s",
            med(&chord_stages, &|b| b.start_solve_seconds),
            med(&chord_stages, &|b| b.chord_solve_seconds),
            med(&chord_stages, &|b| b.residual_seconds),
        );
    }
    println!(
        "  per-vector Newton: {newton_seconds:.1} s (timed on {kn} vectors, scaled to {k1}; {:.2} iterations per vector) → {:.0}× the ideal product; the default is {:.0}× faster (target ≥ 50×: {})",
        newton_iters.0 as f64 / kn as f64,
        newton_seconds / ideal1_seconds,
        newton_seconds / bulk_seconds,
        if newton_seconds / bulk_seconds >= 50.0 { "met" } else { "NOT met" }
    );
    println!(
        "  max rel diff against per-vector Newton on its {kn} vectors: default {worst1:.1e}, chord path {worst_c:.1e}"
    );
    let (cur, st, res, ch) = (
        med(&stages, &|b| b.current_seconds),
        med(&stages, &|b| b.start_solve_seconds),
        med(&stages, &|b| b.residual_seconds),
        med(&stages, &|b| b.chord_solve_seconds),
    );
    println!(
        "  cell-current Newton, thread time summed over threads (medians; includes waiting under load): cell passes {:.3} s, final residual checks {:.3} s, GMRES {:.3} s (of which Gram–Schmidt {:.3} s)",
        med(&stages, &|b| b.current_cells_cpu_seconds),
        med(&stages, &|b| b.current_check_cpu_seconds),
        med(&stages, &|b| b.current_krylov_cpu_seconds),
        med(&stages, &|b| b.current_orth_cpu_seconds),
    );
    println!(
        "  bulk stages (medians): cell-current Newton {cur:.3} s; chord fallback: start solves {st:.3} s, chord-step solves {ch:.3} s, residuals {res:.3} s; engine set-up and rest {:.3} s",
        (bulk_seconds - cur - st - ch - res).max(0.0),
    );
}
