//! Depthwise convolution (one filter per channel), direct and vectorised.
//!
//! For one plane and a block of output rows, the input rows the block reads are copied into
//! `sh × sw` padded *sub-planes* (`sub[rp][cp][i][j] = input[(oy0·sh − pt) + i·sh + rp]
//! [j·sw + cp − pl]`, the padding materialised as zeros), each `wq = ow + max column offset`
//! wide. In a sub-plane every tap of a strided, dilated window is a plain shift, and output
//! `(oy, ox)` sits at the flattened index `q = (oy − oy0)·wq + ox` of every tap's view. So the
//! kernel runs over `q` in whole vectors (rows of 7 or 14 columns are packed into full vectors,
//! the few columns past `ow` are computed and never stored), four accumulators at a time, and
//! stores each vector's row segments with masks. The stride-2 split is one even/odd shuffle
//! per pair of vectors ([`Simd::deinterleave`]).
use super::cpu_f32::ConvGeom;
use crate::backend::cpu::buf::with_scratch;
use crate::backend::cpu::rows::plan_planes;
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

/// Sizes of one task's sub-planes.
#[derive(Clone, Copy, Debug)]
struct SubPlanes {
    /// Floats per sub-plane row.
    wq: usize,
    /// Rows per sub-plane.
    rows: usize,
    /// Floats per sub-plane (rows·wq plus four vectors of slack for the last loads).
    len: usize,
}

impl SubPlanes {
    fn new(g: &ConvGeom, out_rows: usize, lanes: usize) -> SubPlanes {
        let wq = g.ow + (g.kw - 1) * g.dw / g.sw;
        let rows = out_rows + (g.kh - 1) * g.dh / g.sh;
        // Slack: the last group of four vectors may start up to 4 vectors past the rows.
        SubPlanes {
            wq,
            rows,
            len: rows * wq + 4 * lanes,
        }
    }
}

/// One output vector's row segment: lanes `lo..hi` go to `plane[dst + lo ..]` (`dst` may be
/// negative: the vector starts in the previous row).
#[derive(Clone, Copy, Debug)]
struct Segment {
    dst: isize,
    lo: u8,
    hi: u8,
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
    let chans = slice.channels.clone();
    let planes = g.n * chans.len();
    let (pp, rp) = plan_planes(planes, slice.rows.len(), ctx.threads());
    let plane_blocks = planes.div_ceil(pp);
    let row_blocks = slice.rows.len().div_ceil(rp);
    let out_ptr = out.as_ptr() as usize;
    ctx.for_each_task(plane_blocks * row_blocks, |t| {
        let (pb, rb) = (t / row_blocks, t % row_blocks);
        let oy0 = slice.rows.start + rb * rp;
        let oy1 = (oy0 + rp).min(slice.rows.end);
        let sub = SubPlanes::new(g, oy1 - oy0, lanes);
        let cols = phase_columns(g, sub.wq);
        // Each tap's offset in the scratch: its sub-plane, then its row and column shift.
        let offs: Vec<usize> = (0..g.kh)
            .flat_map(|ky| (0..g.kw).map(move |kx| (ky * g.dh, kx * g.dw)))
            .map(|(dy, dx)| {
                ((dy % g.sh) * g.sw + dx % g.sw) * sub.len + (dy / g.sh) * sub.wq + dx / g.sw
            })
            .collect();
        // Output vectors over the flattened rows, and where each one's lanes go.
        let n_flat = (oy1 - oy0) * sub.wq;
        let vectors = n_flat.div_ceil(lanes).next_multiple_of(4);
        let mut segs = Vec::with_capacity(vectors * 2);
        let mut seg_start = Vec::with_capacity(vectors + 1);
        for v in 0..vectors {
            seg_start.push(segs.len());
            let q0 = v * lanes;
            let mut r = q0 / sub.wq;
            while r < oy1 - oy0 && r * sub.wq < q0 + lanes {
                let lo = (r * sub.wq).max(q0) - q0;
                let hi = (r * sub.wq + g.ow).min(q0 + lanes).max(q0) - q0;
                if lo < hi {
                    let dst = ((oy0 + r) * g.ow) as isize - (r * sub.wq) as isize + q0 as isize;
                    segs.push(Segment {
                        dst,
                        lo: lo as u8,
                        hi: hi as u8,
                    });
                }
                r += 1;
            }
        }
        seg_start.push(segs.len());
        with_scratch(g.sh * g.sw * sub.len, |scratch| {
            ctx.isa().dispatch(Planes {
                g,
                p,
                x: x.data(),
                sub,
                cols: &cols,
                row0: (oy0 * g.sh) as isize - g.pt as isize,
                offs: &offs,
                segs: &segs,
                seg_start: &seg_start,
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

/// A block of planes for the rows of one task.
struct Planes<'a> {
    g: &'a ConvGeom,
    p: &'a PreparedDepthwise,
    x: &'a [f32],
    sub: SubPlanes,
    cols: &'a [(usize, usize)],
    /// Input row of sub-plane row 0 of row phase 0 (negative in the top padding).
    row0: isize,
    offs: &'a [usize],
    segs: &'a [Segment],
    seg_start: &'a [usize],
    scratch: &'a mut [f32],
    clamp: (f32, f32),
    /// Output tensor: the task's rows of its planes lie in the caller's slice.
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
        let sp_len = g.sh * g.sw * self.sub.len;
        assert!(self.scratch.len() >= sp_len, "depthwise: scratch too small");
        for pi in self.planes.clone() {
            let (b, c) = (
                pi / self.chans.len(),
                self.chans.start + pi % self.chans.len(),
            );
            let plane = &self.x[(b * g.cin + c) * g.h * g.w..(b * g.cin + c + 1) * g.h * g.w];
            // SAFETY: `fill` writes `sh·sw` sub-planes of `sub.len` floats (asserted above) and
            // reads rows < h, columns < w of the plane.
            unsafe {
                fill::<S>(
                    plane,
                    g,
                    self.sub,
                    self.cols,
                    self.row0,
                    self.scratch.as_mut_ptr(),
                )
            };
            let w = &self.p.w[c * khw..(c + 1) * khw];
            let sp = self.scratch.as_ptr();
            // SAFETY: every vector's loads are at `q + off` with `q < rows·wq` rounded up to a
            // vector and `off` inside its sub-plane, within the slack of `sub.len`; stores cover
            // segment lanes, which are columns < ow of the task's rows of plane (b, c).
            unsafe {
                let op = self.out.add((b * g.cout + c) * g.oh * g.ow);
                let a = Args {
                    offs: self.offs,
                    segs: self.segs,
                    seg_start: self.seg_start,
                    w,
                    sp,
                    op,
                    bias: self.p.bias[c],
                    clamp: self.clamp,
                };
                match khw {
                    9 => vectors::<S, 9>(&a),
                    25 => vectors::<S, 25>(&a),
                    _ => vectors::<S, 0>(&a),
                }
            }
        }
    }
}

struct Args<'a> {
    offs: &'a [usize],
    segs: &'a [Segment],
    seg_start: &'a [usize],
    w: &'a [f32],
    sp: *const f32,
    op: *mut f32,
    bias: f32,
    clamp: (f32, f32),
}

/// The plane's output vectors, four at a time. `T` is the tap count when known at compile
/// time (the splatted weights then stay in registers), else 0.
#[inline(always)]
unsafe fn vectors<S: Simd, const T: usize>(a: &Args<'_>) {
    let l = S::LANES;
    let taps = if T > 0 { T } else { a.offs.len() };
    let mut wv = [S::zero(); 32];
    for (k, x) in wv.iter_mut().enumerate().take(T.min(32)) {
        *x = S::splat(*a.w.get_unchecked(k));
    }
    let weight = |k: usize| {
        if T > 0 && T <= 32 {
            wv[k]
        } else {
            S::splat(*a.w.get_unchecked(k))
        }
    };
    let (lo, hi, b) = (S::splat(a.clamp.0), S::splat(a.clamp.1), S::splat(a.bias));
    let vectors = a.seg_start.len() - 1;
    for v0 in (0..vectors).step_by(4) {
        let p = a.sp.add(v0 * l);
        let mut acc = [b; 4];
        for k in 0..taps {
            let (wk, pk) = (weight(k), p.add(*a.offs.get_unchecked(k)));
            for (u, x) in acc.iter_mut().enumerate() {
                *x = S::fma(wk, S::load(pk.add(u * l)), *x);
            }
        }
        for (u, x) in acc.iter().enumerate() {
            let y = S::clamp(*x, lo, hi);
            for s in &a.segs[a.seg_start[v0 + u]..a.seg_start[v0 + u + 1]] {
                S::store_lanes(a.op.wrapping_offset(s.dst), y, s.lo as usize, s.hi as usize);
            }
        }
    }
}

/// For each column phase `cp`, the sub-plane columns `[j_lo, j_hi)` that lie inside the input
/// row (computed once per task: no division in the copy loops).
fn phase_columns(g: &ConvGeom, wq: usize) -> Vec<(usize, usize)> {
    (0..g.sw)
        .map(|cp| {
            let lo = g.pl.saturating_sub(cp).div_ceil(g.sw).min(wq);
            (
                lo,
                (g.w + g.pl).saturating_sub(cp).div_ceil(g.sw).clamp(lo, wq),
            )
        })
        .collect()
}

/// Copies the input rows of one plane into the task's `sh × sw` sub-planes (zeros outside the
/// plane), each followed by zeroed slack.
///
/// # Safety
/// `dst` holds `sh·sw·sub.len` floats; `plane` holds `h·w`; `cols` holds [`phase_columns`].
#[inline(always)]
unsafe fn fill<S: Simd>(
    plane: &[f32],
    g: &ConvGeom,
    sub: SubPlanes,
    cols: &[(usize, usize)],
    row0: isize,
    dst: *mut f32,
) {
    let l = S::LANES;
    let zero = S::zero();
    for rp in 0..g.sh {
        for i in 0..sub.rows {
            let iy = row0 + (i * g.sh + rp) as isize;
            let d = |cp: usize| dst.add((rp * g.sw + cp) * sub.len + i * sub.wq);
            if iy < 0 || iy >= g.h as isize {
                for cp in 0..g.sw {
                    zeros::<S>(d(cp), sub.wq);
                }
                continue;
            }
            let row = plane.as_ptr().add(iy as usize * g.w);
            // Columns j of phase cp read input column j·sw + cp − pl: [j_lo(cp), j_hi(cp)) are
            // inside the row, the rest is padding. j_lo and j_hi fall as cp grows.
            let j_lo = |cp: usize| cols.get_unchecked(cp).0;
            let j_hi = |cp: usize| cols.get_unchecked(cp).1;
            for cp in 0..g.sw {
                zeros::<S>(d(cp), j_lo(cp));
                zeros::<S>(d(cp).add(j_hi(cp)), sub.wq - j_hi(cp));
            }
            // From v_lo = j_lo(0) on, every phase starts inside the row; before it, a few
            // phases have a column or two (left padding smaller than the stride).
            let v_lo = j_lo(0);
            for cp in 1..g.sw {
                for jj in j_lo(cp)..v_lo.min(j_hi(cp)) {
                    *d(cp).add(jj) = *row.add(jj * g.sw + cp - g.pl);
                }
            }
            if g.sw == 1 {
                let n = j_hi(0) - v_lo;
                let (src, dp) = (row.add(v_lo - g.pl), d(0).add(v_lo));
                let mut j = 0;
                while j + l <= n {
                    S::store(dp.add(j), S::load(src.add(j)));
                    j += l;
                }
                if j < n {
                    S::store_partial(dp.add(j), S::load_partial(src.add(j), n - j), n - j);
                }
            } else if g.sw == 2 {
                // Both phases of 2·L input columns from one shuffle (partial at the end).
                let (h0, h1) = (j_hi(0), j_hi(1));
                let mut j = v_lo;
                while j < h0 {
                    let s0 = 2 * j - g.pl;
                    let avail = g.w - s0;
                    let a = if avail >= l {
                        S::load(row.add(s0))
                    } else {
                        S::load_partial(row.add(s0), avail)
                    };
                    let b = if avail >= 2 * l {
                        S::load(row.add(s0 + l))
                    } else if avail > l {
                        S::load_partial(row.add(s0 + l), avail - l)
                    } else {
                        S::zero()
                    };
                    let (e, o) = S::deinterleave(a, b);
                    S::store_partial(d(0).add(j), e, (h0 - j).min(l));
                    if h1 > j {
                        S::store_partial(d(1).add(j), o, (h1 - j).min(l));
                    }
                    j += l;
                }
            } else {
                for cp in 0..g.sw {
                    for jj in v_lo.max(j_lo(cp))..j_hi(cp) {
                        *d(cp).add(jj) = *row.add(jj * g.sw + cp - g.pl);
                    }
                }
            }
        }
    }
    // The slack after each sub-plane (read by the last vectors, never stored).
    for sp in 0..g.sh * g.sw {
        let s = dst.add(sp * sub.len + sub.rows * sub.wq);
        for u in 0..4 {
            S::store(s.add(u * l), zero);
        }
    }
}

/// `n` zeros at `p`.
#[inline(always)]
unsafe fn zeros<S: Simd>(p: *mut f32, n: usize) {
    if n < 4 {
        // Padding columns: one or two, cheaper than a masked store on some cores.
        for i in 0..n {
            *p.add(i) = 0.0;
        }
        return;
    }
    let (l, z) = (S::LANES, S::zero());
    let mut i = 0;
    while i + l <= n {
        S::store(p.add(i), z);
        i += l;
    }
    if i < n {
        S::store_partial(p.add(i), z, n - i);
    }
}
