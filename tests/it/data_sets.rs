//! Preprocessing, MNIST-sequence and letters.

use netc::data::idx::bundled_mnist;
use netc::data::letters::{letters_test, letters_train, training_patterns, LetterEncoding};
use netc::data::preprocess::{resize_bicubic, Preprocess};
use netc::data::sequence::{mnist_sequences, ORDERS};
use std::collections::HashMap;

#[test]
fn bicubic_constant_and_linear_exact() {
    let (h, w, oh, ow) = (20, 20, 8, 8);
    let c = vec![0.37; h * w];
    assert!(resize_bicubic(&c, h, w, oh, ow)
        .iter()
        .all(|v| (v - 0.37).abs() < 1e-14));
    // f(y, x) = 0.1 + 0.02 x − 0.03 y, sampled at pixel centres
    let f = |y: f64, x: f64| 0.1 + 0.02 * x - 0.03 * y;
    let img: Vec<f64> = (0..h * w)
        .map(|i| f((i / w) as f64, (i % w) as f64))
        .collect();
    let out = resize_bicubic(&img, h, w, oh, ow);
    let s = h as f64 / oh as f64;
    for y in 0..oh {
        for x in 0..ow {
            let want = f((y as f64 + 0.5) * s - 0.5, (x as f64 + 0.5) * s - 0.5);
            assert!(
                (out[y * ow + x] - want).abs() < 1e-13,
                "({y},{x}) {} vs {want}",
                out[y * ow + x]
            );
        }
    }
    // upsampling too, non-square
    let img: Vec<f64> = (0..3 * 5)
        .map(|i| f((i / 5) as f64, (i % 5) as f64))
        .collect();
    let out = resize_bicubic(&img, 3, 5, 7, 11);
    for y in 0..7 {
        for x in 0..11 {
            let want = f(
                (y as f64 + 0.5) * 3.0 / 7.0 - 0.5,
                (x as f64 + 0.5) * 5.0 / 11.0 - 0.5,
            );
            assert!((out[y * 11 + x] - want).abs() < 1e-13);
        }
    }
}

#[test]
fn s1_preprocessing_range_and_shape() {
    let (tr, _) = bundled_mnist().unwrap();
    let d = Preprocess::s1().apply(&tr.slice(0..50)).unwrap();
    assert_eq!((d.shape, d.len(), d.x.len()), ([1, 8, 8], 50, 50 * 64));
    assert!(d.x.iter().all(|v| (-0.2..=0.2).contains(v)));
    // a digit has dark background and bright strokes
    for i in 0..50 {
        let s = d.sample(i);
        assert!(s.iter().any(|&v| v > 0.0) && s.iter().any(|&v| v <= -0.19));
    }
    // black image → −0.2 V everywhere, white → +0.2 V
    let p = Preprocess::s1();
    assert!(p.apply_one(&[0; 784], 28, 28).iter().all(|&v| v == -0.2));
    assert!(p
        .apply_one(&[255; 784], 28, 28)
        .iter()
        .all(|&v| (v - 0.2).abs() < 1e-15));
}

#[test]
fn mnist_sequences_follow_s2_rules() {
    let (tr, _) = bundled_mnist().unwrap();
    let frames = Preprocess::s1().apply(&tr.slice(0..1500)).unwrap();
    let seq = mnist_sequences(&frames, 9).unwrap();
    let pools: Vec<usize> = (1..=3)
        .map(|d| frames.labels.iter().filter(|&&l| l == d).count())
        .collect();
    assert_eq!(seq.len(), *pools.iter().min().unwrap());
    assert_eq!((seq.shape, seq.n_classes), ([3, 8, 8], 6));
    // map frame → (digit, index) to check digits and non-reuse
    let key = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
    let mut lookup: HashMap<Vec<u64>, (usize, usize)> = HashMap::new();
    for i in 0..frames.len() {
        lookup.insert(key(frames.sample(i)), (frames.labels[i], i));
    }
    let mut used = std::collections::HashSet::new();
    let mut classes = [0usize; 6];
    for s in 0..seq.len() {
        let x = seq.sample(s);
        classes[seq.labels[s]] += 1;
        for t in 0..3 {
            let (digit, idx) = lookup[&key(&x[t * 64..(t + 1) * 64])];
            assert_eq!(digit, ORDERS[seq.labels[s]][t]);
            assert!(used.insert(idx), "frame {idx} reused");
        }
    }
    assert!(classes.iter().all(|&c| c > 0), "{classes:?}");
    assert_eq!(mnist_sequences(&frames, 9).unwrap(), seq);
    assert_ne!(mnist_sequences(&frames, 10).unwrap().labels, seq.labels);
}

#[test]
fn letters_design() {
    let pats = training_patterns();
    assert_eq!(pats.len(), 40);
    for c in 0..4 {
        assert_eq!(pats.iter().filter(|(_, k)| *k == c).count(), 10);
    }
    for (i, (p, c)) in pats.iter().enumerate() {
        for (q, d) in &pats[i + 1..] {
            let dist = p.iter().zip(q).filter(|(a, b)| a != b).count();
            assert!(dist >= 1, "duplicate pattern");
            if c != d {
                assert!(dist >= 3);
            }
        }
    }
    let enc = LetterEncoding { on: 1.0, off: -1.0 };
    let tr = letters_train(enc);
    let te = letters_test(enc);
    assert_eq!((tr.len(), te.len(), te.shape), (40, 640, [1, 4, 4]));
    for (j, tl) in te.labels.iter().enumerate() {
        let src = j / 16;
        assert_eq!(*tl, tr.labels[src]);
        let d = te
            .sample(j)
            .iter()
            .zip(tr.sample(src))
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(d, 1);
    }
    assert!(letters_train(LetterEncoding::default())
        .x
        .iter()
        .all(|v| v.abs() == 0.2));
}
