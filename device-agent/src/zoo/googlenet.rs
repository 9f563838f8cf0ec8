//! GoogLeNet (Szegedy et al., CVPR 2015, "Going deeper with convolutions"; Inception v1) as
//! the BVLC Caffe model `bvlc_googlenet`: 7×7/2 stem, max pool, LRN, 1×1 and 3×3
//! convolutions, LRN, max pool, nine Inception modules (1×1; 1×1 → 3×3; 1×1 → 5×5; 3×3 max
//! pool → 1×1 projection, concatenated) with max pools after 3b and 4e, 7×7 average pool,
//! dropout and a 1024 → 1000 classifier. Pooling rounds up (Caffe `ceil_mode`) as in the
//! original. The two auxiliary classifiers exist only for training and are left out.
//! LRN: size 5, alpha 1e-4, beta 0.75, k 1. No BatchNorm. 6,998,552 parameters,
//! 1,582.7 M multiply-accumulates.
use super::builder::{Builder, ConvSpec, Gain};
use crate::{Graph, Result};

/// One Inception module: output channels of the 1×1 branch, the 3×3 branch's reduction and
/// 3×3, the 5×5 branch's reduction and 5×5, and the pool branch's projection.
struct Inception {
    name: &'static str,
    b1x1: usize,
    b3x3_reduce: usize,
    b3x3: usize,
    b5x5_reduce: usize,
    b5x5: usize,
    pool_proj: usize,
}

const fn inc(
    name: &'static str,
    b1x1: usize,
    b3x3_reduce: usize,
    b3x3: usize,
    b5x5_reduce: usize,
    b5x5: usize,
    pool_proj: usize,
) -> Inception {
    Inception {
        name,
        b1x1,
        b3x3_reduce,
        b3x3,
        b5x5_reduce,
        b5x5,
        pool_proj,
    }
}

/// A layer of the body: an Inception module or a 3×3/2 max pool between groups.
enum Layer {
    Module(Inception),
    Pool(&'static str),
}

/// Table 1 of the paper.
const BODY: [Layer; 11] = [
    Layer::Module(inc("inception_3a", 64, 96, 128, 16, 32, 32)),
    Layer::Module(inc("inception_3b", 128, 128, 192, 32, 96, 64)),
    Layer::Pool("pool3/3x3_s2"),
    Layer::Module(inc("inception_4a", 192, 96, 208, 16, 48, 64)),
    Layer::Module(inc("inception_4b", 160, 112, 224, 24, 64, 64)),
    Layer::Module(inc("inception_4c", 128, 128, 256, 24, 64, 64)),
    Layer::Module(inc("inception_4d", 112, 144, 288, 32, 64, 64)),
    Layer::Module(inc("inception_4e", 256, 160, 320, 32, 128, 128)),
    Layer::Pool("pool4/3x3_s2"),
    Layer::Module(inc("inception_5a", 256, 160, 320, 32, 128, 128)),
    Layer::Module(inc("inception_5b", 384, 192, 384, 48, 128, 128)),
];

fn inception(b: &mut Builder, x: &str, m: &Inception) -> Result<String> {
    let n = m.name;
    let one = b.conv_relu(&format!("{n}/1x1"), x, ConvSpec::new(m.b1x1, 1))?;
    let r3 = b.conv_relu(
        &format!("{n}/3x3_reduce"),
        x,
        ConvSpec::new(m.b3x3_reduce, 1),
    )?;
    let three = b.conv_relu(&format!("{n}/3x3"), &r3, ConvSpec::new(m.b3x3, 3))?;
    let r5 = b.conv_relu(
        &format!("{n}/5x5_reduce"),
        x,
        ConvSpec::new(m.b5x5_reduce, 1),
    )?;
    let five = b.conv_relu(&format!("{n}/5x5"), &r5, ConvSpec::new(m.b5x5, 5))?;
    let pool = b.max_pool(&format!("{n}/pool"), x, 3, 1, 1, true)?;
    let proj = b.conv_relu(
        &format!("{n}/pool_proj"),
        &pool,
        ConvSpec::new(m.pool_proj, 1),
    )?;
    b.concat(&format!("{n}/output"), &[&one, &three, &five, &proj])
}

pub(crate) fn build(seed: u64) -> Result<Graph> {
    let mut b = Builder::new("googlenet", [1, 3, 224, 224], seed);
    let x = b.input();
    let x = b.conv_relu("conv1/7x7_s2", &x, ConvSpec::new(64, 7).stride(2))?;
    let x = b.max_pool("pool1/3x3_s2", &x, 3, 2, 0, true)?;
    let x = b.lrn("pool1/norm1", &x, 5, 1e-4, 0.75, 1.0)?;
    let x = b.conv_relu("conv2/3x3_reduce", &x, ConvSpec::new(64, 1))?;
    let x = b.conv_relu("conv2/3x3", &x, ConvSpec::new(192, 3))?;
    let x = b.lrn("conv2/norm2", &x, 5, 1e-4, 0.75, 1.0)?;
    let mut x = b.max_pool("pool2/3x3_s2", &x, 3, 2, 0, true)?;
    for layer in &BODY {
        x = match layer {
            Layer::Module(m) => inception(&mut b, &x, m)?,
            Layer::Pool(name) => b.max_pool(name, &x, 3, 2, 0, true)?,
        };
    }
    let x = b.avg_pool("pool5/7x7_s1", &x, 7, 1)?;
    let x = b.dropout("pool5/drop_7x7_s1", &x)?;
    let x = b.flatten("flatten", &x)?;
    let logits = b.fc("loss3/classifier", &x, 1000, Gain::Linear)?;
    b.finish(&[&logits])
}
