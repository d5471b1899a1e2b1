//! Every backward pass against central finite differences (f64).

use netc::nn::backend::{IdealBackend, MatmulBackend};
use netc::nn::layers::{self, LayerSpec, Pad, Shape};
use netc::nn::loss::{self, LossSpec};
use netc::nn::matrix::Matrix;
use netc::nn::model::{Model, ModelBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_matrix(r: usize, c: usize, rng: &mut ChaCha8Rng, scale: f64) -> Matrix {
    Matrix::from_vec(
        r,
        c,
        (0..r * c).map(|_| rng.gen_range(-scale..scale)).collect(),
    )
    .unwrap()
}

/// L = Σ y ⊙ R for a random projection R; checks dL/dx and dL/dW.
fn check_layer(spec: LayerSpec, s: Shape, n: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let ws = layers::weight_shapes(&spec, s);
    let mut weights: Vec<Matrix> = ws
        .iter()
        .map(|&(r, c)| rand_matrix(r, c, &mut rng, 0.7))
        .collect();
    let slots: Vec<usize> = (0..ws.len()).collect();
    let len: usize = s.iter().product();
    let x = rand_matrix(n, len, &mut rng, 1.0);
    let run = |w: &[Matrix], x: &Matrix| -> (Matrix, layers::Cache, IdealBackend) {
        let mut b = IdealBackend::new();
        for (i, m) in w.iter().enumerate() {
            b.prepare(i, m).unwrap();
        }
        let (y, c) = layers::forward(&spec, s, &slots, &mut b, x, &mut test_ctx!()).unwrap();
        (y, c, b)
    };
    let (y, cache, b) = run(&weights, &x);
    let r = rand_matrix(y.rows, y.cols, &mut rng, 1.0);
    let lossf = |y: &Matrix| y.data.iter().zip(&r.data).map(|(a, b)| a * b).sum::<f64>();
    let mut grads: Vec<Matrix> = ws.iter().map(|&(r, c)| Matrix::zeros(r, c)).collect();
    let dx = layers::backward(&spec, s, &slots, &b, &cache, &r, &mut grads).unwrap();
    let h = 1e-6;
    let tol = |a: f64, b: f64| (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()));
    for i in 0..x.data.len() {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.data[i] += h;
        xm.data[i] -= h;
        let fd = (lossf(&run(&weights, &xp).0) - lossf(&run(&weights, &xm).0)) / (2.0 * h);
        assert!(
            tol(fd, dx.data[i]),
            "{spec:?}: dx[{i}] analytic {} vs fd {fd}",
            dx.data[i]
        );
    }
    for k in 0..weights.len() {
        for i in 0..weights[k].data.len() {
            let orig = weights[k].data[i];
            weights[k].data[i] = orig + h;
            let lp = lossf(&run(&weights, &x).0);
            weights[k].data[i] = orig - h;
            let lm = lossf(&run(&weights, &x).0);
            weights[k].data[i] = orig;
            let fd = (lp - lm) / (2.0 * h);
            assert!(
                tol(fd, grads[k].data[i]),
                "{spec:?}: dW{k}[{i}] analytic {} vs fd {fd}",
                grads[k].data[i]
            );
        }
    }
}

#[test]
fn conv2d_padding_stride_bias() {
    check_layer(
        LayerSpec::Conv2d {
            out_channels: 3,
            kernel: [3, 3],
            stride: 1,
            pad: Pad::uniform(1),
            bias: true,
        },
        [2, 5, 5],
        2,
    );
    check_layer(
        LayerSpec::Conv2d {
            out_channels: 2,
            kernel: [2, 3],
            stride: 2,
            pad: Pad {
                top: 0,
                bottom: 1,
                left: 2,
                right: 0,
            },
            bias: false,
        },
        [1, 6, 5],
        2,
    );
    check_layer(
        LayerSpec::Conv2d {
            out_channels: 4,
            kernel: [2, 2],
            stride: 1,
            pad: Pad::same(2, 2),
            bias: false,
        },
        [3, 4, 4],
        1,
    );
}

#[test]
fn dense() {
    check_layer(LayerSpec::Dense { out: 4, bias: true }, [2, 2, 2], 3);
    check_layer(
        LayerSpec::Dense {
            out: 3,
            bias: false,
        },
        [5, 1, 1],
        2,
    );
}

#[test]
fn activations() {
    check_layer(LayerSpec::Relu, [2, 3, 3], 2);
    check_layer(
        LayerSpec::Tanh {
            slope: 2.5,
            amplitude: 1.0,
        },
        [1, 4, 3],
        2,
    );
    // the op-amp neuron of a `.net` file: output swing 0.2 V, slope in 1/(V·weight unit)
    check_layer(
        LayerSpec::Tanh {
            slope: 7.0,
            amplitude: 0.2,
        },
        [1, 4, 3],
        2,
    );
    check_layer(LayerSpec::Sigmoid, [3, 2, 2], 2);
    check_layer(LayerSpec::Flatten, [2, 2, 2], 2);
}

#[test]
fn max_pool() {
    check_layer(LayerSpec::MaxPool { size: 2, stride: 2 }, [2, 4, 4], 2);
    check_layer(LayerSpec::MaxPool { size: 3, stride: 3 }, [1, 7, 8], 2); // floor, leftovers dropped
    check_layer(LayerSpec::MaxPool { size: 2, stride: 1 }, [1, 3, 3], 1); // overlapping windows
}

#[test]
fn conv_lstm_bptt() {
    check_layer(
        LayerSpec::ConvLstm {
            hidden: 2,
            steps: 3,
            in_kernel: [3, 3],
            rec_kernel: [2, 2],
            bias: true,
        },
        [3, 5, 5],
        2,
    );
    check_layer(
        LayerSpec::ConvLstm {
            hidden: 3,
            steps: 2,
            in_kernel: [2, 2],
            rec_kernel: [3, 3],
            bias: false,
        },
        [4, 4, 4],
        1,
    );
}

#[allow(clippy::needless_range_loop)]
fn check_model(mut m: Model, n: usize, k: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    m.init(&mut rng);
    for w in &mut m.weights {
        w.data
            .iter_mut()
            .for_each(|v| *v += rng.gen_range(-0.1..0.1)); // non-zero biases too
    }
    let x = rand_matrix(n, m.input_len(), &mut rng, 1.0);
    let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
    let lossf = |m: &Model| {
        let mut b = IdealBackend::new();
        m.prepare_backend(&mut b).unwrap();
        let (y, _) = m.forward(&mut b, &x, &mut test_ctx!()).unwrap();
        loss::evaluate(&m.spec.loss, &y, &labels).unwrap().loss
    };
    let mut b = IdealBackend::new();
    m.prepare_backend(&mut b).unwrap();
    let (y, caches) = m.forward(&mut b, &x, &mut test_ctx!()).unwrap();
    let l = loss::evaluate(&m.spec.loss, &y, &labels).unwrap();
    let grads = m.backward(&b, &caches, &l.grad).unwrap();
    let h = 1e-6;
    for s in 0..m.weights.len() {
        for i in (0..m.weights[s].data.len()).step_by(3) {
            let orig = m.weights[s].data[i];
            m.weights[s].data[i] = orig + h;
            let lp = lossf(&m);
            m.weights[s].data[i] = orig - h;
            let lm = lossf(&m);
            m.weights[s].data[i] = orig;
            let fd = (lp - lm) / (2.0 * h);
            let g = grads[s].data[i];
            assert!(
                (fd - g).abs() <= 1e-6 * (1.0 + fd.abs()),
                "slot {s} [{i}]: analytic {g} vs fd {fd}"
            );
        }
    }
}

#[test]
fn whole_networks_softmax_ce_and_mse() {
    let cnn = ModelBuilder::new([1, 6, 6])
        .conv2d(3, [3, 3], 1, Pad::uniform(1), true)
        .relu()
        .conv2d(2, [2, 2], 1, Pad::same(2, 2), false)
        .max_pool(2, 2)
        .flatten()
        .dense(4, true)
        .spec(LossSpec::SoftmaxCrossEntropy);
    check_model(Model::new(cnn).unwrap(), 3, 4);
    let mlp = ModelBuilder::new([1, 4, 4])
        .flatten()
        .dense(5, true)
        .tanh(1.7)
        .dense(4, true)
        .tanh(1.0)
        .spec(LossSpec::Mse {
            target_on: 1.0,
            target_off: -1.0,
        });
    check_model(Model::new(mlp).unwrap(), 4, 4);
    let lstm = ModelBuilder::new([3, 5, 5])
        .conv_lstm(2, 3, [3, 3], [2, 2], false)
        .max_pool(2, 2)
        .flatten()
        .dense(3, false)
        .spec(LossSpec::SoftmaxCrossEntropy);
    check_model(Model::new(lstm).unwrap(), 2, 3);
}

#[test]
fn softmax_ce_closed_form() {
    // two classes, logits (0, ln 3): p = (1/4, 3/4)
    let y = Matrix::from_vec(1, 2, vec![0.0, 3f64.ln()]).unwrap();
    let l = loss::evaluate(&LossSpec::SoftmaxCrossEntropy, &y, &[0]).unwrap();
    assert!((l.loss - 4f64.ln()).abs() < 1e-14);
    assert!((l.grad.data[0] + 0.75).abs() < 1e-14 && (l.grad.data[1] - 0.75).abs() < 1e-14);
    assert_eq!(l.correct, 0);
    assert!(loss::evaluate(&LossSpec::SoftmaxCrossEntropy, &y, &[2]).is_err());
}

#[test]
fn shape_errors_are_reported() {
    let bad = ModelBuilder::new([1, 2, 2])
        .conv2d(1, [3, 3], 1, Pad::default(), false)
        .flatten()
        .spec(LossSpec::SoftmaxCrossEntropy);
    let e = Model::new(bad).unwrap_err().to_string();
    assert!(e.contains("layer 0"), "{e}");
    let not_vector = ModelBuilder::new([1, 4, 4])
        .relu()
        .spec(LossSpec::SoftmaxCrossEntropy);
    assert!(Model::new(not_vector).is_err());
}

/// The tanh layer's backward pass divides by its amplitude: a model file with a zero, negative or
/// non-finite amplitude (or slope) is refused when the model is built, not turned into NaNs.
#[test]
fn tanh_amplitude_must_be_positive_and_finite() {
    for (slope, amplitude) in [
        (1.0, 0.0),
        (1.0, -0.2),
        (f64::NAN, 0.2),
        (1.0, f64::INFINITY),
    ] {
        let spec = netc::nn::model::ModelSpec {
            input: [4, 1, 1],
            layers: vec![
                LayerSpec::Dense { out: 3, bias: true },
                LayerSpec::Tanh { slope, amplitude },
            ],
            loss: LossSpec::Mse {
                target_on: 1.0,
                target_off: -1.0,
            },
        };
        let e = match Model::new(spec) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("tanh ({slope}, {amplitude}) accepted"),
        };
        assert!(e.contains("amplitude"), "{e}");
    }
}
