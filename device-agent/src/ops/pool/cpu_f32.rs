//! Optimised CPU F32 pooling. Max and average pooling copy the input rows a task needs padded
//! (with −∞ or 0) and split by stride phase, so every window tap is a vector load along the
//! output columns; average pooling multiplies by the separable reciprocal window counts.
//! Global average pooling is a vector sum per channel.
use super::reference::window;
use super::Pool;
use crate::backend::cpu::buf::with_scratch;
use crate::backend::cpu::rows::{fill_phase_rows, phase_width, plan_planes, window_rows};
use crate::backend::cpu::simd::{Simd, SimdFn};
use crate::backend::cpu::{CpuCtx, Geom};
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::Result;

/// Which reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Max,
    Average,
}

/// Computes `slice` of pooling `x` into `out`.
pub fn run(
    ctx: &CpuCtx,
    kind: Kind,
    p: &Pool,
    x: &Tensor,
    out: &SharedTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let s = x.shape();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let (oh, ow) = (out.shape()[2], out.shape()[3]);
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let lanes = ctx.isa().lanes();
    let wq = phase_width(ow, kw, 1, sw, lanes);
    // Reciprocal window sizes along each axis (average pooling).
    let recip = |o: usize, stride: usize, k: usize, lo: usize, hi: usize, len: usize| {
        let ((a, b), (s, e)) = window(o, stride, k, lo, hi, len);
        let count = if p.count_include_pad {
            (b - a) as usize
        } else {
            e - s
        };
        1.0 / count.max(1) as f32
    };
    let rx: Vec<f32> = (0..ow.div_ceil(lanes) * lanes)
        .map(|ox| {
            if ox < ow {
                recip(ox, sw, kw, p.pads[1], p.pads[3], w)
            } else {
                0.0
            }
        })
        .collect();
    let chans = slice.channels.clone();
    let planes = n * chans.len();
    let (pp, rp) = plan_planes(planes, slice.rows.len(), ctx.threads());
    let plane_blocks = planes.div_ceil(pp);
    let row_blocks = slice.rows.len().div_ceil(rp);
    let scratch_len = window_rows(0, rp, sh, kh, 1, 0).len() * sw * wq;
    let pad = if kind == Kind::Max {
        f32::NEG_INFINITY
    } else {
        0.0
    };
    let out_ptr = out.as_ptr() as usize;
    ctx.for_each_task(plane_blocks * row_blocks, |t| {
        let (pb, rb) = (t / row_blocks, t % row_blocks);
        let oy0 = slice.rows.start + rb * rp;
        let oy1 = (oy0 + rp).min(slice.rows.end);
        with_scratch(scratch_len, |scratch| {
            for pi in pb * pp..((pb + 1) * pp).min(planes) {
                let (b, ch) = (pi / chans.len(), chans.start + pi % chans.len());
                let plane = &x.data()[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
                let rows = window_rows(oy0, oy1, sh, kh, 1, p.pads[0]);
                ctx.isa().dispatch(PoolRows {
                    kind,
                    p,
                    plane,
                    h,
                    w,
                    pad,
                    ow,
                    wq,
                    in_rows: rows,
                    scratch: &mut *scratch,
                    rx: &rx,
                    ry: &|oy| recip(oy, sh, kh, p.pads[0], p.pads[2], h),
                    // SAFETY: rows oy0..oy1 of plane (b, ch) lie in the caller's slice.
                    out: (out_ptr as *mut f32).wrapping_add((b * c + ch) * oh * ow),
                    oy: oy0..oy1,
                });
            }
        })
    });
    Ok(())
}

struct PoolRows<'a> {
    kind: Kind,
    p: &'a Pool,
    plane: &'a [f32],
    h: usize,
    w: usize,
    pad: f32,
    ow: usize,
    wq: usize,
    in_rows: std::ops::Range<isize>,
    scratch: &'a mut [f32],
    rx: &'a [f32],
    ry: &'a dyn Fn(usize) -> f32,
    out: *mut f32,
    oy: std::ops::Range<usize>,
}

impl SimdFn for PoolRows<'_> {
    type Output = ();
    #[inline(always)]
    fn call<S: Simd>(self) {
        let l = S::LANES;
        let [kh, kw] = self.p.kernel;
        let [sh, sw] = self.p.stride;
        let max = self.kind == Kind::Max;
        fill_phase_rows::<S>(
            self.plane,
            self.h,
            self.w,
            self.in_rows.clone(),
            sw,
            self.p.pads[1],
            self.wq,
            self.pad,
            self.scratch,
        );
        let scratch = self.scratch.as_ptr();
        // Offset of each column tap in the phase rows (no division in the loops).
        let mut tap_off = vec![0usize; kw];
        for (kx, o) in tap_off.iter_mut().enumerate() {
            *o = (kx % sw) * self.wq + kx / sw;
        }
        // SAFETY: phase rows hold `wq` floats, enough for every tap of every vector of output
        // columns; stores stop at `ow` on rows the caller owns.
        unsafe {
            for oy in self.oy.clone() {
                let orow = self.out.add(oy * self.ow);
                let ry = S::splat(if max { 1.0 } else { (self.ry)(oy) });
                let mut ox = 0;
                while ox < self.ow {
                    let mut acc = S::splat(if max { f32::NEG_INFINITY } else { 0.0 });
                    for ky in 0..kh {
                        // Rows in the padding hold the pad value (−∞ or 0).
                        let iy = (oy * sh + ky) as isize - self.p.pads[0] as isize;
                        let base = scratch.add((iy - self.in_rows.start) as usize * sw * self.wq);
                        for &o in &tap_off {
                            let v = S::load(base.add(o + ox));
                            acc = if max { S::max(acc, v) } else { S::add(acc, v) };
                        }
                    }
                    if !max {
                        acc = S::mul(S::mul(acc, ry), S::load(self.rx.as_ptr().add(ox)));
                    }
                    let n = (self.ow - ox).min(l);
                    S::store_partial(orow.add(ox), acc, n);
                    ox += l;
                }
            }
        }
    }
}

/// Computes `slice` of global average pooling of `x` into `out` (`[N, C, 1, 1]`).
pub fn run_global(ctx: &CpuCtx, x: &Tensor, out: &SharedTensor<'_>, slice: &Slice) -> Result<()> {
    let s = x.shape();
    let hw = s[2] * s[3];
    let g = Geom::of(out.shape());
    let chans = slice.channels.clone();
    let planes = g.outer * chans.len();
    let per = (planes * hw)
        .div_ceil(ctx.threads() * 4)
        .max(32 * 1024)
        .div_ceil(hw.max(1))
        .max(1);
    ctx.for_each_task(planes.div_ceil(per), |t| {
        for pi in t * per..((t + 1) * per).min(planes) {
            let (b, c) = (pi / chans.len(), chans.start + pi % chans.len());
            let plane = &x.data()[(b * s[1] + c) * hw..(b * s[1] + c + 1) * hw];
            let sum = ctx.isa().dispatch(Sum(plane));
            // SAFETY: element (b, c) lies in the caller's slice.
            unsafe { out.range_mut(b * g.c + c, 1)[0] = sum / hw.max(1) as f32 };
        }
    });
    Ok(())
}

/// Sum of a slice.
pub(crate) struct Sum<'a>(pub &'a [f32]);

impl SimdFn for Sum<'_> {
    type Output = f32;
    #[inline(always)]
    fn call<S: Simd>(self) -> f32 {
        let (p, n, l) = (self.0.as_ptr(), self.0.len(), S::LANES);
        // SAFETY: every access is below `n`.
        unsafe {
            let mut acc = [S::zero(); 4];
            let mut i = 0;
            while i + 4 * l <= n {
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = S::add(*a, S::load(p.add(i + u * l)));
                }
                i += 4 * l;
            }
            while i + l <= n {
                acc[0] = S::add(acc[0], S::load(p.add(i)));
                i += l;
            }
            if i < n {
                acc[1] = S::add(acc[1], S::load_partial(p.add(i), n - i));
            }
            S::reduce_add(S::add(S::add(acc[0], acc[1]), S::add(acc[2], acc[3])))
        }
    }
}
