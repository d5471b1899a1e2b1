//! Build a trainable model (and its data recipe) from a `.net` file's IR, and
//! export trained weights in the compiler's `netc-weights/1` format.

use super::layers::{LayerSpec, Pad};
use super::loss::LossSpec;
use super::matrix::Matrix;
use super::model::{Model, ModelSpec};
use super::optim::OptimizerSpec;
use super::presets::{DataSpec, ImageSource, Preset, Samples, TrainConfig};
use super::NnError;
use crate::data::preprocess::Preprocess;
use crate::mapping::weights::{LayerWeights, WeightsFile as CompilerWeights, FORMAT};
use crate::net::ir::Shape as IrShape;
use crate::net::spec::{LayerKind, Loss, Optimizer, TrainingSpec, WeightScale};
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

/// The file's fixed siemens per weight unit, or `msg` located at `at` when the scale is `auto`
/// (hardware units, per ampere or per siemens, cannot be turned into weight units before
/// training has fixed the scale).
fn fixed_scale(
    file: &crate::net::NetFile,
    at: Option<&crate::span::Span>,
    msg: &str,
) -> Result<f64, NnError> {
    match file.mapping.weight_scale {
        WeightScale::SiemensPerUnit(s) => Ok(s),
        WeightScale::Auto => Err(NnError::Format(match at {
            Some(sp) => sp.render(msg),
            None => msg.to_string(),
        })),
    }
}

fn unsupported(what: String) -> NnError {
    NnError::Format(format!(
        "network file: {what} is not supported by the trainer"
    ))
}

/// Model spec of a `.net` file's network (the final `softmax` becomes the cross-entropy loss).
///
/// The software network computes what the hardware does. Inputs are volts and a dense layer's
/// output is `Σ V·w` in volt·weight units, i.e. the array's current `Σ V·ΔG` divided by the
/// siemens per weight unit `s`. A bare `tanh;` is a software activation, `tanh(x)`. A
/// `tanh { slope }` is the op-amp neuron of `compile --whole`
/// (S4's eq. 1: `V_H = 0.2·tanh(10⁶·(I⁺ − I⁻))`), slope per ampere, output swing the input
/// range: so the layer is `V_H = v_h·tanh(slope·s·x)` with `v_h = max|v_in|`. That needs a fixed
/// `mapping { weight_scale X S; }` (`auto` fixes `s` only after training): a located error
/// otherwise.
pub fn model_spec(
    file: &crate::net::NetFile,
    ir: &NetworkIr,
    loss: LossSpec,
) -> Result<ModelSpec, NnError> {
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
            LayerKind::Tanh { slope: None } => LayerSpec::Tanh {
                slope: 1.0,
                amplitude: 1.0,
            },
            LayerKind::Tanh { slope: Some(slope) } => {
                let s = fixed_scale(
                    file,
                    Some(&l.span),
                    "`tanh { slope }` is per ampere of array current; training needs a fixed \
                     `mapping { weight_scale X S; }` to turn it into weight units (`auto` sets \
                     the scale only after training)",
                )?;
                let amplitude = file.hardware.v_hidden_v();
                if !(amplitude > 0.0 && amplitude.is_finite()) {
                    return Err(NnError::Format(l.span.render(
                        "`tanh`: the hidden neurons swing over the input range `v_in`, which is \
                         zero here",
                    )));
                }
                LayerSpec::Tanh {
                    slope: slope * s,
                    amplitude,
                }
            }
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

fn data_spec(t: &TrainingSpec, input: [usize; 3], net_path: &Path) -> Result<DataSpec, NnError> {
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
            match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => DataSpec::Mnist {
                    source: ImageSource::Dir { path: path.into() },
                    preprocess: pre,
                },
                // a path that does not lead to a directory: say so (it is not a feature the
                // trainer lacks)
                found => {
                    let why = match found {
                        Ok(_) => "it is a file, not a directory of IDX files".to_string(),
                        Err(e) => e.to_string(),
                    };
                    return Err(NnError::Format(format!(
                        "{}: dataset {other:?} is not a known dataset (mnist, fashion_mnist, \
                         mnist_sequence, letters4x4) and not a readable directory: {why} \
                         (network input {input:?})",
                        net_path.display()
                    )));
                }
            }
        }
    })
}

/// A training recipe from a `.net` file. Conductance-unit hyper-parameters
/// (Manhattan step, threshold) are taken as weight units.
pub fn recipe(path: &Path) -> Result<(Preset, NetworkIr), NnError> {
    let (file, ir) = crate::net::load(path).map_err(|e| NnError::Format(e.to_string()))?;
    recipe_from(&file, ir, path)
}

/// [`recipe`] from an already loaded (and possibly edited, e.g. by a sweep's overrides) file;
/// `path` names it in errors.
pub fn recipe_from(
    file: &crate::net::NetFile,
    ir: NetworkIr,
    path: &Path,
) -> Result<(Preset, NetworkIr), NnError> {
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
    let model = model_spec(file, &ir, loss)?;
    let optimizer = match t.optimizer {
        Optimizer::Sgd { lr, momentum } => OptimizerSpec::Sgd { lr, momentum },
        Optimizer::Rmsprop { lr, decay, eps, .. } => OptimizerSpec::RmsProp { lr, decay, eps },
        Optimizer::Manhattan { step_siemens } => OptimizerSpec::Manhattan { step: step_siemens },
        Optimizer::Threshold {
            lr,
            threshold_siemens,
        } => OptimizerSpec::Threshold {
            lr,
            threshold: threshold_siemens,
        },
    };
    let data = data_spec(&t, model.input, path)?;
    let weight_clip = if t.clip_weights {
        let s = fixed_scale(
            file,
            t.clip_weights_span.as_ref(),
            &format!(
                "{}`clip_weights on` clips to the hardware window in weight units, which needs a \
                 fixed `mapping {{ weight_scale X S; }}` (`auto` sets the scale only after \
                 training)",
                // without the key's place (a deserialised spec), the file names the error
                match &t.clip_weights_span {
                    Some(_) => String::new(),
                    None => format!("{}: ", path.display()),
                }
            ),
        )?;
        Some((file.hardware.g_max_siemens - file.hardware.g_min_siemens) / s)
    } else {
        None
    };
    let train = TrainConfig {
        epochs: t.epochs,
        batch_size: t.batch,
        optimizer,
        seed: t.seed,
        lr_decay: 1.0,
        weight_clip,
    };
    Ok((
        Preset {
            name: ir.name.clone(),
            model,
            data,
            train,
            samples: Samples {
                train: t.dataset.train,
                test: t.dataset.test,
                fraction: t.dataset.fraction,
            },
            not_applied: t.not_applied.clone(),
        },
        ir,
    ))
}

/// Where the rows of one matmul slot stand in the compiler's matrix of its layer.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotRows {
    /// Name of the IR layer (the compiler's matrix).
    pub layer: String,
    /// For every non-bias row of the slot, its logical row in the layer's matrix.
    pub rows: Vec<usize>,
    /// The slot's last row is the bias (the compiler's `bias` vector).
    pub bias: bool,
}

/// Row maps of every matmul slot (indexed by slot id), in the layouts of `crate::net::ir`:
/// dense rows after a feature map go from the trainer's `c, h, w` to the IR's `h, w, c`;
/// ConvLSTM input and recurrent rows are stacked.
pub fn slot_rows(model: &Model, ir: &NetworkIr) -> Result<Vec<SlotRows>, NnError> {
    let weighted: Vec<_> = ir.layers.iter().filter(|l| l.kind.is_weighted()).collect();
    let mut slot_layers: Vec<usize> = model.slots.iter().map(|s| s.layer).collect();
    slot_layers.dedup();
    if weighted.len() != slot_layers.len() {
        return Err(NnError::Format(
            "network file and model disagree on the weighted layers".into(),
        ));
    }
    let mut out: Vec<Option<SlotRows>> = vec![None; model.slots.len()];
    for (l, &li) in weighted.iter().zip(&slot_layers) {
        let ids = &model.layer_slots[li];
        let mut offset = 0;
        for (n, &id) in ids.iter().enumerate() {
            let s = &model.slots[id];
            let nb = s.rows - s.bias_row as usize;
            let mut rows: Vec<usize> = (offset..offset + nb).collect();
            if n == 0 {
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
                    if h * w > 1 && c > 1 && c * h * w == nb {
                        for ci in 0..c {
                            for y in 0..h {
                                for x in 0..w {
                                    rows[(ci * h + y) * w + x] = (y * w + x) * c + ci;
                                }
                            }
                        }
                    }
                }
            }
            offset += nb;
            out[id] = Some(SlotRows {
                layer: l.name.clone(),
                rows,
                bias: s.bias_row && n == 0,
            });
        }
        let m = l
            .matrix
            .ok_or_else(|| NnError::Format(format!("layer {} has no matrix", l.name)))?;
        let s0 = &model.slots[ids[0]];
        if m.rows != offset || m.cols != s0.cols || m.bias != s0.bias_row {
            return Err(NnError::Format(format!(
                "layer {}: compiler expects {}x{} (bias {}), trainer has {}x{} (bias {})",
                l.name, m.rows, m.cols, m.bias, offset, s0.cols, s0.bias_row
            )));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(id, s)| s.ok_or_else(|| NnError::Format(format!("slot {id} belongs to no layer"))))
        .collect()
}

/// Slot matrices (bias row last where the slot has one) in the compiler's format.
pub fn weights_from_slots(
    slots: &[SlotRows],
    weights: &[&Matrix],
    network: &str,
) -> Result<CompilerWeights, NnError> {
    let mut layers: Vec<LayerWeights> = Vec::new();
    for (s, w) in slots.iter().zip(weights) {
        let idx = match layers.iter().position(|l| l.name == s.layer) {
            Some(i) => i,
            None => {
                layers.push(LayerWeights {
                    name: s.layer.clone(),
                    rows: 0,
                    cols: w.cols,
                    weights: vec![],
                    bias: vec![],
                });
                layers.len() - 1
            }
        };
        let lw = &mut layers[idx];
        let need = s.rows.iter().map(|r| r + 1).max().unwrap_or(0);
        if need > lw.rows {
            lw.weights.resize(need * lw.cols, 0.0);
            lw.rows = need;
        }
        for (r, &lr) in s.rows.iter().enumerate() {
            lw.weights[lr * lw.cols..(lr + 1) * lw.cols].copy_from_slice(w.row(r));
        }
        if s.bias {
            lw.bias = w.row(w.rows - 1).to_vec();
        }
    }
    Ok(CompilerWeights {
        format: FORMAT.into(),
        network: network.to_string(),
        layers,
    })
}

/// Trained weights in the compiler's format (layouts of `crate::net::ir`, see [`slot_rows`]).
pub fn compiler_weights(model: &Model, ir: &NetworkIr) -> Result<CompilerWeights, NnError> {
    let slots = slot_rows(model, ir)?;
    let w: Vec<&Matrix> = model.weights.iter().collect();
    weights_from_slots(&slots, &w, &ir.name)
}
