//! VGG-16 (Simonyan and Zisserman, ICLR 2015, configuration "D"), as torchvision's `vgg16`:
//! thirteen 3×3 convolutions with ReLU in five stages separated by 2×2 max pooling, then
//! three fully connected layers (25088 → 4096 → 4096 → 1000) with ReLU and dropout.
//! No BatchNorm. torchvision's adaptive average pool to 7×7 is the identity at 224×224 and
//! is left out. 138,357,544 parameters, 15.47 G multiply-accumulates.
use super::builder::{Builder, ConvSpec, Gain};
use crate::{Graph, Result};

/// Output channels of the convolutions of each stage.
const STAGES: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512, 512, 512],
    &[512, 512, 512],
];

pub(crate) fn build(seed: u64) -> Result<Graph> {
    let mut b = Builder::new("vgg16", [1, 3, 224, 224], seed);
    let mut x = b.input();
    for (s, convs) in STAGES.iter().enumerate() {
        for (i, &out) in convs.iter().enumerate() {
            x = b.conv_relu(
                &format!("conv{}_{}", s + 1, i + 1),
                &x,
                ConvSpec::new(out, 3),
            )?;
        }
        x = b.max_pool(&format!("pool{}", s + 1), &x, 2, 2, 0, false)?;
    }
    x = b.flatten("flatten", &x)?;
    for fc in ["fc6", "fc7"] {
        x = b.fc(fc, &x, 4096, Gain::Relu)?;
        x = b.relu(&format!("{fc}/relu"), &x)?;
        x = b.dropout(&format!("{fc}/dropout"), &x)?;
    }
    let logits = b.fc("fc8", &x, 1000, Gain::Linear)?;
    b.finish(&[&logits])
}
