//! Resolving a model argument: a zoo name or an `.onnx` file.
use crate::graph::Graph;
use crate::protocol::ModelInfo;
use crate::zoo::{self, InputSpec};
use crate::{Error, Result};
use std::path::Path;

/// A model ready to prepare: its optimised graph and how to feed it images.
#[derive(Debug)]
pub struct LoadedModel {
    pub name: String,
    pub graph: Graph,
    pub input: InputSpec,
}

/// Loads a zoo model by name, or an ONNX file by path (anything ending in `.onnx` or naming
/// an existing file). ONNX files are fed with the torchvision ImageNet normalisation.
pub fn load_model(spec: &str, data_dir: &Path) -> Result<LoadedModel> {
    let path = Path::new(spec);
    let (graph, input) = if spec.ends_with(".onnx") || path.is_file() {
        let g = crate::onnx::import_file(path)?;
        let shape = g
            .inputs
            .first()
            .map(|i| i.shape.clone())
            .ok_or_else(|| Error::Graph {
                graph: g.name.clone(),
                msg: "model has no inputs".into(),
            })?;
        let shape: [usize; 4] = shape.as_slice().try_into().map_err(|_| Error::Graph {
            graph: g.name.clone(),
            msg: format!("input must be NCHW, got {shape:?}"),
        })?;
        (
            g,
            InputSpec {
                shape,
                resize_shorter: 256,
                mean: [123.675, 116.28, 103.53],
                std: [58.395, 57.12, 57.375],
            },
        )
    } else {
        let e = zoo::entry(spec)?;
        (zoo::build(spec, data_dir)?, e.input)
    };
    Ok(LoadedModel {
        name: spec.to_string(),
        graph: graph.optimized()?,
        input,
    })
}

/// Describes every zoo model (builds each to count parameters and MACs).
pub fn model_infos(data_dir: &Path) -> Result<Vec<ModelInfo>> {
    zoo::list()
        .into_iter()
        .map(|e| {
            let g = zoo::build(e.name, data_dir)?;
            let s = g.stats()?;
            Ok(ModelInfo {
                name: e.name.to_string(),
                description: e.description.to_string(),
                parameters: s.parameters,
                macs: s.macs,
                weights: e.weights,
                input_shape: e.input.shape.to_vec(),
            })
        })
        .collect()
}
