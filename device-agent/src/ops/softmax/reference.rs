//! Plain softmax, the test oracle (f64).
use crate::tensor::Tensor;

/// Softmax of `x` along `axis`.
pub fn softmax(axis: usize, x: &Tensor) -> Tensor {
    let s = x.shape();
    let n = s[axis];
    let inner: usize = s[axis + 1..].iter().product();
    let outer: usize = s[..axis].iter().product();
    let mut y = x.clone();
    for o in 0..outer {
        for i in 0..inner {
            let at = |a: usize| (o * n + a) * inner + i;
            let max = (0..n)
                .map(|a| x.data()[at(a)] as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..n).map(|a| (x.data()[at(a)] as f64 - max).exp()).sum();
            for a in 0..n {
                y.data_mut()[at(a)] = ((x.data()[at(a)] as f64 - max).exp() / sum) as f32;
            }
        }
    }
    y
}
