//! 8-bit depthwise convolution (one filter per channel), direct: each output row is a sum of
//! `kh·kw` shifted input rows times a weight, vectorised along output columns, then
//! requantised per channel.
//!
//! **Arithmetic**: the products `w·x` (8-bit weight × 8-bit code) and their sums are computed
//! in f32 lanes with fused multiply-adds. This is exact integer arithmetic: every product is
//! below 255·127 and a sum of `T` of them below `T·32,385 < 2^24` (checked at prepare:
//! [`fits`]), so no f32 operation rounds, and the exact sum is converted to i32 before the
//! integer requantisation — bit for bit what the integer reference computes. Depthwise
//! layers have only 9 or 25 products per output: on x86 without VNNI the FMA units (two per
//! core) outrun the 16-bit integer multiply path here, which needs interleaving shuffles to
//! pair taps.
//!
//! **Layout**: a task's input rows of one plane are copied once into `sh·sw` sub-planes (row
//! phase × column phase of the stride, as the F32 kernel does), each `wq = ow + (kw−1)·dw/sw`
//! columns wide, padding filled with the zero point. Output position `p = r·wq + ox` of the
//! task's rows then reads tap `(ky, kx)` at `p + offset(ky, kx)` in one sub-plane, whatever
//! the stride, dilation and padding: vectors run over the flattened rows (columns `ox >= ow`
//! are computed and dropped), so narrow late layers (7×7, 14×14) waste few lanes, and four
//! vectors at a time keep four independent accumulators to hide the FMA latency.
use super::cpu_f32::ConvGeom;
use crate::backend::cpu::buf::with_scratch;
use crate::backend::cpu::gemm_q8::QOut;
use crate::backend::cpu::simd::Simd;
use crate::backend::cpu::simd_q8::{QDot, QFn, QIsa, ReqArrays, ReqVecs};
use crate::backend::cpu::CpuCtx;
use crate::quant::{ChannelRequant, QTensor, SharedQTensor};
use crate::tensor::Slice;
use crate::Result;

/// Filters (exact f32 copies of the 8-bit weights) and per-channel requantisation.
#[derive(Debug)]
pub(crate) struct PreparedDepthwiseQ8 {
    w: Vec<f32>,
    req: ReqArrays,
}

/// True when `taps` products of 8-bit values sum exactly in f32.
pub(crate) fn fits(taps: usize) -> bool {
    taps * 255 * 127 < 1 << 24
}

/// `w`: `c × taps` weights; `req`: per channel (bias with the zero point folded in: the kernel
/// sums `w·x` on raw codes, padding being the zero point).
pub(crate) fn prepare(
    w: &[i8],
    req: &[ChannelRequant],
    c: usize,
    taps: usize,
) -> PreparedDepthwiseQ8 {
    PreparedDepthwiseQ8 {
        w: w[..c * taps].iter().map(|&v| f32::from(v)).collect(),
        req: ReqArrays::new(req, c),
    }
}

/// Planes × row blocks for `threads` workers: whole planes grouped when there are many, row
/// blocks when there are few. Returns `(planes per task, rows per task)`.
fn plan(planes: usize, rows: usize, threads: usize) -> (usize, usize) {
    let target = threads * 8;
    if threads <= 1 || planes == 0 || rows == 0 {
        return (planes.max(1), rows.max(1));
    }
    if planes >= target {
        (planes.div_ceil(target), rows)
    } else {
        let blocks = target.div_ceil(planes).min(rows);
        (1, rows.div_ceil(blocks))
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    ctx: &CpuCtx,
    isa: QIsa,
    p: &PreparedDepthwiseQ8,
    g: &ConvGeom,
    q: QOut,
    x: &QTensor,
    out: &SharedQTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let lanes = isa.shape().lanes;
    let chans = slice.channels.clone();
    let planes = g.n * chans.len();
    let (pp, rp) = plan(planes, slice.rows.len(), ctx.threads());
    let plane_blocks = planes.div_ceil(pp);
    let row_blocks = slice.rows.len().div_ceil(rp);
    // Row pitch of the sub-planes: flattened rows at the narrowest pitch, or rows padded to
    // whole vectors, whichever computes fewer vectors (narrow outputs on wide vectors favour
    // the first, rows just under a multiple of the vector width the second).
    let shift = (g.kw - 1) * g.dw / g.sw;
    let per_row = g.ow.div_ceil(lanes);
    let flat = (g.ow + shift) * rp;
    let aligned = flat.div_ceil(lanes) > per_row * rp;
    let wq = if aligned {
        per_row * lanes + shift
    } else {
        g.ow + shift
    };
    // Slack after the rows: the last group of four vectors and the widest tap shift.
    let sub_len = |rows: usize| (rows + (g.kh - 1) * g.dh / g.sh + 1) * wq + 4 * lanes;
    let scratch_len = g.sh * g.sw * sub_len(rp);
    let out_ptr = out.as_ptr() as usize;
    let zx = x.qparams().zero_point;
    ctx.for_each_task(plane_blocks * row_blocks, |t| {
        let (pb, rb) = (t / row_blocks, t % row_blocks);
        let oy0 = slice.rows.start + rb * rp;
        let oy1 = (oy0 + rp).min(slice.rows.end);
        let nr = oy1 - oy0;
        let sl = sub_len(nr);
        // Each tap's offset: its sub-plane, then its row and column shift.
        let offs: Vec<usize> = (0..g.kh)
            .flat_map(|ky| (0..g.kw).map(move |kx| (ky * g.dh, kx * g.dw)))
            .map(|(dy, dx)| ((dy % g.sh) * g.sw + dx % g.sw) * sl + (dy / g.sh) * wq + dx / g.sw)
            .collect();
        // Output vectors (their first position in the flattened rows), in groups of four, and
        // where their lanes go; padding vectors compute position 0 again and store nothing.
        let mut starts: Vec<usize> = if aligned {
            (0..nr)
                .flat_map(|r| (0..per_row).map(move |k| r * wq + k * lanes))
                .collect()
        } else {
            (0..(nr * wq).div_ceil(lanes)).map(|v| v * lanes).collect()
        };
        let real = starts.len();
        starts.resize(real.next_multiple_of(4), 0);
        let mut segs = Vec::with_capacity(starts.len() * 2);
        let mut seg_start = Vec::with_capacity(starts.len() + 1);
        for (v, &q0) in starts.iter().enumerate() {
            seg_start.push(segs.len());
            if v >= real {
                continue;
            }
            let mut r = q0 / wq;
            while r < nr && r * wq < q0 + lanes {
                let lo = (r * wq).max(q0);
                let hi = (r * wq + g.ow).min(q0 + lanes);
                if lo < hi {
                    segs.push(Segment {
                        lane: (lo - q0) as u8,
                        n: (hi - lo) as u8,
                        dst: (oy0 + r) * g.ow + lo - r * wq,
                    });
                }
                r += 1;
            }
        }
        seg_start.push(segs.len());
        with_scratch(scratch_len, |scratch| {
            isa.dispatch(Planes {
                g,
                p,
                q,
                x: x.data(),
                zx,
                wq,
                sub_len: sl,
                iy0: (oy0 * g.sh) as isize - g.pt as isize,
                rows_in: nr + (g.kh - 1) * g.dh / g.sh,
                offs: &offs,
                starts: &starts,
                segs: &segs,
                seg_start: &seg_start,
                planes: pb * pp..((pb + 1) * pp).min(planes),
                chans: chans.clone(),
                scratch,
                out: out_ptr as *mut u8,
            })
        })
    });
    Ok(())
}

/// A run of a vector's lanes that lands in one output row: lanes `lane .. lane + n` go to
/// output element `dst` onwards (of the plane).
#[derive(Clone, Copy, Debug)]
struct Segment {
    lane: u8,
    n: u8,
    dst: usize,
}

/// A block of planes for the rows of one task.
struct Planes<'a> {
    g: &'a ConvGeom,
    p: &'a PreparedDepthwiseQ8,
    q: QOut,
    x: &'a [u8],
    zx: u8,
    wq: usize,
    sub_len: usize,
    /// Input row of sub-plane row 0 of row phase 0 (negative in the top padding).
    iy0: isize,
    /// Rows per sub-plane.
    rows_in: usize,
    offs: &'a [usize],
    starts: &'a [usize],
    segs: &'a [Segment],
    seg_start: &'a [usize],
    planes: std::ops::Range<usize>,
    chans: std::ops::Range<usize>,
    scratch: &'a mut [f32],
    /// Output codes: the task's rows of its planes lie in the caller's slice.
    out: *mut u8,
}

impl QFn for Planes<'_> {
    type Output = ();
    #[inline(always)]
    fn call<D: QDot>(self) {
        let g = self.g;
        let taps = g.kh * g.kw;
        assert!(
            self.scratch.len() >= g.sh * g.sw * self.sub_len,
            "depthwise: scratch too small"
        );
        let sp = self.scratch.as_mut_ptr();
        for pi in self.planes.clone() {
            let (b, c) = (
                pi / self.chans.len(),
                self.chans.start + pi % self.chans.len(),
            );
            let plane = &self.x[(b * g.cin + c) * g.h * g.w..(b * g.cin + c + 1) * g.h * g.w];
            // SAFETY: the fill writes `sh·sw` sub-planes of `sub_len` floats (asserted above);
            // every vector reads `LANES` floats at `q + off`, with `q` below the flattened rows
            // rounded up to whole groups of four vectors, within the slack of `sub_len`; the
            // stores cover segment lanes, which are columns < ow of the task's rows of plane
            // (b, c), owned by the caller.
            unsafe {
                for py in 0..g.sh {
                    for px in 0..g.sw {
                        let sub = std::slice::from_raw_parts_mut(
                            sp.add((py * g.sw + px) * self.sub_len),
                            self.sub_len,
                        );
                        fill_sub_plane(
                            plane,
                            g,
                            self.iy0 + py as isize,
                            self.rows_in,
                            px,
                            self.wq,
                            self.zx,
                            sub,
                        );
                    }
                }
                let a = Args {
                    sp: sp as *const f32,
                    offs: self.offs,
                    starts: self.starts,
                    w: &self.p.w[c * taps..(c + 1) * taps],
                    segs: self.segs,
                    seg_start: self.seg_start,
                    op: self.out.add((b * g.cout + c) * g.oh * g.ow),
                    pr: D::req_row(&self.p.req, c, self.q),
                };
                match (taps, self.p.req.wide) {
                    (9, false) => vectors::<D, 9, false>(&a),
                    (25, false) => vectors::<D, 25, false>(&a),
                    (_, false) => vectors::<D, 0, false>(&a),
                    (_, true) => vectors::<D, 0, true>(&a),
                }
            }
        }
    }
}

struct Args<'a, V> {
    sp: *const f32,
    offs: &'a [usize],
    starts: &'a [usize],
    w: &'a [f32],
    segs: &'a [Segment],
    seg_start: &'a [usize],
    op: *mut u8,
    pr: ReqVecs<V>,
}

/// A plane's output vectors, four at a time. `T` is the tap count when known at compile time
/// (else 0); `WIDE` selects the requantisation path.
#[inline(always)]
unsafe fn vectors<D: QDot, const T: usize, const WIDE: bool>(a: &Args<'_, D::V>) {
    type F<D> = <D as QDot>::F;
    let l = D::LANES;
    let taps = if T > 0 { T } else { a.w.len() };
    let mut wv = [F::<D>::zero(); 25];
    let mut ov = [0usize; 25];
    for t in 0..taps.min(25) {
        wv[t] = F::<D>::splat(a.w[t]);
        ov[t] = a.offs[t];
    }
    let mut codes = [0u8; 64];
    for (g4, st) in a.starts.chunks_exact(4).enumerate() {
        let v0 = 4 * g4;
        let s = [
            a.sp.add(st[0]),
            a.sp.add(st[1]),
            a.sp.add(st[2]),
            a.sp.add(st[3]),
        ];
        let mut acc = [F::<D>::zero(); 4];
        if T > 0 {
            for t in 0..T {
                for (k, ak) in acc.iter_mut().enumerate() {
                    *ak = F::<D>::fma(wv[t], F::<D>::load(s[k].add(ov[t])), *ak);
                }
            }
        } else {
            for t in 0..taps {
                let (wt, o) = if t < 25 {
                    (wv[t], ov[t])
                } else {
                    (F::<D>::splat(a.w[t]), a.offs[t])
                };
                for (k, ak) in acc.iter_mut().enumerate() {
                    *ak = F::<D>::fma(wt, F::<D>::load(s[k].add(o)), *ak);
                }
            }
        }
        for (k, &ak) in acc.iter().enumerate() {
            let segs = &a.segs[a.seg_start[v0 + k]..a.seg_start[v0 + k + 1]];
            if segs.is_empty() {
                continue;
            }
            let r = D::requant::<WIDE>(D::from_f32(ak), &a.pr);
            if let [one] = segs {
                if one.lane == 0 {
                    D::store_codes(a.op.add(one.dst), r, usize::from(one.n));
                    continue;
                }
            }
            D::store_codes(codes.as_mut_ptr(), r, l);
            for sg in segs {
                std::ptr::copy_nonoverlapping(
                    codes.as_ptr().add(usize::from(sg.lane)),
                    a.op.add(sg.dst),
                    usize::from(sg.n),
                );
            }
        }
    }
}

/// Fills one sub-plane: row `j` (of `rows`) holds input row `iy0 + j·sh`'s columns
/// `i·sw + px − pl` for `i < wq` as f32, the zero point where that lies outside the plane;
/// the slack after the rows holds the zero point too.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn fill_sub_plane(
    plane: &[u8],
    g: &ConvGeom,
    iy0: isize,
    rows: usize,
    px: usize,
    wq: usize,
    zx: u8,
    dst: &mut [f32],
) {
    let (s, pl, h, w) = (g.sw, g.pl, g.h, g.w);
    let z = f32::from(zx);
    // Columns i with 0 <= i·s + px − pl < w.
    let i_lo = pl.saturating_sub(px).div_ceil(s).min(wq);
    let i_hi = (w + pl).saturating_sub(px).div_ceil(s).clamp(i_lo, wq);
    for j in 0..rows {
        let iy = iy0 + (j * g.sh) as isize;
        let d = &mut dst[j * wq..(j + 1) * wq];
        if iy < 0 || iy >= h as isize || i_lo == i_hi {
            d.fill(z);
            continue;
        }
        let row = &plane[iy as usize * w..(iy as usize + 1) * w];
        d[..i_lo].fill(z);
        let first = i_lo * s + px - pl;
        let n = i_hi - i_lo;
        let dd = &mut d[i_lo..i_hi];
        if s == 1 {
            for (o, &v) in dd.iter_mut().zip(&row[first..first + n]) {
                *o = f32::from(v);
            }
        } else {
            #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
            let mut k = 0;
            #[cfg(target_arch = "x86_64")]
            if s == 2 {
                // Even bytes of 16 (SSE2), widened to f32: 8 columns per step.
                use std::arch::x86_64::*;
                let mask = _mm_set1_epi16(0xFF);
                let zero = _mm_setzero_si128();
                let dp = dd.as_mut_ptr();
                while k + 8 <= n && first + 2 * k + 16 <= w {
                    let v = _mm_loadu_si128(row.as_ptr().add(first + 2 * k) as *const __m128i);
                    let e = _mm_and_si128(v, mask);
                    _mm_storeu_ps(dp.add(k), _mm_cvtepi32_ps(_mm_unpacklo_epi16(e, zero)));
                    _mm_storeu_ps(dp.add(k + 4), _mm_cvtepi32_ps(_mm_unpackhi_epi16(e, zero)));
                    k += 8;
                }
            }
            for (kk, o) in dd[k..].iter_mut().enumerate() {
                *o = f32::from(row[first + (k + kk) * s]);
            }
        }
        d[i_hi..].fill(z);
    }
    dst[rows * wq..].fill(z);
}
