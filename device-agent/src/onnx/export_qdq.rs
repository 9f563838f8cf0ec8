//! Quantized model → ONNX QDQ (opset 13), carrying exactly our quantization: onnxruntime then
//! runs the same 8-bit network (it fuses the QDQ pattern into QLinearConv, QGemm,
//! QLinearAdd, ...), which is how our QUInt8 kernels are checked against it.
//!
//! Built from the F32 export ([`super::to_model`]) of the model's graph, names unchanged:
//! - every 8-bit weight becomes an INT8 initializer `<w>_quantized` with its per-channel
//!   scales and zero zero points, dequantized by a `DequantizeLinear` (axis 0, or 1 for a
//!   transposed MatMul weight) that writes the name the layer reads; every bias an INT32
//!   initializer in units of `s_x·s_w[c]`, dequantized the same way;
//! - every graph input `x` gets `QuantizeLinear → DequantizeLinear` (UINT8, our scale and
//!   zero point) and its readers read the dequantized value;
//! - every value a node of the graph writes (`v`, after its fused activation) is written by
//!   its ONNX producer as `v_float`, then `QuantizeLinear → DequantizeLinear` writes `v` — so
//!   readers and graph outputs keep their names, and a fused ReLU/ReLU6 sits between the layer
//!   and its `QuantizeLinear` (onnxruntime folds it into the quantized range).
use super::proto::tensor_proto::DataType;
use super::proto::{
    attribute_proto::AttributeType, AttributeProto, ModelProto, NodeProto, TensorProto,
};
use crate::ops::Op;
use crate::quant::{QParams, QuantizedModel};
use crate::{Error, Result};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Encodes the quantized model as an ONNX QDQ model.
pub fn export_qdq(model: &QuantizedModel) -> Result<Vec<u8>> {
    Ok(to_qdq_model(model)?.encode_to_vec())
}

/// Writes the quantized model as an ONNX QDQ model file.
pub fn export_qdq_file(model: &QuantizedModel, path: &Path) -> Result<()> {
    let bytes = export_qdq(model)?;
    std::fs::write(path, bytes).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })
}

fn raw(name: &str, dims: &[usize], ty: DataType, bytes: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(ty as i32),
        raw_data: Some(bytes),
        ..Default::default()
    }
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn node(op: &str, name: &str, inputs: Vec<String>, output: String, axis: Option<i64>) -> NodeProto {
    NodeProto {
        input: inputs,
        output: vec![output],
        name: Some(name.to_string()),
        op_type: Some(op.to_string()),
        domain: Some(String::new()),
        attribute: axis
            .map(|a| AttributeProto {
                name: Some("axis".into()),
                r#type: Some(AttributeType::Int as i32),
                i: Some(a),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// Fresh names.
struct Names(HashSet<String>);

impl Names {
    fn fresh(&mut self, base: &str) -> String {
        let name = if self.0.contains(base) {
            (1..)
                .map(|i| format!("{base}_{i}"))
                .find(|n| !self.0.contains(n))
                .unwrap_or_default()
        } else {
            base.to_string()
        };
        self.0.insert(name.clone());
        name
    }
}

/// `QuantizeLinear → DequantizeLinear` of `from` into `to` with `q`: the nodes and initializers.
fn qdq(
    names: &mut Names,
    from: &str,
    to: &str,
    q: QParams,
    inits: &mut Vec<TensorProto>,
) -> [NodeProto; 2] {
    let scale = names.fresh(&format!("{to}_scale"));
    let zp = names.fresh(&format!("{to}_zero_point"));
    let quantized = names.fresh(&format!("{to}_quantized"));
    inits.push(raw(&scale, &[], DataType::Float, f32s(&[q.scale])));
    inits.push(raw(&zp, &[], DataType::Uint8, vec![q.zero_point]));
    let qn = names.fresh(&format!("{to}_QuantizeLinear"));
    let dn = names.fresh(&format!("{to}_DequantizeLinear"));
    [
        node(
            "QuantizeLinear",
            &qn,
            vec![from.into(), scale.clone(), zp.clone()],
            quantized.clone(),
            None,
        ),
        node(
            "DequantizeLinear",
            &dn,
            vec![quantized, scale, zp],
            to.into(),
            None,
        ),
    ]
}

/// The quantized model as an ONNX QDQ `ModelProto` (see the module documentation).
pub fn to_qdq_model(model: &QuantizedModel) -> Result<ModelProto> {
    let graph = &model.graph;
    let mut m = super::to_model(graph)?;
    let g = m
        .graph
        .as_mut()
        .ok_or_else(|| Error::Other("export produced no graph".into()))?;
    let mut names = Names(
        g.node
            .iter()
            .flat_map(|n| n.input.iter().chain(&n.output).cloned())
            .chain(g.initializer.iter().filter_map(|t| t.name.clone()))
            .chain(g.input.iter().filter_map(|v| v.name.clone()))
            .chain(g.node.iter().filter_map(|n| n.name.clone()))
            .collect(),
    );
    let mut inits = std::mem::take(&mut g.initializer);
    let mut head: Vec<NodeProto> = Vec::new();

    // Weights and biases.
    for (i, n) in graph.nodes.iter().enumerate() {
        let Some(w) = &model.nodes[i].weights else {
            continue;
        };
        let Some(on) = g
            .node
            .iter()
            .find(|o| o.name.as_deref() == Some(n.name.as_str()))
        else {
            return Err(Error::node(&n.name, "not found in the F32 export"));
        };
        let transposed = on.op_type.as_deref() == Some("MatMul");
        let (w_name, b_name) = (on.input.get(1).cloned(), on.input.get(2).cloned());
        let b_name = match (&n.op, b_name) {
            (_, Some(b)) => Some(b),
            // A Gemm on rank > 2 is MatMul + Add: the bias is the Add's second input.
            (Op::Gemm(gm), None) if gm.bias.is_some() => g
                .node
                .iter()
                .find(|o| o.name.as_deref() == Some(&format!("{}_bias", n.name)))
                .and_then(|o| o.input.get(1).cloned()),
            _ => None,
        };
        let w_name = w_name.ok_or_else(|| Error::node(&n.name, "export has no weight input"))?;
        let m_out = w.out_channels();
        let sx = model.node(i).inputs[0].scale;
        // Weight codes in the exported layout.
        let (dims, codes): (Vec<usize>, Vec<i8>) = if transposed {
            let k = w.shape[1];
            (
                vec![k, m_out],
                (0..k)
                    .flat_map(|kk| (0..m_out).map(move |o| w.data[o * k + kk]))
                    .collect(),
            )
        } else {
            (w.shape.clone(), w.data.clone())
        };
        let axis = i64::from(transposed);
        inits.retain(|t| t.name.as_deref() != Some(w_name.as_str()));
        let (wq, ws, wz) = (
            names.fresh(&format!("{w_name}_quantized")),
            names.fresh(&format!("{w_name}_scale")),
            names.fresh(&format!("{w_name}_zero_point")),
        );
        inits.push(raw(
            &wq,
            &dims,
            DataType::Int8,
            codes.iter().map(|&c| c as u8).collect(),
        ));
        inits.push(raw(&ws, &[m_out], DataType::Float, f32s(&w.scales)));
        inits.push(raw(&wz, &[m_out], DataType::Int8, vec![0; m_out]));
        let dn = names.fresh(&format!("{w_name}_DequantizeLinear"));
        head.push(node(
            "DequantizeLinear",
            &dn,
            vec![wq, ws, wz],
            w_name,
            Some(axis),
        ));
        if let Some(b_name) = b_name {
            inits.retain(|t| t.name.as_deref() != Some(b_name.as_str()));
            let (bq, bs, bz) = (
                names.fresh(&format!("{b_name}_quantized")),
                names.fresh(&format!("{b_name}_scale")),
                names.fresh(&format!("{b_name}_zero_point")),
            );
            let scales: Vec<f32> = w.scales.iter().map(|&s| sx * s).collect();
            inits.push(raw(
                &bq,
                &[m_out],
                DataType::Int32,
                w.bias.iter().flat_map(|b| b.to_le_bytes()).collect(),
            ));
            inits.push(raw(&bs, &[m_out], DataType::Float, f32s(&scales)));
            inits.push(raw(&bz, &[m_out], DataType::Int32, vec![0; 4 * m_out]));
            let dn = names.fresh(&format!("{b_name}_DequantizeLinear"));
            head.push(node(
                "DequantizeLinear",
                &dn,
                vec![bq, bs, bz],
                b_name,
                Some(0),
            ));
        }
    }

    // Activations: graph inputs, then every value a node writes, in node order.
    let quantized: HashMap<&str, QParams> = graph
        .nodes
        .iter()
        .zip(&model.nodes)
        .map(|(n, q)| (n.output.as_str(), q.output))
        .collect();
    let mut nodes: Vec<NodeProto> = head;
    for (v, &q) in graph.inputs.iter().zip(&model.inputs) {
        let dq = names.fresh(&format!("{}_dequantized", v.name));
        for n in g.node.iter_mut() {
            for i in n.input.iter_mut() {
                if *i == v.name {
                    *i = dq.clone();
                }
            }
        }
        nodes.extend(qdq(&mut names, &v.name, &dq, q, &mut inits));
    }
    for mut n in std::mem::take(&mut g.node) {
        let out = n.output.first().cloned().unwrap_or_default();
        match quantized.get(out.as_str()) {
            Some(&q) => {
                let float = names.fresh(&format!("{out}_float"));
                n.output[0] = float.clone();
                nodes.push(n);
                nodes.extend(qdq(&mut names, &float, &out, q, &mut inits));
            }
            None => nodes.push(n),
        }
    }
    g.node = nodes;
    g.initializer = inits;
    g.name = Some(format!("{} (QDQ)", graph.name));
    Ok(m)
}
