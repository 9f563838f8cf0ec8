//! Plain local response normalisation (ONNX definition), the test oracle (f64).
use super::Lrn;
use crate::tensor::Tensor;

/// Channel window `[lo, hi]` (inclusive) of channel `c` among `n`.
pub(crate) fn window(l: &Lrn, c: usize, n: usize) -> (usize, usize) {
    let before = (l.size - 1) / 2;
    let after = l.size - 1 - before;
    (c.saturating_sub(before), (c + after).min(n - 1))
}

/// `x / (bias + alpha / size · Σ x²)^beta` over each element's channel window.
pub fn lrn(l: &Lrn, x: &Tensor) -> Tensor {
    let s = x.shape();
    let (c, hw) = (s[1], s[2] * s[3]);
    let mut y = x.clone();
    for (i, v) in y.data_mut().iter_mut().enumerate() {
        let (ch, p, b) = ((i / hw) % c, i % hw, i / (hw * c));
        let (lo, hi) = window(l, ch, c);
        let sum: f64 = (lo..=hi)
            .map(|k| (x.data()[(b * c + k) * hw + p] as f64).powi(2))
            .sum();
        let d = (l.bias as f64 + l.alpha as f64 / l.size as f64 * sum).powf(l.beta as f64);
        *v = (x.data()[i] as f64 / d) as f32;
    }
    y
}
