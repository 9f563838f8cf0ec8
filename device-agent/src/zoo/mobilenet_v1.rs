//! MobileNet v1 1.0-224 (Howard et al. 2017, Table 1), as TensorFlow's released model: a
//! 3×3/2 convolution to 32 channels, then 13 depthwise-separable blocks (3×3 depthwise,
//! 1×1 pointwise), global average pooling and a 1024 → 1000 classifier.
//!
//! **With BatchNorm**, as the real architecture: every convolution has no bias and is
//! followed by BatchNorm (epsilon 1e-3) and ReLU6, so that loading the graph exercises
//! BatchNorm folding and Clip fusion. Counts: 4,231,976 parameters as built (convolution
//! and classifier weights plus BatchNorm scale and shift, the "4.2 M" of the paper and the
//! trainable count of Keras' `MobileNet`), 4,221,032 after folding (each BatchNorm becomes a
//! convolution bias: the 4.22 M of PEERS.md's network, built without BatchNorm but with
//! biases), and 568.7 M multiply-accumulates either way. Symmetric padding 1 (the output
//! sizes equal TensorFlow "SAME" ones). Layer names follow the common Caffe port
//! (`conv2_1/dw`, `conv2_1/sep`, ..., `conv6/sep`, `fc7`).
use super::builder::{Builder, ConvSpec, Gain};
use crate::{Graph, Result};

/// BatchNorm epsilon of the TensorFlow model.
const BN_EPSILON: f32 = 1e-3;

/// The 13 separable blocks: name, pointwise output channels, depthwise stride.
const BLOCKS: [(&str, usize, usize); 13] = [
    ("conv2_1", 64, 1),
    ("conv2_2", 128, 2),
    ("conv3_1", 128, 1),
    ("conv3_2", 256, 2),
    ("conv4_1", 256, 1),
    ("conv4_2", 512, 2),
    ("conv5_1", 512, 1),
    ("conv5_2", 512, 1),
    ("conv5_3", 512, 1),
    ("conv5_4", 512, 1),
    ("conv5_5", 512, 1),
    ("conv5_6", 1024, 2),
    ("conv6", 1024, 1),
];

/// Convolution without bias, BatchNorm `<name>/bn`, ReLU6 `<name>/relu6`.
fn conv_bn_relu6(b: &mut Builder, name: &str, x: &str, spec: ConvSpec) -> Result<String> {
    let x = b.conv(name, x, spec.no_bias(), Gain::Relu)?;
    let x = b.batchnorm(&format!("{name}/bn"), &x, BN_EPSILON)?;
    b.relu6(&format!("{name}/relu6"), &x)
}

pub(crate) fn build(seed: u64) -> Result<Graph> {
    let mut b = Builder::new("mobilenet-v1", [1, 3, 224, 224], seed);
    let x = b.input();
    let mut x = conv_bn_relu6(&mut b, "conv1", &x, ConvSpec::new(32, 3).stride(2))?;
    for (name, out, stride) in BLOCKS {
        let c = b.channels(&x)?;
        x = conv_bn_relu6(
            &mut b,
            &format!("{name}/dw"),
            &x,
            ConvSpec::new(c, 3).stride(stride).groups(c),
        )?;
        x = conv_bn_relu6(&mut b, &format!("{name}/sep"), &x, ConvSpec::new(out, 1))?;
    }
    let x = b.global_avg_pool("pool6", &x)?;
    let x = b.flatten("flatten", &x)?;
    let logits = b.fc("fc7", &x, 1000, Gain::Linear)?;
    b.finish(&[&logits])
}
