//! Plain constant padding, the test oracle.
use super::Pad;
use crate::tensor::Tensor;
use crate::Result;

/// `x` padded on H and W with `p.value`.
pub fn pad(p: &Pad, x: &Tensor) -> Result<Tensor> {
    let shape = p.output_shape("reference", x.shape())?;
    let s = x.shape();
    let (h, w, oh, ow) = (s[2], s[3], shape[2], shape[3]);
    let mut out = Tensor::zeros(&shape);
    for (i, v) in out.data_mut().iter_mut().enumerate() {
        let (ox, oy, nc) = (i % ow, (i / ow) % oh, i / (ow * oh));
        let (iy, ix) = (
            oy as isize - p.pads[0] as isize,
            ox as isize - p.pads[1] as isize,
        );
        *v = if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
            x.data()[(nc * h + iy as usize) * w + ix as usize]
        } else {
            p.value
        };
    }
    Ok(out)
}
