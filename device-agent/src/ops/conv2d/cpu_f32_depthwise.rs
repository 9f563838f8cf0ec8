//! Depthwise convolution (one filter per channel), direct, with channels in the vector lanes
//! ([`super::depthwise_lanes`]): each output pixel of a block of `LANES` channels is one vector
//! per tap, plus the per-lane bias, clamped by the fused activation, and transposed back to the
//! planar output.
use super::cpu_f32::ConvGeom;
use super::depthwise_lanes::{self as lanes, Block, Emit, Layout, Taps, W_SLACK};
use crate::backend::cpu::buf::with_scratch;
use crate::backend::cpu::simd::{Simd, SimdFn};
use crate::backend::cpu::CpuCtx;
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::Result;

/// Filters (tap-major) and bias of a depthwise convolution.
#[derive(Debug)]
pub(crate) struct PreparedDepthwise {
    /// `w[t·pitch + c]`: tap `t` of channel `c`; zero past the last channel.
    w: Vec<f32>,
    pitch: usize,
    /// Per channel, zero past the last channel.
    bias: Vec<f32>,
}

pub(crate) fn prepare(w: &[f32], bias: Option<&[f32]>, c: usize, taps: usize) -> PreparedDepthwise {
    let (w, pitch) = lanes::tap_major(w, c, taps);
    let mut b = vec![0f32; c + W_SLACK];
    if let Some(bias) = bias {
        for (d, &v) in b.iter_mut().zip(bias.iter().take(c)) {
            *d = v;
        }
    }
    PreparedDepthwise { w, pitch, bias: b }
}

pub(crate) fn run(
    ctx: &CpuCtx,
    p: &PreparedDepthwise,
    g: &ConvGeom,
    clamp: (f32, f32),
    x: &Tensor,
    out: &SharedTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let l = Layout::new(g, ctx.isa().lanes());
    let offs = l.tap_offsets(g);
    let out_ptr = out.as_ptr() as usize;
    let (chans, rows) = (slice.channels.clone(), slice.rows.clone());
    lanes::for_each_block(ctx, g, &l, chans, rows, |blk, scratch_len| {
        with_scratch(scratch_len, |scratch| {
            ctx.isa().dispatch(Task {
                g,
                l,
                p,
                clamp,
                x: x.data(),
                blk,
                offs: &offs,
                scratch,
                out: out_ptr as *mut f32,
            })
        })
    });
    Ok(())
}

/// One block of channels and rows.
struct Task<'a> {
    g: &'a ConvGeom,
    l: Layout,
    p: &'a PreparedDepthwise,
    clamp: (f32, f32),
    x: &'a [f32],
    blk: Block,
    offs: &'a [usize],
    scratch: &'a mut [f32],
    /// Output tensor: this block's channels and rows lie in the caller's slice.
    out: *mut f32,
}

/// Adds the bias, clamps and stores `LANES` values per pixel (`vals[x·LANES + lane]`).
struct BiasClamp<S: Simd> {
    bias: S::V,
    lo: S::V,
    hi: S::V,
    vals: *mut f32,
}

impl<S: Simd> Emit<S::V> for BiasClamp<S> {
    #[inline(always)]
    unsafe fn emit(&mut self, x0: usize, acc: &[S::V; lanes::COLS]) {
        for (k, &ak) in acc.iter().enumerate() {
            let y = S::clamp(S::add(ak, self.bias), self.lo, self.hi);
            S::store(self.vals.add((x0 + k) * S::LANES), y);
        }
    }
}

impl SimdFn for Task<'_> {
    type Output = ();
    #[inline(always)]
    fn call<S: Simd>(self) {
        let (g, l, blk) = (self.g, self.l, &self.blk);
        let lanes = S::LANES;
        blk.check(g, &l, lanes, self.scratch.len());
        lanes::fill(self.scratch, self.x, g, &l, blk, 0.0);
        let mut vals = vec![0f32; l.owp * lanes];
        let sp = self.scratch.as_ptr();
        // SAFETY: the asserts above and in `fill` bound every access. Weights and bias: `LANES`
        // floats at `c0 <= cout` (per tap), inside the zero slack. Scratch: filled for the
        // block's rows. Results: `owp·LANES` floats. Output: channels `c0 .. c0 + nc` (< cout)
        // and the block's rows (< oh) of batch `b`, which the caller's slice owns.
        unsafe {
            let taps = Taps::new::<S>(&self.p.w, self.p.pitch, blk.c0, self.offs, g);
            let mut out = BiasClamp::<S> {
                bias: S::load(self.p.bias.as_ptr().add(blk.c0)),
                lo: S::splat(self.clamp.0),
                hi: S::splat(self.clamp.1),
                vals: vals.as_mut_ptr(),
            };
            let plane = g.oh * g.ow;
            for (r, oy) in blk.rows.clone().enumerate() {
                let row = sp.add(r * g.sh * l.wp * lanes);
                lanes::pixels_any::<S>(&taps, row, l.owp, &mut out);
                let dst = self.out.add((blk.b * g.cout + blk.c0) * plane + oy * g.ow);
                lanes::transpose_out(&vals, lanes, blk.nc, g.ow, dst, plane);
            }
        }
    }
}
