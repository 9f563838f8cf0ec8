//! Max, average and global average pooling: parameters and shape inference.
use super::{expect_nchw, window_out};
use crate::{Error, Result};

/// A pooling window.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// Window `[h, w]`.
    pub kernel: [usize; 2],
    /// Stride `[h, w]`.
    pub stride: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Round output size up (Caffe-style pooling, as in GoogLeNet and SqueezeNet).
    pub ceil_mode: bool,
    /// For average pooling: count padded positions in the divisor.
    pub count_include_pad: bool,
}

impl Pool {
    /// Output shape for an NCHW input; errors name `node`.
    pub fn output_shape(&self, node: &str, input: &[usize]) -> Result<Vec<usize>> {
        let [n, c, h, w] = expect_nchw(node, "input", input)?;
        if self.kernel.contains(&0) {
            return Err(Error::node(node, "pool window must be positive"));
        }
        let mut oh = window_out(
            node,
            h,
            self.pads[0] + self.pads[2],
            self.kernel[0],
            self.stride[0],
            self.ceil_mode,
        )?;
        let mut ow = window_out(
            node,
            w,
            self.pads[1] + self.pads[3],
            self.kernel[1],
            self.stride[1],
            self.ceil_mode,
        )?;
        // ONNX/PyTorch rule: in ceil mode the last window must start inside the input or left padding.
        if self.ceil_mode {
            if (oh - 1) * self.stride[0] >= h + self.pads[0] {
                oh -= 1;
            }
            if (ow - 1) * self.stride[1] >= w + self.pads[1] {
                ow -= 1;
            }
        }
        Ok(vec![n, c, oh, ow])
    }
}

/// Output shape of global average pooling: `[N, C, 1, 1]`.
pub fn global_output_shape(node: &str, input: &[usize]) -> Result<Vec<usize>> {
    let [n, c, _, _] = expect_nchw(node, "input", input)?;
    Ok(vec![n, c, 1, 1])
}

pub mod cpu_f32;
pub mod cpu_q8;
pub mod reference;
pub mod reference_q8;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_q8;
pub mod vulkan;
