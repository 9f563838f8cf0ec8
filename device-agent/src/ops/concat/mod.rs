//! Concatenation along one axis (Inception and Fire modules join branches on channels).
use crate::{Error, Result};

/// Output shape of concatenating `inputs` along `axis`.
pub fn output_shape(node: &str, axis: usize, inputs: &[&[usize]]) -> Result<Vec<usize>> {
    let first = inputs
        .first()
        .ok_or_else(|| Error::node(node, "concat needs at least one input"))?;
    if axis >= first.len() {
        return Err(Error::node(
            node,
            format!("axis {axis} out of range for rank {}", first.len()),
        ));
    }
    let mut out = first.to_vec();
    for s in &inputs[1..] {
        let same_rest = s.len() == first.len()
            && s.iter()
                .zip(first.iter())
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if !same_rest {
            return Err(Error::node(
                node,
                format!("input shapes {first:?} and {s:?} differ outside axis {axis}"),
            ));
        }
        out[axis] += s[axis];
    }
    Ok(out)
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
