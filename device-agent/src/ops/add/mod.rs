//! Element-wise addition with numpy broadcasting.
use crate::{Error, Result};

/// Broadcast shape of two shapes (numpy rules); errors name `node`.
pub fn broadcast(node: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let get = |s: &[usize], i: usize| {
        if i + s.len() >= r {
            s[i + s.len() - r]
        } else {
            1
        }
    };
    (0..r)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(Error::node(
                node,
                format!("shapes {a:?} and {b:?} do not broadcast"),
            )),
        })
        .collect()
}

/// Output shape of `a + b`.
pub fn output_shape(node: &str, inputs: &[&[usize]]) -> Result<Vec<usize>> {
    match inputs {
        [a, b] => broadcast(node, a, b),
        _ => Err(Error::node(
            node,
            format!("expects 2 inputs, got {}", inputs.len()),
        )),
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
