//! Batch normalisation (inference form). The graph loader folds it into the preceding
//! convolution; a BatchNorm that cannot be folded runs as a per-channel affine map.
use super::expect_nchw;
use crate::{Error, Result};

/// `y = scale * (x - mean) / sqrt(var + epsilon) + bias`, per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub scale: Vec<f32>,
    pub bias: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub epsilon: f32,
}

impl BatchNorm {
    /// The equivalent per-channel `(multiplier, offset)` pairs: `y = m * x + o`.
    pub fn affine(&self) -> Vec<(f32, f32)> {
        (0..self.scale.len())
            .map(|c| {
                let m = self.scale[c] / (self.var[c] + self.epsilon).sqrt();
                (m, self.bias[c] - m * self.mean[c])
            })
            .collect()
    }

    /// Same shape as the input; checks the channel count.
    pub fn output_shape(&self, node: &str, input: &[usize]) -> Result<Vec<usize>> {
        let [_, c, _, _] = expect_nchw(node, "input", input)?;
        let n = self.scale.len();
        if [self.bias.len(), self.mean.len(), self.var.len()]
            .iter()
            .any(|&l| l != n)
            || n != c
        {
            return Err(Error::node(
                node,
                format!(
                    "parameters must all have {c} elements (scale {n}, bias {}, mean {}, var {})",
                    self.bias.len(),
                    self.mean.len(),
                    self.var.len()
                ),
            ));
        }
        Ok(input.to_vec())
    }
}

pub mod cpu_f32;
pub mod reference;
#[cfg(test)]
mod tests;
