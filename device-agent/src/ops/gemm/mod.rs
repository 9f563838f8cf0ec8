//! Fully connected layer (ONNX Gemm, and MatMul with constant weights).
use super::Activation;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// `y = x · Wᵀ + b` over the last dimension of `x`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    /// Weights `[out_features, in_features]`.
    pub weight: Tensor,
    /// Bias `[out_features]`.
    pub bias: Option<Tensor>,
    /// Activation fused onto the output.
    pub activation: Activation,
}

impl Gemm {
    /// Output shape: the input with its last dimension replaced by `out_features`.
    pub fn output_shape(&self, node: &str, input: &[usize]) -> Result<Vec<usize>> {
        let ws = self.weight.shape();
        if ws.len() != 2 {
            return Err(Error::node(node, format!("weight must be 2-D, got {ws:?}")));
        }
        let k = match input.last() {
            Some(k) if input.len() >= 2 => *k,
            _ => {
                return Err(Error::node(
                    node,
                    format!("input must be at least 2-D, got {input:?}"),
                ))
            }
        };
        if k != ws[1] {
            return Err(Error::node(
                node,
                format!("input has {k} features, weight expects {}", ws[1]),
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
        let mut out = input.to_vec();
        *out.last_mut().expect("rank checked above") = ws[0];
        Ok(out)
    }
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
