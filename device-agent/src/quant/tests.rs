//! Quantized execution end to end: calibrate, quantize, run on the executor (whole layers and
//! the μLayer split) and compare with the reference interpreter bit for bit, on a small graph
//! holding every op kind and on seeded zoo networks; and against F32.
use super::{quantize, reference, CalibrationMethod, QuantizedModel};
use crate::backend::cpu::testutil::Rng;
use crate::backend::cpu::CpuBackend;
use crate::backend::Precision;
use crate::exec::Executor;
use crate::graph::{Graph, Node, ValueInfo, WeightsOrigin};
use crate::ops::{Activation, BatchNorm, Conv2d, Gemm, Lrn, Op, Pad, Pool};
use crate::tensor::{Slice, Tensor};

fn node(name: &str, op: Op, inputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        output: name.into(),
    }
}

fn conv(
    rng: &mut Rng,
    cin: usize,
    cout: usize,
    k: usize,
    groups: usize,
    act: Activation,
) -> Conv2d {
    Conv2d {
        weight: rng.tensor(
            &[cout, cin / groups, k, k],
            1.0 / ((cin / groups * k * k) as f32).sqrt(),
        ),
        bias: Some(rng.tensor(&[cout], 0.2)),
        stride: [1, 1],
        dilation: [1, 1],
        pads: [k / 2; 4],
        groups,
        activation: act,
    }
}

/// Every op kind the graph IR has, in a small network with two outputs.
fn every_op(rng: &mut Rng) -> Graph {
    let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
    let pool = |k: usize, s: usize, p: usize| Pool {
        kernel: [k, k],
        stride: [s, s],
        pads: [p; 4],
        ceil_mode: false,
        count_include_pad: false,
    };
    let nodes = vec![
        node("c1", Op::Conv2d(conv(rng, 3, 8, 3, 1, relu6)), &["x"]),
        node(
            "bn",
            Op::BatchNorm(BatchNorm {
                scale: (0..8).map(|i| 0.5 + i as f32 / 8.0).collect(),
                bias: (0..8).map(|i| i as f32 / 10.0 - 0.3).collect(),
                mean: vec![1.0; 8],
                var: vec![2.0; 8],
                epsilon: 1e-3,
            }),
            &["c1"],
        ),
        node("r1", Op::Activation(Activation::Relu), &["bn"]),
        node(
            "pd",
            Op::Pad(Pad {
                pads: [1, 1, 1, 1],
                value: 0.0,
            }),
            &["r1"],
        ),
        node("mp", Op::MaxPool(pool(2, 2, 0)), &["pd"]),
        node(
            "dw",
            Op::Conv2d(conv(rng, 8, 8, 3, 8, Activation::Relu)),
            &["mp"],
        ),
        node(
            "pw",
            Op::Conv2d(conv(rng, 8, 8, 1, 1, Activation::None)),
            &["dw"],
        ),
        node("sum", Op::Add, &["pw", "mp"]),
        node(
            "lrn",
            Op::Lrn(Lrn {
                size: 3,
                alpha: 1e-2,
                beta: 0.75,
                bias: 1.0,
            }),
            &["sum"],
        ),
        node("cat", Op::Concat { axis: 1 }, &["lrn", "dw"]),
        node("ap", Op::AveragePool(pool(3, 1, 1)), &["cat"]),
        node("drop", Op::Dropout, &["ap"]),
        node("gap", Op::GlobalAveragePool, &["drop"]),
        node("fl", Op::Flatten { axis: 1 }, &["gap"]),
        node(
            "fc",
            Op::Gemm(Gemm {
                weight: rng.tensor(&[10, 16], 0.4),
                bias: Some(rng.tensor(&[10], 0.1)),
                activation: Activation::None,
            }),
            &["fl"],
        ),
        node("sm", Op::Softmax { axis: 1 }, &["fc"]),
    ];
    Graph {
        name: "every-op".into(),
        inputs: vec![ValueInfo {
            name: "x".into(),
            shape: vec![1, 3, 12, 12],
        }],
        nodes,
        outputs: vec!["sm".into(), "fc".into()],
        weights: WeightsOrigin::Seeded,
    }
}

fn samples(rng: &mut Rng, shape: &[usize], n: usize) -> Vec<Vec<Tensor>> {
    (0..n).map(|_| vec![rng.tensor(shape, 2.0)]).collect()
}

/// The executor (whole layers, then the μLayer split on 3 threads) against the reference
/// interpreter, every output code equal; returns the dequantized outputs.
fn check_against_reference(m: &QuantizedModel, x: &Tensor) -> Vec<Tensor> {
    let want = reference::run(m, std::slice::from_ref(x)).expect("reference runs");
    let mut whole =
        Executor::new_quantized(m, CpuBackend::new(2).expect("backend")).expect("prepare");
    let (got, trace) = whole.run(std::slice::from_ref(x)).expect("runs");
    assert!(trace
        .layers
        .iter()
        .all(|s| s.precision == Precision::Quint8));
    for (g, w) in got.iter().zip(&want) {
        let wd = w.dequantize();
        assert_eq!(
            g.data(),
            wd.data(),
            "{}: executor vs reference",
            m.graph.name
        );
    }
    let mut split =
        Executor::new_quantized(m, CpuBackend::new(3).expect("backend")).expect("prepare");
    let (parts, _) = split
        .run_sliced(std::slice::from_ref(x), |i, shape| {
            let (c, h) = crate::tensor::channels_rows(shape);
            if !m.graph.nodes[i].op.sliceable() || c < 2 {
                return vec![Slice::whole(shape)];
            }
            let c1 = c * 5 / 8;
            vec![
                Slice {
                    channels: 0..c1,
                    rows: 0..h,
                },
                Slice {
                    channels: c1..c,
                    rows: 0..h / 2,
                },
                Slice {
                    channels: c1..c,
                    rows: h / 2..h,
                },
            ]
        })
        .expect("sliced run");
    for (p, g) in parts.iter().zip(&got) {
        assert_eq!(p.data(), g.data(), "{}: split vs whole", m.graph.name);
    }
    got
}

#[test]
fn every_op_matches_the_reference_interpreter() {
    let mut rng = Rng::new(5);
    let g = every_op(&mut rng);
    let cal = samples(&mut rng, &[1, 3, 12, 12], 4);
    for method in [
        CalibrationMethod::MinMax,
        CalibrationMethod::Percentile,
        CalibrationMethod::Entropy,
    ] {
        let m = quantize(&g, &cal, method, 2).expect("quantizes");
        // Code-moving ops keep their input's quantization.
        for (n, q) in g.nodes.iter().zip(&m.nodes) {
            if super::model::keeps_input_quantization(&n.op) {
                assert_eq!(q.output, m.values[n.inputs[0].as_str()], "{}", n.name);
            }
        }
        let x = rng.tensor(&[1, 3, 12, 12], 2.0);
        let got = check_against_reference(&m, &x);
        // Close to F32 on the calibrated range: the probabilities within a few steps.
        let f32_out = crate::exec::run_graph_f32(&g, &x, 1).expect("f32 runs");
        let q = m.outputs()[0];
        for (a, b) in got[0].data().iter().zip(f32_out[0].data()) {
            assert!((a - b).abs() <= 0.08, "{method}: softmax {a} vs {b}");
        }
        let _ = q;
    }
}

#[test]
fn seeded_zoo_networks_match_the_reference_interpreter() {
    let mut rng = Rng::new(8);
    for name in ["mobilenet-v1", "squeezenet1.1", "efficientnet-lite0"] {
        let g = crate::zoo::build_seeded(name, 3)
            .and_then(Graph::optimized)
            .expect("zoo builds");
        let shape = g.inputs[0].shape.clone();
        let cal = samples(&mut rng, &shape, 2);
        let m = quantize(&g, &cal, CalibrationMethod::Percentile, 2).expect("quantizes");
        let x = rng.tensor(&shape, 2.0);
        let got = check_against_reference(&m, &x);
        // The quantized logits follow the F32 ones.
        let f = crate::exec::run_graph_f32(&g, &x, 2).expect("f32 runs");
        let (a, b) = (got[0].data(), f[0].data());
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        let (ma, mb) = (mean(a), mean(b));
        let cov: f32 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f32 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f32 = b.iter().map(|y| (y - mb).powi(2)).sum();
        let r = cov / (va.sqrt() * vb.sqrt());
        assert!(
            r > 0.9,
            "{name}: correlation of quantized and F32 logits {r}"
        );
    }
}

#[test]
fn f32_precision_on_a_plain_graph_is_refused_at_quint8() {
    let mut rng = Rng::new(1);
    let g = every_op(&mut rng);
    let err = Executor::new(&g, CpuBackend::new(1).expect("backend"), Precision::Quint8)
        .expect_err("needs a quantized model");
    assert!(err.to_string().contains("quantized model"), "{err}");
}
