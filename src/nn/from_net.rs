//! Build a trainable model (and its data recipe) from a `.net` file's IR, and
//! export trained weights in the compiler's `netc-weights/1` format.

use super::layers::{LayerSpec, Pad};
use super::loss::LossSpec;
use super::model::{Model, ModelSpec};
use super::optim::OptimizerSpec;
use super::presets::{DataSpec, ImageSource, Preset, TrainConfig};
use super::NnError;
use crate::data::preprocess::Preprocess;
use crate::mapping::weights::{LayerWeights, WeightsFile as CompilerWeights, FORMAT};
use crate::net::ir::Shape as IrShape;
use crate::net::spec::{LayerKind, Loss, Optimizer, TrainingSpec};
use crate::net::NetworkIr;
use std::path::Path;

fn pad4(p: [usize; 4]) -> Pad {
    Pad {
        top: p[0],
        bottom: p[1],
        left: p[2],
        right: p[3],
    }
}

fn unsupported(what: String) -> NnError {
    NnError::Format(format!(
        "network file: {what} is not supported by the trainer"
    ))
}

/// Model spec of an IR (the final `softmax` becomes the cross-entropy loss).
pub fn model_spec(ir: &NetworkIr, loss: LossSpec) -> Result<ModelSpec, NnError> {
    let mut input = match ir.input {
        IrShape::Map { h, w, c } => [c, h, w],
        IrShape::Vec { n } => [n, 1, 1],
    };
    let mut layers = vec![];
    for (i, l) in ir.layers.iter().enumerate() {
        let bias = l.biases > 0;
        let spec = match &l.kind {
            LayerKind::Conv2d {
                kernels,
                size,
                stride,
                ..
            } => LayerSpec::Conv2d {
                out_channels: *kernels,
                kernel: *size,
                stride: *stride,
                pad: pad4(l.pad),
                bias,
            },
            LayerKind::Dense { units } => LayerSpec::Dense { out: *units, bias },
            LayerKind::Relu => LayerSpec::Relu,
            LayerKind::Tanh { slope } => LayerSpec::Tanh { slope: *slope },
            LayerKind::Sigmoid => LayerSpec::Sigmoid,
            LayerKind::Softmax => {
                if i + 1 != ir.layers.len() {
                    return Err(unsupported(format!(
                        "softmax before the last layer ({})",
                        l.name
                    )));
                }
                continue;
            }
            LayerKind::Flatten => LayerSpec::Flatten,
            LayerKind::MaxPool { size, stride } => {
                if size[0] != size[1] {
                    return Err(unsupported(format!(
                        "non-square max-pool {}x{} ({})",
                        size[0], size[1], l.name
                    )));
                }
                LayerSpec::MaxPool {
                    size: size[0],
                    stride: *stride,
                }
            }
            LayerKind::ConvLstm {
                hidden,
                input_kernel,
                recurrent_kernel,
                steps,
                ..
            } => {
                if l.pad != [0; 4]
                    || pad4(l.pad_recurrent) != Pad::same(recurrent_kernel[0], recurrent_kernel[1])
                {
                    return Err(unsupported(format!(
                        "ConvLSTM padding other than valid input / same recurrent ({})",
                        l.name
                    )));
                }
                if i != 0 {
                    return Err(unsupported(format!(
                        "ConvLSTM that is not the first layer ({})",
                        l.name
                    )));
                }
                input[0] *= steps;
                LayerSpec::ConvLstm {
                    hidden: *hidden,
                    steps: *steps,
                    in_kernel: *input_kernel,
                    rec_kernel: *recurrent_kernel,
                    bias,
                }
            }
        };
        layers.push(spec);
    }
    Ok(ModelSpec {
        input,
        layers,
        loss,
    })
}

fn data_spec(t: &TrainingSpec, input: [usize; 3]) -> Result<DataSpec, NnError> {
    let p = &t.preprocess;
    let resize = match p.resize {
        Some([h, w]) if h == w => Some(h),
        Some([h, w]) => return Err(unsupported(format!("non-square resize {h}x{w}"))),
        None => None,
    };
    let (lo, hi) = p.scale_v.map_or((0.0, 1.0), |[a, b]| (a, b));
    let pre = Preprocess {
        crop: p.crop,
        resize,
        v_lo_volt: lo,
        v_hi_volt: hi,
    };
    Ok(match t.dataset.name.as_str() {
        "mnist" => DataSpec::Mnist {
            source: ImageSource::Bundled,
            preprocess: pre,
        },
        "fashion_mnist" => DataSpec::Mnist {
            source: ImageSource::Dir {
                path: crate::data::idx::FASHION_MNIST_DIR.into(),
            },
            preprocess: pre,
        },
        "mnist_sequence" => {
            // frames are 8×8 S1-style digits unless the file says otherwise
            let pre = if p.crop.is_none() && resize.is_none() {
                Preprocess {
                    v_lo_volt: lo,
                    v_hi_volt: hi,
                    ..Preprocess::s1()
                }
            } else {
                pre
            };
            DataSpec::MnistSequence {
                source: ImageSource::Bundled,
                preprocess: pre,
                seed: t.seed,
            }
        }
        "letters4x4" => {
            let (off, on) = p.scale_v.map_or((-0.2, 0.2), |[a, b]| (a, b));
            DataSpec::Letters { on, off }
        }
        other => {
            let path = Path::new(other);
            if path.is_dir() {
                DataSpec::Mnist {
                    source: ImageSource::Dir { path: path.into() },
                    preprocess: pre,
                }
            } else {
                return Err(unsupported(format!("dataset {other:?} (input {input:?})")));
            }
        }
    })
}

/// A training recipe from a `.net` file. Conductance-unit hyper-parameters
/// (Manhattan step, threshold) are taken as weight units.
pub fn recipe(path: &Path) -> Result<(Preset, NetworkIr), NnError> {
    let (file, ir) = crate::net::load(path).map_err(|e| NnError::Format(e.to_string()))?;
    let t = file
        .training
        .clone()
        .ok_or_else(|| NnError::Format(format!("{}: no training block", path.display())))?;
    let loss = match t.loss {
        Loss::CrossEntropy => LossSpec::SoftmaxCrossEntropy,
        Loss::Mse => LossSpec::Mse {
            target_on: 1.0,
            target_off: -1.0,
        },
    };
    let model = model_spec(&ir, loss)?;
    let optimizer = match t.optimizer {
        Optimizer::Sgd { lr, momentum } => OptimizerSpec::Sgd { lr, momentum },
        Optimizer::Rmsprop { lr, decay, eps, .. } => OptimizerSpec::RmsProp { lr, decay, eps },
        Optimizer::Manhattan { step_s } => OptimizerSpec::Manhattan { step: step_s },
        Optimizer::Threshold { lr, threshold_s } => OptimizerSpec::Threshold {
            lr,
            threshold: threshold_s,
        },
    };
    let data = data_spec(&t, model.input)?;
    let train = TrainConfig {
        epochs: t.epochs,
        batch_size: t.batch,
        optimizer,
        seed: t.seed,
        lr_decay: 1.0,
    };
    Ok((
        Preset {
            name: ir.name.clone(),
            model,
            data,
            train,
        },
        ir,
    ))
}

/// Trained weights in the compiler's format (layouts of `crate::net::ir`):
/// dense rows after a feature map are reordered from the trainer's `c, h, w`
/// to the IR's `h, w, c`; ConvLSTM input and recurrent rows are stacked; bias
/// rows become the `bias` vector.
pub fn compiler_weights(model: &Model, ir: &NetworkIr) -> Result<CompilerWeights, NnError> {
    let weighted: Vec<_> = ir.layers.iter().filter(|l| l.kind.is_weighted()).collect();
    let mut layers = vec![];
    let mut slot_layers: Vec<usize> = model.slots.iter().map(|s| s.layer).collect();
    slot_layers.dedup();
    if weighted.len() != slot_layers.len() {
        return Err(NnError::Format(
            "network file and model disagree on the weighted layers".into(),
        ));
    }
    for (l, &li) in weighted.iter().zip(&slot_layers) {
        let ids = &model.layer_slots[li];
        let s0 = &model.slots[ids[0]];
        let w0 = &model.weights[ids[0]];
        let nb = s0.rows - s0.bias_row as usize;
        let cols = s0.cols;
        let bias = if s0.bias_row {
            w0.row(nb).to_vec()
        } else {
            vec![]
        };
        let mut rows: Vec<Vec<f64>> = (0..nb).map(|r| w0.row(r).to_vec()).collect();
        if let LayerSpec::Dense { .. } = model.spec.layers[li] {
            // the feature map this dense layer reads (before any flatten)
            let mut map = model.shapes[li];
            for j in (0..li).rev() {
                match model.spec.layers[j] {
                    LayerSpec::Flatten => map = model.shapes[j],
                    LayerSpec::Relu | LayerSpec::Tanh { .. } | LayerSpec::Sigmoid => {}
                    _ => break,
                }
            }
            let [c, h, w] = map;
            if h * w > 1 && c > 1 {
                let mut re = vec![vec![]; nb];
                for ci in 0..c {
                    for y in 0..h {
                        for x in 0..w {
                            re[(y * w + x) * c + ci] = rows[(ci * h + y) * w + x].clone();
                        }
                    }
                }
                rows = re;
            }
        }
        for &id in &ids[1..] {
            let wm = &model.weights[id];
            rows.extend((0..wm.rows).map(|r| wm.row(r).to_vec()));
        }
        let m = l
            .matrix
            .ok_or_else(|| NnError::Format(format!("layer {} has no matrix", l.name)))?;
        if m.rows != rows.len() || m.cols != cols || m.bias != s0.bias_row {
            return Err(NnError::Format(format!(
                "layer {}: compiler expects {}x{} (bias {}), trainer has {}x{} (bias {})",
                l.name,
                m.rows,
                m.cols,
                m.bias,
                rows.len(),
                cols,
                s0.bias_row
            )));
        }
        layers.push(LayerWeights {
            name: l.name.clone(),
            rows: rows.len(),
            cols,
            weights: rows.concat(),
            bias,
        });
    }
    Ok(CompilerWeights {
        format: FORMAT.into(),
        network: ir.name.clone(),
        layers,
    })
}
