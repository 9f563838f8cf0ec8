//! ONNX → graph IR: decoding, graph inputs, initializers, the per-node conversion (in
//! [`super::convert`]), then sorting, shape-dependent fix-ups (SAME padding, negative axes,
//! pre-13 Softmax) and validation.
use super::context::{Constant, Ctx, Fixup};
use super::convert;
use super::proto::{self, ModelProto, NodeProto};
use super::values::{self, elements};
use crate::graph::{self, ValueInfo};
use crate::ops::{Activation, Op};
use crate::{Error, Graph, Node, Result, WeightsOrigin};
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// The model metadata key under which [`super::export`] records the graph's weights origin.
pub(super) const WEIGHTS_KEY: &str = "ulayer.weights";

/// The ONNX op types the importer understands (default domain).
const SUPPORTED: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "Dropout",
    "Flatten",
    "Gemm",
    "GlobalAveragePool",
    "Identity",
    "LRN",
    "MatMul",
    "MaxPool",
    "Pad",
    "Relu",
    "Reshape",
    "Softmax",
];

/// Reads and imports an ONNX model file.
pub fn import_file(path: &Path) -> Result<Graph> {
    let bytes = std::fs::read(path).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let fallback = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    import_model(&bytes, path, &fallback)
}

/// Imports an ONNX model held in memory. `name` is used in decoding errors and as the graph's
/// name when the model does not name its graph.
pub fn import_bytes(bytes: &[u8], name: &str) -> Result<Graph> {
    import_model(bytes, Path::new(name), name)
}

fn import_model(bytes: &[u8], path: &Path, fallback_name: &str) -> Result<Graph> {
    let decode_err = |msg: String| Error::Decode {
        path: path.to_path_buf(),
        msg,
    };
    let model =
        ModelProto::decode(bytes).map_err(|e| decode_err(format!("not an ONNX model: {e}")))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map(|o| o.version())
        .ok_or_else(|| {
            decode_err("the model imports no ai.onnx opset (is this an ONNX model?)".into())
        })?;
    let weights = match model
        .metadata_props
        .iter()
        .find(|p| p.key() == WEIGHTS_KEY)
        .map(|p| p.value())
    {
        Some("seeded") => WeightsOrigin::Seeded,
        _ => WeightsOrigin::Real,
    };
    let g = model
        .graph
        .ok_or_else(|| decode_err("the model has no graph".into()))?;
    let name = if g.name().is_empty() {
        fallback_name.to_string()
    } else {
        g.name().to_string()
    };
    let gerr = |msg: String| Error::Graph {
        graph: name.clone(),
        msg,
    };

    check_supported(&g.node)?;

    // Initializers (and graph inputs that have one are constants, not model inputs).
    let mut consts = HashMap::new();
    for t in &g.initializer {
        let v = values::decode(t).map_err(|m| gerr(format!("initializer '{}': {m}", t.name())))?;
        consts.insert(
            t.name().to_string(),
            Constant {
                value: v,
                node: None,
            },
        );
    }
    if !g.sparse_initializer.is_empty() {
        return Err(gerr("sparse initializers are not supported".into()));
    }
    let mut inputs = Vec::new();
    for vi in g.input.iter().filter(|vi| !consts.contains_key(vi.name())) {
        inputs.push(ValueInfo {
            name: vi.name().to_string(),
            shape: input_shape(vi).map_err(|m| gerr(format!("input '{}': {m}", vi.name())))?,
        });
    }
    let outputs: Vec<String> = g.output.iter().map(|o| o.name().to_string()).collect();

    let mut nodes = g.node;
    let input_names: HashSet<String> = inputs.iter().map(|i| i.name.clone()).collect();
    remove_identities(&mut nodes, &outputs, &input_names);

    let mut ctx = Ctx::new(opset, consts);
    ctx.values.extend(input_names.iter().cloned());
    ctx.values
        .extend(nodes.iter().flat_map(|n| n.output.iter().cloned()));
    ctx.values
        .extend(ctx.consts.keys().cloned().collect::<Vec<_>>());
    ctx.read = nodes
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(outputs.iter().cloned())
        .collect();
    // Node names first, so that nodes made during conversion never take an ONNX node's name.
    let names: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| ctx.unique_node_name(&node_label(n, i)))
        .collect();
    for (i, (n, name)) in nodes.iter().zip(&names).enumerate() {
        ctx.position = i;
        convert::convert(&mut ctx, n, name)?;
    }
    ctx.position = nodes.len();
    for o in &outputs {
        if ctx.consts.contains_key(o) {
            ctx.runtime("graph outputs", o)?;
        }
    }
    // Constants read at run time go where their Constant node was, or before their first reader.
    let mut keyed = std::mem::take(&mut ctx.nodes);
    keyed.sort_by_key(|(k, _)| *k);
    let mut ir_nodes: Vec<Node> = keyed.into_iter().map(|(_, n)| n).collect();
    fuse_matmul_bias(&mut ir_nodes, &outputs);

    let sorted = graph::topological_sort(&name, &inputs, ir_nodes)?;
    let nodes = resolve(&mut ctx, &inputs, sorted)?;
    let graph = Graph {
        name,
        inputs,
        nodes,
        outputs,
        weights,
    };
    graph.infer_shapes()?;
    Ok(graph)
}

/// Lists every op the importer does not support, all at once.
fn check_supported(nodes: &[NodeProto]) -> Result<()> {
    let mut unsupported: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let op = match n.domain() {
            "" | "ai.onnx" if SUPPORTED.contains(&n.op_type()) => continue,
            "" | "ai.onnx" => n.op_type().to_string(),
            d => format!("{d}.{}", n.op_type()),
        };
        unsupported.entry(op).or_default().push(node_label(n, i));
    }
    if unsupported.is_empty() {
        return Ok(());
    }
    Err(Error::Unsupported(
        unsupported
            .into_iter()
            .map(|(op, nodes)| format!("{op} (nodes: {})", nodes.join(", ")))
            .collect(),
    ))
}

/// A node's name for errors and for the IR: its ONNX name, else its first output, else its
/// index.
fn node_label(n: &NodeProto, i: usize) -> String {
    match (n.name(), n.output.first()) {
        ("", Some(o)) if !o.is_empty() => o.clone(),
        ("", _) => format!("{}#{i}", n.op_type()),
        (name, _) => name.to_string(),
    }
}

/// The fixed shape of a graph input; symbolic or unknown dimensions (dynamic batch) become 1.
fn input_shape(vi: &proto::ValueInfoProto) -> Result<Vec<usize>, String> {
    use proto::tensor_shape_proto::dimension::Value as Dim;
    use proto::type_proto::Value as Ty;
    let Some(Ty::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err("not a tensor".into());
    };
    if t.elem_type() != proto::tensor_proto::DataType::Float as i32 {
        return Err(format!(
            "element type {} is not FLOAT (only f32 inputs are supported)",
            t.elem_type()
        ));
    }
    let Some(shape) = &t.shape else {
        return Err("has no shape".into());
    };
    let dims = shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Dim::DimValue(v)) if *v > 0 => {
                usize::try_from(*v).map_err(|_| format!("dimension {v} too large"))
            }
            Some(Dim::DimValue(v)) => Err(format!("dimension {v} must be positive")),
            Some(Dim::DimParam(_)) | None => Ok(1),
        })
        .collect::<Result<Vec<_>, _>>()?;
    elements(&dims).ok_or_else(|| format!("shape {dims:?} is too large"))?;
    Ok(dims)
}

/// Drops `Identity` nodes by renaming: readers of its output read its input; when its output
/// is a graph output, the producer of its input takes the output's name instead. An Identity
/// that can be neither (graph input straight to graph output) stays, as an identity
/// activation.
fn remove_identities(nodes: &mut Vec<NodeProto>, outputs: &[String], inputs: &HashSet<String>) {
    let mut i = 0;
    while i < nodes.len() {
        let n = &nodes[i];
        let is_identity = n.op_type() == "Identity"
            && matches!(n.domain(), "" | "ai.onnx")
            && n.input.len() == 1
            && n.output.len() == 1;
        if !is_identity || n.input[0].is_empty() || n.output[0].is_empty() {
            i += 1;
            continue;
        }
        let (x, y) = (n.input[0].clone(), n.output[0].clone());
        let x_produced = nodes
            .iter()
            .enumerate()
            .any(|(j, m)| j != i && m.output.contains(&x));
        if !outputs.contains(&y) {
            nodes.remove(i);
            for m in nodes.iter_mut() {
                m.input
                    .iter_mut()
                    .filter(|v| **v == y)
                    .for_each(|v| *v = x.clone());
            }
        } else if x_produced && !outputs.contains(&x) && !inputs.contains(&x) {
            nodes.remove(i);
            for m in nodes.iter_mut() {
                m.input
                    .iter_mut()
                    .chain(m.output.iter_mut())
                    .filter(|v| **v == x)
                    .for_each(|v| *v = y.clone());
            }
        } else {
            i += 1;
        }
    }
}

/// Folds `Add(Gemm(x), bias)` into the Gemm's bias when the bias is a constant of shape `[N]`
/// or `[1, N]` read only there and the Gemm has no bias yet: ONNX MatMul + Add (PyTorch's
/// Linear on inputs of rank > 2, and our exporter's form of such a Gemm) becomes one Gemm.
fn fuse_matmul_bias(nodes: &mut Vec<Node>, outputs: &[String]) {
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for v in nodes.iter().flat_map(|n| &n.inputs).chain(outputs) {
        *readers.entry(v.as_str()).or_default() += 1;
    }
    let producer: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.output.as_str(), i))
        .collect();
    let mut plan = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let [a, b] = &n.inputs[..] else { continue };
        let (Op::Add, Some(&gemm), Some(&konst)) =
            (&n.op, producer.get(a.as_str()), producer.get(b.as_str()))
        else {
            continue;
        };
        let (Op::Gemm(g), Op::Constant(t)) = (&nodes[gemm].op, &nodes[konst].op) else {
            continue;
        };
        let out_features = g.weight.shape().first().copied().unwrap_or(0);
        let bias_shape_ok = matches!(t.shape(), [m] | [1, m] if *m == out_features);
        if g.bias.is_none()
            && g.activation == Activation::None
            && bias_shape_ok
            && a != b
            && readers.get(a.as_str()) == Some(&1)
            && readers.get(b.as_str()) == Some(&1)
        {
            plan.push((i, gemm, konst));
        }
    }
    let mut drop = HashSet::new();
    for (add, gemm, konst) in plan {
        let bias = match &nodes[konst].op {
            Op::Constant(t) => t.clone().reshaped(&[t.len()]),
            _ => None,
        };
        let output = nodes[add].output.clone();
        if let Op::Gemm(g) = &mut nodes[gemm].op {
            g.bias = bias;
        }
        nodes[gemm].output = output;
        drop.extend([add, konst]);
    }
    let mut i = 0;
    nodes.retain(|_| {
        i += 1;
        !drop.contains(&(i - 1))
    });
}

/// Walks the sorted nodes with their input shapes, applying the fix-ups that need a shape
/// (SAME padding, negative axes, pre-13 Softmax) and checking every value's size.
fn resolve(ctx: &mut Ctx, inputs: &[ValueInfo], nodes: Vec<Node>) -> Result<Vec<Node>> {
    let mut shapes: HashMap<String, Vec<usize>> = inputs
        .iter()
        .map(|i| (i.name.clone(), i.shape.clone()))
        .collect();
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        let ins: Vec<Vec<usize>> = n
            .inputs
            .iter()
            .map(|v| {
                shapes.get(v).cloned().ok_or_else(|| {
                    Error::node(&n.name, format!("reads '{v}', which nothing produces"))
                })
            })
            .collect::<Result<_>>()?;
        let expanded = match ctx.fixups.remove(&n.name) {
            Some(f) => apply_fixup(ctx, n, f, &ins)?,
            None => vec![n],
        };
        for n in expanded {
            let ins: Vec<&[usize]> = n
                .inputs
                .iter()
                .filter_map(|v| shapes.get(v).map(Vec::as_slice))
                .collect();
            if let Op::Reshape { shape } = &n.op {
                check_reshape_size(&n.name, shape, ins.first().copied().unwrap_or(&[]))?;
            }
            let shape = n.op.output_shape(&n.name, &ins)?;
            if elements(&shape).is_none() {
                return Err(Error::node(
                    &n.name,
                    format!("output shape {shape:?} is too large"),
                ));
            }
            if shapes.insert(n.output.clone(), shape).is_some() {
                return Err(Error::node(
                    &n.name,
                    format!("output '{}' is produced twice", n.output),
                ));
            }
            out.push(n);
        }
    }
    Ok(out)
}

/// Rejects a Reshape whose target's known dimensions multiply past [`values::MAX_ELEMENTS`]
/// (before the IR's shape inference multiplies them).
fn check_reshape_size(node: &str, spec: &[i64], input: &[usize]) -> Result<()> {
    let mut known = 1usize;
    for (i, &d) in spec.iter().enumerate() {
        let d = match d {
            0 => input.get(i).copied().unwrap_or(1),
            d if d > 0 => usize::try_from(d).unwrap_or(usize::MAX),
            _ => 1,
        };
        known = known
            .checked_mul(d)
            .filter(|&k| k <= values::MAX_ELEMENTS)
            .ok_or_else(|| Error::node(node, format!("reshape target {spec:?} is too large")))?;
    }
    Ok(())
}

/// Applies one shape-dependent fix-up; a pre-13 Softmax over several trailing dimensions
/// becomes Flatten → Softmax → Reshape.
fn apply_fixup(ctx: &mut Ctx, mut n: Node, f: Fixup, ins: &[Vec<usize>]) -> Result<Vec<Node>> {
    let first = ins
        .first()
        .ok_or_else(|| Error::node(&n.name, "has no input"))?;
    let rank = first.len() as i64;
    let axis = |a: i64, allow_rank: bool| -> Result<usize> {
        let hi = if allow_rank { rank } else { rank - 1 };
        let v = if a < 0 { a + rank } else { a };
        if v < 0 || v > hi {
            return Err(Error::node(
                &n.name,
                format!("axis {a} out of range for rank {rank}"),
            ));
        }
        Ok(v as usize)
    };
    match f {
        Fixup::AutoPad {
            same_lower,
            kernel,
            stride,
        } => {
            let [_, _, h, w] = first[..] else {
                return Err(Error::node(
                    &n.name,
                    format!("input must be 4-D NCHW, got {first:?}"),
                ));
            };
            let (pt, pb) = same_pads(h, kernel[0], stride[0], same_lower);
            let (pl, pr) = same_pads(w, kernel[1], stride[1], same_lower);
            match &mut n.op {
                Op::Conv2d(c) => c.pads = [pt, pl, pb, pr],
                Op::MaxPool(p) | Op::AveragePool(p) => p.pads = [pt, pl, pb, pr],
                _ => {}
            }
            Ok(vec![n])
        }
        Fixup::Axis(a) => {
            match &mut n.op {
                Op::Concat { axis: x } | Op::Softmax { axis: x } => *x = axis(a, false)?,
                Op::Flatten { axis: x } => *x = axis(a, true)?,
                _ => {}
            }
            Ok(vec![n])
        }
        Fixup::LegacySoftmax(a) => {
            let ax = axis(a, false)?;
            if first[ax + 1..].iter().product::<usize>() == 1 {
                n.op = Op::Softmax { axis: ax };
                return Ok(vec![n]);
            }
            // Softmax-11/12 normalises over all dimensions from `axis` on, as one.
            let flat = ctx.unique_value(&format!("{}_2d", n.output));
            let soft = ctx.unique_value(&format!("{}_softmax", n.output));
            let target = first.iter().map(|&d| d as i64).collect();
            Ok(vec![
                Node {
                    name: ctx.unique_node_name(&format!("{}_flatten", n.name)),
                    op: Op::Flatten { axis: ax },
                    inputs: n.inputs.clone(),
                    output: flat.clone(),
                },
                Node {
                    name: n.name.clone(),
                    op: Op::Softmax { axis: 1 },
                    inputs: vec![flat],
                    output: soft.clone(),
                },
                Node {
                    name: ctx.unique_node_name(&format!("{}_reshape", n.name)),
                    op: Op::Reshape { shape: target },
                    inputs: vec![soft],
                    output: n.output,
                },
            ])
        }
    }
}

/// `(begin, end)` padding of ONNX `SAME_UPPER` (extra at the end) or `SAME_LOWER` (extra at
/// the beginning) for an input of `len`, an effective kernel `k` and a stride.
pub(super) fn same_pads(len: usize, k: usize, stride: usize, lower: bool) -> (usize, usize) {
    let out = len.div_ceil(stride.max(1));
    let total = ((out.saturating_sub(1)) * stride + k).saturating_sub(len);
    let small = total / 2;
    if lower {
        (total - small, small)
    } else {
        (small, total - small)
    }
}
