//! Unit tests of the importer and exporter that need no Python: round trips, hand-built
//! models for the error paths, and damaged bytes.
use super::proto::{self, ModelProto, NodeProto};
use super::*;
use crate::graph::ValueInfo;
use crate::ops::{Activation, BatchNorm, Conv2d, Gemm, Lrn, Op, Pad, Pool};
use crate::{Error, Graph, Node, Tensor, WeightsOrigin};
use prost::Message;

/// Deterministic values in [-1, 1).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor(seed: u64, shape: &[usize]) -> Tensor {
    Tensor::from_vec(shape, values(seed, shape.iter().product())).expect("sizes agree")
}

fn node(name: &str, op: Op, inputs: &[&str], output: &str) -> Node {
    Node {
        name: name.into(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        output: output.into(),
    }
}

fn conv(seed: u64, m: usize, c_per_group: usize, k: usize, groups: usize, bias: bool) -> Conv2d {
    Conv2d {
        weight: tensor(seed, &[m, c_per_group, k, k]),
        bias: bias.then(|| tensor(seed + 1, &[m])),
        stride: [1, 1],
        dilation: [1, 1],
        pads: [0; 4],
        groups,
        activation: Activation::None,
    }
}

/// A graph that uses every op of the IR.
pub(crate) fn every_op_graph() -> Graph {
    let pool = |k, s, pads, ceil_mode, count_include_pad| Pool {
        kernel: [k, k],
        stride: [s, s],
        pads,
        ceil_mode,
        count_include_pad,
    };
    let nodes = vec![
        node(
            "conv1",
            Op::Conv2d(Conv2d {
                pads: [1, 1, 1, 1],
                ..conv(1, 8, 3, 3, 1, true)
            }),
            &["x"],
            "c1",
        ),
        node("relu1", Op::Activation(Activation::Relu), &["c1"], "r1"),
        node(
            "pool1",
            Op::MaxPool(pool(3, 2, [0, 0, 1, 1], true, false)),
            &["r1"],
            "p1",
        ),
        node(
            "bn1",
            Op::BatchNorm(BatchNorm {
                scale: values(3, 8),
                bias: values(4, 8),
                mean: values(5, 8),
                var: values(6, 8).iter().map(|v| v.abs() + 0.5).collect(),
                epsilon: 1e-3,
            }),
            &["p1"],
            "b1",
        ),
        node(
            "dw",
            Op::Conv2d(Conv2d {
                dilation: [2, 2],
                pads: [2, 1, 2, 3],
                ..conv(7, 8, 1, 3, 8, true)
            }),
            &["b1"],
            "d1",
        ),
        node(
            "relu6",
            Op::Activation(Activation::Clip { min: 0.0, max: 6.0 }),
            &["d1"],
            "d1r",
        ),
        node(
            "lrn",
            Op::Lrn(Lrn {
                size: 5,
                alpha: 1e-3,
                beta: 0.75,
                bias: 2.0,
            }),
            &["d1r"],
            "l1",
        ),
        node(
            "pad",
            Op::Pad(Pad {
                pads: [1, 0, 0, 1],
                value: 0.5,
            }),
            &["l1"],
            "pd",
        ),
        node(
            "avg",
            Op::AveragePool(pool(2, 2, [0, 0, 0, 0], false, true)),
            &["pd"],
            "ap",
        ),
        node(
            "pw",
            Op::Conv2d(Conv2d {
                stride: [1, 1],
                ..conv(9, 4, 8, 1, 1, false)
            }),
            &["ap"],
            "pw",
        ),
        node(
            "clip_low",
            Op::Activation(Activation::Clip {
                min: -0.5,
                max: f32::INFINITY,
            }),
            &["pw"],
            "pwc",
        ),
        node("cat", Op::Concat { axis: 1 }, &["ap", "pwc"], "cat"),
        node(
            "bias_c",
            Op::Constant(tensor(11, &[12, 1, 1])),
            &[],
            "bias_c",
        ),
        node("add", Op::Add, &["cat", "bias_c"], "sum"),
        node("gap", Op::GlobalAveragePool, &["sum"], "gap"),
        node("flat", Op::Flatten { axis: 1 }, &["gap"], "flat"),
        node(
            "fc",
            Op::Gemm(Gemm {
                weight: tensor(12, &[10, 12]),
                bias: Some(tensor(13, &[10])),
                activation: Activation::None,
            }),
            &["flat"],
            "fc",
        ),
        node("fc_relu", Op::Activation(Activation::Relu), &["fc"], "fcr"),
        node("drop", Op::Dropout, &["fcr"], "dr"),
        node(
            "reshape",
            Op::Reshape {
                shape: vec![1, 2, -1],
            },
            &["dr"],
            "r3",
        ),
        node(
            "fc3",
            Op::Gemm(Gemm {
                weight: tensor(14, &[4, 5]),
                bias: Some(tensor(15, &[4])),
                activation: Activation::None,
            }),
            &["r3"],
            "f3",
        ),
        node(
            "fc3_nb",
            Op::Gemm(Gemm {
                weight: tensor(16, &[4, 4]),
                bias: None,
                activation: Activation::None,
            }),
            &["f3"],
            "f3b",
        ),
        node("k", Op::Constant(tensor(17, &[1, 4, 2])), &[], "k_value"),
        node("mm", Op::MatMul, &["f3b", "k_value"], "mm"),
        node("softmax", Op::Softmax { axis: 2 }, &["mm"], "prob"),
    ];
    Graph {
        name: "every_op".into(),
        inputs: vec![ValueInfo {
            name: "x".into(),
            shape: vec![1, 3, 9, 9],
        }],
        nodes,
        outputs: vec!["prob".into(), "gap".into()],
        weights: WeightsOrigin::Seeded,
    }
}

#[test]
fn every_op_graph_is_valid() {
    let g = every_op_graph();
    let shapes = g.infer_shapes().expect("valid graph");
    assert_eq!(shapes["prob"], vec![1, 2, 2]);
    assert_eq!(shapes["cat"], vec![1, 12, 3, 3]);
}

#[test]
fn round_trip_of_optimized_graph() {
    let g = every_op_graph().optimized().expect("optimizes");
    // Fusion keeps the activation's value names, so graph outputs keep theirs.
    assert!(g
        .nodes
        .iter()
        .any(|n| n.name == "conv1" && n.output == "r1"));
    let bytes = export(&g).expect("exports");
    let back = import_bytes(&bytes, "every_op.onnx")
        .expect("imports")
        .optimized()
        .expect("optimizes");
    assert_eq!(back, g);
}

#[test]
fn round_trip_keeps_unfused_graph_structure() {
    // Without optimization, fused activations are separate nodes anyway: only names of the
    // ONNX-only pieces differ, so import + optimize equals optimize.
    let g = every_op_graph();
    let back = import_bytes(&export(&g).expect("exports"), "g").expect("imports");
    assert_eq!(back.weights, WeightsOrigin::Seeded);
    assert_eq!(
        back.optimized().expect("optimizes"),
        g.optimized().expect("optimizes")
    );
}

#[test]
fn export_names_and_opset() {
    let g = every_op_graph().optimized().expect("optimizes");
    let m = to_model(&g).expect("exports");
    assert_eq!(m.opset_import[0].version(), EXPORT_OPSET);
    let graph = m.graph.expect("graph");
    let outs: Vec<&str> = graph.output.iter().map(|o| o.name()).collect();
    assert_eq!(outs, ["prob", "gap"]);
    // The fused ReLU of conv1 is a Relu node writing the IR value name.
    let relu = graph
        .node
        .iter()
        .find(|n| n.op_type() == "Relu" && n.output[0] == "r1")
        .expect("separate Relu");
    assert_eq!(relu.input[0], "r1_preact");
    assert!(
        graph.initializer.iter().any(|t| t.name() == "bias_c"),
        "constant as initializer"
    );
    assert!(
        graph
            .node
            .iter()
            .any(|n| n.op_type() == "Constant" && n.name() == "k"),
        "constant named apart from its value"
    );
}

// --- Hand-built models for the error paths -------------------------------------------------

fn onnx_node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, inits: Vec<proto::TensorProto>, opset: i64) -> Vec<u8> {
    let mut m = to_model(&Graph {
        name: "m".into(),
        inputs: vec![ValueInfo {
            name: "x".into(),
            shape: vec![1, 4, 5, 5],
        }],
        nodes: vec![node("id", Op::Activation(Activation::None), &["x"], "y")],
        outputs: vec!["y".into()],
        weights: WeightsOrigin::Real,
    })
    .expect("exports");
    m.opset_import[0].version = Some(opset);
    let g = m.graph.as_mut().expect("graph");
    g.node = nodes;
    g.initializer = inits;
    ModelProto::encode_to_vec(&m)
}

#[test]
fn unsupported_ops_are_listed_at_once() {
    let nodes = vec![
        onnx_node("Transpose", "t1", &["x"], &["a"]),
        onnx_node("Relu", "r", &["a"], &["b"]),
        onnx_node("Transpose", "t2", &["b"], &["c"]),
        onnx_node("Sigmoid", "s", &["c"], &["y"]),
    ];
    match import_bytes(&model(nodes, vec![], 13), "m") {
        Err(Error::Unsupported(list)) => {
            assert_eq!(list, ["Sigmoid (nodes: s)", "Transpose (nodes: t1, t2)"]);
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn missing_weight_names_the_node() {
    let nodes = vec![onnx_node("Conv", "conv7", &["x", "w_missing"], &["y"])];
    match import_bytes(&model(nodes, vec![], 13), "m") {
        Err(Error::Node { node, msg }) => {
            assert_eq!(node, "conv7");
            assert!(msg.contains("w_missing"), "{msg}");
        }
        other => panic!("expected Node error, got {other:?}"),
    }
}

#[test]
fn wrong_attribute_type_names_the_node() {
    let mut n = onnx_node("Flatten", "flat", &["x"], &["y"]);
    n.attribute.push(proto::AttributeProto {
        name: Some("axis".into()),
        r#type: Some(proto::attribute_proto::AttributeType::Float as i32),
        f: Some(1.0),
        ..Default::default()
    });
    match import_bytes(&model(vec![n], vec![], 13), "m") {
        Err(Error::Node { node, msg }) => {
            assert_eq!(node, "flat");
            assert!(msg.contains("axis"), "{msg}");
        }
        other => panic!("expected Node error, got {other:?}"),
    }
}

#[test]
fn pad_modes_other_than_constant_name_the_node() {
    let mut n = onnx_node("Pad", "reflect_pad", &["x", "pads"], &["y"]);
    n.attribute.push(proto::AttributeProto {
        name: Some("mode".into()),
        r#type: Some(proto::attribute_proto::AttributeType::String as i32),
        s: Some(b"reflect".to_vec()),
        ..Default::default()
    });
    let pads = super::values::int_tensor("pads", &[8], &[0, 0, 1, 1, 0, 0, 1, 1]);
    match import_bytes(&model(vec![n], vec![pads], 13), "m") {
        Err(Error::Node { node, msg }) => {
            assert_eq!(node, "reflect_pad");
            assert!(msg.contains("reflect"), "{msg}");
        }
        other => panic!("expected Node error, got {other:?}"),
    }
}

#[test]
fn identity_to_graph_output_renames_the_producer() {
    let nodes = vec![
        onnx_node("Relu", "r", &["x"], &["a"]),
        onnx_node("Identity", "i", &["a"], &["y"]),
    ];
    let g = import_bytes(&model(nodes, vec![], 13), "m").expect("imports");
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].output, "y");
    assert_eq!(g.outputs, ["y"]);
}

#[test]
fn damaged_models_are_errors_not_panics() {
    let bytes = export(&every_op_graph()).expect("exports");
    assert!(import_bytes(&bytes, "ok").is_ok());
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as usize
    };
    let mut accepted = 0;
    for _ in 0..4000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 3 {
            let at = next() % b.len();
            b[at] ^= 1 << (next() % 8);
        }
        accepted += usize::from(import_bytes(&b, "flipped").is_ok());
    }
    // Most flips land in weight data, which stays a valid model.
    assert!(accepted > 0);
}
