//! The reference interpreter of a [`QuantizedModel`]: every node by its plain 8-bit
//! reference (`ops/*/reference_q8.rs`), no slicing, no threads — the oracle the executor's
//! QUInt8 path must match bit for bit.
//!
//! Ops without 8-bit kernels (BatchNorm, LRN, Softmax, MatMul, Constant) run as the CPU
//! backend runs them: dequantized, through the F32 CPU kernel of a one-node graph, quantized.
use super::{activation_codes, requant_table, requant_table_of, QParams, QTensor, QuantizedModel};
use crate::graph::{Graph, Node, ValueInfo, WeightsOrigin};
use crate::ops::{self, Op};
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::collections::HashMap;

/// Runs `model` on `inputs` (F32, quantized on entry); returns every graph output's codes.
pub fn run(model: &QuantizedModel, inputs: &[Tensor]) -> Result<Vec<QTensor>> {
    let g = &model.graph;
    if inputs.len() != g.inputs.len() {
        return Err(Error::Graph {
            graph: g.name.clone(),
            msg: format!("expects {} input(s), got {}", g.inputs.len(), inputs.len()),
        });
    }
    let mut values: HashMap<&str, QTensor> = HashMap::new();
    for ((v, t), &q) in g.inputs.iter().zip(inputs).zip(&model.inputs) {
        values.insert(v.name.as_str(), QTensor::quantize(t, q));
    }
    for (i, n) in g.nodes.iter().enumerate() {
        let qn = model.node(i);
        let ins: Vec<&QTensor> = n
            .inputs
            .iter()
            .map(|v| {
                values
                    .get(v.as_str())
                    .ok_or_else(|| Error::node(&n.name, format!("reads '{v}' before it exists")))
            })
            .collect::<Result<_>>()?;
        let y = node(n, &qn, &ins).map_err(|e| match e {
            Error::Node { .. } => e,
            e => Error::node(&n.name, e.to_string()),
        })?;
        values.insert(n.output.as_str(), y);
    }
    g.outputs
        .iter()
        .map(|o| {
            values.get(o.as_str()).cloned().ok_or_else(|| Error::Graph {
                graph: g.name.clone(),
                msg: format!("output '{o}' is not produced"),
            })
        })
        .collect()
}

/// `x`'s codes mapped through `t`, with shape `shape`.
fn mapped(x: &QTensor, t: &[u8; 256], shape: &[usize], q: QParams) -> Result<QTensor> {
    QTensor::from_vec(shape, x.data().iter().map(|&v| t[v as usize]).collect(), q)
        .ok_or_else(|| Error::Other("element count changed".into()))
}

fn node(n: &Node, q: &super::QuantNode<'_>, ins: &[&QTensor]) -> Result<QTensor> {
    let yq = q.output;
    let shapes: Vec<&[usize]> = ins.iter().map(|t| t.shape()).collect();
    let shape = n.op.output_shape(&n.name, &shapes)?;
    let weights = || {
        q.weights
            .ok_or_else(|| Error::node(&n.name, "8-bit weights missing"))
    };
    match &n.op {
        Op::Conv2d(c) => ops::conv2d::reference_q8::conv2d(c, weights()?, ins[0], yq),
        Op::Gemm(gm) => ops::gemm::reference_q8::gemm(gm, weights()?, ins[0], yq),
        Op::MaxPool(p) => ops::pool::reference_q8::pool(p, true, ins[0], yq),
        Op::AveragePool(p) => ops::pool::reference_q8::pool(p, false, ins[0], yq),
        Op::GlobalAveragePool => Ok(ops::pool::reference_q8::global_average(ins[0], yq)),
        Op::Add => ops::add::reference_q8::add(ins[0], ins[1], yq, 0, 255),
        Op::Concat { axis } => ops::concat::reference_q8::concat(*axis, ins, yq),
        Op::Activation(a) => {
            let (lo, hi) = activation_codes(*a, yq);
            mapped(
                ins[0],
                &requant_table(ins[0].qparams(), yq, lo, hi),
                &shape,
                yq,
            )
        }
        Op::Dropout | Op::Flatten { .. } | Op::Reshape { .. } => {
            mapped(ins[0], &requant_table_of(ins[0].qparams(), yq), &shape, yq)
        }
        Op::Pad(p) => {
            let t = requant_table_of(ins[0].qparams(), yq);
            let s = ins[0].shape();
            let (h, w) = (s[2], s[3]);
            let (oh, ow) = (shape[2], shape[3]);
            let mut y = QTensor::from_vec(
                &shape,
                vec![yq.quantize(p.value); shape.iter().product()],
                yq,
            )
            .expect("sized");
            let d = y.data_mut();
            for plane in 0..s[0] * s[1] {
                for r in 0..h {
                    for c in 0..w {
                        d[(plane * oh + r + p.pads[0]) * ow + c + p.pads[1]] =
                            t[ins[0].data()[(plane * h + r) * w + c] as usize];
                    }
                }
            }
            Ok(y)
        }
        _ => float_island(n, ins, &shape, yq),
    }
}

/// Dequantize, run the node's F32 CPU kernel (as a one-node graph), quantize.
fn float_island(n: &Node, ins: &[&QTensor], shape: &[usize], yq: QParams) -> Result<QTensor> {
    let inputs: Vec<ValueInfo> = ins
        .iter()
        .enumerate()
        .map(|(i, t)| ValueInfo {
            name: format!("x{i}"),
            shape: t.shape().to_vec(),
        })
        .collect();
    let g = Graph {
        name: n.name.clone(),
        inputs: inputs.clone(),
        nodes: vec![Node {
            name: n.name.clone(),
            op: n.op.clone(),
            inputs: inputs.iter().map(|v| v.name.clone()).collect(),
            output: "y".into(),
        }],
        outputs: vec!["y".into()],
        weights: WeightsOrigin::Seeded,
    };
    let xs: Vec<Tensor> = ins.iter().map(|t| t.dequantize()).collect();
    let mut exec = crate::exec::Executor::new(
        &g,
        crate::backend::cpu::CpuBackend::new(1)?,
        crate::backend::Precision::F32,
    )?;
    let (outs, _) = exec.run(&xs)?;
    let y = outs
        .into_iter()
        .next()
        .ok_or_else(|| Error::node(&n.name, "no output"))?;
    if y.shape() != shape {
        return Err(Error::node(
            &n.name,
            "float island: unexpected output shape",
        ));
    }
    Ok(QTensor::quantize(&y, yq))
}
