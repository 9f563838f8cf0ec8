//! CPU 8-bit element-wise addition: both operands rescaled to the output's quantization in
//! 32-bit fixed point ([`AddRequant`]), vectorised by the compiler inside the 8-bit
//! instruction set's target features. Operands of the output's shape are read along the
//! slice's contiguous runs; broadcast operands through an index walk.
use super::reference::broadcast_index;
use crate::backend::cpu::simd_q8::{QDot, QFn, QIsa};
use crate::backend::cpu::{par_spans, CpuCtx, Geom};
use crate::quant::{AddRequant, QTensor, SharedQTensor};
use crate::tensor::Slice;
use crate::Result;

/// Computes `slice` of `a + b` into `out`, rescaled by `r`.
pub fn run(
    ctx: &CpuCtx,
    isa: QIsa,
    r: &AddRequant,
    a: &QTensor,
    b: &QTensor,
    out: &SharedQTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let shape = out.shape().to_vec();
    let same = a.shape() == shape.as_slice() && b.shape() == shape.as_slice();
    par_spans(ctx, Geom::of(&shape), slice, |_, off, len| {
        // SAFETY: the run lies inside the caller's slice; runs of different tasks are disjoint.
        let dst = unsafe { out.range_mut(off, len) };
        if same {
            isa.dispatch(AddMap {
                r,
                a: &a.data()[off..off + len],
                b: &b.data()[off..off + len],
                dst,
            });
        } else {
            for (e, v) in dst.iter_mut().enumerate() {
                let i = off + e;
                *v = r.apply(
                    a.data()[broadcast_index(&shape, a.shape(), i)],
                    b.data()[broadcast_index(&shape, b.shape(), i)],
                );
            }
        }
    });
    Ok(())
}

/// `dst[i] = r.apply(a[i], b[i])`.
struct AddMap<'a> {
    r: &'a AddRequant,
    a: &'a [u8],
    b: &'a [u8],
    dst: &'a mut [u8],
}

impl QFn for AddMap<'_> {
    type Output = ();
    #[inline(always)]
    fn call<D: QDot>(self) {
        let r = *self.r;
        let half = 1i32 << (r.shift - 1);
        for ((d, &x), &y) in self.dst.iter_mut().zip(self.a).zip(self.b) {
            let s = r.a * (i32::from(x) - r.za) + r.b * (i32::from(y) - r.zb) + half;
            *d = ((s >> r.shift) + r.zy).clamp(r.lo, r.hi) as u8;
        }
    }
}
