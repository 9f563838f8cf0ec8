//! Constant padding of the spatial dimensions.
use super::expect_nchw;
use crate::Result;

/// Pads H and W of an NCHW tensor with a constant.
#[derive(Clone, Debug, PartialEq)]
pub struct Pad {
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// The fill value.
    pub value: f32,
}

impl Pad {
    /// Output shape.
    pub fn output_shape(&self, node: &str, input: &[usize]) -> Result<Vec<usize>> {
        let [n, c, h, w] = expect_nchw(node, "input", input)?;
        Ok(vec![
            n,
            c,
            h + self.pads[0] + self.pads[2],
            w + self.pads[1] + self.pads[3],
        ])
    }
}

pub mod cpu_f32;
pub mod reference;
#[cfg(test)]
mod tests;
pub mod vulkan;
