//! Plain batched matrix product (numpy semantics), the test oracle.
use crate::tensor::Tensor;
use crate::Result;

/// `a @ b`, batched over broadcast leading dimensions.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = super::output_shape("reference", &[a.shape(), b.shape()])?;
    let (sa, sb) = (a.shape(), b.shape());
    let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
    let batch_shape = &shape[..shape.len() - 2];
    let batches: usize = batch_shape.iter().product();
    let mut out = Tensor::zeros(&shape);
    for bi in 0..batches {
        let ia = crate::ops::add::reference::broadcast_index(batch_shape, &sa[..sa.len() - 2], bi);
        let ib = crate::ops::add::reference::broadcast_index(batch_shape, &sb[..sb.len() - 2], bi);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for t in 0..k {
                    acc += a.data()[(ia * m + i) * k + t] as f64
                        * b.data()[(ib * k + t) * n + j] as f64;
                }
                out.data_mut()[(bi * m + i) * n + j] = acc as f32;
            }
        }
    }
    Ok(out)
}
