//! Plain element-wise addition with numpy broadcasting, the test oracle.
use crate::tensor::Tensor;
use crate::Result;

/// Index of output element `i` (of shape `out`) in an operand of shape `s` broadcast onto it.
pub(crate) fn broadcast_index(out: &[usize], s: &[usize], mut i: usize) -> usize {
    let mut idx = 0;
    let mut stride = 1;
    for d in (0..out.len()).rev() {
        let coord = i % out[d];
        i /= out[d];
        let sd = d as isize - (out.len() as isize - s.len() as isize);
        if sd >= 0 {
            let n = s[sd as usize];
            if n != 1 {
                idx += coord * stride;
            }
            stride *= n;
        }
    }
    idx
}

/// `a + b`.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = super::broadcast("reference", a.shape(), b.shape())?;
    let mut out = Tensor::zeros(&shape);
    for (i, v) in out.data_mut().iter_mut().enumerate() {
        *v = a.data()[broadcast_index(&shape, a.shape(), i)]
            + b.data()[broadcast_index(&shape, b.shape(), i)];
    }
    Ok(out)
}
