//! Weight encoding: encode → decode round trip, quantisation error bound, programmed arrays.

use netc::mapping::weights::{program, WeightsFile};
use netc::mapping::{lower, Encoder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn analogue_round_trip_is_exact() {
    let e = Encoder {
        g_min_siemens: 10e-6,
        g_max_siemens: 210e-6,
        levels: 0,
        scale_siemens: 1e-4, // S1's R_gw
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..10_000 {
        let w: f64 = rng.gen_range(-2.0..=2.0);
        let p = e.encode(w);
        assert!(!p.clipped);
        assert!(p.g_plus_siemens >= e.g_min_siemens && p.g_plus_siemens <= e.g_max_siemens);
        assert!(p.g_minus_siemens >= e.g_min_siemens && p.g_minus_siemens <= e.g_max_siemens);
        // one device of the pair rests at g_min
        assert!(p.g_plus_siemens == e.g_min_siemens || p.g_minus_siemens == e.g_min_siemens);
        let back = e.decode(p.g_plus_siemens, p.g_minus_siemens);
        assert!(
            (back - w).abs() <= 1e-12 * w.abs().max(1.0),
            "{w} -> {back}"
        );
        // two identical pairs decode to the same weight
        let two = e.decode_pairs(&[
            (p.g_plus_siemens, p.g_minus_siemens),
            (p.g_plus_siemens, p.g_minus_siemens),
        ]);
        assert!((two - back).abs() <= 1e-15);
    }
}

#[test]
fn out_of_window_weights_clip() {
    let e = Encoder {
        g_min_siemens: 10e-6,
        g_max_siemens: 210e-6,
        levels: 0,
        scale_siemens: 1e-4,
    };
    let p = e.encode(3.0);
    assert!(p.clipped);
    assert_eq!(p.g_plus_siemens, 210e-6);
    assert!((e.decode(p.g_plus_siemens, p.g_minus_siemens) - 2.0).abs() < 1e-12);
    let p = e.encode(-3.0);
    assert!(p.clipped);
    assert!((e.decode(p.g_plus_siemens, p.g_minus_siemens) + 2.0).abs() < 1e-12);
}

#[test]
fn quantised_error_bound_and_levels() {
    // S5: 8 device states 2.5..20 µS → 15 weight levels.
    for levels in [2usize, 3, 8, 16] {
        let e = Encoder {
            g_min_siemens: 2.5e-6,
            g_max_siemens: 20e-6,
            levels,
            scale_siemens: 17.5e-6, // |w| <= 1
        };
        let lv = e.weight_levels().unwrap();
        assert_eq!(lv.len(), 2 * levels - 1);
        let step = e.step_siemens().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(levels as u64);
        let mut worst = 0.0f64;
        for _ in 0..5_000 {
            let w: f64 = rng.gen_range(-1.0..=1.0);
            let q = e.quantise(w);
            worst = worst.max((q - w).abs());
            assert!((q - w).abs() <= e.max_error() * (1.0 + 1e-9), "{w} -> {q}");
            // q is one of the levels, and both devices are on a device state
            assert!(lv.iter().any(|l| (l - q).abs() < 1e-12));
            let p = e.encode(w);
            for g in [p.g_plus_siemens, p.g_minus_siemens] {
                let k = (g - e.g_min_siemens) / step;
                assert!((k - k.round()).abs() < 1e-9, "{g}");
            }
        }
        // the bound is tight: some sample gets close to half a step
        assert!(worst > 0.8 * e.max_error(), "{levels}: {worst}");
        // every level round-trips exactly
        for l in &lv {
            assert!((e.quantise(*l) - l).abs() < 1e-12);
        }
    }
}

#[test]
fn programmed_array_decodes_to_the_weights() {
    // S1: two pairs per weight, R_gw = 1e-4 S, analogue: reading the pairs back gives the weights.
    let (file, ir) = netc::net::load(&root().join("netlists/lenet.net")).unwrap();
    let low = lower(&file, &ir).unwrap();
    let w = WeightsFile::init(&ir, 3);
    let prog = program(&low, &file.hardware, file.mapping.weight_scale, &w).unwrap();
    assert_eq!(prog.clipped, 0);
    let mut checked = 0;
    for (mi, m) in low.matrices.iter().enumerate() {
        let lw = w.layer(&m.layer).unwrap();
        let enc = prog.encoders[mi];
        assert_eq!(enc.scale_siemens, 1e-4);
        for t in &m.tiles {
            let a = &prog.arrays[t.array];
            for i in t.in_start..t.in_start + t.in_len {
                for j in t.out_start..t.out_start + t.out_len {
                    let pairs: Vec<(f64, f64)> = (0..m.pairs)
                        .map(|k| {
                            let (rp, cp) = t.cell(m, i, j, k, 0);
                            let (rm, cm) = t.cell(m, i, j, k, 1);
                            assert_eq!(a.owner[rp * a.cols + cp], Some(mi));
                            (a.g(rp, cp), a.g(rm, cm))
                        })
                        .collect();
                    let got = enc.decode_pairs(&pairs);
                    assert!((got - lw.w(i, j)).abs() < 1e-12, "{} {i} {j}", m.layer);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 1015);
}

#[test]
fn s5_quantised_arrays_use_eight_states() {
    let (file, ir) = netc::net::load(&root().join("netlists/cnn_8pe.net")).unwrap();
    let low = lower(&file, &ir).unwrap();
    let w = WeightsFile::init(&ir, 5);
    let prog = program(&low, &file.hardware, file.mapping.weight_scale, &w).unwrap();
    for a in &prog.arrays {
        for g in &a.g_siemens {
            let k = (g - 2.5e-6) / 2.5e-6;
            assert!(
                (k - k.round()).abs() < 1e-9 && (0.0..=7.0).contains(&k.round()),
                "{g}"
            );
        }
    }
    // auto scale: the largest |w| of each layer maps onto the full window (7 steps)
    for (mi, m) in low.matrices.iter().enumerate() {
        let lw = w.layer(&m.layer).unwrap();
        let wmax = lw.weights.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        let enc = prog.encoders[mi];
        assert!((enc.w_max() - wmax).abs() < 1e-12 * wmax);
        for &x in &lw.weights {
            assert!((enc.quantise(x) - x).abs() <= enc.max_error() * (1.0 + 1e-9));
        }
    }
}

#[test]
fn weights_file_round_trip_and_checks() {
    let (_, ir) = netc::net::load(&root().join("netlists/mlp_passive.net")).unwrap();
    let w = WeightsFile::init(&ir, 9);
    assert_eq!(w, WeightsFile::init(&ir, 9), "same seed, same weights");
    assert_ne!(w, WeightsFile::init(&ir, 10));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.json");
    w.save(&p).unwrap();
    let back = WeightsFile::load(&p).unwrap();
    assert_eq!(back, w);
    back.check(&ir, "w.json").unwrap();
    let mut bad = w.clone();
    bad.layers[0].weights.pop();
    let e = bad.check(&ir, "w.json").unwrap_err().to_string();
    assert!(e.contains("needs a 16×10 matrix"), "{e}");
    let mut bad = w.clone();
    bad.layers[1].bias.clear();
    let e = bad.check(&ir, "w.json").unwrap_err().to_string();
    assert!(e.contains("needs 4 biases"), "{e}");
}
