//! CPU F32 batch normalisation that could not be folded: a per-channel affine map.
use super::BatchNorm;
use crate::backend::cpu::simd::{Simd, SimdFn};
use crate::backend::cpu::{par_spans, CpuCtx, Geom};
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::Result;

/// Computes `slice` of the normalisation of `x` into `out`.
pub fn run(
    ctx: &CpuCtx,
    b: &BatchNorm,
    x: &Tensor,
    out: &SharedTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let affine = b.affine();
    let xd = x.data();
    par_spans(ctx, Geom::of(out.shape()), slice, |c, off, len| {
        // SAFETY: the run lies inside the caller's slice; runs of different tasks are disjoint.
        let dst = unsafe { out.range_mut(off, len) };
        let (m, o) = affine[c];
        ctx.isa().dispatch(Affine {
            src: &xd[off..off + len],
            dst,
            m,
            o,
        });
    });
    Ok(())
}

struct Affine<'a> {
    src: &'a [f32],
    dst: &'a mut [f32],
    m: f32,
    o: f32,
}

impl SimdFn for Affine<'_> {
    type Output = ();
    #[inline(always)]
    fn call<S: Simd>(self) {
        let n = self.src.len().min(self.dst.len());
        let l = S::LANES;
        let (s, d) = (self.src.as_ptr(), self.dst.as_mut_ptr());
        // SAFETY: every access is below `n`, the length of both slices.
        unsafe {
            let (m, o) = (S::splat(self.m), S::splat(self.o));
            let mut i = 0;
            while i + l <= n {
                S::store(d.add(i), S::fma(S::load(s.add(i)), m, o));
                i += l;
            }
            if i < n {
                S::store_partial(
                    d.add(i),
                    S::fma(S::load_partial(s.add(i), n - i), m, o),
                    n - i,
                );
            }
        }
    }
}
