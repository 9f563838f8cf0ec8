//! CPU F32 Flatten/Reshape (and Constant): a copy of the data, whole output only.
use crate::tensor::{SharedTensor, Tensor};
use crate::{Error, Result};

/// Copies `x`'s elements into `out` (same element count).
pub fn run(x: &Tensor, out: &SharedTensor<'_>) -> Result<()> {
    if x.len() != out.len() {
        return Err(Error::Other(format!(
            "reshape: {} elements into {}",
            x.len(),
            out.len()
        )));
    }
    // SAFETY: non-sliceable op: the caller owns the whole output.
    let dst = unsafe { out.range_mut(0, out.len()) };
    dst.copy_from_slice(x.data());
    Ok(())
}
