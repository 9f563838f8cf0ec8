//! The machinery both depthwise kernels (F32 and QUInt8) share: **channels in the vector
//! lanes**. A task takes a block of `LANES` channels and a block of output rows, copies their
//! input rows once into a channel-interleaved f32 scratch (`[row][column][lane]`, padding filled
//! with the input's zero), and computes each output pixel as `Σ_taps w_t · x_t` with one vector
//! per tap, each lane its own channel and weight. The kernels differ only in their input type
//! ([`Source`]) and in what they do with the accumulators (bias and clamp, or requantisation)
//! before transposing the results back to the planar output.
//!
//! **Why channels in lanes, not columns**: the networks' depthwise layers are small planes
//! (56², 28², 14², 7²) with many channels. Vectors along output columns waste lanes on narrow
//! rows, need a strided gather for stride 2, and pay fills and scattered stores per plane;
//! with channels in lanes every tap of every pixel is one full vector, whatever the stride,
//! dilation, padding or plane width, and the per-channel weights are loaded once per task
//! (ncnn's packed layouts and XNNPACK's NHWC kernels do the same). The cost moves to the two
//! transposes, once per input and output element.
use super::cpu_f32::ConvGeom;
use crate::backend::cpu::simd::Simd;
use crate::backend::cpu::CpuCtx;
use std::ops::Range;

/// Output columns computed together (independent accumulators that hide the FMA latency).
pub(crate) const COLS: usize = 4;
/// Slack after each tap's weights (and per-channel arrays) so that a whole vector loads at any
/// channel.
pub(crate) const W_SLACK: usize = 64;
/// Scratch floats a task aims to stay under (128 KiB: the filled rows stay in L2).
const SCRATCH_FLOATS: usize = 32 * 1024;
/// Tap weight vectors held in registers; taps past these load from memory.
const HELD: usize = 25;

/// `w` (`c × taps`, channel-major) as tap-major f32 with [`W_SLACK`] zeros after each tap:
/// `(weights, pitch)` with tap `t` of channel `ch` at `t·pitch + ch`.
pub(crate) fn tap_major<T: Copy + Into<f32>>(w: &[T], c: usize, taps: usize) -> (Vec<f32>, usize) {
    let pitch = c + W_SLACK;
    let mut wt = vec![0f32; taps * pitch];
    for (ch, filter) in w.chunks_exact(taps).take(c).enumerate() {
        for (t, &v) in filter.iter().enumerate() {
            wt[t * pitch + ch] = v.into();
        }
    }
    (wt, pitch)
}

/// The shape of the work: output columns padded to whole groups and the scratch row width.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub lanes: usize,
    /// Output columns computed (`ow` rounded up to [`COLS`]).
    pub owp: usize,
    /// Scratch columns: every input column the padded outputs read.
    pub wp: usize,
}

impl Layout {
    pub fn new(g: &ConvGeom, lanes: usize) -> Layout {
        let owp = g.ow.next_multiple_of(COLS);
        Layout {
            lanes,
            owp,
            wp: (owp - 1) * g.sw + (g.kw - 1) * g.dw + 1,
        }
    }
    /// Input rows read by `nr` consecutive output rows.
    pub fn rows_in(g: &ConvGeom, nr: usize) -> usize {
        (nr.max(1) - 1) * g.sh + (g.kh - 1) * g.dh + 1
    }
    /// Scratch floats for `nr` output rows.
    pub fn scratch(&self, g: &ConvGeom, nr: usize) -> usize {
        Self::rows_in(g, nr) * self.wp * self.lanes
    }
    /// Each tap's offset in the scratch, in floats.
    pub fn tap_offsets(&self, g: &ConvGeom) -> Vec<usize> {
        (0..g.kh)
            .flat_map(|ky| (0..g.kw).map(move |kx| (ky * g.dh * self.wp + kx * g.dw) * self.lanes))
            .collect()
    }
}

/// One task: channels `c0 .. c0 + nc` (`nc <= lanes`) of batch `b`, output rows `rows`.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub b: usize,
    pub c0: usize,
    pub nc: usize,
    pub rows: Range<usize>,
}

impl Block {
    /// Checks what a kernel's unchecked loads and stores rely on: the variant's lane count is
    /// the layout's, the scratch holds the block, and the block lies in the output.
    pub fn check(&self, g: &ConvGeom, l: &Layout, lanes: usize, scratch: usize) {
        assert!(lanes == l.lanes, "depthwise: lane count of another variant");
        assert!(
            scratch >= l.scratch(g, self.rows.len()),
            "depthwise: scratch too small"
        );
        assert!(
            self.c0 + self.nc <= g.cout && self.rows.end <= g.oh,
            "depthwise: block out of range"
        );
    }
}

/// Splits `channels × rows` of every batch into [`Block`]s and runs `f` on each, in parallel;
/// returns the scratch floats a block needs. Whole row ranges when channel blocks alone give
/// every worker enough tasks, else row blocks; never more than the scratch budget allows.
pub(crate) fn for_each_block(
    ctx: &CpuCtx,
    g: &ConvGeom,
    l: &Layout,
    channels: Range<usize>,
    rows: Range<usize>,
    f: impl Fn(Block, usize) + Sync,
) {
    if channels.is_empty() || rows.is_empty() {
        return;
    }
    let blocks = channels.len().div_ceil(l.lanes);
    let units = g.n * blocks;
    let threads = ctx.threads();
    let target = threads * 4;
    let mut rp = if threads <= 1 || units >= target {
        rows.len()
    } else {
        rows.len().div_ceil(target.div_ceil(units).min(rows.len()))
    };
    while rp > 1 && l.scratch(g, rp) > SCRATCH_FLOATS {
        rp = rp.div_ceil(2);
    }
    let rp = rp.max(1);
    let row_blocks = rows.len().div_ceil(rp);
    let scratch = l.scratch(g, rp);
    ctx.for_each_task(units * row_blocks, |t| {
        let (u, rb) = (t / row_blocks, t % row_blocks);
        let (b, blk) = (u / blocks, u % blocks);
        let c0 = channels.start + blk * l.lanes;
        let oy0 = rows.start + rb * rp;
        f(
            Block {
                b,
                c0,
                nc: l.lanes.min(channels.end - c0),
                rows: oy0..(oy0 + rp).min(rows.end),
            },
            scratch,
        )
    });
}

/// An input element type the scratch is filled from.
pub(crate) trait Source: Copy + Into<f32> {
    /// `dst[i·lanes + c] = x[src + c·hw + i]` for `c < nc`, `i < n`.
    ///
    /// # Safety
    /// `nc <= lanes`, `dst.len() >= n·lanes`, and `x` holds `src + (nc − 1)·hw + n` elements
    /// (checked by [`fill`], the caller).
    #[inline(always)]
    unsafe fn transpose_in(
        x: &[Self],
        src: usize,
        hw: usize,
        nc: usize,
        n: usize,
        lanes: usize,
        dst: &mut [f32],
    ) {
        for c in 0..nc {
            let s = &x[src + c * hw..src + c * hw + n];
            for (i, &v) in s.iter().enumerate() {
                dst[i * lanes + c] = v.into();
            }
        }
    }
}

impl Source for f32 {}

/// Fills the scratch for `blk`: row `j < rows_in` holds input row `iy0 + j`, column `i < wp`
/// input column `i − pl`, lane `c < nc` channel `c0 + c` of batch `b`, as f32; `z` (the input's
/// zero) where that lies outside the plane and in the lanes past `nc`.
#[inline(always)]
pub(crate) fn fill<T: Source>(
    scratch: &mut [f32],
    x: &[T],
    g: &ConvGeom,
    l: &Layout,
    blk: &Block,
    z: f32,
) {
    let (lanes, wp) = (l.lanes, l.wp);
    let hw = g.h * g.w;
    let plane0 = (blk.b * g.cin + blk.c0) * hw;
    assert!(
        blk.nc >= 1 && blk.nc <= lanes && plane0 + blk.nc * hw <= x.len(),
        "depthwise: channel block out of range"
    );
    let iy0 = (blk.rows.start * g.sh) as isize - g.pt as isize;
    let lo = g.pl.min(wp);
    let hi = (g.pl + g.w).min(wp);
    for j in 0..Layout::rows_in(g, blk.rows.len()) {
        let d = &mut scratch[j * wp * lanes..(j + 1) * wp * lanes];
        let iy = iy0 + j as isize;
        if iy < 0 || iy >= g.h as isize || lo == hi {
            d.fill(z);
            continue;
        }
        d[..lo * lanes].fill(z);
        d[hi * lanes..].fill(z);
        if blk.nc < lanes {
            for px in d[lo * lanes..hi * lanes].chunks_exact_mut(lanes) {
                px[blk.nc..].fill(z);
            }
        }
        let src = plane0 + iy as usize * g.w;
        let n = hi - lo;
        assert!(
            src + (blk.nc - 1) * hw + n <= x.len(),
            "depthwise: input rows out of range"
        );
        // SAFETY: `nc <= lanes` (asserted above), the row holds `n·lanes` floats, and the
        // source rows are in `x` (asserted).
        unsafe { T::transpose_in(x, src, hw, blk.nc, n, lanes, &mut d[lo * lanes..hi * lanes]) };
    }
}

/// The taps of one channel block: weight vectors and scratch offsets.
pub(crate) struct Taps<'a, V> {
    /// The first [`HELD`] taps' weight vectors.
    wv: [V; HELD],
    /// Weights of the block's first channel, tap 0 (taps past [`HELD`] load from here).
    w: *const f32,
    pitch: usize,
    offs: &'a [usize],
    /// Floats between the first taps of neighbouring output pixels.
    step: usize,
}

impl<'a, V: Copy> Taps<'a, V> {
    /// The taps of channels `c0 ..` from tap-major weights ([`tap_major`]).
    ///
    /// # Safety
    /// `w` holds `offs.len()` taps of `pitch` floats, and `c0 + LANES <= pitch`.
    #[inline(always)]
    pub unsafe fn new<S: Simd<V = V>>(
        w: &[f32],
        pitch: usize,
        c0: usize,
        offs: &'a [usize],
        g: &ConvGeom,
    ) -> Self {
        debug_assert!(w.len() >= offs.len() * pitch && c0 + S::LANES <= pitch);
        let mut wv = [S::zero(); HELD];
        for (t, v) in wv.iter_mut().enumerate().take(offs.len().min(HELD)) {
            *v = S::load(w.as_ptr().add(t * pitch + c0));
        }
        Taps {
            wv,
            w: w.as_ptr().add(c0),
            pitch,
            offs,
            step: g.sw * S::LANES,
        }
    }
}

/// What a kernel does with the accumulators of pixels `x0 .. x0 + COLS` of a row. A trait with
/// inlined methods, not a closure: a closure would be compiled without the instruction set's
/// target features of the function it is inlined into, and its intrinsics would become calls.
pub(crate) trait Emit<V> {
    /// # Safety
    /// Pixels `x0 .. x0 + COLS` are below the layout's `owp`.
    unsafe fn emit(&mut self, x0: usize, acc: &[V; COLS]);
}

/// One output row: `owp` pixels, [`COLS`] at a time, each `Σ_t w_t·x_t` over the lanes'
/// channels; `emit` gets pixels `x0 .. x0 + COLS`. `T` is the tap count when known at
/// compile time (else 0).
///
/// # Safety
/// `row` is the scratch row of the output row's first tap: every tap of every pixel `< owp`
/// lies in the scratch (true of a scratch filled by [`fill`] for the block).
#[inline(always)]
pub(crate) unsafe fn pixels<S: Simd, const T: usize>(
    a: &Taps<'_, S::V>,
    row: *const f32,
    owp: usize,
    emit: &mut impl Emit<S::V>,
) {
    let taps = if T > 0 { T } else { a.offs.len() };
    for x0 in (0..owp).step_by(COLS) {
        let base = row.add(x0 * a.step);
        let mut acc = [S::zero(); COLS];
        for t in 0..taps {
            let w = if t < HELD {
                a.wv[t]
            } else {
                S::load(a.w.add(t * a.pitch))
            };
            let p = base.add(a.offs[t]);
            for (k, ak) in acc.iter_mut().enumerate() {
                *ak = S::fma(w, S::load(p.add(k * a.step)), *ak);
            }
        }
        emit.emit(x0, &acc);
    }
}

/// Runs [`pixels`] with the tap count as a compile-time constant for 3×3 and 5×5 filters.
///
/// # Safety
/// As [`pixels`].
#[inline(always)]
pub(crate) unsafe fn pixels_any<S: Simd>(
    a: &Taps<'_, S::V>,
    row: *const f32,
    owp: usize,
    emit: &mut impl Emit<S::V>,
) {
    match a.offs.len() {
        9 => pixels::<S, 9>(a, row, owp, emit),
        25 => pixels::<S, 25>(a, row, owp, emit),
        _ => pixels::<S, 0>(a, row, owp, emit),
    }
}

/// `out[c·plane + i] = vals[i·lanes + c]` for `c < nc`, `i < n`: a block's results back to the
/// planar output (the 8-bit kernel has a vectorised one for codes).
///
/// # Safety
/// `out` is valid for writes at `c·plane + i` for every `c < nc`, `i < n`.
#[inline(always)]
pub(crate) unsafe fn transpose_out<T: Copy>(
    vals: &[T],
    lanes: usize,
    nc: usize,
    n: usize,
    out: *mut T,
    plane: usize,
) {
    assert!(
        nc <= lanes && (n == 0 || nc == 0 || vals.len() >= (n - 1) * lanes + nc),
        "transpose_out: bounds"
    );
    for c in 0..nc {
        for i in 0..n {
            *out.add(c * plane + i) = vals[i * lanes + c];
        }
    }
}
