//! S2's MNIST-sequence set: three frames showing the digits 1, 2, 3 in one
//! of the 6 orders (the class); every frame image is used at most once.

use super::{DataError, Dataset};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The 6 classes: digit order of the three frames.
pub const ORDERS: [[usize; 3]; 6] = [
    [1, 2, 3],
    [1, 3, 2],
    [2, 1, 3],
    [2, 3, 1],
    [3, 1, 2],
    [3, 2, 1],
];

/// Build sequences from single-frame digits (`frames.shape = [1, h, w]`).
/// The pools of 1s, 2s and 3s are shuffled with `seed`; sequence k takes the
/// k-th image of each pool in a random order, so there are as many
/// sequences as the smallest pool has images. Output shape `[3, h, w]`.
pub fn mnist_sequences(frames: &Dataset, seed: u64) -> Result<Dataset, DataError> {
    if frames.shape[0] != 1 {
        return Err(DataError::Invalid(
            "sequence frames must have one channel".into(),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pools: Vec<Vec<usize>> = (1..=3)
        .map(|d| {
            (0..frames.len())
                .filter(|&i| frames.labels[i] == d)
                .collect()
        })
        .collect();
    for p in &mut pools {
        p.shuffle(&mut rng);
    }
    let n = pools.iter().map(Vec::len).min().unwrap_or(0);
    let fl = frames.sample_len();
    let mut x = Vec::with_capacity(n * 3 * fl);
    let mut labels = Vec::with_capacity(n);
    for k in 0..n {
        let class = rng.gen_range(0..ORDERS.len());
        for &digit in &ORDERS[class] {
            let pool: &Vec<usize> = &pools[digit - 1];
            x.extend_from_slice(frames.sample(pool[k]));
        }
        labels.push(class);
    }
    Ok(Dataset {
        shape: [3, frames.shape[1], frames.shape[2]],
        x,
        labels,
        n_classes: ORDERS.len(),
    })
}
