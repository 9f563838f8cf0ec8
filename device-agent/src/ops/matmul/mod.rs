//! Matrix product of two run-time values (numpy semantics for rank ≥ 2).
use crate::{Error, Result};

/// Output shape of `a @ b`; leading (batch) dimensions must match or be 1.
pub fn output_shape(node: &str, inputs: &[&[usize]]) -> Result<Vec<usize>> {
    let [a, b] = inputs else {
        return Err(Error::node(
            node,
            format!("expects 2 inputs, got {}", inputs.len()),
        ));
    };
    if a.len() < 2 || b.len() < 2 {
        return Err(Error::node(
            node,
            format!("inputs must be at least 2-D, got {a:?} and {b:?}"),
        ));
    }
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
    if k != k2 {
        return Err(Error::node(
            node,
            format!("inner dimensions differ: {a:?} @ {b:?}"),
        ));
    }
    let batch = super::add::broadcast(node, &a[..a.len() - 2], &b[..b.len() - 2])?;
    Ok(batch.into_iter().chain([m, n]).collect())
}

pub mod cpu_f32;
pub mod reference;
#[cfg(test)]
mod tests;
pub mod vulkan;
