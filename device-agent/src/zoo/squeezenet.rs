//! SqueezeNet 1.1 (Iandola et al. 2016; the 1.1 revision from the authors' repository), as
//! torchvision's `squeezenet1_1`: conv1 3×3/2 → 64 (no padding), then Fire modules
//! (1×1 squeeze, then 1×1 and 3×3 expands concatenated) with 3×3/2 max pools (rounding up)
//! after conv1, fire3 and fire5; dropout, conv10 1×1 → 1000 with ReLU and global average
//! pooling. No BatchNorm, no fully connected layer. 1,235,496 parameters, 349.2 M
//! multiply-accumulates.
use super::builder::{Builder, ConvSpec};
use crate::{Graph, Result};

/// A Fire module named `name`: squeeze to `s` channels, expand to `e` + `e`.
fn fire(b: &mut Builder, name: &str, x: &str, s: usize, e: usize) -> Result<String> {
    let sq = b.conv_relu(&format!("{name}/squeeze"), x, ConvSpec::new(s, 1))?;
    let e1 = b.conv_relu(&format!("{name}/expand1x1"), &sq, ConvSpec::new(e, 1))?;
    let e3 = b.conv_relu(&format!("{name}/expand3x3"), &sq, ConvSpec::new(e, 3))?;
    b.concat(&format!("{name}/concat"), &[&e1, &e3])
}

pub(crate) fn build(seed: u64) -> Result<Graph> {
    let mut b = Builder::new("squeezenet1.1", [1, 3, 224, 224], seed);
    let x = b.input();
    let x = b.conv_relu("conv1", &x, ConvSpec::new(64, 3).stride(2).pad(0))?;
    let x = b.max_pool("pool1", &x, 3, 2, 0, true)?;
    let x = fire(&mut b, "fire2", &x, 16, 64)?;
    let x = fire(&mut b, "fire3", &x, 16, 64)?;
    let x = b.max_pool("pool3", &x, 3, 2, 0, true)?;
    let x = fire(&mut b, "fire4", &x, 32, 128)?;
    let x = fire(&mut b, "fire5", &x, 32, 128)?;
    let x = b.max_pool("pool5", &x, 3, 2, 0, true)?;
    let x = fire(&mut b, "fire6", &x, 48, 192)?;
    let x = fire(&mut b, "fire7", &x, 48, 192)?;
    let x = fire(&mut b, "fire8", &x, 64, 256)?;
    let x = fire(&mut b, "fire9", &x, 64, 256)?;
    let x = b.dropout("drop9", &x)?;
    let x = b.conv_relu("conv10", &x, ConvSpec::new(1000, 1))?;
    let x = b.global_avg_pool("pool10", &x)?;
    let logits = b.flatten("flatten", &x)?;
    b.finish(&[&logits])
}
