//! Flatten and Reshape: the data stay, the shape changes.
use crate::{Error, Result};

/// Output shape of ONNX Flatten at `axis`: `[prod(dims[..axis]), prod(dims[axis..])]`.
pub fn flatten_shape(node: &str, axis: usize, input: &[usize]) -> Result<Vec<usize>> {
    if axis > input.len() {
        return Err(Error::node(
            node,
            format!("axis {axis} out of range for rank {}", input.len()),
        ));
    }
    Ok(vec![
        input[..axis].iter().product(),
        input[axis..].iter().product(),
    ])
}

/// Output shape of ONNX Reshape (0 copies the input dimension, one -1 is inferred).
pub fn reshape_shape(node: &str, spec: &[i64], input: &[usize]) -> Result<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            0 => out.push(*input.get(i).ok_or_else(|| {
                Error::node(
                    node,
                    format!("0 at position {i} but input has rank {}", input.len()),
                )
            })?),
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            d if d > 0 => out.push(d as usize),
            d => {
                return Err(Error::node(
                    node,
                    format!("invalid dimension {d} in shape {spec:?}"),
                ))
            }
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(Error::node(
                node,
                format!("cannot reshape {input:?} into {spec:?}"),
            ));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(Error::node(
            node,
            format!("cannot reshape {input:?} ({total} elements) into {spec:?}"),
        ));
    }
    Ok(out)
}

pub mod cpu_f32;
pub mod reference;
#[cfg(test)]
mod tests;
