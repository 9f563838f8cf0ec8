//! Plain 8-bit concatenation, the test oracle of the QUInt8 kernel: each input's codes are
//! mapped to the output's quantization (a copy when they share it).
use super::reference::source;
use crate::quant::{requant_table_of, QParams, QTensor};
use crate::Result;

/// `inputs` joined along `axis`, quantized with `out`.
pub fn concat(axis: usize, inputs: &[&QTensor], out: QParams) -> Result<QTensor> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let shape = super::output_shape("reference", axis, &shapes)?;
    let tables: Vec<[u8; 256]> = inputs
        .iter()
        .map(|t| requant_table_of(t.qparams(), out))
        .collect();
    let mut y = QTensor::zeros(&shape, out);
    for (i, v) in y.data_mut().iter_mut().enumerate() {
        let (k, j) = source(&shape, axis, &shapes, i);
        *v = tables[k][inputs[k].data()[j] as usize];
    }
    Ok(y)
}
