//! 2-D convolution: parameters and shape inference.
use super::{expect_nchw, window_out, Activation};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// A 2-D convolution over NCHW input.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    /// Filters, `[out_channels, in_channels / groups, kh, kw]`.
    pub weight: Tensor,
    /// Bias per output channel, `[out_channels]`.
    pub bias: Option<Tensor>,
    /// Stride `[h, w]`.
    pub stride: [usize; 2],
    /// Dilation `[h, w]`.
    pub dilation: [usize; 2],
    /// Padding `[top, left, bottom, right]` (asymmetric allowed, as TensorFlow "SAME").
    pub pads: [usize; 4],
    /// Number of groups (`in_channels` for depthwise).
    pub groups: usize,
    /// Activation fused onto the output.
    pub activation: Activation,
}

impl Conv2d {
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Kernel `[kh, kw]`.
    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.shape()[2], self.weight.shape()[3]]
    }

    /// One filter per input channel and channel multiplier 1.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.weight.shape()[1] == 1 && self.groups == self.out_channels()
    }

    /// 1×1, stride 1, no padding, one group: a plain matrix product.
    pub fn is_pointwise(&self) -> bool {
        self.kernel() == [1, 1] && self.stride == [1, 1] && self.pads == [0; 4] && self.groups == 1
    }

    /// Output shape for an NCHW input; errors name `node`.
    pub fn output_shape(&self, node: &str, input: &[usize]) -> Result<Vec<usize>> {
        let [n, c, h, w] = expect_nchw(node, "input", input)?;
        let ws = self.weight.shape();
        if ws.len() != 4 {
            return Err(Error::node(node, format!("weight must be 4-D, got {ws:?}")));
        }
        if self.groups == 0 || !c.is_multiple_of(self.groups) || !ws[0].is_multiple_of(self.groups)
        {
            return Err(Error::node(
                node,
                format!(
                    "groups {} must divide input channels {c} and output channels {}",
                    self.groups, ws[0]
                ),
            ));
        }
        if ws[1] * self.groups != c {
            return Err(Error::node(
                node,
                format!(
                    "weight expects {} input channels ({} per group × {} groups), input has {c}",
                    ws[1] * self.groups,
                    ws[1],
                    self.groups
                ),
            ));
        }
        if let Some(b) = &self.bias {
            if b.len() != ws[0] {
                return Err(Error::node(
                    node,
                    format!("bias has {} elements, expected {}", b.len(), ws[0]),
                ));
            }
        }
        if self.dilation.contains(&0) {
            return Err(Error::node(node, "dilation must be positive"));
        }
        let kh = (ws[2] - 1) * self.dilation[0] + 1;
        let kw = (ws[3] - 1) * self.dilation[1] + 1;
        let oh = window_out(
            node,
            h,
            self.pads[0] + self.pads[2],
            kh,
            self.stride[0],
            false,
        )?;
        let ow = window_out(
            node,
            w,
            self.pads[1] + self.pads[3],
            kw,
            self.stride[1],
            false,
        )?;
        Ok(vec![n, ws[0], oh, ow])
    }
}

pub mod cpu_f32;
mod cpu_f32_depthwise;
pub mod cpu_q8;
mod cpu_q8_depthwise;
mod cpu_q8_depthwise_vnni;
mod depthwise_lanes;
mod padded;
pub mod reference;
pub mod reference_q8;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_q8;
pub mod vulkan;
