//! The operators of the graph IR. Each op has its own folder holding its parameters and
//! shape inference (`mod.rs`), and the implementations side by side (`reference.rs`, the
//! plain test oracle; `cpu_f32.rs`, the optimised CPU kernel; later `cpu_q8.rs`,
//! `vulkan.rs` and shaders).
use crate::tensor::Tensor;
use crate::Result;

pub mod activation;
pub mod add;
pub mod batchnorm;
pub mod concat;
pub mod conv2d;
pub mod gemm;
pub mod lrn;
pub mod matmul;
pub mod pad;
pub mod pool;
pub mod reshape;
pub mod softmax;

pub use activation::Activation;
pub use batchnorm::BatchNorm;
pub use conv2d::Conv2d;
pub use gemm::Gemm;
pub use lrn::Lrn;
pub use pad::Pad;
pub use pool::Pool;

/// One operator with its parameters and weights.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// 2-D convolution (groups, dilation, asymmetric padding, fused activation).
    Conv2d(Conv2d),
    /// Batch normalisation (inference form); folded into the preceding convolution at load.
    BatchNorm(BatchNorm),
    /// An element-wise activation: ReLU or Clip (ReLU6 is Clip(0, 6)).
    Activation(Activation),
    /// Max pooling.
    MaxPool(Pool),
    /// Average pooling.
    AveragePool(Pool),
    /// Mean over the spatial dimensions, keeping them as 1×1.
    GlobalAveragePool,
    /// Local response normalisation across channels.
    Lrn(Lrn),
    /// Fully connected: `y = x · Wᵀ + b` over the last dimension (ONNX Gemm and MatMul with
    /// constant weights are imported as this).
    Gemm(Gemm),
    /// Matrix product of two run-time values (numpy semantics, batched over leading dims).
    MatMul,
    /// Element-wise sum of two values (numpy broadcasting of the second onto the first).
    Add,
    /// Concatenation along an axis.
    Concat { axis: usize },
    /// Flatten to 2-D at `axis`.
    Flatten { axis: usize },
    /// Reshape (ONNX semantics: 0 copies the input dimension, -1 is inferred).
    Reshape { shape: Vec<i64> },
    /// Softmax along an axis.
    Softmax { axis: usize },
    /// Identity at inference.
    Dropout,
    /// Constant padding.
    Pad(Pad),
    /// A constant value (an initializer used as a run-time input).
    Constant(Tensor),
}

impl Op {
    /// A short name of the op's type, as used in traces and the latency predictor.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv2d(c) if c.is_depthwise() => "DepthwiseConv2d",
            Op::Conv2d(c) if c.is_pointwise() => "Conv2d1x1",
            Op::Conv2d(_) => "Conv2d",
            Op::BatchNorm(_) => "BatchNorm",
            Op::Activation(Activation::Relu) => "Relu",
            Op::Activation(Activation::Clip { .. }) => "Clip",
            Op::Activation(Activation::None) => "Identity",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::Lrn(_) => "Lrn",
            Op::Gemm(_) => "Gemm",
            Op::MatMul => "MatMul",
            Op::Add => "Add",
            Op::Concat { .. } => "Concat",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Softmax { .. } => "Softmax",
            Op::Dropout => "Dropout",
            Op::Pad(_) => "Pad",
            Op::Constant(_) => "Constant",
        }
    }

    /// Number of run-time inputs the op takes.
    pub fn arity(&self) -> usize {
        match self {
            Op::Constant(_) => 0,
            Op::MatMul | Op::Add => 2,
            Op::Concat { .. } => usize::MAX,
            _ => 1,
        }
    }

    /// The output shape for these input shapes; errors name `node`.
    pub fn output_shape(&self, node: &str, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let one = || -> Result<&[usize]> {
            match inputs {
                [x] => Ok(x),
                _ => Err(crate::Error::node(
                    node,
                    format!("expects 1 input, got {}", inputs.len()),
                )),
            }
        };
        match self {
            Op::Conv2d(c) => c.output_shape(node, one()?),
            Op::BatchNorm(b) => b.output_shape(node, one()?),
            Op::Activation(_) | Op::Dropout => Ok(one()?.to_vec()),
            Op::MaxPool(p) | Op::AveragePool(p) => p.output_shape(node, one()?),
            Op::GlobalAveragePool => pool::global_output_shape(node, one()?),
            Op::Lrn(l) => l.output_shape(node, one()?),
            Op::Gemm(g) => g.output_shape(node, one()?),
            Op::MatMul => matmul::output_shape(node, inputs),
            Op::Add => add::output_shape(node, inputs),
            Op::Concat { axis } => concat::output_shape(node, *axis, inputs),
            Op::Flatten { axis } => reshape::flatten_shape(node, *axis, one()?),
            Op::Reshape { shape } => reshape::reshape_shape(node, shape, one()?),
            Op::Softmax { axis } => softmax::output_shape(node, *axis, one()?),
            Op::Pad(p) => p.output_shape(node, one()?),
            Op::Constant(t) => {
                if inputs.is_empty() {
                    Ok(t.shape().to_vec())
                } else {
                    Err(crate::Error::node(node, "a constant takes no input"))
                }
            }
        }
    }

    /// Number of learned parameters (weights and biases) the op holds.
    pub fn parameters(&self) -> usize {
        match self {
            Op::Conv2d(c) => c.weight.len() + c.bias.as_ref().map_or(0, |b| b.len()),
            Op::Gemm(g) => g.weight.len() + g.bias.as_ref().map_or(0, |b| b.len()),
            Op::BatchNorm(b) => 2 * b.scale.len(),
            _ => 0,
        }
    }

    /// Multiply-accumulates for one inference producing `out` (convolutions and fully
    /// connected layers; zero for the rest, as in the published counts).
    pub fn macs(&self, inputs: &[&[usize]], out: &[usize]) -> u64 {
        match self {
            Op::Conv2d(c) => {
                let w = c.weight.shape();
                (out.iter().product::<usize>() * w[1] * w[2] * w[3]) as u64
            }
            Op::Gemm(g) => (out.iter().product::<usize>() * g.weight.shape()[1]) as u64,
            Op::MatMul => {
                let k = inputs.first().and_then(|s| s.last()).copied().unwrap_or(0);
                (out.iter().product::<usize>() * k) as u64
            }
            _ => 0,
        }
    }

    /// True for ops whose output can be computed by output-channel and output-row slices
    /// independently (every op except the ones that reorder elements across channels).
    pub fn sliceable(&self) -> bool {
        !matches!(
            self,
            Op::Flatten { .. }
                | Op::Reshape { .. }
                | Op::Softmax { .. }
                | Op::Constant(_)
                | Op::MatMul
        )
    }
}

/// Checks that a shape is 4-D (NCHW); errors name the node.
pub(crate) fn expect_nchw(node: &str, what: &str, s: &[usize]) -> Result<[usize; 4]> {
    match s {
        [n, c, h, w] => Ok([*n, *c, *h, *w]),
        _ => Err(crate::Error::node(
            node,
            format!("{what} must be 4-D NCHW, got shape {s:?}"),
        )),
    }
}

/// Output size of a sliding window along one dimension (ONNX formula, floor or ceil mode).
pub(crate) fn window_out(
    node: &str,
    len: usize,
    pad: usize,
    k_eff: usize,
    stride: usize,
    ceil: bool,
) -> Result<usize> {
    let padded = len + pad;
    if stride == 0 {
        return Err(crate::Error::node(node, "stride must be positive"));
    }
    if padded < k_eff {
        return Err(crate::Error::node(
            node,
            format!("window {k_eff} larger than padded input {padded}"),
        ));
    }
    let span = padded - k_eff;
    Ok(if ceil {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    })
}
