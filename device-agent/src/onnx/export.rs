//! Graph IR → ONNX (opset 13), so that onnxruntime and other peers run exactly our network.
//!
//! Weights are FLOAT initializers with `raw_data`. A fused activation becomes its own
//! Relu/Clip node after the convolution or fully connected layer (the layer writes a fresh
//! `<value>_preact` value; the activation keeps the IR value's name, so `Graph::optimized()`
//! fuses it back under the same names). A Gemm on an input of rank > 2 becomes MatMul (+ Add
//! for the bias), which the importer folds back into one Gemm. `Op::Constant` becomes an
//! initializer when its node is named after its value and sits right before its first reader
//! (where the importer puts it); otherwise a `Constant` node, which keeps its name and place.
use super::import::WEIGHTS_KEY;
use super::proto::attribute_proto::AttributeType;
use super::proto::tensor_shape_proto::{dimension, Dimension};
use super::proto::{
    self, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TypeProto, ValueInfoProto,
};
use super::values::{float_tensor, int_tensor};
use crate::ops::{Activation, Op};
use crate::{Error, Graph, Result, WeightsOrigin};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The ai.onnx opset the exporter writes.
pub const EXPORT_OPSET: i64 = 13;

/// The ONNX IR version the exporter writes (ONNX 1.10; any onnxruntime of the last years
/// reads it).
const IR_VERSION: i64 = 8;

/// Encodes the graph as an ONNX model (opset 13).
pub fn export(graph: &Graph) -> Result<Vec<u8>> {
    Ok(to_model(graph)?.encode_to_vec())
}

/// Writes the graph as an ONNX model file.
pub fn export_file(graph: &Graph, path: &Path) -> Result<()> {
    let bytes = export(graph)?;
    std::fs::write(path, bytes).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// The graph as an ONNX `ModelProto` (validated with `infer_shapes` first).
pub fn to_model(graph: &Graph) -> Result<ModelProto> {
    let shapes = graph.infer_shapes()?;
    let mut x = Exporter {
        values: graph
            .inputs
            .iter()
            .map(|i| i.name.clone())
            .chain(
                graph
                    .nodes
                    .iter()
                    .flat_map(|n| n.inputs.iter().chain([&n.output]).cloned()),
            )
            .collect(),
        node_names: graph.nodes.iter().map(|n| n.name.clone()).collect(),
        nodes: Vec::new(),
        inits: Vec::new(),
    };
    let mut first_reader: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        for v in &n.inputs {
            first_reader.entry(v.as_str()).or_insert(i);
        }
    }
    for (i, n) in graph.nodes.iter().enumerate() {
        let rank = n
            .inputs
            .first()
            .and_then(|v| shapes.get(v))
            .map_or(0, Vec::len);
        let as_initializer =
            n.name == n.output && first_reader.get(n.output.as_str()) == Some(&(i + 1));
        x.node(n, rank, as_initializer);
    }
    let value_info = |name: &str, shape: &[usize]| ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(tensor_type(shape)),
        ..Default::default()
    };
    let outputs = graph
        .outputs
        .iter()
        .map(|o| {
            shapes
                .get(o)
                .map(|s| value_info(o, s))
                .ok_or_else(|| Error::Graph {
                    graph: graph.name.clone(),
                    msg: format!("output '{o}' has no shape"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let g = GraphProto {
        name: Some(graph.name.clone()),
        node: x.nodes,
        initializer: x.inits,
        input: graph
            .inputs
            .iter()
            .map(|i| value_info(&i.name, &i.shape))
            .collect(),
        output: outputs,
        ..Default::default()
    };
    let origin = match graph.weights {
        WeightsOrigin::Real => "real",
        WeightsOrigin::Seeded => "seeded",
    };
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(EXPORT_OPSET),
        }],
        producer_name: Some("ulayer".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(g),
        metadata_props: vec![StringStringEntryProto {
            key: Some(WEIGHTS_KEY.into()),
            value: Some(origin.into()),
        }],
        ..Default::default()
    })
}

/// A FLOAT tensor type of a fixed shape.
fn tensor_type(shape: &[usize]) -> TypeProto {
    let dim = shape
        .iter()
        .map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d as i64)),
            ..Default::default()
        })
        .collect();
    TypeProto {
        value: Some(proto::type_proto::Value::TensorType(
            proto::type_proto::Tensor {
                elem_type: Some(proto::tensor_proto::DataType::Float as i32),
                shape: Some(proto::TensorShapeProto { dim }),
            },
        )),
        ..Default::default()
    }
}

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: Some(v),
        ..attr(name, AttributeType::Int)
    }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        ints: v.iter().map(|&x| x as i64).collect(),
        ..attr(name, AttributeType::Ints)
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        f: Some(v),
        ..attr(name, AttributeType::Float)
    }
}

fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        s: Some(v.as_bytes().to_vec()),
        ..attr(name, AttributeType::String)
    }
}

fn tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        t: Some(t),
        ..attr(name, AttributeType::Tensor)
    }
}

struct Exporter {
    /// Value names taken (graph values and initializers).
    values: HashSet<String>,
    /// Node names taken.
    node_names: HashSet<String>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Exporter {
    fn fresh(taken: &mut HashSet<String>, base: &str) -> String {
        let name = if taken.contains(base) {
            (1..)
                .map(|i| format!("{base}_{i}"))
                .find(|n| !taken.contains(n))
                .unwrap_or_default()
        } else {
            base.to_string()
        };
        taken.insert(name.clone());
        name
    }

    fn value(&mut self, base: &str) -> String {
        Self::fresh(&mut self.values, base)
    }

    fn node_name(&mut self, base: &str) -> String {
        Self::fresh(&mut self.node_names, base)
    }

    fn init_f32(&mut self, base: &str, shape: &[usize], data: &[f32]) -> String {
        let name = self.value(base);
        self.inits.push(float_tensor(&name, shape, data));
        name
    }

    fn init_i64(&mut self, base: &str, data: &[i64]) -> String {
        let name = self.value(base);
        self.inits.push(int_tensor(&name, &[data.len()], data));
        name
    }

    fn emit(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![output.to_string()],
            name: Some(name.to_string()),
            op_type: Some(op.to_string()),
            domain: Some(String::new()),
            attribute,
            ..Default::default()
        });
    }

    /// The value a layer with a fused activation writes: its own output, or a fresh
    /// pre-activation value that the activation node then maps to the output.
    fn pre_activation(&mut self, n: &crate::Node, act: Activation) -> String {
        if act == Activation::None {
            n.output.clone()
        } else {
            self.value(&format!("{}_preact", n.output))
        }
    }

    /// An activation node `input → output`.
    fn activation(&mut self, name: &str, act: Activation, input: String, output: &str) {
        match act {
            Activation::None => self.emit("Identity", name, vec![input], output, vec![]),
            Activation::Relu => self.emit("Relu", name, vec![input], output, vec![]),
            Activation::Clip { min, max } => {
                let mut inputs = vec![input];
                inputs.push(if min == f32::NEG_INFINITY {
                    String::new()
                } else {
                    self.init_f32(&format!("{name}.min"), &[], &[min])
                });
                if max != f32::INFINITY {
                    inputs.push(self.init_f32(&format!("{name}.max"), &[], &[max]));
                }
                while inputs.last().is_some_and(String::is_empty) {
                    inputs.pop();
                }
                self.emit("Clip", name, inputs, output, vec![]);
            }
        }
    }

    /// The fused activation of a layer that wrote `pre`.
    fn fused(&mut self, n: &crate::Node, act: Activation, pre: String) {
        if act != Activation::None {
            let name = self.node_name(&format!("{}_act", n.name));
            self.activation(&name, act, pre, &n.output);
        }
    }

    fn node(&mut self, n: &crate::Node, rank: usize, constant_as_initializer: bool) {
        let name = n.name.as_str();
        let ins = n.inputs.clone();
        match &n.op {
            Op::Conv2d(c) => {
                let mut inputs = ins;
                inputs.push(self.init_f32(
                    &format!("{name}.weight"),
                    c.weight.shape(),
                    c.weight.data(),
                ));
                if let Some(b) = &c.bias {
                    inputs.push(self.init_f32(&format!("{name}.bias"), b.shape(), b.data()));
                }
                let pre = self.pre_activation(n, c.activation);
                let attrs = vec![
                    ints("kernel_shape", &c.kernel()),
                    ints("strides", &c.stride),
                    ints("pads", &c.pads),
                    ints("dilations", &c.dilation),
                    int("group", c.groups as i64),
                ];
                self.emit("Conv", name, inputs, &pre, attrs);
                self.fused(n, c.activation, pre);
            }
            Op::Gemm(g) => {
                let pre = self.pre_activation(n, g.activation);
                if rank == 2 {
                    let mut inputs = ins;
                    inputs.push(self.init_f32(
                        &format!("{name}.weight"),
                        g.weight.shape(),
                        g.weight.data(),
                    ));
                    if let Some(b) = &g.bias {
                        inputs.push(self.init_f32(&format!("{name}.bias"), b.shape(), b.data()));
                    }
                    self.emit("Gemm", name, inputs, &pre, vec![int("transB", 1)]);
                } else {
                    // ONNX Gemm is 2-D only: x · Wᵀ as MatMul with the transposed weight.
                    let ws = g.weight.shape();
                    let (out_f, in_f) = (ws[0], ws[1]);
                    let w = g.weight.data();
                    let wt: Vec<f32> = (0..in_f)
                        .flat_map(|k| (0..out_f).map(move |o| w[o * in_f + k]))
                        .collect();
                    let mut inputs = ins;
                    inputs.push(self.init_f32(&format!("{name}.weight_t"), &[in_f, out_f], &wt));
                    match &g.bias {
                        None => self.emit("MatMul", name, inputs, &pre, vec![]),
                        Some(b) => {
                            let mm = self.value(&format!("{}_matmul", n.output));
                            self.emit("MatMul", name, inputs, &mm, vec![]);
                            let bias = self.init_f32(&format!("{name}.bias"), b.shape(), b.data());
                            let add = self.node_name(&format!("{name}_bias"));
                            self.emit("Add", &add, vec![mm, bias], &pre, vec![]);
                        }
                    }
                }
                self.fused(n, g.activation, pre);
            }
            Op::BatchNorm(b) => {
                let mut inputs = ins;
                for (what, v) in [
                    ("scale", &b.scale),
                    ("bias", &b.bias),
                    ("mean", &b.mean),
                    ("var", &b.var),
                ] {
                    inputs.push(self.init_f32(&format!("{name}.{what}"), &[v.len()], v));
                }
                self.emit(
                    "BatchNormalization",
                    name,
                    inputs,
                    &n.output,
                    vec![float("epsilon", b.epsilon)],
                );
            }
            Op::Activation(a) => {
                let input = ins.into_iter().next().unwrap_or_default();
                self.activation(name, *a, input, &n.output);
            }
            Op::MaxPool(p) | Op::AveragePool(p) => {
                let mut attrs = vec![
                    ints("kernel_shape", &p.kernel),
                    ints("strides", &p.stride),
                    ints("pads", &p.pads),
                    int("ceil_mode", i64::from(p.ceil_mode)),
                ];
                let op = if matches!(n.op, Op::MaxPool(_)) {
                    "MaxPool"
                } else {
                    attrs.push(int("count_include_pad", i64::from(p.count_include_pad)));
                    "AveragePool"
                };
                self.emit(op, name, ins, &n.output, attrs);
            }
            Op::GlobalAveragePool => self.emit("GlobalAveragePool", name, ins, &n.output, vec![]),
            Op::Lrn(l) => {
                let attrs = vec![
                    int("size", l.size as i64),
                    float("alpha", l.alpha),
                    float("beta", l.beta),
                    float("bias", l.bias),
                ];
                self.emit("LRN", name, ins, &n.output, attrs);
            }
            Op::MatMul => self.emit("MatMul", name, ins, &n.output, vec![]),
            Op::Add => self.emit("Add", name, ins, &n.output, vec![]),
            Op::Concat { axis } => self.emit(
                "Concat",
                name,
                ins,
                &n.output,
                vec![int("axis", *axis as i64)],
            ),
            Op::Flatten { axis } => self.emit(
                "Flatten",
                name,
                ins,
                &n.output,
                vec![int("axis", *axis as i64)],
            ),
            Op::Softmax { axis } => self.emit(
                "Softmax",
                name,
                ins,
                &n.output,
                vec![int("axis", *axis as i64)],
            ),
            Op::Dropout => self.emit("Dropout", name, ins, &n.output, vec![]),
            Op::Reshape { shape } => {
                let mut inputs = ins;
                inputs.push(self.init_i64(&format!("{name}.shape"), shape));
                self.emit("Reshape", name, inputs, &n.output, vec![]);
            }
            Op::Pad(p) => {
                let [t, l, b, r] = p.pads.map(|v| v as i64);
                let mut inputs = ins;
                inputs.push(self.init_i64(&format!("{name}.pads"), &[0, 0, t, l, 0, 0, b, r]));
                inputs.push(self.init_f32(&format!("{name}.value"), &[], &[p.value]));
                self.emit(
                    "Pad",
                    name,
                    inputs,
                    &n.output,
                    vec![string("mode", "constant")],
                );
            }
            Op::Constant(t) => {
                let value = float_tensor(&n.output, t.shape(), t.data());
                if constant_as_initializer {
                    self.inits.push(value);
                } else {
                    let mut value = value;
                    value.name = None;
                    self.emit(
                        "Constant",
                        name,
                        vec![],
                        &n.output,
                        vec![tensor("value", value)],
                    );
                }
            }
        }
    }
}
