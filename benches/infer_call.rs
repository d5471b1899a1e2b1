//! The Rust side of `benches/python_infer.py`: `Engine` inference of 10,000 input vectors
//! through a 128×64 passive array (2.5 Ω segments), the call `netc.Crossbar(...).infer(v)` makes
//! from Python. Prints one line per case, `case median_seconds=… min_seconds=…` (21 rounds each,
//! interleaved):
//! - `built_fresh`: an existing engine (`T` built), outputs in a fresh k × C matrix (`infer`);
//! - `built_kept`: the same into an output kept across rounds (`infer_into`);
//! - `scratch`: a new engine (network, `T`) and `infer`, as `Crossbar(g, r_wire=2.5).infer(v)`.
//!
//! `cargo bench --bench infer_call` — env `XBAR_VECTORS` (default 10000). Run
//! `python3 benches/python_infer.py` for the ratio against the Python call.

use std::time::Instant;

use faer::Mat;
use netc::xbar::{Crossbar, Engine, SolveOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0])
}

fn main() {
    // glibc's default allocator settings, as in the Python process (which the module leaves
    // alone), so both sides pay alike for fresh output memory; no `retain_freed_memory` here
    let k: usize = std::env::var("XBAR_VECTORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let (r, c) = (128, 64);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let g: Vec<f64> = (0..r * c).map(|_| rng.gen_range(1e-6..1e-4)).collect();
    let x = Mat::from_fn(k, r, |_, _| rng.gen_range(0.0..0.5));
    let xb = Crossbar::passive(r, c, g, 2.5).expect("array");
    let mut built = Engine::new(&xb, SolveOptions::default()).expect("engine");
    built.effective_weights().expect("T");
    let mut kept = Mat::<f64>::zeros(k, c);
    let (mut fresh_t, mut kept_t, mut scratch_t) = (vec![], vec![], vec![]);
    let mut check = 0.0;
    for _ in 0..21 {
        let t0 = Instant::now();
        let out = built.infer(x.as_ref()).expect("infer");
        fresh_t.push(t0.elapsed().as_secs_f64());
        check += out[(0, 0)];
        drop(out);

        let t0 = Instant::now();
        built
            .infer_into(x.as_ref(), kept.as_mut())
            .expect("infer_into");
        kept_t.push(t0.elapsed().as_secs_f64());

        let t0 = Instant::now();
        let mut eng = Engine::new(&xb, SolveOptions::default()).expect("engine");
        let out = eng.infer(x.as_ref()).expect("infer");
        scratch_t.push(t0.elapsed().as_secs_f64());
        check += out[(0, 0)];
    }
    for (name, t) in [
        ("built_fresh", fresh_t),
        ("built_kept", kept_t),
        ("scratch", scratch_t),
    ] {
        let (med, min) = stats(t);
        println!("{name} median_seconds={med:.6e} min_seconds={min:.6e}");
    }
    // keeps the outputs observable
    eprintln!("(checksum {check:e}, {k} vectors, {r}×{c})");
}
