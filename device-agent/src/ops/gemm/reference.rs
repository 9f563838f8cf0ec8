//! Plain fully connected layer, the test oracle (f64 accumulation, never optimised).
use super::Gemm;
use crate::tensor::Tensor;
use crate::Result;

/// `y = act(x · Wᵀ + b)` over the last dimension of `x`.
pub fn gemm(g: &Gemm, x: &Tensor) -> Result<Tensor> {
    let shape = g.output_shape("reference", x.shape())?;
    let (o, k) = (g.weight.shape()[0], g.weight.shape()[1]);
    let rows = x.len() / k.max(1);
    let mut out = Tensor::zeros(&shape);
    let (xd, wd) = (x.data(), g.weight.data());
    for r in 0..rows {
        for j in 0..o {
            let mut acc = g.bias.as_ref().map_or(0.0, |b| b.data()[j] as f64);
            for i in 0..k {
                acc += xd[r * k + i] as f64 * wd[j * k + i] as f64;
            }
            out.data_mut()[r * o + j] = g.activation.apply(acc as f32);
        }
    }
    Ok(out)
}
