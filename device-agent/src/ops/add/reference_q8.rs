//! Plain 8-bit element-wise addition (numpy broadcasting), the test oracle of the QUInt8
//! kernel: both operands are rescaled to the output's quantization in fixed point
//! ([`AddRequant`]).
use super::reference::broadcast_index;
use crate::quant::{AddRequant, QParams, QTensor};
use crate::Result;

/// `a + b` quantized with `out`, clamped to codes `lo..=hi` (a fused activation's).
pub fn add(a: &QTensor, b: &QTensor, out: QParams, lo: u8, hi: u8) -> Result<QTensor> {
    let shape = super::broadcast("reference", a.shape(), b.shape())?;
    let r = AddRequant::new(a.qparams(), b.qparams(), out, lo, hi);
    let mut y = QTensor::zeros(&shape, out);
    for (i, v) in y.data_mut().iter_mut().enumerate() {
        *v = r.apply(
            a.data()[broadcast_index(&shape, a.shape(), i)],
            b.data()[broadcast_index(&shape, b.shape(), i)],
        );
    }
    Ok(y)
}
