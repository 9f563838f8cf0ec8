//! Local response normalisation across channels (AlexNet, GoogLeNet).
use super::expect_nchw;
use crate::{Error, Result};

/// ONNX LRN: `y = x / (bias + alpha / size * Σ x²)^beta` over `size` neighbouring channels.
#[derive(Clone, Debug, PartialEq)]
pub struct Lrn {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

impl Lrn {
    /// Same shape as the input.
    pub fn output_shape(&self, node: &str, input: &[usize]) -> Result<Vec<usize>> {
        expect_nchw(node, "input", input)?;
        if self.size == 0 {
            return Err(Error::node(node, "LRN size must be positive"));
        }
        Ok(input.to_vec())
    }
}

pub mod cpu_f32;
pub mod reference;
#[cfg(test)]
mod tests;
pub mod vulkan;
