//! AlexNet as torchvision's `alexnet` (the "one weird trick" single-tower variant of
//! Krizhevsky 2014), the variant most frameworks and papers measure: on a 224×224 input,
//! conv1 11×11/4 (pad 2) → 64, max pool 3/2, conv2 5×5 → 192, max pool 3/2, conv3 3×3 → 384,
//! conv4 → 256, conv5 → 256, max pool 3/2 (6×6×256), dropout, fc6 9216 → 4096, dropout,
//! fc7 → 4096, fc8 → 1000, ReLU after every layer but the last. No LRN and no grouped
//! convolutions (the 2012 paper's two-GPU split); torchvision's adaptive average pool to 6×6
//! is the identity at 224×224 and is left out. 61,100,840 parameters, 714.2 M
//! multiply-accumulates. (The original 2012 network with LRN and two groups on 227×227 has
//! about 61.0 M parameters and 724 M multiply-accumulates.)
use super::builder::{Builder, ConvSpec, Gain};
use crate::{Graph, Result};

pub(crate) fn build(seed: u64) -> Result<Graph> {
    let mut b = Builder::new("alexnet", [1, 3, 224, 224], seed);
    let x = b.input();
    let x = b.conv_relu("conv1", &x, ConvSpec::new(64, 11).stride(4).pad(2))?;
    let x = b.max_pool("pool1", &x, 3, 2, 0, false)?;
    let x = b.conv_relu("conv2", &x, ConvSpec::new(192, 5))?;
    let x = b.max_pool("pool2", &x, 3, 2, 0, false)?;
    let x = b.conv_relu("conv3", &x, ConvSpec::new(384, 3))?;
    let x = b.conv_relu("conv4", &x, ConvSpec::new(256, 3))?;
    let x = b.conv_relu("conv5", &x, ConvSpec::new(256, 3))?;
    let mut x = b.max_pool("pool5", &x, 3, 2, 0, false)?;
    x = b.flatten("flatten", &x)?;
    for fc in ["fc6", "fc7"] {
        x = b.dropout(&format!("{fc}/dropout"), &x)?;
        x = b.fc(fc, &x, 4096, Gain::Relu)?;
        x = b.relu(&format!("{fc}/relu"), &x)?;
    }
    let logits = b.fc("fc8", &x, 1000, Gain::Linear)?;
    b.finish(&[&logits])
}
