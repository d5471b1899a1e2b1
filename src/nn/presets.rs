//! Built-in networks mirroring the five reference systems S1–S5 (docs/architecture.md,
//! "Reference systems"), with their data and training defaults (the accuracies in README were
//! measured with these).

use super::layers::Pad;
use super::loss::LossSpec;
use super::model::{ModelBuilder, ModelSpec};
use super::optim::OptimizerSpec;
use super::NnError;
use crate::data::idx::{bundled_mnist, read_dir};
use crate::data::letters::{letters_test, letters_train, LetterEncoding};
use crate::data::preprocess::Preprocess;
use crate::data::sequence::mnist_sequences;
use crate::data::Split;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the images come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// The 10k subset compiled into netc (8,000 train / 2,000 test).
    Bundled,
    /// A directory of the four standard IDX files.
    Dir { path: PathBuf },
}

/// A dataset recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DataSpec {
    Mnist {
        source: ImageSource,
        preprocess: Preprocess,
    },
    /// S2's sequences built from S1-preprocessed digits (`seed` for the
    /// training split, `seed + 1` for the test split).
    MnistSequence {
        source: ImageSource,
        preprocess: Preprocess,
        seed: u64,
    },
    /// S4's letters.
    Letters { on: f64, off: f64 },
}

impl DataSpec {
    pub fn load(&self) -> Result<Split, NnError> {
        let raw = |s: &ImageSource| match s {
            ImageSource::Bundled => bundled_mnist(),
            ImageSource::Dir { path } => read_dir(path),
        };
        Ok(match self {
            DataSpec::Mnist { source, preprocess } => {
                let (tr, te) = raw(source)?;
                Split {
                    train: preprocess.apply(&tr)?,
                    test: preprocess.apply(&te)?,
                }
            }
            DataSpec::MnistSequence {
                source,
                preprocess,
                seed,
            } => {
                let (tr, te) = raw(source)?;
                Split {
                    train: mnist_sequences(&preprocess.apply(&tr)?, *seed)?,
                    test: mnist_sequences(&preprocess.apply(&te)?, seed.wrapping_add(1))?,
                }
            }
            DataSpec::Letters { on, off } => {
                let e = LetterEncoding { on: *on, off: *off };
                Split {
                    train: letters_train(e),
                    test: letters_test(e),
                }
            }
        })
    }
}

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    pub seed: u64,
    /// Learning rate (or Manhattan step) of epoch `e` (from 0) is the
    /// optimiser's times `lr_decay^e`.
    #[serde(default = "one")]
    pub lr_decay: f64,
    /// After every step each weight is clamped to ±this (the hardware window in weight units,
    /// `training { clip_weights on; }`); None: unbounded.
    #[serde(default)]
    pub weight_clip: Option<f64>,
}

fn one() -> f64 {
    1.0
}

/// How many samples of a loaded split are used (`dataset … { train N; test M; fraction f; }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    /// The first `train` training samples (all when `None`).
    pub train: Option<usize>,
    /// The first `test` test samples (all when `None`).
    pub test: Option<usize>,
    /// Then the first `round(fraction · n)` of the training samples (S5 trains on 10 %).
    pub fraction: f64,
}

impl Default for Samples {
    fn default() -> Self {
        Samples {
            train: None,
            test: None,
            fraction: 1.0,
        }
    }
}

impl Samples {
    /// Cut `split` down. Asking for more samples than the data has uses all of them and says so
    /// in `warnings` (the reference files give the paper's counts of the full sets; the bundled
    /// subset is smaller).
    pub fn apply(&self, mut split: Split, warnings: &mut Vec<String>) -> Result<Split, NnError> {
        for (want, have, what) in [
            (self.train, split.train.len(), "train"),
            (self.test, split.test.len(), "test"),
        ] {
            if let Some(n) = want {
                if n > have {
                    warnings.push(format!(
                        "warning: dataset `{what} {n}` asks for {n} samples; the data has {have}: \
                         using all {have}"
                    ));
                }
            }
        }
        if let Some(n) = self.train {
            split.train = split.train.take(n);
        }
        if let Some(n) = self.test {
            split.test = split.test.take(n);
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(NnError::Format(format!(
                "dataset `fraction {}` must be in (0, 1]",
                self.fraction
            )));
        }
        if self.fraction < 1.0 {
            let n = (self.fraction * split.train.len() as f64).round().max(1.0) as usize;
            split.train = split.train.take(n);
        }
        Ok(split)
    }
}

/// A complete recipe: network, data, training defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub name: String,
    pub model: ModelSpec,
    pub data: DataSpec,
    pub train: TrainConfig,
    /// Sample counts of the data (all samples by default).
    #[serde(default)]
    pub samples: Samples,
    /// Located warnings for recipe keys accepted but not applied yet (shown by `netc train`).
    #[serde(skip)]
    pub not_applied: Vec<String>,
}

pub const PRESET_NAMES: [&str; 5] = ["s1", "s2", "s3", "s4", "s5"];

pub fn preset(name: &str) -> Result<Preset, NnError> {
    let s1_data = DataSpec::Mnist {
        source: ImageSource::Bundled,
        preprocess: Preprocess::s1(),
    };
    let ce = LossSpec::SoftmaxCrossEntropy;
    let p = match name.to_ascii_lowercase().as_str() {
        // 8×8 → conv 15@3×3 pad 1 → ReLU → conv 4@2×2 ("same") → max-pool 2 → 64 → dense 10 → softmax
        "s1" => Preset {
            name: "s1".into(),
            model: ModelBuilder::new([1, 8, 8])
                .conv2d(15, [3, 3], 1, Pad::uniform(1), false)
                .relu()
                .conv2d(4, [2, 2], 1, Pad::same(2, 2), false)
                .max_pool(2, 2)
                .flatten()
                .dense(10, false)
                .spec(ce),
            data: s1_data,
            train: TrainConfig {
                epochs: 20,
                batch_size: 50,
                optimizer: OptimizerSpec::s1_rmsprop(),
                seed: 1,
                lr_decay: 0.88,
                weight_clip: None,
            },
            samples: Samples::default(),
            not_applied: vec![],
        },
        // ConvLSTM 5 hidden maps, input kernels 3×3, recurrent 2×2 on 6×6×5,
        // 3 steps → max-pool 2 → 45 → dense 6 → softmax (850 weights).
        "s2" => Preset {
            name: "s2".into(),
            model: ModelBuilder::new([3, 8, 8])
                .conv_lstm(5, 3, [3, 3], [2, 2], false)
                .max_pool(2, 2)
                .flatten()
                .dense(6, false)
                .spec(ce),
            data: DataSpec::MnistSequence {
                source: ImageSource::Bundled,
                preprocess: Preprocess::s1(),
                seed: 2,
            },
            train: TrainConfig {
                epochs: 20,
                batch_size: 20,
                optimizer: OptimizerSpec::s1_rmsprop(),
                seed: 2,
                lr_decay: 0.92,
                weight_clip: None,
            },
            samples: Samples::default(),
            not_applied: vec![],
        },
        // 64 → 54 → 10 MLP on the 8×8 digits
        "s3" => Preset {
            name: "s3".into(),
            model: ModelBuilder::new([1, 8, 8])
                .flatten()
                .dense(54, true)
                .relu()
                .dense(10, true)
                .spec(ce),
            data: s1_data,
            train: TrainConfig {
                epochs: 20,
                batch_size: 50,
                optimizer: OptimizerSpec::s1_rmsprop(),
                seed: 3,
                lr_decay: 0.88,
                weight_clip: None,
            },
            samples: Samples::default(),
            not_applied: vec![],
        },
        // 16 (+bias) → 10 tanh (+bias) → 4 tanh, MSE, ±0.2 V inputs
        "s4" => Preset {
            name: "s4".into(),
            model: ModelBuilder::new([1, 4, 4])
                .flatten()
                .dense(10, true)
                .tanh(1.0)
                .dense(4, true)
                .tanh(1.0)
                .spec(LossSpec::Mse {
                    target_on: 1.0,
                    target_off: -1.0,
                }),
            data: DataSpec::Letters { on: 0.2, off: -0.2 },
            train: TrainConfig {
                epochs: 200,
                batch_size: 4,
                optimizer: OptimizerSpec::Sgd {
                    lr: 0.1,
                    momentum: 0.9,
                },
                seed: 4,
                lr_decay: 1.0,
                weight_clip: None,
            },
            samples: Samples::default(),
            not_applied: vec![],
        },
        // 28×28 → conv 8@3×3 → ReLU → max-pool 3/3 → conv 12@3×3 pad 1 → ReLU → max-pool 2 → 192 → dense 10
        "s5" => Preset {
            name: "s5".into(),
            model: ModelBuilder::new([1, 28, 28])
                .conv2d(8, [3, 3], 1, Pad::default(), false)
                .relu()
                .max_pool(3, 3)
                .conv2d(12, [3, 3], 1, Pad::uniform(1), false)
                .relu()
                .max_pool(2, 2)
                .flatten()
                .dense(10, false)
                .spec(ce),
            data: DataSpec::Mnist {
                source: ImageSource::Bundled,
                preprocess: Preprocess::full(0.0, 1.0),
            },
            train: TrainConfig {
                epochs: 16,
                batch_size: 50,
                optimizer: OptimizerSpec::RmsProp {
                    lr: 0.008,
                    decay: 0.9,
                    eps: 1e-8,
                },
                seed: 5,
                lr_decay: 0.8,
                weight_clip: None,
            },
            samples: Samples::default(),
            not_applied: vec![],
        },
        _ => return Err(NnError::UnknownPreset(name.into())),
    };
    Ok(p)
}
