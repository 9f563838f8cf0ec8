//! The conversion state shared by the importer and the per-node converter: constants, the IR
//! nodes made so far, shape-dependent fix-ups and unique names.
use super::proto::NodeProto;
use super::values::Value;
use crate::ops::Op;
use crate::tensor::Tensor;
use crate::{Error, Node, Result};
use std::collections::{HashMap, HashSet};

/// A constant value and, for one made by a `Constant` node, that node's name and place.
#[derive(Debug)]
pub(super) struct Constant {
    pub value: Value,
    /// For a `Constant` node: its IR name and its index among the ONNX nodes.
    pub node: Option<(String, usize)>,
}

/// A change that needs the node's input shape, applied once the graph is sorted.
#[derive(Debug)]
pub(super) enum Fixup {
    /// `auto_pad` SAME_UPPER / SAME_LOWER with this effective kernel and stride.
    AutoPad {
        same_lower: bool,
        kernel: [usize; 2],
        stride: [usize; 2],
    },
    /// A negative (or any) axis of Concat, Flatten or Softmax, normalised against the rank.
    Axis(i64),
    /// Softmax before opset 13: over all dimensions from the axis on, as one.
    LegacySoftmax(i64),
}

/// The conversion state.
#[derive(Debug)]
pub(super) struct Ctx {
    /// The model's ai.onnx opset version.
    pub opset: i64,
    /// Constants by value name.
    pub consts: HashMap<String, Constant>,
    /// Constants already turned into `Op::Constant` nodes.
    materialized: HashSet<String>,
    /// The IR nodes made so far, each with the index of the ONNX node it comes from (a
    /// constant read at run time: its `Constant` node, or else its first reader).
    pub nodes: Vec<(usize, Node)>,
    /// Index of the ONNX node being converted.
    pub position: usize,
    /// Fix-ups by node name.
    pub fixups: HashMap<String, Fixup>,
    /// Node names taken.
    node_names: HashSet<String>,
    /// Value names taken.
    pub values: HashSet<String>,
    /// Values that some node or the graph's outputs read.
    pub read: HashSet<String>,
}

impl Ctx {
    pub fn new(opset: i64, consts: HashMap<String, Constant>) -> Self {
        Ctx {
            opset,
            consts,
            materialized: HashSet::new(),
            nodes: Vec::new(),
            position: 0,
            fixups: HashMap::new(),
            node_names: HashSet::new(),
            values: HashSet::new(),
            read: HashSet::new(),
        }
    }

    /// `base`, or `base_1`, `base_2`... whichever no node has yet; reserves it.
    pub fn unique_node_name(&mut self, base: &str) -> String {
        let name = unique(&self.node_names, base);
        self.node_names.insert(name.clone());
        name
    }

    /// A fresh value name; reserves it.
    pub fn unique_value(&mut self, base: &str) -> String {
        let name = unique(&self.values, base);
        self.values.insert(name.clone());
        name
    }

    /// The name of a value read at run time; a constant gets its `Op::Constant` node here.
    pub fn runtime(&mut self, node: &str, value: &str) -> Result<String> {
        if value.is_empty() {
            return Err(Error::node(node, "a required input is missing"));
        }
        if let Some(c) = self.consts.get(value) {
            if !self.materialized.contains(value) {
                let t = c.value.to_tensor().ok_or_else(|| {
                    Error::node(node, format!("reads the integer constant '{value}' at run time; only float tensors flow between nodes"))
                })?;
                // A Constant node's name was reserved with the other ONNX node names.
                let (name, position) = match &c.node {
                    Some((n, i)) => (n.clone(), *i),
                    None => (self.unique_node_name(value), self.position),
                };
                self.materialized.insert(value.to_string());
                self.nodes.push((
                    position,
                    Node {
                        name,
                        op: Op::Constant(t),
                        inputs: vec![],
                        output: value.to_string(),
                    },
                ));
            }
        }
        Ok(value.to_string())
    }

    /// A constant value, or an error saying that `what` must be one.
    pub fn constant(&self, node: &str, value: &str, what: &str) -> Result<&Value> {
        if value.is_empty() {
            return Err(Error::node(node, format!("the {what} input is missing")));
        }
        self.consts
            .get(value)
            .map(|c| &c.value)
            .ok_or_else(|| Error::node(node, format!("{what} '{value}' must be a constant (initializer or Constant node); it is missing or computed at run time")))
    }

    /// A constant float tensor.
    pub fn float_const(&self, node: &str, value: &str, what: &str) -> Result<Tensor> {
        self.constant(node, value, what)?
            .to_tensor()
            .ok_or_else(|| Error::node(node, format!("{what} '{value}' must be a float tensor")))
    }

    /// A constant integer tensor's elements.
    pub fn int_const(&self, node: &str, value: &str, what: &str) -> Result<Vec<i64>> {
        let v = self.constant(node, value, what)?;
        v.ints()
            .map(<[i64]>::to_vec)
            .ok_or_else(|| Error::node(node, format!("{what} '{value}' must be an integer tensor")))
    }

    /// A constant float scalar (one element).
    pub fn float_scalar(&self, node: &str, value: &str, what: &str) -> Result<f32> {
        self.constant(node, value, what)?
            .float_scalar()
            .ok_or_else(|| Error::node(node, format!("{what} '{value}' must be a float scalar")))
    }

    pub fn push(&mut self, name: &str, op: Op, inputs: Vec<String>, output: &str) {
        self.nodes.push((
            self.position,
            Node {
                name: name.to_string(),
                op,
                inputs,
                output: output.to_string(),
            },
        ));
    }
}

/// `base` or `base_N`, not in `taken`.
fn unique(taken: &HashSet<String>, base: &str) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}_{i}"))
        .find(|n| !taken.contains(n))
        .unwrap_or_else(|| base.to_string())
}

/// Input `k` when present (absent optional inputs are missing or "").
pub(super) fn opt(n: &NodeProto, k: usize) -> Option<&str> {
    n.input.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

/// Input `k`, required.
pub(super) fn req<'a>(n: &'a NodeProto, k: usize, name: &str) -> Result<&'a str> {
    opt(n, k).ok_or_else(|| Error::node(name, format!("{} needs input #{k}", n.op_type())))
}
