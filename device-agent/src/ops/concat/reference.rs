//! Plain concatenation, the test oracle.
use crate::tensor::Tensor;
use crate::Result;

/// Input index and flat source index for output element `i` of concatenating `inputs`
/// (shapes) along `axis` into `out`.
pub(crate) fn source(out: &[usize], axis: usize, inputs: &[&[usize]], i: usize) -> (usize, usize) {
    let inner: usize = out[axis + 1..].iter().product();
    let outer_i = i / (out[axis] * inner);
    let mut a = (i / inner) % out[axis];
    let e = i % inner;
    for (k, s) in inputs.iter().enumerate() {
        if a < s[axis] {
            return (k, (outer_i * s[axis] + a) * inner + e);
        }
        a -= s[axis];
    }
    (inputs.len(), 0)
}

/// `inputs` joined along `axis`.
pub fn concat(axis: usize, inputs: &[&Tensor]) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let shape = super::output_shape("reference", axis, &shapes)?;
    let mut out = Tensor::zeros(&shape);
    for (i, v) in out.data_mut().iter_mut().enumerate() {
        let (k, j) = source(&shape, axis, &shapes, i);
        *v = inputs[k].data()[j];
    }
    Ok(out)
}
