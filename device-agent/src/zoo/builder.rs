//! A small graph builder for the zoo: each call appends one named node, infers its output
//! shape at once (so a mistake names the node where it happens) and, for layers with
//! weights, draws seeded He/Kaiming-scaled weights or takes given ones.
//!
//! Every node's output value carries the node's name, so traces, errors and the graph read
//! the same ("inception_3a/1x1", "fire2/squeeze").
use crate::graph::{Graph, Node, ValueInfo, WeightsOrigin};
use crate::ops::{Activation, BatchNorm, Conv2d, Gemm, Lrn, Op, Pool};
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::collections::HashMap;

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
/// OOPSLA 2014): 64 bits of state, one add and three xor-shift-multiply steps per draw.
///
/// Written here rather than taken from `rand` + `rand_chacha` because the seeded zoo
/// promises bit-identical weights on every platform and for every future build: this
/// fixed algorithm cannot change under us with a crate upgrade, costs no dependency (the
/// machines have two shared cores, so every crate compiled counts), and draws ~138 M VGG-16
/// weights in well under a second. Statistical quality is ample for initial weights.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 24 random bits (every value exactly representable in f32).
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in `[-bound, bound)`.
    pub(crate) fn symmetric(&mut self, bound: f32) -> f32 {
        (2.0 * self.next_f32() - 1.0) * bound
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }
}

/// FNV-1a of a node name: each layer's weights come from a stream seeded by the model seed
/// and the layer's name, so they do not depend on the order in which layers are built.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// How seeded weights are scaled for the nonlinearity that follows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gain {
    /// He/Kaiming (variance `2 / fan_in`): keeps activations' magnitude through ReLU stacks.
    Relu,
    /// LeCun (variance `1 / fan_in`): for a final layer with no activation after it.
    Linear,
}

impl Gain {
    /// Bound of the uniform distribution with the right variance (`sqrt(3 * var)`).
    fn bound(self, fan_in: usize) -> f32 {
        let var = match self {
            Gain::Relu => 2.0,
            Gain::Linear => 1.0,
        } / fan_in.max(1) as f32;
        (3.0 * var).sqrt()
    }
}

/// Bound of the seeded biases: small, so that they matter in numerical comparisons against
/// other engines without dominating the He-scaled products.
const BIAS_BOUND: f32 = 0.05;

/// A convolution's hyper-parameters; weights are drawn or given separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvSpec {
    pub out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// `k`×`k` to `out` channels, stride 1, padding `k / 2` on every side ("same" for odd
    /// `k`), one group, with bias.
    pub(crate) fn new(out: usize, k: usize) -> Self {
        ConvSpec {
            out,
            kernel: [k, k],
            stride: [1, 1],
            pads: [k / 2; 4],
            groups: 1,
            bias: true,
        }
    }

    pub(crate) fn stride(mut self, s: usize) -> Self {
        self.stride = [s, s];
        self
    }

    /// The same padding on every side.
    pub(crate) fn pad(mut self, p: usize) -> Self {
        self.pads = [p; 4];
        self
    }

    /// `[top, left, bottom, right]`.
    pub(crate) fn pads(mut self, pads: [usize; 4]) -> Self {
        self.pads = pads;
        self
    }

    pub(crate) fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }

    pub(crate) fn no_bias(mut self) -> Self {
        self.bias = false;
        self
    }
}

/// TensorFlow "SAME" padding along one dimension: output `ceil(len / stride)`, total padding
/// `max((out - 1) * stride + k - len, 0)`, the smaller half before (top/left) and the rest
/// after (bottom/right). Returns `(before, after)`.
pub(crate) fn tf_same_pads(len: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = len.div_ceil(stride.max(1));
    let total = ((out.max(1) - 1) * stride + k).saturating_sub(len);
    (total / 2, total - total / 2)
}

/// Builds a graph node by node. See the module documentation.
#[derive(Debug)]
pub(crate) struct Builder {
    name: String,
    input: ValueInfo,
    nodes: Vec<Node>,
    shapes: HashMap<String, Vec<usize>>,
    seed: u64,
    weights: WeightsOrigin,
}

impl Builder {
    /// A graph named `name` with one input `"input"` of `shape`; seeded layers draw from
    /// `seed`. The origin is [`WeightsOrigin::Seeded`] until [`Builder::real_weights`].
    pub(crate) fn new(name: &str, shape: [usize; 4], seed: u64) -> Self {
        let input = ValueInfo {
            name: "input".into(),
            shape: shape.to_vec(),
        };
        let shapes = HashMap::from([(input.name.clone(), input.shape.clone())]);
        Builder {
            name: name.into(),
            input,
            nodes: Vec::new(),
            shapes,
            seed,
            weights: WeightsOrigin::Seeded,
        }
    }

    /// Marks the graph as carrying real (pretrained) weights.
    pub(crate) fn real_weights(&mut self) {
        self.weights = WeightsOrigin::Real;
    }

    /// The name of the graph input.
    pub(crate) fn input(&self) -> String {
        self.input.name.clone()
    }

    /// The shape of a value built so far.
    pub(crate) fn shape(&self, value: &str) -> Result<&[usize]> {
        self.shapes
            .get(value)
            .map(|s| s.as_slice())
            .ok_or_else(|| Error::Graph {
                graph: self.name.clone(),
                msg: format!("no value named '{value}'"),
            })
    }

    /// Channels (dimension 1) of a value built so far.
    pub(crate) fn channels(&self, value: &str) -> Result<usize> {
        let s = self.shape(value)?;
        s.get(1).copied().ok_or_else(|| Error::Graph {
            graph: self.name.clone(),
            msg: format!("value '{value}' of shape {s:?} has no channel dimension"),
        })
    }

    /// A random stream for the layer `node`, fixed by the model seed and the layer name.
    fn rng(&self, node: &str) -> SplitMix64 {
        SplitMix64::new(self.seed ^ name_hash(node))
    }

    /// Appends a node reading `inputs`, checks it and records its output shape.
    pub(crate) fn push(&mut self, name: &str, op: Op, inputs: &[&str]) -> Result<String> {
        let ins = inputs
            .iter()
            .map(|v| self.shape(v).map(<[usize]>::to_vec))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[usize]> = ins.iter().map(Vec::as_slice).collect();
        let out = op.output_shape(name, &refs)?;
        if self.shapes.insert(name.to_string(), out).is_some() {
            return Err(Error::node(name, "a value of this name exists already"));
        }
        self.nodes.push(Node {
            name: name.into(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            output: name.into(),
        });
        Ok(name.into())
    }

    /// A convolution with seeded weights (uniform, He-scaled for `gain`) and seeded biases.
    pub(crate) fn conv(
        &mut self,
        name: &str,
        x: &str,
        spec: ConvSpec,
        gain: Gain,
    ) -> Result<String> {
        let c = self.channels(x)?;
        if spec.groups == 0 || !c.is_multiple_of(spec.groups) {
            return Err(Error::node(
                name,
                format!("groups {} must divide the {c} input channels", spec.groups),
            ));
        }
        let shape = [spec.out, c / spec.groups, spec.kernel[0], spec.kernel[1]];
        let fan_in = shape[1] * shape[2] * shape[3];
        let mut rng = self.rng(name);
        let bound = gain.bound(fan_in);
        let weight = seeded(&shape, &mut rng, |r| r.symmetric(bound));
        let bias = spec
            .bias
            .then(|| seeded(&[spec.out], &mut rng, |r| r.symmetric(BIAS_BOUND)));
        self.conv_with(name, x, spec, weight, bias)
    }

    /// A seeded, He-scaled convolution followed by a ReLU named `<name>/relu`; returns the
    /// ReLU's output.
    pub(crate) fn conv_relu(&mut self, name: &str, x: &str, spec: ConvSpec) -> Result<String> {
        let c = self.conv(name, x, spec, Gain::Relu)?;
        self.relu(&format!("{name}/relu"), &c)
    }

    /// A convolution with the given weights; `spec.out` and `spec.kernel` must agree with them.
    pub(crate) fn conv_with(
        &mut self,
        name: &str,
        x: &str,
        spec: ConvSpec,
        weight: Tensor,
        bias: Option<Tensor>,
    ) -> Result<String> {
        let ws = weight.shape();
        if ws.len() != 4 || ws[0] != spec.out || ws[2..] != spec.kernel {
            return Err(Error::node(
                name,
                format!(
                    "weight of shape {ws:?} does not fit {} filters of {:?}",
                    spec.out, spec.kernel
                ),
            ));
        }
        let op = Op::Conv2d(Conv2d {
            weight,
            bias,
            stride: spec.stride,
            dilation: [1, 1],
            pads: spec.pads,
            groups: spec.groups,
            activation: Activation::None,
        });
        self.push(name, op, &[x])
    }

    /// Inference BatchNorm with seeded statistics: scale near 1, small shifts, variance near 1.
    pub(crate) fn batchnorm(&mut self, name: &str, x: &str, epsilon: f32) -> Result<String> {
        let c = self.channels(x)?;
        let mut rng = self.rng(name);
        let mut draw = |lo: f32, hi: f32| (0..c).map(|_| rng.range(lo, hi)).collect::<Vec<f32>>();
        let scale = draw(0.8, 1.2);
        let bias = draw(-0.05, 0.05);
        let mean = draw(-0.05, 0.05);
        let var = draw(0.8, 1.2);
        self.batchnorm_with(
            name,
            x,
            BatchNorm {
                scale,
                bias,
                mean,
                var,
                epsilon,
            },
        )
    }

    /// Inference BatchNorm with the given parameters.
    pub(crate) fn batchnorm_with(&mut self, name: &str, x: &str, bn: BatchNorm) -> Result<String> {
        self.push(name, Op::BatchNorm(bn), &[x])
    }

    pub(crate) fn relu(&mut self, name: &str, x: &str) -> Result<String> {
        self.push(name, Op::Activation(Activation::Relu), &[x])
    }

    pub(crate) fn relu6(&mut self, name: &str, x: &str) -> Result<String> {
        self.push(
            name,
            Op::Activation(Activation::Clip { min: 0.0, max: 6.0 }),
            &[x],
        )
    }

    /// Max pooling, `k`×`k`, stride `s`, padding `p` on every side.
    pub(crate) fn max_pool(
        &mut self,
        name: &str,
        x: &str,
        k: usize,
        s: usize,
        p: usize,
        ceil_mode: bool,
    ) -> Result<String> {
        let pool = Pool {
            kernel: [k, k],
            stride: [s, s],
            pads: [p; 4],
            ceil_mode,
            count_include_pad: false,
        };
        self.push(name, Op::MaxPool(pool), &[x])
    }

    /// Average pooling, `k`×`k`, stride `s`, no padding.
    pub(crate) fn avg_pool(&mut self, name: &str, x: &str, k: usize, s: usize) -> Result<String> {
        let pool = Pool {
            kernel: [k, k],
            stride: [s, s],
            pads: [0; 4],
            ceil_mode: false,
            count_include_pad: false,
        };
        self.push(name, Op::AveragePool(pool), &[x])
    }

    pub(crate) fn global_avg_pool(&mut self, name: &str, x: &str) -> Result<String> {
        self.push(name, Op::GlobalAveragePool, &[x])
    }

    /// Local response normalisation across channels (`alpha` is divided by `size`, as in
    /// Caffe, ONNX and PyTorch).
    pub(crate) fn lrn(
        &mut self,
        name: &str,
        x: &str,
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    ) -> Result<String> {
        self.push(
            name,
            Op::Lrn(Lrn {
                size,
                alpha,
                beta,
                bias,
            }),
            &[x],
        )
    }

    pub(crate) fn concat(&mut self, name: &str, xs: &[&str]) -> Result<String> {
        self.push(name, Op::Concat { axis: 1 }, xs)
    }

    pub(crate) fn add(&mut self, name: &str, a: &str, b: &str) -> Result<String> {
        self.push(name, Op::Add, &[a, b])
    }

    pub(crate) fn flatten(&mut self, name: &str, x: &str) -> Result<String> {
        self.push(name, Op::Flatten { axis: 1 }, &[x])
    }

    pub(crate) fn dropout(&mut self, name: &str, x: &str) -> Result<String> {
        self.push(name, Op::Dropout, &[x])
    }

    /// A fully connected layer to `out` features with seeded weights and biases.
    pub(crate) fn fc(&mut self, name: &str, x: &str, out: usize, gain: Gain) -> Result<String> {
        let fan_in = match self.shape(x)? {
            [_, k] => *k,
            s => {
                return Err(Error::node(
                    name,
                    format!("fully connected input must be 2-D, got {s:?}"),
                ))
            }
        };
        let mut rng = self.rng(name);
        let bound = gain.bound(fan_in);
        let weight = seeded(&[out, fan_in], &mut rng, |r| r.symmetric(bound));
        let bias = seeded(&[out], &mut rng, |r| r.symmetric(BIAS_BOUND));
        self.fc_with(name, x, weight, Some(bias))
    }

    /// A fully connected layer with the given `[out, in]` weight.
    pub(crate) fn fc_with(
        &mut self,
        name: &str,
        x: &str,
        weight: Tensor,
        bias: Option<Tensor>,
    ) -> Result<String> {
        self.push(
            name,
            Op::Gemm(Gemm {
                weight,
                bias,
                activation: Activation::None,
            }),
            &[x],
        )
    }

    /// The finished graph with these outputs, validated.
    pub(crate) fn finish(self, outputs: &[&str]) -> Result<Graph> {
        let g = Graph {
            name: self.name,
            inputs: vec![self.input],
            nodes: self.nodes,
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            weights: self.weights,
        };
        g.infer_shapes()?;
        Ok(g)
    }
}

/// A tensor of `shape` filled by `draw`.
fn seeded(
    shape: &[usize],
    rng: &mut SplitMix64,
    mut draw: impl FnMut(&mut SplitMix64) -> f32,
) -> Tensor {
    let data: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| draw(rng))
        .collect();
    match Tensor::from_vec(shape, data) {
        Some(t) => t,
        // Unreachable: the data has exactly `shape.product()` elements.
        None => Tensor::zeros(shape),
    }
}
