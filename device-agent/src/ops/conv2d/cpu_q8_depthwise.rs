//! 8-bit depthwise convolution (one filter per channel), direct, with channels in the vector
//! lanes ([`super::depthwise_lanes`]): each output pixel of a block of `LANES` channels is one
//! vector per tap, requantised with per-lane operands, and the codes are transposed back to the
//! planar output (8 × 8 bytes at a time with SSE2 on x86; the input is widened to f32 with
//! AVX2).
//!
//! **Arithmetic**: the products `w·x` (8-bit weight × 8-bit code) and their sums are computed
//! in f32 lanes with fused multiply-adds. This is exact integer arithmetic: every product is
//! below 255·127 and a sum of `T` of them below `T·32,385 < 2^24` (checked at prepare:
//! [`fits`]), so no f32 operation rounds, and the exact sum is converted to i32 before the
//! integer requantisation — bit for bit what the integer reference computes. Depthwise
//! layers have only 9 or 25 products per output: on x86 without VNNI the FMA units (two per
//! core) outrun the 16-bit integer multiply path, which needs shuffles to pair taps.
use super::cpu_f32::ConvGeom;
use super::cpu_q8_depthwise_vnni::{self as vnni, Quads};
use super::depthwise_lanes::{self as lanes, Block, Emit, Layout, Source, Taps};
use crate::backend::cpu::buf::with_scratch;
#[cfg(target_arch = "x86_64")]
use crate::backend::cpu::bytes;
use crate::backend::cpu::bytes::transpose_codes;
use crate::backend::cpu::gemm_q8::QOut;
use crate::backend::cpu::simd::Simd;
use crate::backend::cpu::simd_q8::{QDot, QFn, QIsa, ReqArrays, ReqVecs};
use crate::backend::cpu::CpuCtx;
use crate::quant::{ChannelRequant, QTensor, SharedQTensor};
use crate::tensor::Slice;
use crate::Result;

/// Filters (exact f32 copies of the 8-bit weights, tap-major) and per-channel requantisation.
#[derive(Debug)]
pub(crate) struct PreparedDepthwiseQ8 {
    /// `w[t·pitch + c]`: tap `t` of channel `c`; zero past the last channel.
    w: Vec<f32>,
    pitch: usize,
    req: ReqArrays,
    /// The same weights as quads of taps, for the AVX-512 VNNI kernel.
    quads: Quads,
}

/// True when `taps` products of 8-bit values sum exactly in f32.
pub(crate) fn fits(taps: usize) -> bool {
    taps * 255 * 127 < 1 << 24
}

/// `w`: `c × kh × kw` weights; `req`: per channel (bias with the zero point folded in: the
/// kernel sums `w·x` on raw codes, padding being the zero point).
pub(crate) fn prepare(
    w: &[i8],
    req: &[ChannelRequant],
    c: usize,
    kh: usize,
    kw: usize,
) -> PreparedDepthwiseQ8 {
    let (wt, pitch) = lanes::tap_major(w, c, kh * kw);
    PreparedDepthwiseQ8 {
        w: wt,
        pitch,
        req: ReqArrays::new(req, c),
        quads: Quads::new(w, c, kh, kw),
    }
}

/// Output codes per worker below which the channels-in-lanes kernel runs even where the VNNI
/// kernel could. Measured on the GPU host (16 Xeon cores, word gather), `q8_layer_bench 16
/// dw`: the VNNI kernel was 1.6–1.8× slower on 512 × 14² and 1152 × 7² (3.5–6 K outputs per
/// worker), even at 240 × 28² (12 K), faster from 144 × 56² (28 K); at 1 and 2 threads it is
/// 1.3–2× faster on every layer. Why it loses on small shares is not understood.
const VNNI_MIN_OUTPUTS_PER_THREAD: usize = 12 * 1024;

/// The gather of the AVX-512 VNNI kernel ([`vnni`]) when it can run this layer with `isa`.
fn vnni_gather(isa: QIsa, g: &ConvGeom) -> Option<vnni::Gather> {
    vnni::Gather::here().filter(|_| isa == QIsa::Avx512Vnni && vnni::handles(g))
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
    let per_thread = g.n * slice.channels.len() * slice.rows.len() * g.ow / ctx.threads().max(1);
    if let Some(gather) = vnni_gather(isa, g).filter(|_| per_thread >= VNNI_MIN_OUTPUTS_PER_THREAD)
    {
        vnni::run(gather, ctx, &p.quads, &p.req, g, q, x, out, slice);
        return Ok(());
    }
    let l = Layout::new(g, isa.shape().lanes);
    let offs = l.tap_offsets(g);
    let out_ptr = out.as_ptr() as usize;
    let zx = x.qparams().zero_point;
    let (chans, rows) = (slice.channels.clone(), slice.rows.clone());
    lanes::for_each_block(ctx, g, &l, chans, rows, |blk, scratch_len| {
        with_scratch(scratch_len, |scratch| {
            isa.dispatch(Task {
                g,
                l,
                p,
                q,
                x: x.data(),
                zx,
                blk,
                offs: &offs,
                scratch,
                out: out_ptr as *mut u8,
            })
        })
    });
    Ok(())
}

/// One block of channels and rows.
struct Task<'a> {
    g: &'a ConvGeom,
    l: Layout,
    p: &'a PreparedDepthwiseQ8,
    q: QOut,
    x: &'a [u8],
    zx: u8,
    blk: Block,
    offs: &'a [usize],
    scratch: &'a mut [f32],
    /// Output codes: this block's channels and rows lie in the caller's slice.
    out: *mut u8,
}

impl QFn for Task<'_> {
    type Output = ();
    #[inline(always)]
    fn call<D: QDot>(self) {
        let (g, l, blk) = (self.g, self.l, &self.blk);
        let lanes = D::LANES;
        blk.check(g, &l, lanes, self.scratch.len());
        lanes::fill(self.scratch, self.x, g, &l, blk, f32::from(self.zx));
        let mut codes = vec![0u8; l.owp * lanes];
        let sp = self.scratch.as_ptr();
        // SAFETY: the asserts above and in `fill` bound every access. Weights: tap `t` reads
        // `LANES` floats at `t·pitch + c0 <= t·pitch + cout`, inside the zero slack. Scratch:
        // filled for the block's rows. Codes: `owp·LANES` bytes. Output: channels
        // `c0 .. c0 + nc` (< cout) and the block's rows (< oh) of batch `b`, which the caller's
        // slice owns.
        unsafe {
            let taps = Taps::new::<D::F>(&self.p.w, self.p.pitch, blk.c0, self.offs, g);
            let plane = g.oh * g.ow;
            let pr = D::req_lanes(&self.p.req, blk.c0, self.q);
            let cp = codes.as_mut_ptr();
            let mut narrow = Requant::<D, false> { pr, codes: cp };
            let mut wide = Requant::<D, true> { pr, codes: cp };
            for (r, oy) in blk.rows.clone().enumerate() {
                let row = sp.add(r * g.sh * l.wp * lanes);
                if self.p.req.wide {
                    lanes::pixels_any::<D::F>(&taps, row, l.owp, &mut wide);
                } else {
                    lanes::pixels_any::<D::F>(&taps, row, l.owp, &mut narrow);
                }
                let dst = self.out.add((blk.b * g.cout + blk.c0) * plane + oy * g.ow);
                transpose_codes(&codes, lanes, blk.nc, g.ow, dst, plane);
            }
        }
    }
}

/// Requantises the accumulators and stores `LANES` codes per pixel (`codes[x·LANES + lane]`).
struct Requant<D: QDot, const WIDE: bool> {
    pr: ReqVecs<D::V>,
    codes: *mut u8,
}

impl<D: QDot, const WIDE: bool> Emit<<D::F as Simd>::V> for Requant<D, WIDE> {
    #[inline(always)]
    unsafe fn emit(&mut self, x0: usize, acc: &[<D::F as Simd>::V; lanes::COLS]) {
        for (k, &ak) in acc.iter().enumerate() {
            let r = D::requant::<WIDE>(D::from_f32(ak), &self.pr);
            D::store_codes(self.codes.add((x0 + k) * D::LANES), r, D::LANES);
        }
    }
}

impl Source for u8 {
    /// The 8-bit codes widened to f32: 8 channels × 8 columns at a time on AVX2 cores.
    #[inline(always)]
    unsafe fn transpose_in(
        x: &[u8],
        src: usize,
        hw: usize,
        nc: usize,
        n: usize,
        lanes: usize,
        dst: &mut [f32],
    ) {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut c = 0;
        // Only the 8- and 16-lane variants, which run on AVX2 cores, take the vector path; the
        // flag is checked anyway (it is cached) so that the AVX2 widening is never reached
        // without AVX2.
        #[cfg(target_arch = "x86_64")]
        if lanes.is_multiple_of(8) && std::arch::is_x86_feature_detected!("avx2") {
            while c + 8 <= nc {
                let mut i = 0;
                while i + 8 <= n {
                    // SAFETY: rows `c .. c + 8` read bytes `i .. i + 8` of their planes' rows
                    // (`i + 8 <= n`, in `x` by the contract); the writes are floats
                    // `(i + j)·lanes + c .. + 8 <= n·lanes` of `dst`; AVX2 is present (checked).
                    let rows: [*const u8; 8] =
                        std::array::from_fn(|k| x.as_ptr().add(src + (c + k) * hw + i));
                    bytes::sse2::bytes8x8_to_f32(rows, dst.as_mut_ptr().add(i * lanes + c), lanes);
                    i += 8;
                }
                // A tail of fewer than 8 columns (rows of 7 and 14): the same transpose into
                // a small buffer where 8 bytes of every row are readable (all but the
                // tensor's last row).
                if i < n && src + (c + 7) * hw + i + 8 <= x.len() {
                    let rows: [*const u8; 8] =
                        std::array::from_fn(|k| x.as_ptr().add(src + (c + k) * hw + i));
                    let mut t = [0f32; 64];
                    // SAFETY: 8 bytes of each row are in `x` (checked); `t` holds 8 × 8.
                    bytes::sse2::bytes8x8_to_f32(rows, t.as_mut_ptr(), 8);
                    for (j, col) in t.chunks_exact(8).take(n - i).enumerate() {
                        let at = (i + j) * lanes + c;
                        dst[at..at + 8].copy_from_slice(col);
                    }
                    i = n;
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
}
