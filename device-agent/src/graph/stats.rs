//! Parameter and multiply-accumulate counts per layer and per network.
use super::Graph;
use crate::Result;

/// Counts for one node.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LayerStats {
    pub name: String,
    pub kind: String,
    pub output_shape: Vec<usize>,
    pub parameters: usize,
    pub macs: u64,
}

/// Counts for a whole network.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GraphStats {
    pub parameters: usize,
    pub macs: u64,
    pub layers: Vec<LayerStats>,
}

impl Graph {
    /// Parameters and multiply-accumulates, per layer and in total.
    pub fn stats(&self) -> Result<GraphStats> {
        let shapes = self.infer_shapes()?;
        let layers: Vec<LayerStats> = self
            .nodes
            .iter()
            .map(|n| {
                let ins: Vec<&[usize]> = n.inputs.iter().map(|i| shapes[i].as_slice()).collect();
                let out = &shapes[&n.output];
                LayerStats {
                    name: n.name.clone(),
                    kind: n.op.kind().into(),
                    output_shape: out.clone(),
                    parameters: n.op.parameters(),
                    macs: n.op.macs(&ins, out),
                }
            })
            .collect();
        Ok(GraphStats {
            parameters: layers.iter().map(|l| l.parameters).sum(),
            macs: layers.iter().map(|l| l.macs).sum(),
            layers,
        })
    }
}
