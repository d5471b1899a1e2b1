//! S4's 4×4 black/white letters A, T, V, X.
//!
//! Training set (40 patterns, 10 per class): the canonical letter, 5 variants
//! with one pixel flipped and 4 with two pixels flipped, drawn with a fixed
//! seed and kept only if they are new and at Hamming distance ≥ 3 from every
//! pattern of the other classes. Test set (640): every training pattern with
//! each one of its 16 pixels flipped.

use super::Dataset;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const CLASS_NAMES: [&str; 4] = ["A", "T", "V", "X"];

/// Canonical letters, row-major, `true` = black (on).
pub const CANONICAL: [&str; 4] = [
    ".XX.X..XXXXXX..X", // A
    "XXXX.XX..XX..XX.", // T
    "X..XX..XX..X.XX.", // V
    "X..X.XX..XX.X..X", // X
];

/// Pixel values of a black (`on`) and a white (`off`) pixel, e.g. ±0.2 V or ±1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LetterEncoding {
    pub on: f64,
    pub off: f64,
}

impl Default for LetterEncoding {
    fn default() -> Self {
        LetterEncoding { on: 0.2, off: -0.2 }
    }
}

fn canonical(c: usize) -> [bool; 16] {
    let mut p = [false; 16];
    for (i, ch) in CANONICAL[c].chars().enumerate() {
        p[i] = ch == 'X';
    }
    p
}

fn dist(a: &[bool; 16], b: &[bool; 16]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// The 40 training patterns with their classes (fixed design).
pub fn training_patterns() -> Vec<([bool; 16], usize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5_4);
    let mut pats: Vec<([bool; 16], usize)> = (0..4).map(|c| (canonical(c), c)).collect();
    for c in 0..4 {
        let mut added = 0;
        while added < 9 {
            let flips = if added < 5 { 1 } else { 2 };
            let mut p = canonical(c);
            let a = rng.gen_range(0..16);
            p[a] = !p[a];
            if flips == 2 {
                let b = rng.gen_range(0..16);
                if b == a {
                    continue;
                }
                p[b] = !p[b];
            }
            let ok = pats
                .iter()
                .all(|(q, qc)| if *qc == c { q != &p } else { dist(q, &p) >= 3 });
            if ok {
                pats.push((p, c));
                added += 1;
            }
        }
    }
    pats.sort_by_key(|(_, c)| *c);
    pats
}

fn encode(pats: &[([bool; 16], usize)], enc: LetterEncoding) -> Dataset {
    Dataset {
        shape: [1, 4, 4],
        x: pats
            .iter()
            .flat_map(|(p, _)| p.iter().map(move |&b| if b { enc.on } else { enc.off }))
            .collect(),
        labels: pats.iter().map(|(_, c)| *c).collect(),
        n_classes: 4,
    }
}

/// Training set: 40 patterns, shape `[1, 4, 4]`.
pub fn letters_train(enc: LetterEncoding) -> Dataset {
    encode(&training_patterns(), enc)
}

/// Test set: 640 one-pixel-flip patterns.
pub fn letters_test(enc: LetterEncoding) -> Dataset {
    let mut out = vec![];
    for (p, c) in training_patterns() {
        for k in 0..16 {
            let mut q = p;
            q[k] = !q[k];
            out.push((q, c));
        }
    }
    encode(&out, enc)
}
