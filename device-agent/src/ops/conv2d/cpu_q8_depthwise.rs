//! 8-bit depthwise convolution (one filter per channel), direct, with **channels in the vector
//! lanes**: a task takes a block of `LANES` channels and a block of output rows, copies their
//! input rows once into a channel-interleaved scratch (`[row][column][lane]`, padding filled
//! with the zero point), computes each output pixel of the block as `Σ_taps w_t · x_t` with one
//! vector per tap (each lane its own channel and weight), requantises the `LANES` channels with
//! per-lane operands, and transposes the codes back to the planar output.
//!
//! **Why channels in lanes, not columns**: the networks' depthwise layers are small planes
//! (56², 28², 14², 7²) with many channels. Vectors along output columns waste lanes on narrow
//! rows, need a strided gather for stride 2, and pay fills and scattered requantising stores
//! per plane; with channels in lanes every tap of every pixel is one full aligned vector,
//! whatever the stride, dilation, padding or plane width, and the per-channel weights and
//! requantisation operands are loaded once per task (ncnn's packed layouts and XNNPACK's NHWC
//! kernels do the same). The cost moves to the two transposes (8 × 8 bytes at a time with
//! SSE2 on x86, the input widened to f32 with AVX2), once per input and output element.
//!
//! **Arithmetic**: the products `w·x` (8-bit weight × 8-bit code) and their sums are computed
//! in f32 lanes with fused multiply-adds. This is exact integer arithmetic: every product is
//! below 255·127 and a sum of `T` of them below `T·32,385 < 2^24` (checked at prepare:
//! [`fits`]), so no f32 operation rounds, and the exact sum is converted to i32 before the
//! integer requantisation — bit for bit what the integer reference computes. Depthwise
//! layers have only 9 or 25 products per output: on x86 without VNNI the FMA units (two per
//! core) outrun the 16-bit integer multiply path, which needs shuffles to pair taps.
use super::cpu_f32::ConvGeom;
use crate::backend::cpu::buf::with_scratch;
use crate::backend::cpu::gemm_q8::QOut;
use crate::backend::cpu::simd::Simd;
use crate::backend::cpu::simd_q8::{QDot, QFn, QIsa, ReqArrays};
use crate::backend::cpu::CpuCtx;
use crate::quant::{ChannelRequant, QTensor, SharedQTensor};
use crate::tensor::Slice;
use crate::Result;

/// Output columns computed together (independent accumulators that hide the FMA latency).
const COLS: usize = 4;
/// Slack after each tap's weights so that a whole vector loads at any channel.
const W_SLACK: usize = 64;
/// Scratch floats a task aims to stay under (128 KiB: the filled rows stay in L2).
const SCRATCH_FLOATS: usize = 32 * 1024;

/// Filters (exact f32 copies of the 8-bit weights, tap-major) and per-channel requantisation.
#[derive(Debug)]
pub(crate) struct PreparedDepthwiseQ8 {
    /// `w[t·pitch + c]`: tap `t` of channel `c`; zero past the last channel.
    w: Vec<f32>,
    pitch: usize,
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
    let pitch = c + W_SLACK;
    let mut wt = vec![0f32; taps * pitch];
    for (ch, filter) in w.chunks_exact(taps).take(c).enumerate() {
        for (t, &v) in filter.iter().enumerate() {
            wt[t * pitch + ch] = f32::from(v);
        }
    }
    PreparedDepthwiseQ8 {
        w: wt,
        pitch,
        req: ReqArrays::new(req, c),
    }
}

/// The shape of the work: output columns padded to whole groups, the scratch row width, and
/// input rows per output-row block.
#[derive(Clone, Copy, Debug)]
struct Layout {
    lanes: usize,
    /// Output columns computed (`ow` rounded up to [`COLS`]).
    owp: usize,
    /// Scratch columns: every input column the padded outputs read.
    wp: usize,
}

impl Layout {
    fn new(g: &ConvGeom, lanes: usize) -> Layout {
        let owp = g.ow.next_multiple_of(COLS);
        Layout {
            lanes,
            owp,
            wp: (owp - 1) * g.sw + (g.kw - 1) * g.dw + 1,
        }
    }
    /// Input rows read by `nr` consecutive output rows.
    fn rows_in(g: &ConvGeom, nr: usize) -> usize {
        (nr.max(1) - 1) * g.sh + (g.kh - 1) * g.dh + 1
    }
    fn scratch(&self, g: &ConvGeom, nr: usize) -> usize {
        Self::rows_in(g, nr) * self.wp * self.lanes
    }
}

/// Output rows per task: whole slices when channel blocks alone give every worker enough
/// tasks, else row blocks; never more than the scratch budget allows.
fn rows_per_task(units: usize, rows: usize, threads: usize, g: &ConvGeom, l: &Layout) -> usize {
    let target = threads * 4;
    let mut rp = if threads <= 1 || units >= target {
        rows
    } else {
        rows.div_ceil(target.div_ceil(units).min(rows))
    };
    while rp > 1 && l.scratch(g, rp) > SCRATCH_FLOATS {
        rp = rp.div_ceil(2);
    }
    rp.max(1)
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
    let l = Layout::new(g, isa.shape().lanes);
    let chans = slice.channels.clone();
    let rows = slice.rows.clone();
    if chans.is_empty() || rows.is_empty() {
        return Ok(());
    }
    let blocks = chans.len().div_ceil(l.lanes);
    let units = g.n * blocks;
    let rp = rows_per_task(units, rows.len(), ctx.threads(), g, &l);
    let row_blocks = rows.len().div_ceil(rp);
    let scratch_len = l.scratch(g, rp);
    let out_ptr = out.as_ptr() as usize;
    let zx = x.qparams().zero_point;
    let taps = g.kh * g.kw;
    // Each tap's offset in the scratch, in floats.
    let offs: Vec<usize> = (0..g.kh)
        .flat_map(|ky| (0..g.kw).map(move |kx| (ky * g.dh * l.wp + kx * g.dw) * l.lanes))
        .collect();
    ctx.for_each_task(units * row_blocks, |t| {
        let (u, rb) = (t / row_blocks, t % row_blocks);
        let (b, blk) = (u / blocks, u % blocks);
        let c0 = chans.start + blk * l.lanes;
        let nc = l.lanes.min(chans.end - c0);
        let oy0 = rows.start + rb * rp;
        let oy1 = (oy0 + rp).min(rows.end);
        with_scratch(scratch_len, |scratch| {
            isa.dispatch(Block {
                g,
                l,
                p,
                q,
                x: x.data(),
                zx,
                b,
                c0,
                nc,
                oy: oy0..oy1,
                offs: &offs[..taps],
                scratch,
                out: out_ptr as *mut u8,
            })
        })
    });
    Ok(())
}

/// One task: channels `c0 .. c0 + nc` of batch `b`, output rows `oy`.
struct Block<'a> {
    g: &'a ConvGeom,
    l: Layout,
    p: &'a PreparedDepthwiseQ8,
    q: QOut,
    x: &'a [u8],
    zx: u8,
    b: usize,
    c0: usize,
    nc: usize,
    oy: std::ops::Range<usize>,
    offs: &'a [usize],
    scratch: &'a mut [f32],
    /// Output codes: this task's channels and rows lie in the caller's slice.
    out: *mut u8,
}

impl QFn for Block<'_> {
    type Output = ();
    #[inline(always)]
    fn call<D: QDot>(self) {
        let (g, l) = (self.g, self.l);
        let lanes = D::LANES;
        assert!(lanes == l.lanes, "depthwise: lane count of another variant");
        let nr = self.oy.len();
        let rows_in = Layout::rows_in(g, nr);
        assert!(
            self.scratch.len() >= rows_in * l.wp * lanes,
            "depthwise: scratch too small"
        );
        assert!(
            self.nc >= 1 && self.nc <= lanes && self.c0 + self.nc <= g.cout,
            "depthwise: channel block out of range"
        );
        assert!(
            self.x.len() >= g.n * g.cin * g.h * g.w,
            "depthwise: input too short"
        );
        let hw = g.h * g.w;
        let iy0 = (self.oy.start * g.sh) as isize - g.pt as isize;
        fill(
            self.scratch,
            self.x,
            (self.b * g.cin + self.c0) * hw,
            hw,
            g,
            &l,
            self.nc,
            iy0,
            rows_in,
            f32::from(self.zx),
        );
        let mut codes = vec![0u8; l.owp * lanes];
        let sp = self.scratch.as_ptr();
        let taps = self.offs.len();
        // SAFETY: the asserts above bound every access. Weights: tap `t` reads `LANES` floats
        // at `t·pitch + c0 <= t·pitch + cout`, inside the `W_SLACK` zero slack. Scratch: pixel
        // `x < owp` of output row `r < nr` reads tap offsets up to `((r·sh + (kh−1)·dh)·wp +
        // (owp−1)·sw + (kw−1)·dw)·LANES + LANES <= rows_in·wp·LANES`. Codes: `owp·LANES`
        // bytes. Output: channels `c0 .. c0 + nc` (< cout) and rows of `oy` (< oh) of batch
        // `b`, which the caller's slice owns.
        unsafe {
            let mut wv = [<D::F as Simd>::zero(); 25];
            for (t, w) in wv.iter_mut().enumerate().take(taps.min(25)) {
                *w = <D::F as Simd>::load(self.p.w.as_ptr().add(t * self.p.pitch + self.c0));
            }
            let pr = D::req_lanes(&self.p.req, self.c0, self.q);
            let a = Args {
                wv: &wv,
                w: self.p.w.as_ptr().add(self.c0),
                pitch: self.p.pitch,
                offs: self.offs,
                step: g.sw * lanes,
            };
            for (r, oy) in self.oy.clone().enumerate() {
                let row = sp.add(r * g.sh * l.wp * lanes);
                let cp = codes.as_mut_ptr();
                match (taps, self.p.req.wide) {
                    (9, false) => pixels::<D, 9, false>(&a, row, l.owp, &pr, cp),
                    (25, false) => pixels::<D, 25, false>(&a, row, l.owp, &pr, cp),
                    (_, false) => pixels::<D, 0, false>(&a, row, l.owp, &pr, cp),
                    (_, true) => pixels::<D, 0, true>(&a, row, l.owp, &pr, cp),
                }
                let plane = g.oh * g.ow;
                let dst = self
                    .out
                    .add((self.b * g.cout + self.c0) * plane + oy * g.ow);
                transpose_out(&codes, lanes, self.nc, g.ow, dst, plane);
            }
        }
    }
}

/// What the pixel loop reads besides the scratch row.
struct Args<'a, V> {
    /// The first 25 taps' weight vectors.
    wv: &'a [V; 25],
    /// Weights of channel `c0`, tap 0 (taps past 25 load from here).
    w: *const f32,
    pitch: usize,
    offs: &'a [usize],
    /// Floats between the first taps of neighbouring output pixels.
    step: usize,
}

/// One output row: `owp` pixels, [`COLS`] at a time, each `Σ_t w_t·x_t` over the lanes'
/// channels, requantised and stored as `LANES` codes per pixel (`codes[x·LANES + lane]`). `T`
/// is the tap count when known at compile time (else 0); `WIDE` selects the requantisation.
#[inline(always)]
unsafe fn pixels<D: QDot, const T: usize, const WIDE: bool>(
    a: &Args<'_, <D::F as Simd>::V>,
    row: *const f32,
    owp: usize,
    pr: &crate::backend::cpu::simd_q8::ReqVecs<D::V>,
    codes: *mut u8,
) {
    type F<D> = <D as QDot>::F;
    let taps = if T > 0 { T } else { a.offs.len() };
    for x0 in (0..owp).step_by(COLS) {
        let base = row.add(x0 * a.step);
        let mut acc = [F::<D>::zero(); COLS];
        for t in 0..taps {
            let w = if t < 25 {
                a.wv[t]
            } else {
                F::<D>::load(a.w.add(t * a.pitch))
            };
            let p = base.add(a.offs[t]);
            for (k, ak) in acc.iter_mut().enumerate() {
                *ak = F::<D>::fma(w, F::<D>::load(p.add(k * a.step)), *ak);
            }
        }
        for (k, &ak) in acc.iter().enumerate() {
            let r = D::requant::<WIDE>(D::from_f32(ak), pr);
            D::store_codes(codes.add((x0 + k) * D::LANES), r, D::LANES);
        }
    }
}

/// Fills the scratch: row `j < rows_in` holds input row `iy0 + j`, column `i < wp` input
/// column `i − pl`, lane `c < nc` channel `c` (plane `plane0 + c·hw` of `x`), as f32; the
/// zero point where that lies outside the plane and in the lanes past `nc`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill(
    scratch: &mut [f32],
    x: &[u8],
    plane0: usize,
    hw: usize,
    g: &ConvGeom,
    l: &Layout,
    nc: usize,
    iy0: isize,
    rows_in: usize,
    z: f32,
) {
    let (lanes, wp) = (l.lanes, l.wp);
    let lo = g.pl.min(wp);
    let hi = (g.pl + g.w).min(wp);
    for j in 0..rows_in {
        let d = &mut scratch[j * wp * lanes..(j + 1) * wp * lanes];
        let iy = iy0 + j as isize;
        if iy < 0 || iy >= g.h as isize || lo == hi {
            d.fill(z);
            continue;
        }
        d[..lo * lanes].fill(z);
        d[hi * lanes..].fill(z);
        if nc < lanes {
            for px in d[lo * lanes..hi * lanes].chunks_exact_mut(lanes) {
                px[nc..].fill(z);
            }
        }
        let src = plane0 + iy as usize * g.w;
        transpose_in(
            x,
            src,
            hw,
            nc,
            hi - lo,
            lanes,
            &mut d[lo * lanes..hi * lanes],
        );
    }
}

/// `dst[i·lanes + c] = x[src + c·hw + i]` for `c < nc`, `i < n`.
#[inline(always)]
fn transpose_in(
    x: &[u8],
    src: usize,
    hw: usize,
    nc: usize,
    n: usize,
    lanes: usize,
    dst: &mut [f32],
) {
    assert!(
        dst.len() >= n * lanes && nc <= lanes,
        "transpose_in: bounds"
    );
    assert!(
        nc == 0 || n == 0 || src + (nc - 1) * hw + n <= x.len(),
        "transpose_in: source bounds"
    );
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut c = 0;
    #[cfg(target_arch = "x86_64")]
    // Only the 8- and 16-lane variants, which run on AVX2 cores, take the vector path; the
    // flag is checked anyway (it is cached) so that the AVX2 widening is never reached
    // without AVX2.
    if lanes.is_multiple_of(8) && std::arch::is_x86_feature_detected!("avx2") {
        while c + 8 <= nc {
            let mut i = 0;
            while i + 8 <= n {
                // SAFETY: rows `c .. c + 8` read bytes `i .. i + 8` of their planes' rows
                // (`i + 8 <= n`, asserted in bounds); the writes are floats
                // `(i + j)·lanes + c .. + 8 <= n·lanes` of `dst`; AVX2 is present (checked).
                unsafe {
                    let rows: [*const u8; 8] =
                        std::array::from_fn(|k| x.as_ptr().add(src + (c + k) * hw + i));
                    sse2::bytes8x8_to_f32(rows, dst.as_mut_ptr().add(i * lanes + c), lanes);
                }
                i += 8;
            }
            for ii in i..n {
                for k in 0..8 {
                    dst[ii * lanes + c + k] = f32::from(x[src + (c + k) * hw + ii]);
                }
            }
            c += 8;
        }
    }
    for cc in c..nc {
        let s = &x[src + cc * hw..src + cc * hw + n];
        for (i, &v) in s.iter().enumerate() {
            dst[i * lanes + cc] = f32::from(v);
        }
    }
}

/// `out[c·plane + i] = codes[i·lanes + c]` for `c < nc`, `i < n`.
///
/// # Safety
/// `out` must be valid for writes at `c·plane + i` for every `c < nc`, `i < n`.
unsafe fn transpose_out(
    codes: &[u8],
    lanes: usize,
    nc: usize,
    n: usize,
    out: *mut u8,
    plane: usize,
) {
    assert!(
        codes.len() >= n * lanes && nc <= lanes,
        "transpose_out: bounds"
    );
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut c = 0;
    #[cfg(target_arch = "x86_64")]
    if lanes.is_multiple_of(8) {
        while c + 8 <= nc {
            let mut i = 0;
            while i + 8 <= n {
                let rows: [*const u8; 8] =
                    std::array::from_fn(|k| codes.as_ptr().add((i + k) * lanes + c));
                sse2::bytes8x8_store(rows, out.add(c * plane + i), plane);
                i += 8;
            }
            for ii in i..n {
                for k in 0..8 {
                    *out.add((c + k) * plane + ii) = codes[ii * lanes + c + k];
                }
            }
            c += 8;
        }
    }
    for cc in c..nc {
        for i in 0..n {
            *out.add(cc * plane + i) = codes[i * lanes + cc];
        }
    }
}

/// 8 × 8 byte transposes with SSE2 (every x86-64 core has it), widened to f32 with AVX2.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// Transposes 8 rows of 8 bytes: returns the columns in pairs, `[col 0 | col 1]`,
    /// `[col 2 | col 3]`, `[col 4 | col 5]`, `[col 6 | col 7]`.
    #[inline(always)]
    unsafe fn transpose(rows: [*const u8; 8]) -> [__m128i; 4] {
        let r: [__m128i; 8] = std::array::from_fn(|k| _mm_loadl_epi64(rows[k] as *const __m128i));
        let a01 = _mm_unpacklo_epi8(r[0], r[1]);
        let a23 = _mm_unpacklo_epi8(r[2], r[3]);
        let a45 = _mm_unpacklo_epi8(r[4], r[5]);
        let a67 = _mm_unpacklo_epi8(r[6], r[7]);
        let b0 = _mm_unpacklo_epi16(a01, a23); // columns 0-3 of rows 0-3
        let b1 = _mm_unpackhi_epi16(a01, a23); // columns 4-7 of rows 0-3
        let b2 = _mm_unpacklo_epi16(a45, a67); // columns 0-3 of rows 4-7
        let b3 = _mm_unpackhi_epi16(a45, a67); // columns 4-7 of rows 4-7
        [
            _mm_unpacklo_epi32(b0, b2),
            _mm_unpackhi_epi32(b0, b2),
            _mm_unpacklo_epi32(b1, b3),
            _mm_unpackhi_epi32(b1, b3),
        ]
    }

    /// Column `j` of the 8 × 8 bytes at `rows`, as 8 f32, to `dst + j·stride` (AVX2's
    /// byte-to-dword widening: one widening, one conversion and one store per column).
    ///
    /// # Safety
    /// Each row pointer is valid for 8 bytes; `dst + j·stride .. + 8` for writes, `j < 8`;
    /// the core has AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn bytes8x8_to_f32(rows: [*const u8; 8], dst: *mut f32, stride: usize) {
        for (p, d) in transpose(rows).into_iter().enumerate() {
            for (h, w) in [d, _mm_unpackhi_epi64(d, d)].into_iter().enumerate() {
                let o = dst.add((2 * p + h) * stride);
                _mm256_storeu_ps(o, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(w)));
            }
        }
    }

    /// Column `j` of the 8 × 8 bytes at `rows` to `dst + j·stride .. + 8`.
    ///
    /// # Safety
    /// Each row pointer is valid for 8 bytes; `dst + j·stride .. + 8` for writes, `j < 8`.
    #[inline(always)]
    pub(super) unsafe fn bytes8x8_store(rows: [*const u8; 8], dst: *mut u8, stride: usize) {
        for (p, d) in transpose(rows).into_iter().enumerate() {
            _mm_storel_epi64(dst.add(2 * p * stride) as *mut __m128i, d);
            _mm_storel_epi64(
                dst.add((2 * p + 1) * stride) as *mut __m128i,
                _mm_unpackhi_epi64(d, d),
            );
        }
    }
}
