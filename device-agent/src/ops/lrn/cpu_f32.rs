//! Optimised CPU F32 local response normalisation: per output run, a vector sum of squares
//! over the channel window, then `x · t^(−β)` with `t^(−0.75) = r·√r, r = 1/√t` (AlexNet and
//! GoogLeNet use β = 0.75) or `powf` for other β.
use super::reference::window;
use super::Lrn;
use crate::backend::cpu::simd::{Simd, SimdFn};
use crate::backend::cpu::{par_spans, CpuCtx, Geom};
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::Result;

/// Computes `slice` of LRN of `x` into `out`.
pub fn run(ctx: &CpuCtx, l: &Lrn, x: &Tensor, out: &SharedTensor<'_>, slice: &Slice) -> Result<()> {
    let g = Geom::of(out.shape());
    let plane = g.h * g.inner;
    par_spans(ctx, g, slice, |c, off, len| {
        let (lo, hi) = window(l, c, g.c);
        // SAFETY: the run lies inside the caller's slice; runs of different tasks are disjoint.
        let dst = unsafe { out.range_mut(off, len) };
        // Channel `lo` of the same image and rows: `off` moved back by `c - lo` planes.
        let first = off - (c - lo) * plane;
        ctx.isa().dispatch(LrnRun {
            l,
            x: x.data(),
            first,
            plane,
            channels: hi - lo + 1,
            own: off,
            dst,
        });
    });
    Ok(())
}

struct LrnRun<'a> {
    l: &'a Lrn,
    x: &'a [f32],
    first: usize,
    plane: usize,
    channels: usize,
    own: usize,
    dst: &'a mut [f32],
}

impl SimdFn for LrnRun<'_> {
    type Output = ();
    #[inline(always)]
    fn call<S: Simd>(self) {
        let n = self.dst.len();
        let l = S::LANES;
        let x = self.x.as_ptr();
        let d = self.dst.as_mut_ptr();
        let beta = self.l.beta;
        // SAFETY: channel planes lo..=hi of this run exist (window clipped to the channels), so
        // every read at `first + k·plane + i` with `i < n` is inside `x`.
        unsafe {
            let (bias, scale) = (
                S::splat(self.l.bias),
                S::splat(self.l.alpha / self.l.size as f32),
            );
            let one = S::splat(1.0);
            let mut i = 0;
            while i < n {
                let m = (n - i).min(l);
                let ld = |p: *const f32| {
                    if m == l {
                        S::load(p)
                    } else {
                        S::load_partial(p, m)
                    }
                };
                let mut sum = S::zero();
                for k in 0..self.channels {
                    let v = ld(x.add(self.first + k * self.plane + i));
                    sum = S::fma(v, v, sum);
                }
                let t = S::fma(sum, scale, bias);
                let xv = ld(x.add(self.own + i));
                let y = if beta == 0.75 {
                    let r = S::div(one, S::sqrt(t));
                    S::mul(xv, S::mul(r, S::sqrt(r)))
                } else if beta == 0.5 {
                    S::div(xv, S::sqrt(t))
                } else {
                    let mut tt = [0.0f32; 16];
                    S::store(tt.as_mut_ptr(), t);
                    for v in tt.iter_mut().take(l) {
                        *v = v.powf(-beta);
                    }
                    S::mul(xv, S::load(tt.as_ptr()))
                };
                S::store_partial(d.add(i), y, m);
                i += l;
            }
        }
    }
}
