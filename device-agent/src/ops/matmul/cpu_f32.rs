//! CPU F32 batched matrix product of two run-time values (whole output only). Rare in the
//! zoo's networks, so a cache-friendly i-k-j loop that the compiler vectorises.
use crate::ops::add::reference::broadcast_index;
use crate::tensor::{SharedTensor, Tensor};
use crate::{Error, Result};

/// `a @ b` into `out`.
pub fn run(a: &Tensor, b: &Tensor, out: &SharedTensor<'_>) -> Result<()> {
    let shape = super::output_shape("matmul", &[a.shape(), b.shape()])?;
    if shape != out.shape() {
        return Err(Error::Other(format!(
            "matmul: output {:?}, expected {shape:?}",
            out.shape()
        )));
    }
    let (sa, sb) = (a.shape(), b.shape());
    let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
    let batch_shape = &shape[..shape.len() - 2];
    let batches: usize = batch_shape.iter().product();
    // SAFETY: non-sliceable op: the caller owns the whole output.
    let y = unsafe { out.range_mut(0, out.len()) };
    for bi in 0..batches {
        let ia = broadcast_index(batch_shape, &sa[..sa.len() - 2], bi);
        let ib = broadcast_index(batch_shape, &sb[..sb.len() - 2], bi);
        let bm = &b.data()[ib * k * n..(ib + 1) * k * n];
        for i in 0..m {
            let row = &mut y[(bi * m + i) * n..(bi * m + i + 1) * n];
            row.fill(0.0);
            let ar = &a.data()[(ia * m + i) * k..(ia * m + i + 1) * k];
            for (t, &av) in ar.iter().enumerate() {
                for (o, &bv) in row.iter_mut().zip(&bm[t * n..(t + 1) * n]) {
                    *o += av * bv;
                }
            }
        }
    }
    Ok(())
}
