//! Optimised CPU F32 activations (ReLU, Clip, identity for Dropout): a vector clamp (or
//! copy) over the slice's contiguous runs.
use super::Activation;
use crate::backend::cpu::simd::{Simd, SimdFn};
use crate::backend::cpu::{par_spans, CpuCtx, Geom};
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::Result;

/// Computes `slice` of `a(x)` into `out` (same shape as `x`).
pub fn run(
    ctx: &CpuCtx,
    a: Activation,
    x: &Tensor,
    out: &SharedTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let xd = x.data();
    par_spans(ctx, Geom::of(out.shape()), slice, |_, off, len| {
        // SAFETY: the run lies inside the caller's slice; runs of different tasks are disjoint.
        let dst = unsafe { out.range_mut(off, len) };
        let src = &xd[off..off + len];
        if a == Activation::None {
            dst.copy_from_slice(src);
        } else {
            let (lo, hi) = a.bounds();
            ctx.isa().dispatch(ClampMap { src, dst, lo, hi });
        }
    });
    Ok(())
}

/// `dst = clamp(src, lo, hi)`.
pub(crate) struct ClampMap<'a> {
    pub src: &'a [f32],
    pub dst: &'a mut [f32],
    pub lo: f32,
    pub hi: f32,
}

impl SimdFn for ClampMap<'_> {
    type Output = ();
    #[inline(always)]
    fn call<S: Simd>(self) {
        let n = self.src.len().min(self.dst.len());
        let l = S::LANES;
        let (s, d) = (self.src.as_ptr(), self.dst.as_mut_ptr());
        // SAFETY: every access is below `n`, the length of both slices.
        unsafe {
            let (lo, hi) = (S::splat(self.lo), S::splat(self.hi));
            let mut i = 0;
            while i + l <= n {
                S::store(d.add(i), S::clamp(S::load(s.add(i)), lo, hi));
                i += l;
            }
            if i < n {
                S::store_partial(
                    d.add(i),
                    S::clamp(S::load_partial(s.add(i), n - i), lo, hi),
                    n - i,
                );
            }
        }
    }
}
