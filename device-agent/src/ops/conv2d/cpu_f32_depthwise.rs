//! Depthwise convolution (one filter per channel), direct: each output row is a sum of
//! `kh·kw` shifted input rows times a scalar, vectorised along the output columns. Input rows
//! are first copied padded and split by stride phase ([`fill_phase_rows`]) so that every tap is
//! a plain vector load, for any stride, dilation and padding.
use super::cpu_f32::ConvGeom;
use crate::backend::cpu::buf::with_scratch;
use crate::backend::cpu::rows::{fill_phase_rows, input_rows, phase_width, plan_planes};
use crate::backend::cpu::simd::{Simd, SimdFn};
use crate::backend::cpu::CpuCtx;
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::Result;

/// Filters and bias of a depthwise convolution.
#[derive(Debug)]
pub(crate) struct PreparedDepthwise {
    w: Vec<f32>,
    bias: Vec<f32>,
}

pub(crate) fn prepare(w: &[f32], bias: Option<&[f32]>, c: usize, taps: usize) -> PreparedDepthwise {
    PreparedDepthwise { w: w[..c * taps].to_vec(), bias: bias.map_or_else(|| vec![0.0; c], |b| b.to_vec()) }
}

pub(crate) fn run(ctx: &CpuCtx, p: &PreparedDepthwise, g: &ConvGeom, clamp: (f32, f32), x: &Tensor, out: &SharedTensor<'_>, slice: &Slice) -> Result<()> {
    let lanes = ctx.isa().lanes();
    let wq = phase_width(g.ow, g.kw, g.dw, g.sw, lanes);
    let chans = slice.channels.clone();
    let planes = g.n * chans.len();
    let (pp, rp) = plan_planes(planes, slice.rows.len(), ctx.threads());
    let plane_blocks = planes.div_ceil(pp);
    let row_blocks = slice.rows.len().div_ceil(rp);
    let max_in_rows = ((rp - 1) * g.sh + (g.kh - 1) * g.dh + 1).min(g.h);
    let scratch_len = max_in_rows * g.sw * wq;
    let xd = x.data();
    let out_ptr = out.as_ptr() as usize;
    ctx.for_each_task(plane_blocks * row_blocks, |t| {
        let (pb, rb) = (t / row_blocks, t % row_blocks);
        let oy0 = slice.rows.start + rb * rp;
        let oy1 = (oy0 + rp).min(slice.rows.end);
        with_scratch(scratch_len, |scratch| {
            for pi in pb * pp..((pb + 1) * pp).min(planes) {
                let (b, c) = (pi / chans.len(), chans.start + pi % chans.len());
                let plane = &xd[(b * g.cin + c) * g.h * g.w..(b * g.cin + c + 1) * g.h * g.w];
                let rows = input_rows(oy0, oy1, g.sh, g.kh, g.dh, g.pt, g.h);
                fill_phase_rows(plane, g.w, rows.clone(), g.sw, g.pl, wq, 0.0, scratch);
                let job = Rows {
                    g,
                    wq: wq,
                    in_rows: rows,
                    scratch: scratch.as_ptr(),
                    w: &p.w[c * g.kh * g.kw..(c + 1) * g.kh * g.kw],
                    bias: p.bias[c],
                    clamp,
                    // SAFETY: rows oy0..oy1 of plane (b, c) are inside the slice owned by the caller.
                    out: (out_ptr as *mut f32).wrapping_add((b * g.cout + c) * g.oh * g.ow),
                    oy: oy0..oy1,
                };
                ctx.isa().dispatch(job);
            }
        })
    });
    Ok(())
}

/// Output rows `oy` of one plane from its phase rows in `scratch`.
struct Rows<'a> {
    g: &'a ConvGeom,
    wq: usize,
    in_rows: std::ops::Range<usize>,
    scratch: *const f32,
    w: &'a [f32],
    bias: f32,
    clamp: (f32, f32),
    out: *mut f32,
    oy: std::ops::Range<usize>,
}

impl SimdFn for Rows<'_> {
    type Output = ();
    #[inline(always)]
    fn call<S: Simd>(self) {
        let g = self.g;
        let l = S::LANES;
        // SAFETY: phase rows hold `wq >= round_up(ow, L) + max tap offset` floats, so every
        // vector load stays inside the scratch; stores cover columns < ow of owned rows.
        unsafe {
            let (lo, hi, bias) = (S::splat(self.clamp.0), S::splat(self.clamp.1), S::splat(self.bias));
            for oy in self.oy.clone() {
                let orow = self.out.add(oy * g.ow);
                let mut ox = 0;
                while ox + 4 * l <= g.ow {
                    let mut acc = [bias; 4];
                    self.taps::<S>(oy, |wv, p| {
                        let p = p.add(ox);
                        for (u, a) in acc.iter_mut().enumerate() {
                            *a = S::fma(wv, S::load(p.add(u * l)), *a);
                        }
                    });
                    for (u, a) in acc.iter().enumerate() {
                        S::store(orow.add(ox + u * l), S::clamp(*a, lo, hi));
                    }
                    ox += 4 * l;
                }
                while ox < g.ow {
                    let mut acc = bias;
                    self.taps::<S>(oy, |wv, p| acc = S::fma(wv, S::load(p.add(ox)), acc));
                    let n = (g.ow - ox).min(l);
                    S::store_partial(orow.add(ox), S::clamp(acc, lo, hi), n);
                    ox += l;
                }
            }
        }
    }
}

impl Rows<'_> {
    /// Calls `f(weight, row pointer)` for each tap of output row `oy` inside the input.
    #[inline(always)]
    unsafe fn taps<S: Simd>(&self, oy: usize, mut f: impl FnMut(S::V, *const f32)) {
        let g = self.g;
        for ky in 0..g.kh {
            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
            if iy < self.in_rows.start as isize || iy >= self.in_rows.end as isize {
                continue;
            }
            let base = self.scratch.add((iy as usize - self.in_rows.start) * g.sw * self.wq);
            for kx in 0..g.kw {
                let t = kx * g.dw;
                let p = base.add((t % g.sw) * self.wq + t / g.sw);
                f(S::splat(*self.w.get_unchecked(ky * g.kw + kx)), p);
            }
        }
    }
}
