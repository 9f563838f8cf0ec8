//! 8-bit depthwise convolution along output positions, for cores with AVX-512 VNNI and VBMI:
//! `vpdpbusd` on groups of four horizontal taps, the codes gathered by one byte permute.
//!
//! **The method**: a vector holds up to 16 output positions of one channel that are
//! consecutive in the output plane (row-major, so on short rows one vector spans several
//! rows). Its 32-bit lane `j` holds the four input codes that four horizontal taps of
//! position `j` read (taps `4q .. 4q + 4` of tap row `ky`), and `vpdpbusd` multiplies them by
//! the channel's four weights of those taps (a zero weight past the filter's width) and adds
//! the four exact products into the lane's 32-bit sum. The codes come from a copy of the
//! block's input rows with the padding filled with the input's zero point, so every lane's
//! quad lies at `off_j + ky·dh·wpad + 4q·dw` in it; one `vpermb` (or `vpermt2b`, when the
//! vector's positions span more than 64 bytes) picks all 64 bytes out of one window.
//!
//! **Why this instead of the channels-in-lanes kernel** ([`super::cpu_q8_depthwise`]) on
//! these cores: a 3×3 filter costs 3 permutes and 3 `vpdpbusd` per 16 outputs instead of 9
//! FMAs and 9 loads, the accumulators are integers already, the 16 lanes of a vector share
//! one channel's requantisation, and neither side needs a transpose: input rows are copied
//! as they are, and a vector's 16 codes are 16 consecutive bytes of the output plane.
//!
//! **Exactness**: `vpdpbusd` (the non-saturating form) adds four u8 × i8 products, each below
//! 2^15, into 32 bits, so the sums are the integer reference's; requantisation is the shared
//! [`crate::quant::Multiplier`] rounding.
// Elsewhere than x86-64 only the weights are prepared (`Gather::here` is `None`).
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
use super::cpu_f32::ConvGeom;
use crate::backend::cpu::gemm_q8::QOut;
use crate::backend::cpu::simd_q8::ReqArrays;
use crate::backend::cpu::CpuCtx;
use crate::quant::{QTensor, SharedQTensor};
use crate::tensor::Slice;
use std::sync::{Arc, Mutex};

/// Output positions per vector.
const LANES: usize = 16;
/// Bytes of padded rows a task aims to stay under (the copy stays in L2).
const ROWS_BYTES: usize = 256 * 1024;
/// Bytes after the padded rows that a window load may read (two 64-byte tables).
const SLACK: usize = 128;

/// A depthwise filter as quads: `w[(c·kh + ky)·nq + q]` holds taps `4q .. 4q + 4` of tap row
/// `ky` of channel `c` as four little-endian i8 (zero past the filter's width).
#[derive(Debug)]
pub(crate) struct Quads {
    w: Vec<i32>,
    nq: usize,
    /// The output-position groups and fills of the layer's blocks.
    plans: Plans,
}

impl Quads {
    /// `w`: `c × kh × kw` weights.
    pub fn new(w: &[i8], c: usize, kh: usize, kw: usize) -> Quads {
        let nq = kw.div_ceil(4);
        let mut q = vec![0i32; c * kh * nq];
        for (r, filter_row) in w.chunks_exact(kw).take(c * kh).enumerate() {
            for (qi, taps) in filter_row.chunks(4).enumerate() {
                let mut b = [0u8; 4];
                for (d, &t) in b.iter_mut().zip(taps) {
                    *d = t as u8;
                }
                q[r * nq + qi] = i32::from_le_bytes(b);
            }
        }
        Quads {
            w: q,
            nq,
            plans: Plans::default(),
        }
    }
}

/// How a vector's quads are gathered from the padded rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gather {
    /// One byte permute (`vpermb`/`vpermt2b`, AVX-512 VBMI).
    Bytes,
    /// Without VBMI: a word permute (`vpermw`/`vpermt2w`) brings the 16 bytes each 128-bit
    /// block needs into that block, a byte shuffle within blocks (`vpshufb`) places them. A
    /// group then also keeps each block's four positions within 16 bytes.
    Words,
}

impl Gather {
    /// The gather this CPU runs, if it has the kernel's features (AVX-512 BW and VNNI).
    pub fn here() -> Option<Gather> {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if !(has!("avx512vnni") && has!("avx512bw")) {
                return None;
            }
            Some(if has!("avx512vbmi") {
                Gather::Bytes
            } else {
                Gather::Words
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }
}

/// True when the kernel handles the geometry: a horizontal dilation that keeps one position's
/// quad inside a 16-byte block (whether it runs here is [`Gather::here`]).
pub(crate) fn handles(g: &ConvGeom) -> bool {
    g.dw >= 1 && 3 * g.dw < 16 && g.sw >= 1
}

/// The padded input rows of a block of `nr` output rows: `rows` rows of `wpad` bytes, the
/// column `i` holding input column `i − pl`.
#[derive(Clone, Copy, Debug)]
struct Padded {
    rows: usize,
    wpad: usize,
}

impl Padded {
    fn new(g: &ConvGeom, nq: usize, nr: usize) -> Padded {
        Padded {
            rows: (nr.max(1) - 1) * g.sh + (g.kh - 1) * g.dh + 1,
            wpad: (g.ow - 1) * g.sw + (4 * nq - 1) * g.dw + 1,
        }
    }
    fn bytes(&self) -> usize {
        self.rows * self.wpad + SLACK
    }
}

/// Up to [`LANES`] consecutive output positions computed together.
#[derive(Clone, Debug)]
struct Group {
    /// The first position, counted from the block's first output pixel.
    p0: usize,
    /// Positions in the group.
    n: usize,
    /// The first position's quad of tap (0, 0) in the padded rows.
    off: usize,
    /// The window is 128 bytes (two tables).
    two: bool,
    /// `idx[4j + k]`: byte `k` of lane `j`'s quad in the window.
    idx: [u8; 64],
    /// [`Gather::Words`]: the window's 16-bit words for each 128-bit block (32 little-endian
    /// u16), then the byte of each lane's quad within its block.
    widx: [u8; 64],
    bidx: [u8; 64],
}

/// The groups of a block of `nr` output rows: consecutive positions while their quads fit in
/// a 128-byte window (and, for [`Gather::Words`], each block of four positions in 16 bytes).
fn groups(g: &ConvGeom, pad: &Padded, nr: usize, gather: Gather) -> Vec<Group> {
    let offs: Vec<usize> = (0..nr)
        .flat_map(|oy| (0..g.ow).map(move |ox| oy * g.sh * pad.wpad + ox * g.sw))
        .collect();
    let reach = 3 * g.dw;
    let mut out = Vec::with_capacity(offs.len().div_ceil(LANES));
    let mut p0 = 0;
    while p0 < offs.len() {
        let o0 = offs[p0];
        let fits = |n: usize| {
            let o = offs[p0 + n] - o0 + reach;
            // The word the block of lane `n` starts at, as a byte.
            let base = (offs[p0 + (n & !3)] - o0) & !1;
            o < 128 && (gather == Gather::Bytes || o - base < 16)
        };
        let n = (0..LANES.min(offs.len() - p0))
            .take_while(|&n| fits(n))
            .count();
        let mut idx = [0u8; 64];
        for (j, &o) in offs[p0..p0 + n].iter().enumerate() {
            for k in 0..4 {
                idx[4 * j + k] = (o - o0 + k * g.dw) as u8;
            }
        }
        let two = offs[p0 + n - 1] - o0 + reach >= 64;
        let (mut widx, mut bidx) = ([0u8; 64], [0u8; 64]);
        if gather == Gather::Words {
            let top = if two { 63 } else { 31 };
            for blk in 0..n.div_ceil(4) {
                let wbase = usize::from(idx[16 * blk]) / 2;
                for i in 0..8 {
                    widx[2 * (8 * blk + i)] = (wbase + i).min(top) as u8;
                }
                for b in 16 * blk..(16 * blk + 16).min(4 * n) {
                    bidx[b] = idx[b] - 2 * wbase as u8;
                }
            }
        }
        out.push(Group {
            p0,
            n,
            off: o0,
            two,
            idx,
            widx,
            bidx,
        });
        p0 += n;
    }
    out
}

/// One 64-byte chunk of a block's padded rows, gathered from one 64-byte window of the input
/// plane by a byte permute: the fill of small planes, where a copy per row (a few bytes each)
/// costs more than the rows.
#[derive(Clone, Debug)]
pub(crate) struct FillChunk {
    /// The window's first byte in the plane.
    src: usize,
    /// Window bytes inside the plane (the others are not loaded).
    load: u64,
    /// Chunk bytes taken from the window (the others are padding: the zero point).
    keep: u64,
    /// `idx[i]`: the window byte of chunk byte `i`.
    idx: [u8; 64],
}

/// Padded rows larger than this are filled row by row (at 88 bytes a chunk, the tables of
/// larger blocks would not stay in L1).
const PERMUTE_FILL_BYTES: usize = 16384;

/// The chunks that fill the padded rows of output rows `r0 .. r0 + nr` (`pad`), or `None`
/// when a chunk's bytes span more than one window (rows of the plane wider than the padded
/// rows) or the rows are large.
fn fill_chunks(g: &ConvGeom, pad: &Padded, r0: usize) -> Option<Vec<FillChunk>> {
    let total = pad.rows * pad.wpad;
    if total > PERMUTE_FILL_BYTES {
        return None;
    }
    let hw = g.h * g.w;
    let iy0 = (r0 * g.sh) as isize - g.pt as isize;
    // The plane byte of each padded byte, or `None` for padding.
    let src = |b: usize| {
        let (iy, ix) = (
            iy0 + (b / pad.wpad) as isize,
            (b % pad.wpad) as isize - g.pl as isize,
        );
        ((0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix))
            .then(|| iy as usize * g.w + ix as usize)
    };
    let mut out = Vec::with_capacity(total.div_ceil(64));
    for c0 in (0..total).step_by(64) {
        let bytes: Vec<(usize, usize)> = (c0..(c0 + 64).min(total))
            .filter_map(|b| src(b).map(|s| (b - c0, s)))
            .collect();
        let lo = bytes.iter().map(|&(_, s)| s).min().unwrap_or(0);
        let hi = bytes.iter().map(|&(_, s)| s).max().unwrap_or(0);
        if hi - lo >= 64 {
            return None;
        }
        let mut c = FillChunk {
            src: lo,
            load: 0,
            keep: 0,
            idx: [0; 64],
        };
        for &(i, s) in &bytes {
            c.keep |= 1 << i;
            c.idx[i] = (s - lo) as u8;
        }
        if !bytes.is_empty() {
            c.load = if hw - lo >= 64 {
                u64::MAX
            } else {
                (1u64 << (hw - lo)) - 1
            };
        }
        out.push(c);
    }
    Some(out)
}

/// What a layer computes once per block of rows: the groups of each block height, the fill
/// of each block. A layer runs with one or two block heights and a few blocks.
#[derive(Debug, Default)]
pub(crate) struct Plans {
    groups: Memo<(usize, Gather), Vec<Group>>,
    fills: Memo<(usize, usize), Option<Vec<FillChunk>>>,
}

/// A small map of values computed on first use.
#[derive(Debug)]
struct Memo<K, V>(Mutex<Vec<(K, Arc<V>)>>);

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo(Mutex::new(Vec::new()))
    }
}

impl<K: PartialEq + Copy, V> Memo<K, V> {
    /// Entries kept (the oldest goes first).
    const KEEP: usize = 16;

    fn get(&self, k: K, make: impl FnOnce() -> V) -> Arc<V> {
        // A poisoned lock only means another task panicked while inserting: the entries
        // are whole either way.
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, v)) = c.iter().find(|(key, _)| *key == k) {
            return v.clone();
        }
        let v = Arc::new(make());
        if c.len() >= Self::KEEP {
            c.remove(0);
        }
        c.push((k, v.clone()));
        v
    }
}

/// Computes `slice` of the depthwise convolution of `x` into `out` with `gather` (the caller
/// checked [`handles`], and `gather` is [`Gather::here`] or [`Gather::Words`]); `req`: per
/// channel, bias with the input's zero point folded in.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    gather: Gather,
    ctx: &CpuCtx,
    quads: &Quads,
    req: &ReqArrays,
    g: &ConvGeom,
    q: QOut,
    x: &QTensor,
    out: &SharedQTensor<'_>,
    slice: &Slice,
) {
    let (chans, rows) = (slice.channels.clone(), slice.rows.clone());
    if chans.is_empty() || rows.is_empty() {
        return;
    }
    assert!(
        handles(g)
            && chans.end <= g.cout
            && rows.end <= g.oh
            && x.len() >= g.n * g.cin * g.h * g.w
            && out.len() >= g.n * g.cout * g.oh * g.ow
            && quads.w.len() >= g.cout * g.kh * quads.nq
            && req.m0.len() >= g.cout,
        "depthwise (VNNI): shapes do not match the prepared layer"
    );
    // Tasks: channel chunks, and row blocks when the channels alone leave workers idle.
    let threads = ctx.threads();
    let target = threads * 4;
    let units = g.n * chans.len();
    let mut rp = if threads <= 1 || units >= target {
        rows.len()
    } else {
        rows.len().div_ceil(target.div_ceil(units).min(rows.len()))
    };
    while rp > 1 && Padded::new(g, quads.nq, rp).bytes() > ROWS_BYTES {
        rp = rp.div_ceil(2);
    }
    let row_blocks = rows.len().div_ceil(rp);
    let last = rows.len() - (row_blocks - 1) * rp;
    let nq = quads.nq;
    let group_of = |nr| {
        quads.plans.groups.get((nr, gather), || {
            groups(g, &Padded::new(g, nq, nr), nr, gather)
        })
    };
    let (full, tail) = (group_of(rp), group_of(last));
    // The permute fill when the blocks are few (their tables are cached per block).
    // The permute fill's chunks of each block, looked up once per call (not per task: the
    // cache's lock would be taken by every worker), when the blocks are few.
    let fills: Vec<Option<Arc<Option<Vec<FillChunk>>>>> = (0..row_blocks)
        .map(|rb| {
            let r0 = rows.start + rb * rp;
            let nr = if rb + 1 == row_blocks { last } else { rp };
            (row_blocks <= 4 && gather == Gather::Bytes).then(|| {
                quads
                    .plans
                    .fills
                    .get((r0, nr), || fill_chunks(g, &Padded::new(g, nq, nr), r0))
            })
        })
        .collect();
    // About `target` tasks in all: a task of one small channel is shorter than claiming it
    // costs when 16 workers contend for the counter (7×7 planes at 16 threads ran 2–3×
    // slower with a task per channel).
    let chunk = chans
        .len()
        .div_ceil(target.div_ceil(g.n * row_blocks).max(1));
    let chunks = chans.len().div_ceil(chunk);
    let zx = x.qparams().zero_point;
    let out_ptr = out.as_ptr() as usize;
    ctx.for_each_task(g.n * chunks * row_blocks, |t| {
        let (u, rb) = (t / row_blocks, t % row_blocks);
        let (b, ci) = (u / chunks, u % chunks);
        let c0 = chans.start + ci * chunk;
        let c1 = (c0 + chunk).min(chans.end);
        let r0 = rows.start + rb * rp;
        let nr = if rb + 1 == row_blocks { last } else { rp };
        let grp = if rb + 1 == row_blocks { &tail } else { &full };
        let pad = Padded::new(g, quads.nq, nr);
        let chunks = fills[rb].as_ref().and_then(|c| c.as_deref());
        crate::backend::cpu::buf::with_scratch(pad.bytes().div_ceil(4), |s| {
            // SAFETY: any bytes are valid u8, and the f32 scratch holds `4·len` bytes.
            let buf =
                unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut u8, pad.bytes()) };
            for c in c0..c1 {
                let hw = g.h * g.w;
                let plane = &x.data()[(b * g.cin + c) * hw..(b * g.cin + c + 1) * hw];
                let dst =
                    (out_ptr as *mut u8).wrapping_add((b * g.cout + c) * g.oh * g.ow + r0 * g.ow);
                // SAFETY: the features were checked (`Gather::here`); `buf` holds the padded rows
                // and their slack (every window of every group lies inside, see `Padded`),
                // and `plane` the channel's input plane;
                // the weights and requantisation hold channel `c` (asserted); `dst` is
                // output rows `r0 .. r0 + nr` of channel `c` of batch `b`, which lie in the
                // caller's slice, and a group writes positions `p0 .. p0 + n < nr·ow`.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    let a = x86::Channel {
                        g,
                        pad: &pad,
                        r0,
                        plane,
                        chunks,
                        zx,
                        groups: grp,
                        quads,
                        req,
                        c,
                        q,
                        dst,
                    };
                    match gather {
                        Gather::Bytes => x86::channel_bytes(&a, buf),
                        Gather::Words => x86::channel_words(&a, buf),
                    }
                };
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (grp, dst, q, req, chunks, &buf, plane, zx, gather);
            }
        });
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Group, Padded, Quads};
    use crate::backend::cpu::gemm_q8::QOut;
    use crate::backend::cpu::simd_q8::{Avx512VnniQ, QDot, ReqArrays};
    use crate::ops::conv2d::cpu_f32::ConvGeom;
    use std::arch::x86_64::*;

    /// One channel of a block.
    pub(super) struct Channel<'a> {
        pub g: &'a ConvGeom,
        pub pad: &'a Padded,
        /// The block's first output row.
        pub r0: usize,
        /// The channel's input plane.
        pub plane: &'a [u8],
        /// The permute fill's chunks ([`super::Gather::Bytes`] only), else a fill per row.
        pub chunks: Option<&'a [super::FillChunk]>,
        pub zx: u8,
        pub groups: &'a [Group],
        pub quads: &'a Quads,
        pub req: &'a ReqArrays,
        pub c: usize,
        pub q: QOut,
        /// The block's first output code of the channel.
        pub dst: *mut u8,
    }

    /// [`channel`] with byte permutes.
    ///
    /// # Safety
    /// See the call in [`super::run`]; the CPU has AVX-512 VBMI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
    pub(super) unsafe fn channel_bytes(a: &Channel<'_>, buf: &mut [u8]) {
        channel::<false>(a, buf)
    }

    /// [`channel`] with word permutes and byte shuffles (no VBMI).
    ///
    /// # Safety
    /// See the call in [`super::run`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn channel_words(a: &Channel<'_>, buf: &mut [u8]) {
        channel::<true>(a, buf)
    }

    /// One channel of a block: the fill, every group, requantised and stored.
    #[inline(always)]
    unsafe fn channel<const WORDS: bool>(a: &Channel<'_>, buf: &mut [u8]) {
        let Channel {
            g,
            pad,
            r0,
            plane,
            chunks,
            zx,
            groups,
            quads,
            req,
            c,
            q,
            dst,
        } = *a;
        match chunks {
            Some(ch) if !WORDS => fill_permute(buf, plane, pad, ch, zx),
            _ => fill(buf, plane, g, pad, r0, zx),
        }
        let nq = quads.nq;
        let wq = &quads.w[c * g.kh * nq..(c + 1) * g.kh * nq];
        let mut pr = <Avx512VnniQ as QDot>::req_row(req, c, q);
        // Narrow requantisation adds the bias with the product's constant; the wide one
        // would add it to the sums, so there it starts them instead.
        let bias = if req.wide {
            std::mem::replace(&mut pr.bias, _mm512_setzero_si512())
        } else {
            _mm512_setzero_si512()
        };
        let k = Kernel {
            rstep: g.dh * pad.wpad,
            qstep: 4 * g.dw,
            kh: g.kh,
            nq,
        };
        let (w, b, p) = (wq, bias, &pr);
        match (g.kh, nq, req.wide) {
            (3, 1, false) => groups_of::<3, 1, false, WORDS>(&k, groups, buf, w, b, p, dst),
            (5, 2, false) => groups_of::<5, 2, false, WORDS>(&k, groups, buf, w, b, p, dst),
            (_, _, false) => groups_of::<0, 0, false, WORDS>(&k, groups, buf, w, b, p, dst),
            (_, _, true) => groups_of::<0, 0, true, WORDS>(&k, groups, buf, w, b, p, dst),
        }
    }

    /// Copies the input rows of output rows `r0 ..` of one channel plane into `buf`, padded
    /// with the zero point `z` ([`Padded`]); whole 64-byte stores of `z`, then masked copies
    /// (a library copy per row costs more than the row on 7- to 56-byte rows).
    #[inline(always)]
    unsafe fn fill(buf: &mut [u8], plane: &[u8], g: &ConvGeom, pad: &Padded, r0: usize, z: u8) {
        assert!(
            buf.len() >= pad.bytes() && plane.len() >= g.h * g.w,
            "depthwise (VNNI): buffer or plane too small"
        );
        let zv = _mm512_set1_epi8(z as i8);
        let d = buf.as_mut_ptr();
        // `z` everywhere, in whole vectors: the last one ends inside the slack.
        for i in (0..pad.rows * pad.wpad + super::SLACK - 63).step_by(64) {
            _mm512_storeu_si512(d.add(i) as *mut _, zv);
        }
        let lo = g.pl.min(pad.wpad);
        let hi = (g.pl + g.w).min(pad.wpad);
        let iy0 = (r0 * g.sh) as isize - g.pt as isize;
        let rows = (0..pad.rows).filter(|&j| (0..g.h as isize).contains(&(iy0 + j as isize)));
        for j in rows {
            let src = plane.as_ptr().add((iy0 + j as isize) as usize * g.w);
            let dst = d.add(j * pad.wpad + lo);
            for i in (0..hi.saturating_sub(lo)).step_by(64) {
                let m = mask64(hi - lo - i);
                let v = _mm512_maskz_loadu_epi8(m, src.add(i) as *const _);
                _mm512_mask_storeu_epi8(dst.add(i) as *mut _, m, v);
            }
        }
    }

    /// [`fill`] by the chunks of [`super::fill_chunks`] for these rows.
    #[inline(always)]
    unsafe fn fill_permute(
        buf: &mut [u8],
        plane: &[u8],
        pad: &Padded,
        chunks: &[super::FillChunk],
        z: u8,
    ) {
        assert!(
            buf.len() >= pad.bytes() && chunks.len() * 64 <= pad.rows * pad.wpad + 63,
            "depthwise (VNNI): buffer too small for the fill"
        );
        let zv = _mm512_set1_epi8(z as i8);
        let d = buf.as_mut_ptr();
        for (i, c) in chunks.iter().enumerate() {
            // Only window bytes inside the plane are loaded (`load` covers bytes `src ..`
            // below the plane's length, see `fill_chunks`).
            let w = _mm512_maskz_loadu_epi8(c.load, plane.as_ptr().wrapping_add(c.src) as *const _);
            let idx = _mm512_loadu_si512(c.idx.as_ptr() as *const _);
            let v = _mm512_mask_permutexvar_epi8(zv, c.keep, idx, w);
            // Chunk `i` ends at most 63 bytes past the rows: inside the slack.
            _mm512_storeu_si512(d.add(i * 64) as *mut _, v);
        }
    }

    /// Both fills of the same rows, for the tests: (row by row, by permutes).
    #[cfg(test)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn both_fills(
        plane: &[u8],
        g: &ConvGeom,
        pad: &Padded,
        r0: usize,
        chunks: &[super::FillChunk],
        z: u8,
    ) -> (Vec<u8>, Vec<u8>) {
        let n = pad.rows * pad.wpad;
        let (mut a, mut b) = (vec![1u8; pad.bytes()], vec![2u8; pad.bytes()]);
        fill(&mut a, plane, g, pad, r0, z);
        fill_permute(&mut b, plane, pad, chunks, z);
        a.truncate(n);
        b.truncate(n);
        (a, b)
    }

    /// The quads of a group at window `p` (64 bytes, or 128 when `two`): one byte permute, or
    /// a word permute then a byte shuffle within 128-bit blocks ([`super::Gather`]).
    #[inline(always)]
    unsafe fn quads<const WORDS: bool>(
        p: *const u8,
        two: bool,
        idx: __m512i,
        bidx: __m512i,
    ) -> __m512i {
        let lo = _mm512_loadu_si512(p as *const _);
        match (WORDS, two) {
            (false, false) => _mm512_permutexvar_epi8(idx, lo),
            (false, true) => {
                _mm512_permutex2var_epi8(lo, idx, _mm512_loadu_si512(p.add(64) as *const _))
            }
            (true, false) => _mm512_shuffle_epi8(_mm512_permutexvar_epi16(idx, lo), bidx),
            (true, true) => _mm512_shuffle_epi8(
                _mm512_permutex2var_epi16(lo, idx, _mm512_loadu_si512(p.add(64) as *const _)),
                bidx,
            ),
        }
    }

    /// The first `n` of 64 bits (all when `n >= 64`).
    #[inline(always)]
    fn mask64(n: usize) -> u64 {
        if n >= 64 {
            u64::MAX
        } else {
            (1u64 << n) - 1
        }
    }

    /// The filter's extent in the padded rows.
    struct Kernel {
        /// Bytes between tap rows.
        rstep: usize,
        /// Bytes between the quads of a tap row.
        qstep: usize,
        kh: usize,
        nq: usize,
    }

    /// The groups with the tap rows (`KH`) and quads per row (`NQ`) as constants when known
    /// (else 0: taken from `k`).
    #[inline(always)]
    unsafe fn groups_of<const KH: usize, const NQ: usize, const WIDE: bool, const WORDS: bool>(
        k: &Kernel,
        groups: &[Group],
        buf: &[u8],
        wq: &[i32],
        bias: __m512i,
        pr: &crate::backend::cpu::simd_q8::ReqVecs<__m512i>,
        dst: *mut u8,
    ) {
        let kh = if KH > 0 { KH } else { k.kh };
        let nq = if NQ > 0 { NQ } else { k.nq };
        let mut w = [_mm512_setzero_si512(); 10];
        let held = (kh * nq).min(w.len());
        for (i, v) in w.iter_mut().enumerate().take(held) {
            *v = _mm512_set1_epi32(wq[i]);
        }
        let base = buf.as_ptr();
        macro_rules! sums {
            ($grp:expr) => {
                group_sums::<WORDS>($grp, base, k, (kh, nq), &w, held, wq, bias)
            };
        }
        // Four groups at a time where all four are whole (64 consecutive positions): their
        // codes are packed and stored together.
        let mut chunks = groups.chunks_exact(4);
        for c in &mut chunks {
            if c.iter().all(|grp| grp.n == super::LANES) {
                debug_assert_eq!(c[3].p0, c[0].p0 + 3 * super::LANES);
                let acc = [sums!(&c[0]), sums!(&c[1]), sums!(&c[2]), sums!(&c[3])];
                <Avx512VnniQ as QDot>::requant_store::<WIDE, 4>(dst.add(c[0].p0), &acc, pr, 64);
            } else {
                for grp in c {
                    store_one::<WIDE>(sums!(grp), grp, pr, dst);
                }
            }
        }
        for grp in chunks.remainder() {
            store_one::<WIDE>(sums!(grp), grp, pr, dst);
        }
    }

    /// One group's sums: the bias plus every tap's products.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn group_sums<const WORDS: bool>(
        grp: &Group,
        base: *const u8,
        k: &Kernel,
        (kh, nq): (usize, usize),
        w: &[__m512i; 10],
        held: usize,
        wq: &[i32],
        bias: __m512i,
    ) -> __m512i {
        let idx = if WORDS {
            _mm512_loadu_si512(grp.widx.as_ptr() as *const _)
        } else {
            _mm512_loadu_si512(grp.idx.as_ptr() as *const _)
        };
        let bidx = _mm512_loadu_si512(grp.bidx.as_ptr() as *const _);
        let mut acc = bias;
        let o = base.add(grp.off);
        for ky in 0..kh {
            for qi in 0..nq {
                let t = ky * nq + qi;
                let wv = if t < held {
                    w[t]
                } else {
                    _mm512_set1_epi32(wq[t])
                };
                let p = o.add(ky * k.rstep + qi * k.qstep);
                acc = _mm512_dpbusd_epi32(acc, quads::<WORDS>(p, grp.two, idx, bidx), wv);
            }
        }
        acc
    }

    /// Requantises and stores one group's codes.
    #[inline(always)]
    unsafe fn store_one<const WIDE: bool>(
        acc: __m512i,
        grp: &Group,
        pr: &crate::backend::cpu::simd_q8::ReqVecs<__m512i>,
        dst: *mut u8,
    ) {
        let r = <Avx512VnniQ as QDot>::requant::<WIDE>(acc, pr);
        <Avx512VnniQ as QDot>::store_codes(dst.add(grp.p0), r, grp.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{ChannelRequant, Multiplier, QParams};

    fn geom(h: usize, w: usize, k: usize, s: usize, d: usize, p: usize) -> ConvGeom {
        let oh = (h + 2 * p - d * (k - 1) - 1) / s + 1;
        let ow = (w + 2 * p - d * (k - 1) - 1) / s + 1;
        ConvGeom {
            n: 1,
            cin: 1,
            h,
            w,
            cout: 1,
            oh,
            ow,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            dh: d,
            dw: d,
            pt: p,
            pl: p,
            groups: 1,
            cin_g: 1,
            cout_g: 1,
        }
    }

    #[test]
    fn groups_cover_every_position_once_within_their_window() {
        for &(h, w, k, s, d) in &[
            (112, 112, 3, 2, 1),
            (56, 56, 3, 1, 1),
            (14, 14, 5, 2, 1),
            (7, 7, 5, 1, 1),
            (9, 30, 3, 1, 4),
            (5, 3, 7, 1, 1),
        ] {
            let g = geom(h, w, k, s, d, k / 2 * d);
            let nq = k.div_ceil(4);
            for (nr, gather) in [1, 2, g.oh]
                .into_iter()
                .flat_map(|nr| [(nr, Gather::Bytes), (nr, Gather::Words)])
            {
                let pad = Padded::new(&g, nq, nr);
                let gs = groups(&g, &pad, nr, gather);
                let mut next = 0;
                for gr in &gs {
                    assert_eq!(gr.p0, next, "{h}x{w} k{k} s{s}: positions in order");
                    assert!(gr.n >= 1 && gr.n <= LANES);
                    next += gr.n;
                    for j in 0..gr.n {
                        let p = gr.p0 + j;
                        let (oy, ox) = (p / g.ow, p % g.ow);
                        for k4 in 0..4 {
                            let i = usize::from(gr.idx[4 * j + k4]);
                            assert!(i < if gr.two { 128 } else { 64 });
                            // The byte is padded row `oy·sh`, column `ox·sw + k4·dw`.
                            assert_eq!(gr.off + i, oy * g.sh * pad.wpad + ox * g.sw + k4 * g.dw);
                            if gather == Gather::Words {
                                // The word permute then the byte shuffle find the same byte.
                                let b = usize::from(gr.bidx[4 * j + k4]);
                                assert!(b < 16, "byte {b} outside its 128-bit block");
                                let wi = 8 * (j / 4) + b / 2;
                                let word = usize::from(gr.widx[2 * wi]);
                                assert!(word < if gr.two { 64 } else { 32 });
                                assert_eq!(2 * word + b % 2, i, "{h}x{w} k{k} s{s} lane {j}");
                            }
                        }
                    }
                    // The last tap row's last window ends inside the buffer.
                    let end = gr.off
                        + (g.kh - 1) * g.dh * pad.wpad
                        + (nq - 1) * 4 * g.dw
                        + if gr.two { 128 } else { 64 };
                    assert!(end <= pad.bytes(), "window past the buffer");
                }
                assert_eq!(next, nr * g.ow);
                // Rows of 16 or more positions fill whole vectors but for the row's end.
                if g.ow >= LANES && s == 1 && d == 1 {
                    let full = gs.iter().filter(|gr| gr.n == LANES).count();
                    assert!(full + 1 >= gs.len(), "{h}x{w}: {} of {}", full, gs.len());
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_permute_fill_copies_rows_and_padding_as_the_row_fill() {
        if Gather::here() != Some(Gather::Bytes) {
            eprintln!("no AVX-512 VBMI + VNNI here: the permute fill is not used");
            return;
        }
        let mut seen = 0;
        for &(h, w, k, s, d, p) in &[
            (7, 7, 3, 1, 1, 1),
            (14, 14, 5, 2, 1, 2),
            (14, 14, 3, 1, 1, 1),
            (28, 28, 5, 1, 1, 2),
            (9, 30, 3, 1, 4, 4),
            (56, 56, 3, 2, 1, 0),
            (5, 3, 7, 1, 1, 3),
        ] {
            let g = geom(h, w, k, s, d, p);
            let nq = k.div_ceil(4);
            let plane: Vec<u8> = (0..h * w).map(|i| (i * 7 % 251) as u8 + 1).collect();
            for (r0, nr) in [(0, g.oh), (1, 1), (g.oh / 2, g.oh - g.oh / 2)] {
                let pad = Padded::new(&g, nq, nr);
                let Some(chunks) = fill_chunks(&g, &pad, r0) else {
                    continue;
                };
                seen += 1;
                // SAFETY: the features were checked; the buffers are made to size.
                let (rows, permuted) = unsafe { x86::both_fills(&plane, &g, &pad, r0, &chunks, 0) };
                assert_eq!(
                    rows, permuted,
                    "{h}x{w} k{k} s{s} d{d} p{p}, rows {r0}+{nr}"
                );
                assert!(
                    rows.contains(&0) || p == 0,
                    "padding filled with the zero point"
                );
            }
        }
        assert!(seen >= 15, "only {seen} blocks had permute fills");
    }

    /// `(c, h, w, k, s, dilation, pad, ratio)`: a depthwise layer the tests run.
    type Layer = (usize, usize, usize, usize, usize, usize, usize, f64);
    const LAYERS: &[Layer] = &[
        (24, 7, 7, 3, 1, 1, 1, 0.002),
        (40, 14, 14, 5, 2, 1, 2, 0.004),
        (5, 28, 28, 3, 1, 1, 1, 0.003),
        (3, 9, 30, 3, 1, 4, 4, 0.7),
        (17, 56, 56, 3, 2, 1, 0, 0.01),
        (2, 5, 3, 7, 1, 1, 3, 3.0),
        // Rows of 4 positions 20 bytes apart: 16 positions span two 64-byte tables.
        (6, 8, 8, 3, 2, 1, 1, 0.01),
    ];

    #[test]
    fn every_gather_computes_the_integer_formula() {
        let Some(here) = Gather::here() else {
            eprintln!("no AVX-512 VNNI here: the kernel is not used");
            return;
        };
        // Both gathers where VBMI is present; the word gather alone where it is not.
        let gathers = if here == Gather::Bytes {
            vec![Gather::Bytes, Gather::Words]
        } else {
            vec![Gather::Words]
        };
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for &(c, h, w, k, s, d, p, ratio) in LAYERS {
            let mut g = geom(h, w, k, s, d, p);
            (g.n, g.cin, g.cout, g.groups, g.cout_g) = (1, c, c, c, 1);
            let x: Vec<u8> = (0..c * h * w).map(|_| next(256) as u8).collect();
            let zx = next(256) as u8;
            let wts: Vec<i8> = (0..c * k * k).map(|_| next(255) as i8 - 127 + 1).collect();
            let reqs: Vec<ChannelRequant> = (0..c)
                .map(|_| ChannelRequant {
                    mult: Multiplier::new(ratio * (0.5 + next(1000) as f64 / 1000.0)),
                    bias: next(20_000) as i32 - 10_000,
                })
                .collect();
            let q = QOut {
                zp: next(256) as i32,
                lo: 3,
                hi: 250,
            };
            // The formula: sums of raw codes, padding at the input's zero point.
            let mut want = vec![0u8; c * g.oh * g.ow];
            for ch in 0..c {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut acc = 0i32;
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky * d) as isize - p as isize;
                                let ix = (ox * s + kx * d) as isize - p as isize;
                                let inside =
                                    (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                                let v = if inside {
                                    x[ch * h * w + iy as usize * w + ix as usize]
                                } else {
                                    zx
                                };
                                acc += i32::from(wts[(ch * k + ky) * k + kx]) * i32::from(v);
                            }
                        }
                        let r = reqs[ch];
                        want[(ch * g.oh + oy) * g.ow + ox] =
                            r.mult.to_code(acc + r.bias, q.zp, q.lo, q.hi);
                    }
                }
            }
            let quads = Quads::new(&wts, c, k, k);
            let req = ReqArrays::new(&reqs, c);
            let xq = QParams {
                scale: 0.1,
                zero_point: zx,
            };
            let xt = QTensor::from_vec(&[1, c, h, w], x.clone(), xq).expect("sized");
            for &gather in &gathers {
                for threads in [1, 3] {
                    let b = crate::backend::cpu::CpuBackend::new(threads).expect("pool");
                    let mut y = QTensor::zeros(&[1, c, g.oh, g.ow], xq);
                    {
                        // Three slices whose union is the output (the cooperative executor's
                        // channel and row splits).
                        let sh = y.shared();
                        let (hc, hr) = (c / 2, g.oh / 2);
                        for (channels, rows) in
                            [(0..hc, 0..g.oh), (hc..c, 0..hr), (hc..c, hr..g.oh)]
                        {
                            let s = Slice { channels, rows };
                            run(gather, b.ctx(), &quads, &req, &g, q, &xt, &sh, &s);
                        }
                    }
                    let bad = y.data().iter().zip(&want).filter(|(a, b)| a != b).count();
                    assert_eq!(
                        bad, 0,
                        "{gather:?}, {threads} threads: {c}x{h}x{w} k{k} s{s} d{d} p{p}"
                    );
                }
            }
        }
    }

    #[test]
    fn quads_hold_four_taps_and_zeros_past_the_row() {
        let w: Vec<i8> = (0..2 * 5 * 5).map(|i| i as i8 - 20).collect();
        let q = Quads::new(&w, 2, 5, 5);
        assert_eq!(q.nq, 2);
        // Channel 1, row 2: taps 35..40 → quads [35..39], [39, 0, 0, 0] (as i8 − 20).
        let r = (5 + 2) * 2;
        assert_eq!(q.w[r].to_le_bytes().map(|b| b as i8), [15, 16, 17, 18]);
        assert_eq!(q.w[r + 1].to_le_bytes().map(|b| b as i8), [19, 0, 0, 0]);
    }
}
