//! Plain 8-bit fully connected layer, the test oracle of the QUInt8 kernel.
use super::Gemm;
use crate::quant::{activation_codes, Multiplier, QParams, QTensor, QWeights};
use crate::Result;

/// `y = x · Wᵀ + b` over the last dimension of `x`, in codes: `code = clamp(z_y +
/// M_m·(b_m + Σ_k w[m,k]·(x[k] − z_x)))`, `M_m = s_x·s_w[m]/s_y`.
pub fn gemm(g: &Gemm, w: &QWeights, x: &QTensor, out: QParams) -> Result<QTensor> {
    let shape = g.output_shape("reference", x.shape())?;
    let (m, k) = (w.shape[0], w.shape[1]);
    let rows = x.len() / k.max(1);
    let xq = x.qparams();
    let zx = i64::from(xq.zero_point);
    let (lo, hi) = activation_codes(g.activation, out);
    let mut y = QTensor::zeros(&shape, out);
    for r in 0..rows {
        for o in 0..m {
            let mult = Multiplier::new(
                f64::from(xq.scale) * f64::from(w.scales[o]) / f64::from(out.scale),
            );
            let mut acc = i64::from(w.bias[o]);
            for kk in 0..k {
                acc += i64::from(w.data[o * k + kk]) * (i64::from(x.data()[r * k + kk]) - zx);
            }
            let acc = acc.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
            y.data_mut()[r * m + o] =
                mult.to_code(acc, i32::from(out.zero_point), i32::from(lo), i32::from(hi));
        }
    }
    Ok(y)
}
