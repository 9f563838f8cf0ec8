//! Depthwise convolution (one filter per channel), direct: each output row is a sum of
//! `kh·kw` shifted input rows times a scalar, vectorised along the output columns. Input rows
//! are first copied padded and split by stride phase ([`fill_phase_rows`]) so that every tap is
//! a plain vector load, for any stride, dilation and padding.
use super::cpu_f32::ConvGeom;
use crate::backend::cpu::buf::with_scratch;
use crate::backend::cpu::rows::{fill_phase_rows, phase_width, plan_planes, window_rows};
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
    PreparedDepthwise {
        w: w[..c * taps].to_vec(),
        bias: bias.map_or_else(|| vec![0.0; c], |b| b.to_vec()),
    }
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
    let lanes = ctx.isa().lanes();
    let wq = phase_width(g.ow, g.kw, g.dw, g.sw, lanes);
    let row_stride = g.sw * wq;
    // Every tap's offset from its output row's first window row (all taps exist: rows in the
    // padding are copied as zeros).
    let offs: Vec<usize> = (0..g.kh)
        .flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx)))
        .map(|(ky, kx)| ky * g.dh * row_stride + (kx * g.dw % g.sw) * wq + kx * g.dw / g.sw)
        .collect();
    let chans = slice.channels.clone();
    let planes = g.n * chans.len();
    let (pp, rp) = plan_planes(planes, slice.rows.len(), ctx.threads());
    let plane_blocks = planes.div_ceil(pp);
    let row_blocks = slice.rows.len().div_ceil(rp);
    let scratch_len = window_rows(0, rp, g.sh, g.kh, g.dh, 0).len() * row_stride;
    let out_ptr = out.as_ptr() as usize;
    ctx.for_each_task(plane_blocks * row_blocks, |t| {
        let (pb, rb) = (t / row_blocks, t % row_blocks);
        let oy0 = slice.rows.start + rb * rp;
        let oy1 = (oy0 + rp).min(slice.rows.end);
        // Vectors of output columns of the task's rows: (scratch offset, output offset, lanes).
        let mut items = Vec::with_capacity((oy1 - oy0) * g.ow.div_ceil(lanes));
        for (r, oy) in (oy0..oy1).enumerate() {
            for ox in (0..g.ow).step_by(lanes) {
                items.push(Item { src: r * g.sh * row_stride + ox, dst: oy * g.ow + ox, n: (g.ow - ox).min(lanes) });
            }
        }
        with_scratch(scratch_len, |scratch| {
            ctx.isa().dispatch(Planes {
                g,
                p,
                x: x.data(),
                wq,
                rows: window_rows(oy0, oy1, g.sh, g.kh, g.dh, g.pt),
                offs: &offs,
                items: &items,
                scratch,
                clamp,
                out: out_ptr as *mut f32,
                planes: pb * pp..((pb + 1) * pp).min(planes),
                chans: chans.clone(),
            })
        })
    });
    Ok(())
}

/// One vector of output columns: its first window row's offset in the scratch, its offset in
/// the output plane, and how many of its lanes are columns.
#[derive(Clone, Copy, Debug)]
struct Item {
    src: usize,
    dst: usize,
    n: usize,
}

/// A block of planes for the rows of one task: each plane's window rows are copied into
/// `scratch`, then output vectors are computed four at a time (independent accumulators).
struct Planes<'a> {
    g: &'a ConvGeom,
    p: &'a PreparedDepthwise,
    x: &'a [f32],
    wq: usize,
    rows: std::ops::Range<isize>,
    offs: &'a [usize],
    items: &'a [Item],
    scratch: &'a mut [f32],
    clamp: (f32, f32),
    /// Output tensor; the task's rows of its planes lie in the caller's slice.
    out: *mut f32,
    planes: std::ops::Range<usize>,
    chans: std::ops::Range<usize>,
}

impl SimdFn for Planes<'_> {
    type Output = ();
    #[inline(always)]
    fn call<S: Simd>(self) {
        let g = self.g;
        let khw = g.kh * g.kw;
        for pi in self.planes.clone() {
            let (b, c) = (pi / self.chans.len(), self.chans.start + pi % self.chans.len());
            let plane = &self.x[(b * g.cin + c) * g.h * g.w..(b * g.cin + c + 1) * g.h * g.w];
            fill_phase_rows(plane, g.h, g.w, self.rows.clone(), g.sw, g.pl, self.wq, 0.0, self.scratch);
            let w = &self.p.w[c * khw..(c + 1) * khw];
            let bias = self.p.bias[c];
            // SAFETY: the output plane (b, c) is in the tensor and its task rows in the slice.
            let op = unsafe { self.out.add((b * g.cout + c) * g.oh * g.ow) };
            let sp = self.scratch.as_ptr();
            // SAFETY: every item's window rows are in the scratch (`rows` covers them) and each
            // row holds `wq >= round_up(ow, L) + max column offset` floats, so all vector loads
            // stay inside it; item stores cover the item's `n` columns of an owned row.
            unsafe {
                match khw {
                    9 => items::<S, 9>(self.items, self.offs, w, sp, op, bias, self.clamp),
                    25 => items::<S, 25>(self.items, self.offs, w, sp, op, bias, self.clamp),
                    _ => items::<S, 0>(self.items, self.offs, w, sp, op, bias, self.clamp),
                }
            }
        }
    }
}

/// Output vectors `items` of one plane, four at a time. `T` is the tap count when known at
/// compile time (weights then stay in registers), else 0.
#[inline(always)]
unsafe fn items<S: Simd, const T: usize>(items: &[Item], offs: &[usize], w: &[f32], sp: *const f32, op: *mut f32, bias: f32, clamp: (f32, f32)) {
    let taps = if T > 0 { T } else { offs.len() };
    let mut wv = [S::zero(); 32];
    for k in 0..T.min(32) {
        wv[k] = S::splat(*w.get_unchecked(k));
    }
    let (lo, hi, b) = (S::splat(clamp.0), S::splat(clamp.1), S::splat(bias));
    let weight = |k: usize| if T > 0 && T <= 32 { wv[k] } else { S::splat(*w.get_unchecked(k)) };
    let mut chunks = items.chunks_exact(4);
    for it in &mut chunks {
        let p = [sp.add(it[0].src), sp.add(it[1].src), sp.add(it[2].src), sp.add(it[3].src)];
        let mut acc = [b; 4];
        for k in 0..taps {
            let (wk, o) = (weight(k), *offs.get_unchecked(k));
            for u in 0..4 {
                acc[u] = S::fma(wk, S::load(p[u].add(o)), acc[u]);
            }
        }
        for u in 0..4 {
            S::store_partial(op.add(it[u].dst), S::clamp(acc[u], lo, hi), it[u].n);
        }
    }
    for it in chunks.remainder() {
        let p = sp.add(it.src);
        let mut acc = b;
        for k in 0..taps {
            acc = S::fma(weight(k), S::load(p.add(*offs.get_unchecked(k))), acc);
        }
        S::store_partial(op.add(it.dst), S::clamp(acc, lo, hi), it.n);
    }
}
