//! CPU F32 softmax along one axis (whole output only; the classifier's 1000 values).
use crate::tensor::{SharedTensor, Tensor};
use crate::{Error, Result};

/// Softmax of `x` along `axis` into `out`.
pub fn run(axis: usize, x: &Tensor, out: &SharedTensor<'_>) -> Result<()> {
    let s = x.shape();
    if axis >= s.len() || x.len() != out.len() {
        return Err(Error::Other(format!("softmax: axis {axis} of {s:?}")));
    }
    let n = s[axis];
    let inner: usize = s[axis + 1..].iter().product();
    let outer: usize = s[..axis].iter().product();
    // SAFETY: non-sliceable op: the caller owns the whole output.
    let y = unsafe { out.range_mut(0, out.len()) };
    let xd = x.data();
    for o in 0..outer {
        for i in 0..inner {
            let at = |a: usize| (o * n + a) * inner + i;
            let max = (0..n).map(|a| xd[at(a)]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for a in 0..n {
                let e = (xd[at(a)] - max).exp();
                y[at(a)] = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            for a in 0..n {
                y[at(a)] *= inv;
            }
        }
    }
    Ok(())
}
