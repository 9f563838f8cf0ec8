//! Softmax along one axis.
use crate::{Error, Result};

/// Same shape as the input; checks the axis.
pub fn output_shape(node: &str, axis: usize, input: &[usize]) -> Result<Vec<usize>> {
    if axis >= input.len() {
        return Err(Error::node(
            node,
            format!("axis {axis} out of range for rank {}", input.len()),
        ));
    }
    Ok(input.to_vec())
}

pub mod cpu_f32;
pub mod reference;
#[cfg(test)]
mod tests;
pub mod vulkan;
