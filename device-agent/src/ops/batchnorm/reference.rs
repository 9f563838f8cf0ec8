//! Plain batch normalisation, the test oracle.
use super::BatchNorm;
use crate::tensor::Tensor;

/// `scale · (x − mean) / √(var + ε) + bias` per channel of an NCHW tensor.
pub fn batchnorm(b: &BatchNorm, x: &Tensor) -> Tensor {
    let s = x.shape();
    let (c, hw) = (s[1], s[2] * s[3]);
    let mut y = x.clone();
    for (i, v) in y.data_mut().iter_mut().enumerate() {
        let ch = (i / hw) % c;
        *v = b.scale[ch] * (*v - b.mean[ch]) / (b.var[ch] + b.epsilon).sqrt() + b.bias[ch];
    }
    y
}
