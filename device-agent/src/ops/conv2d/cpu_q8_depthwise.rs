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
//! pair taps. Codes are read once per plane into phase-split rows (as the F32 kernel does),
//! so every tap is a plain vector load whatever the stride, dilation and padding.
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
    // Floats per phase row: every tap of every output vector (rounded up) exists.
    let wq = g.ow.div_ceil(lanes) * lanes + (g.kw - 1) * g.dw / g.sw + 1;
    let row_stride = g.sw * wq;
    let offs: Vec<usize> = (0..g.kh)
        .flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx)))
        .map(|(ky, kx)| ky * g.dh * row_stride + (kx * g.dw % g.sw) * wq + kx * g.dw / g.sw)
        .collect();
    let chans = slice.channels.clone();
    let planes = g.n * chans.len();
    let (pp, rp) = plan(planes, slice.rows.len(), ctx.threads());
    let plane_blocks = planes.div_ceil(pp);
    let row_blocks = slice.rows.len().div_ceil(rp);
    // Input rows a block of `rp` output rows reads (window rows, top padding included).
    let in_rows = (rp - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    let acc_len = g.ow.div_ceil(lanes) * lanes;
    let scratch_len = in_rows * row_stride + acc_len;
    let out_ptr = out.as_ptr() as usize;
    let zx = x.qparams().zero_point;
    ctx.for_each_task(plane_blocks * row_blocks, |t| {
        let (pb, rb) = (t / row_blocks, t % row_blocks);
        let oy0 = slice.rows.start + rb * rp;
        let oy1 = (oy0 + rp).min(slice.rows.end);
        with_scratch(scratch_len, |scratch| {
            isa.dispatch(Planes {
                g,
                p,
                q,
                x: x.data(),
                zx,
                wq,
                offs: &offs,
                rows: oy0..oy1,
                planes: pb * pp..((pb + 1) * pp).min(planes),
                chans: chans.clone(),
                scratch,
                out: out_ptr as *mut u8,
            })
        })
    });
    Ok(())
}

/// A block of planes for the output rows `rows`.
struct Planes<'a> {
    g: &'a ConvGeom,
    p: &'a PreparedDepthwiseQ8,
    q: QOut,
    x: &'a [u8],
    zx: u8,
    wq: usize,
    offs: &'a [usize],
    rows: std::ops::Range<usize>,
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
        let (s, wq) = (g.sw, self.wq);
        let row_stride = s * wq;
        let (oy0, oy1) = (self.rows.start, self.rows.end);
        let iy0 = (oy0 * g.sh) as isize - g.pt as isize;
        let n_in = (oy1 - oy0 - 1) * g.sh + (g.kh - 1) * g.dh + 1;
        let acc_off = n_in * row_stride;
        assert!(
            self.scratch.len() >= acc_off + g.ow.div_ceil(D::LANES) * D::LANES,
            "depthwise: scratch too small"
        );
        let sp = self.scratch.as_mut_ptr();
        // The output vectors of the task's rows (the same for every plane), in groups of four
        // so that four independent accumulators hide the FMA latency; padding items compute
        // the first vector again and store nothing.
        let l = D::LANES;
        let mut items = Vec::with_capacity((oy1 - oy0) * g.ow.div_ceil(l) + 3);
        for (r, oy) in (oy0..oy1).enumerate() {
            for ox in (0..g.ow).step_by(l) {
                items.push(Item {
                    src: r * g.sh * row_stride + ox,
                    dst: oy * g.ow + ox,
                    n: (g.ow - ox).min(l),
                });
            }
        }
        while items.len() % 4 != 0 {
            items.push(Item {
                src: 0,
                dst: 0,
                n: 0,
            });
        }
        for pi in self.planes.clone() {
            let (b, c) = (
                pi / self.chans.len(),
                self.chans.start + pi % self.chans.len(),
            );
            let plane = &self.x[(b * g.cin + c) * g.h * g.w..(b * g.cin + c + 1) * g.h * g.w];
            // SAFETY: the fill writes `n_in` rows of `s` phase rows of `wq` floats (asserted
            // above); the kernel reads them at `src + offs + lanes <= row_stride·n_in` and
            // writes the output rows `rows` of plane (b, c), owned by the caller.
            unsafe {
                fill(plane, g, iy0, n_in, wq, self.zx, sp);
                let a = Args {
                    sp: sp as *const f32,
                    offs: self.offs,
                    w: &self.p.w[c * taps..(c + 1) * taps],
                    items: &items,
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

/// One output vector: where its taps start in the phase rows, where its codes go, how many.
#[derive(Clone, Copy)]
struct Item {
    src: usize,
    dst: usize,
    n: usize,
}

struct Args<'a, V> {
    sp: *const f32,
    offs: &'a [usize],
    w: &'a [f32],
    items: &'a [Item],
    op: *mut u8,
    pr: ReqVecs<V>,
}

/// A plane's output vectors, four at a time. `T` is the tap count when known at compile time
/// (else 0); `WIDE` selects the requantisation path.
#[inline(always)]
unsafe fn vectors<D: QDot, const T: usize, const WIDE: bool>(a: &Args<'_, D::V>) {
    type F<D> = <D as QDot>::F;
    let taps = if T > 0 { T } else { a.w.len() };
    let mut wv = [F::<D>::zero(); 25];
    let mut ov = [0usize; 25];
    let tv = taps.min(25);
    for t in 0..tv {
        wv[t] = F::<D>::splat(a.w[t]);
        ov[t] = a.offs[t];
    }
    for q in a.items.chunks_exact(4) {
        let s = [
            a.sp.add(q[0].src),
            a.sp.add(q[1].src),
            a.sp.add(q[2].src),
            a.sp.add(q[3].src),
        ];
        let mut acc = [F::<D>::zero(); 4];
        if T > 0 {
            for t in 0..T {
                for k in 0..4 {
                    acc[k] = F::<D>::fma(wv[t], F::<D>::load(s[k].add(ov[t])), acc[k]);
                }
            }
        } else {
            for t in 0..taps {
                let (wt, o) = if t < 25 {
                    (wv[t], ov[t])
                } else {
                    (F::<D>::splat(a.w[t]), a.offs[t])
                };
                for k in 0..4 {
                    acc[k] = F::<D>::fma(wt, F::<D>::load(s[k].add(o)), acc[k]);
                }
            }
        }
        for k in 0..4 {
            if q[k].n > 0 {
                let codes = D::requant::<WIDE>(D::from_f32(acc[k]), &a.pr);
                D::store_codes(a.op.add(q[k].dst), codes, q[k].n);
            }
        }
    }
}

/// Copies input rows `iy0 .. iy0 + n_in` of a plane into phase rows: for input row `r` and
/// phase `ph`, `dst[(r·s + ph)·wq + j] = plane[iy0 + r][j·s + ph − pl]` as f32, the zero point
/// where that lies outside the plane (rows above and below it included).
#[inline(always)]
unsafe fn fill(
    plane: &[u8],
    g: &ConvGeom,
    iy0: isize,
    n_in: usize,
    wq: usize,
    zx: u8,
    dst: *mut f32,
) {
    let (s, pl, h, w) = (g.sw, g.pl, g.h, g.w);
    let z = f32::from(zx);
    for r in 0..n_in {
        let iy = iy0 + r as isize;
        let base = dst.add(r * s * wq);
        if iy < 0 || iy >= h as isize {
            std::slice::from_raw_parts_mut(base, s * wq).fill(z);
            continue;
        }
        let row = &plane[iy as usize * w..(iy as usize + 1) * w];
        for ph in 0..s {
            let d = std::slice::from_raw_parts_mut(base.add(ph * wq), wq);
            // Columns j with 0 <= j·s + ph − pl < w.
            let j_lo = pl.saturating_sub(ph).div_ceil(s).min(wq);
            let j_hi = (w + pl).saturating_sub(ph).div_ceil(s).clamp(j_lo, wq);
            d[..j_lo].fill(z);
            if j_lo == j_hi {
            } else if s == 1 {
                let first = j_lo - pl;
                for (o, &v) in d[j_lo..j_hi].iter_mut().zip(&row[first..]) {
                    *o = f32::from(v);
                }
            } else {
                let first = j_lo * s + ph - pl;
                let mut j = 0;
                #[cfg(target_arch = "x86_64")]
                if s == 2 {
                    // Even bytes of 16 (SSE2), widened to f32: 8 columns per step.
                    use std::arch::x86_64::*;
                    let mask = _mm_set1_epi16(0xFF);
                    let zero = _mm_setzero_si128();
                    let dp = d.as_mut_ptr().add(j_lo);
                    while j + 8 <= j_hi - j_lo && first + 2 * j + 16 <= w {
                        let v = _mm_loadu_si128(row.as_ptr().add(first + 2 * j) as *const __m128i);
                        let e = _mm_and_si128(v, mask);
                        _mm_storeu_ps(dp.add(j), _mm_cvtepi32_ps(_mm_unpacklo_epi16(e, zero)));
                        _mm_storeu_ps(dp.add(j + 4), _mm_cvtepi32_ps(_mm_unpackhi_epi16(e, zero)));
                        j += 8;
                    }
                }
                for (jj, o) in d[j_lo + j..j_hi].iter_mut().enumerate() {
                    *o = f32::from(row[first + (j + jj) * s]);
                }
            }
            d[j_hi..].fill(z);
        }
    }
}
