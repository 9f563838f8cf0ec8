//! The 8-bit matrix-product engine under QUInt8 convolution and fully connected layers:
//!
//! ```text
//! C[m, n] = clamp(z_y + M_m·(bias_m + Σ_k W[m, k]·B[k, n]), lo, hi)      (codes)
//! ```
//!
//! with `W` the 8-bit weights (packed once at prepare), `B` the activation codes (packed per
//! task from the tensor: a 1×1 convolution's input as is, im2col for the others, or a fully
//! connected layer's rows; an im2col gather is packed once for all tasks when `m` is cut in
//! blocks that would each repeat it) and `bias_m` the layer's quantized bias with the input
//! zero-point correction folded in (`bias − z_x·Σ_k W[m, k]`, so that `Σ W·B` needs no
//! per-element subtraction). Computed for any `m` range (output channels) and `n` range (output pixels or
//! rows) straight into the shared QUInt8 output, 32-bit accumulators held in registers over
//! the whole `K`, requantised in the tile store.
//!
//! Operands are packed in 4-byte groups along `K` ([`QDot`]): four u8/i8 for the dot-product
//! instruction sets, two u16/i16 for the widening ones. The two orientations of the F32
//! engine ([`Orientation`]) exist here too: weights broadcast against vectors of pixels for
//! wide outputs, activations broadcast against vectors of channels for narrow outputs (late
//! 7×7 layers, fully connected layers).
use super::buf::with_scratch;
use super::bytes::transpose_codes;
pub use super::gemm::Orientation;
use super::plan::{self, plan_with_span, TaskCosts};
pub use super::simd_q8::QOut;
use super::simd_q8::{QDot, QFn, QIsa, QTileFn, ReqArrays, ReqVecs};
use super::CpuCtx;
use crate::quant::ChannelRequant;
use std::ops::Range;

/// A 64-byte-aligned zero-initialised byte buffer.
#[derive(Clone, Debug, Default)]
pub struct AlignedBytes {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBytes {
    /// `len` zero bytes.
    pub fn zeros(len: usize) -> AlignedBytes {
        let buf = vec![0u8; len + 64];
        let off = (64 - buf.as_ptr() as usize % 64) % 64;
        AlignedBytes { buf, off, len }
    }
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }
    /// The bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
    /// Pointer to byte 0.
    pub fn as_ptr(&self) -> *const u8 {
        self.as_slice().as_ptr()
    }
}

/// The micro-tile shape and operand format of a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QShape {
    pub lanes: usize,
    pub kg: usize,
    pub rows: usize,
    pub vecs: usize,
}

struct ShapeOf;
impl QFn for ShapeOf {
    type Output = QShape;
    fn call<D: QDot>(self) -> QShape {
        QShape {
            lanes: D::LANES,
            kg: D::KG,
            rows: D::ROWS,
            vecs: D::VECS,
        }
    }
}

impl QIsa {
    /// Micro-tile shape and operand format.
    pub fn shape(self) -> QShape {
        self.dispatch(ShapeOf)
    }
}

/// The orientation for an `m × n` product (see [`Orientation::choose`]): activations
/// broadcast when the output is contiguous along `m` or `n` is narrower than a vector, or
/// when it wastes fewer lanes by 30% (its stores into planar outputs go through a transpose,
/// the other's are packed runs of pixels).
///
/// The margin is measured: with packed stores (AVX-512, Zen 4, 1 thread,
/// `q8_layer_bench 1 pw`), weights broadcast won on 14×14 planes (`n = 196`, 22% lanes
/// wasted against 0–3%): 80 → 480 0.054 → 0.045 ms, 112 → 672 0.094 → 0.081, 512 → 512
/// 0.256 → 0.246; activations broadcast kept 7×7 planes (`n = 49`, 96% wasted): 1024 → 1024
/// 0.247 against 0.297, 192 → 1152 0.062 against 0.069.
pub fn choose_orientation(q: QIsa, m: usize, n: usize, out_m_contiguous: bool) -> Orientation {
    let s = q.shape();
    let vw = (s.vecs * s.lanes) as f64;
    let waste = |len: usize, unit: f64| (len as f64 / unit).ceil() * unit / len.max(1) as f64;
    if out_m_contiguous || n < s.lanes || waste(m, vw) * 1.3 < waste(n, vw) {
        Orientation::ActivationsBroadcast
    } else {
        Orientation::WeightsBroadcast
    }
}

/// A weight matrix `W[M, K]` (row-major i8) packed for one variant and orientation, with its
/// per-channel requantisation in lane-ready arrays.
#[derive(Clone, Debug)]
pub struct PackedQWeights {
    data: AlignedBytes,
    m: usize,
    k: usize,
    /// Groups along K (`ceil(K / KG)`).
    groups: usize,
    /// Rows (weights broadcast) or lanes (activations broadcast) per panel.
    width: usize,
    orientation: Orientation,
    q: QIsa,
    req: ReqArrays,
}

impl PackedQWeights {
    /// Packs `w` (`m × k`, row-major) into panels of `width` rows of `m`:
    /// group `g` of row `i` of panel `p` at byte `((p·G + g)·width + i)·4`, holding
    /// `W[p·width + i, g·KG .. g·KG + KG]` as i8 (`KG = 4`) or i16 (`KG = 2`), zero past `m`
    /// and `k`. `req[m]` is row `m`'s requantisation.
    pub fn new(
        q: QIsa,
        orientation: Orientation,
        w: &[i8],
        m: usize,
        k: usize,
        req: &[ChannelRequant],
    ) -> PackedQWeights {
        assert!(w.len() >= m * k && req.len() >= m, "packing: short weights");
        let s = q.shape();
        let width = match orientation {
            Orientation::WeightsBroadcast => s.rows,
            Orientation::ActivationsBroadcast => s.vecs * s.lanes,
        };
        let groups = k.div_ceil(s.kg);
        let panels = m.div_ceil(width);
        let mut data = AlignedBytes::zeros(panels * groups * width * 4);
        let d = data.as_mut_slice();
        for row in 0..m {
            let (p, i) = (row / width, row % width);
            for kk in 0..k {
                let (g, t) = (kk / s.kg, kk % s.kg);
                let at = ((p * groups + g) * width + i) * 4;
                let v = w[row * k + kk];
                if s.kg == 4 {
                    d[at + t] = v as u8;
                } else {
                    d[at + 2 * t..at + 2 * t + 2].copy_from_slice(&i16::from(v).to_le_bytes());
                }
            }
        }
        PackedQWeights {
            data,
            m,
            k,
            groups,
            width,
            orientation,
            q,
            req: ReqArrays::new(&req[..m], panels * width),
        }
    }

    /// Rows (`M`).
    pub fn m(&self) -> usize {
        self.m
    }

    /// Inner dimension (`K`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The orientation it was packed for.
    pub fn orientation(&self) -> Orientation {
        self.orientation
    }

    /// The variant it was packed for.
    pub fn isa(&self) -> QIsa {
        self.q
    }
}

/// Where the `B[K, N]` operand's codes come from.
pub trait QSource: Sync {
    /// What a task works out once for its columns and reuses for every row it fetches.
    type Cols;

    /// Whether fetching rows costs enough (a gather) that a product whose `m` is cut in
    /// blocks should pack its columns once for all of them. A plain matrix's packing is only
    /// the interleave, cheaper than the extra fork and the lost locality (measured: 1×1
    /// 480 → 80 at 14×14, 2 threads, 0.018 → 0.031 ms when shared).
    const SHARE_PACKING: bool = false;

    /// The per-task state for columns `n0..n0 + len`.
    fn cols(&self, n0: usize, len: usize) -> Self::Cols;

    /// `len` codes of row `k` of `B` from column `n0` (those of `cols`): a pointer to them
    /// (into the tensor, or into `tmp`, which holds at least `len + 16` bytes and may be
    /// written; bytes past `len` are the next row's, fetched after this one).
    ///
    /// # Safety
    /// `k < K`, `n0 + len <= N` of the source, and `cols` made for `n0` and `len`.
    unsafe fn row(
        &self,
        cols: &Self::Cols,
        k: usize,
        n0: usize,
        len: usize,
        tmp: *mut u8,
    ) -> *const u8;
}

/// A strided matrix of codes: `B[k, n] = ptr[k·sk + n·sn]` (1×1 convolution: `sk = H·W,
/// sn = 1`; fully connected: `sk = 1, sn = K`).
#[derive(Clone, Copy, Debug)]
pub struct QMatrix {
    pub ptr: *const u8,
    pub sk: usize,
    pub sn: usize,
}

// SAFETY: read-only view of a tensor that outlives the product.
unsafe impl Sync for QMatrix {}
unsafe impl Send for QMatrix {}

impl QSource for QMatrix {
    type Cols = ();

    fn cols(&self, _: usize, _: usize) {}

    #[inline(always)]
    unsafe fn row(&self, _: &(), k: usize, n0: usize, len: usize, tmp: *mut u8) -> *const u8 {
        let base = self.ptr.add(k * self.sk + n0 * self.sn);
        if self.sn == 1 {
            return base;
        }
        for j in 0..len {
            *tmp.add(j) = *base.add(j * self.sn);
        }
        tmp
    }
}

/// Where `C[m, n]` goes: `ptr[m·sm + n·sn]`.
#[derive(Clone, Copy, Debug)]
pub struct QOutView {
    pub ptr: *mut u8,
    pub sm: usize,
    pub sn: usize,
}

// SAFETY: each task writes a disjoint (m, n) block; the caller owns the whole slice.
unsafe impl Sync for QOutView {}
unsafe impl Send for QOutView {}

/// Target bytes of one task's packed activations (they stay in L2).
const PACK_TARGET: usize = 128 * 1024;

/// Computes `C[m, n]` (see the module documentation) for `m ∈ ms`, `n ∈ ns` on the context's
/// workers. Weights-broadcast products need `out.sn == 1`.
///
/// # Safety
/// `out` must be valid for writes at every `(m, n)` of the ranges, and no other thread may
/// access those elements meanwhile; `src` must cover `K × ns.end`; `ms.end <= w.m()`.
pub unsafe fn gemm_q8<S: QSource>(
    ctx: &CpuCtx,
    w: &PackedQWeights,
    src: &S,
    ms: Range<usize>,
    ns: Range<usize>,
    out: QOutView,
    q: QOut,
) {
    if ms.is_empty() || ns.is_empty() {
        return;
    }
    debug_assert!(ms.end <= w.m);
    debug_assert!(w.orientation == Orientation::ActivationsBroadcast || out.sn == 1);
    let s = w.q.shape();
    let (m_unit, n_unit) = units(s, w.orientation);
    let m_units = ms.end.div_ceil(m_unit) - ms.start / m_unit;
    let Grid {
        panel_bytes,
        n_units,
        mb,
        nb,
        costs,
        ..
    } = grid(
        s,
        w.orientation,
        w.k,
        (m_units, ns.len()),
        S::SHARE_PACKING,
        ctx.threads,
    );
    let m_blocks = m_units.div_ceil(mb);
    let n_blocks = n_units.div_ceil(nb);
    let p_first = ms.start / m_unit;
    let run = |packed: Option<*const u8>| {
        // Packed panels for the whole K, then the rows gathered for packing (KG × the block).
        let scratch_bytes = nb * panel_bytes + 4 * nb * n_unit + 64;
        let packed = packed.map(SharedPtr);
        ctx.for_each_task(m_blocks * n_blocks, |t| {
            let (bm, bn) = (t / n_blocks, t % n_blocks);
            let m0 = ((p_first + bm * mb) * m_unit).max(ms.start);
            let m1 = ((p_first + (bm + 1) * mb) * m_unit).min(ms.end);
            let n0 = ns.start + bn * nb * n_unit;
            let n1 = (n0 + nb * n_unit).min(ns.end);
            let task = |scratch: *mut u8, packed: Option<*const u8>| {
                w.q.dispatch(Task {
                    w,
                    src,
                    m: m0..m1,
                    n: n0..n1,
                    out,
                    q,
                    scratch,
                    packed,
                })
            };
            match packed {
                // This block's panels in the shared packing.
                Some(p) => task(std::ptr::null_mut(), Some(p.at(bn * nb * panel_bytes))),
                None => with_scratch(scratch_bytes.div_ceil(4), |scratch| {
                    task(scratch.as_mut_ptr() as *mut u8, None)
                }),
            }
        });
    };
    // Blocks of m repeat their columns' packing; past a few panels of repeats, the columns
    // are packed once, by all workers, before the product (while they fit in a cache), as
    // the plan assumed.
    if plan::shares(&costs, m_blocks, n_units) {
        with_packed(n_units * panel_bytes + 64, |buf| {
            pack_shared(ctx, w, src, &ns, n_unit, buf.as_mut_slice().as_mut_ptr());
            run(Some(buf.as_ptr()));
        });
    } else {
        run(None);
    }
}

/// Units along `m` (weight panels) and `n` (activation panels) of an orientation.
fn units(s: QShape, o: Orientation) -> (usize, usize) {
    match o {
        Orientation::WeightsBroadcast => (s.rows, s.vecs * s.lanes),
        Orientation::ActivationsBroadcast => (s.vecs * s.lanes, s.rows),
    }
}

/// A product's task grid: the bytes of one packed activation panel, the units of `n`, the
/// planned blocks, their simulated makespan (multiply-adds) and the costs planned with.
struct Grid {
    panel_bytes: usize,
    n_units: usize,
    mb: usize,
    nb: usize,
    span: u128,
    costs: TaskCosts,
}

/// The grid of `m_units` weight panels × `n_len` columns over `k`; `share`: the source may
/// pack its columns once for all blocks of `m` ([`QSource::SHARE_PACKING`]).
fn grid(
    s: QShape,
    o: Orientation,
    k: usize,
    (m_units, n_len): (usize, usize),
    share: bool,
    threads: usize,
) -> Grid {
    let (m_unit, n_unit) = units(s, o);
    let panel_bytes = k.div_ceil(s.kg) * 4 * n_unit;
    let n_units = n_len.div_ceil(n_unit);
    let n_max = (PACK_TARGET / panel_bytes.max(1)).max(1);
    let costs = TaskCosts {
        // About 4 µs per task (scheduling, set-up) and the packing: per block of m, or once.
        overhead: 200_000,
        pack_div: 8,
        // Packed once when the repeats reach SHARED_PACK_MIN bytes and the whole packing
        // fits SHARED_PACK_MAX.
        share_min: (share && n_units * panel_bytes <= SHARED_PACK_MAX)
            .then(|| SHARED_PACK_MIN.div_ceil(panel_bytes.max(1))),
    };
    let (mb, nb, span) =
        plan_with_span(m_units, n_units, n_max, threads, k * m_unit * n_unit, costs);
    Grid {
        panel_bytes,
        n_units,
        mb,
        nb,
        span,
        costs,
    }
}

/// The engine's own estimate of a product's time, in multiply-adds: the simulated makespan of
/// the task grid it would run for `m × n` of a layer whose whole product is `layer_m ×
/// layer_n` (which fixes the orientation) over `k`, on `threads` workers of variant `q`;
/// `gathered`: the columns are gathered (im2col), so may be packed once for all blocks of `m`.
pub fn predicted_span(
    q: QIsa,
    (layer_m, layer_n): (usize, usize),
    out_m_contiguous: bool,
    k: usize,
    (m, n): (usize, usize),
    gathered: bool,
    threads: usize,
) -> u128 {
    let s = q.shape();
    let o = choose_orientation(q, layer_m, layer_n, out_m_contiguous);
    let m_units = m.div_ceil(units(s, o).0);
    grid(s, o, k, (m_units, n), gathered, threads).span
}

/// Repeated packing (bytes) above which a product packs its columns once for all blocks.
const SHARED_PACK_MIN: usize = 64 * 1024;

/// The most a shared packing may take (bytes): beyond a last-level cache the blocks would
/// read it from memory, and the buffer is held for the thread's life. Not measured: a
/// bound, not a tuned value (a phone's last-level cache is 2–8 MiB).
const SHARED_PACK_MAX: usize = 4 << 20;

/// A pointer that tasks on other threads may read through.
#[derive(Clone, Copy)]
struct SharedPtr(*const u8);

impl SharedPtr {
    /// The pointer `off` bytes on (a method, so closures capture the `Sync` wrapper).
    ///
    /// # Safety
    /// As [`pointer::add`].
    unsafe fn at(self, off: usize) -> *const u8 {
        self.0.add(off)
    }
}
// SAFETY: the packed panels are written before the product's tasks start and only read by
// them.
unsafe impl Sync for SharedPtr {}
unsafe impl Send for SharedPtr {}

thread_local! {
    /// The calling thread's shared packing, kept between products.
    static PACKED: std::cell::RefCell<AlignedBytes> =
        std::cell::RefCell::new(AlignedBytes::zeros(0));
}

/// Runs `f` with at least `len` bytes of this thread's shared-packing buffer (a fresh one if
/// the thread's is in use).
fn with_packed<R>(len: usize, f: impl FnOnce(&mut AlignedBytes) -> R) -> R {
    PACKED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut b) => {
            if b.len < len {
                *b = AlignedBytes::zeros(len.next_power_of_two());
            }
            f(&mut b)
        }
        Err(_) => f(&mut AlignedBytes::zeros(len)),
    })
}

/// Packs every column of `ns` (panels of `n_unit`) for the whole K into `dst`, panel `p` at
/// `p·panel_bytes`, on all workers: tasks are runs of panels × ranges of K groups, enough of
/// them to occupy every worker even when the columns make few panels.
///
/// # Safety
/// `dst` holds `ceil(ns.len() / n_unit)` panels; `src` covers `K × ns.end`.
unsafe fn pack_shared<S: QSource>(
    ctx: &CpuCtx,
    w: &PackedQWeights,
    src: &S,
    ns: &Range<usize>,
    n_unit: usize,
    dst: *mut u8,
) {
    #[cfg(test)]
    tests::SHARED_PACKS.with(|c| c.set(c.get() + 1));
    let panels = ns.len().div_ceil(n_unit);
    let panel_bytes = w.groups * 4 * n_unit;
    // Aim for four tasks per worker; a group range of fewer than 16 groups (64 rows of K)
    // costs more in set-up than it packs.
    let want = 4 * ctx.threads.max(1);
    let per_task = panels.div_ceil(want).max(1);
    let p_tasks = panels.div_ceil(per_task);
    let g_chunks = want.div_ceil(p_tasks).min(w.groups.div_ceil(16)).max(1);
    let g_len = w.groups.div_ceil(g_chunks);
    let g_tasks = w.groups.div_ceil(g_len);
    let dst = SharedPtr(dst);
    let tmp_bytes = 4 * per_task * n_unit + 64;
    ctx.for_each_task(p_tasks * g_tasks, |t| {
        let (tp, tg) = (t / g_tasks, t % g_tasks);
        let p0 = tp * per_task;
        let n0 = ns.start + p0 * n_unit;
        let n1 = (n0 + per_task * n_unit).min(ns.end);
        let gs = tg * g_len..((tg + 1) * g_len).min(w.groups);
        with_scratch(tmp_bytes.div_ceil(4), |tmp| {
            w.q.dispatch(PackTask {
                w,
                src,
                gs,
                n: n0..n1,
                n_unit,
                dst: dst.at(p0 * panel_bytes) as *mut u8,
                tmp: tmp.as_mut_ptr() as *mut u8,
            })
        })
    });
}

/// One task of [`pack_shared`].
struct PackTask<'a, S> {
    w: &'a PackedQWeights,
    src: &'a S,
    gs: Range<usize>,
    n: Range<usize>,
    n_unit: usize,
    dst: *mut u8,
    tmp: *mut u8,
}

impl<S: QSource> QFn for PackTask<'_, S> {
    type Output = ();
    #[inline(always)]
    fn call<D: QDot>(self) {
        // SAFETY: `pack_shared`'s contract; each task writes its own panels' groups.
        unsafe {
            pack::<D, S>(
                self.src,
                self.w.k,
                self.w.groups,
                self.gs,
                self.n.start,
                self.n.end,
                self.n_unit,
                self.dst,
                self.tmp,
            )
        }
    }
}

/// One task: a block of `m` × a block of `n`.
struct Task<'a, S> {
    w: &'a PackedQWeights,
    src: &'a S,
    m: Range<usize>,
    n: Range<usize>,
    out: QOutView,
    q: QOut,
    /// Room for the task's own packing (unused with `packed`).
    scratch: *mut u8,
    /// The block's panels, packed before the product.
    packed: Option<*const u8>,
}

impl<S: QSource> QFn for Task<'_, S> {
    type Output = ();
    #[inline(always)]
    fn call<D: QDot>(self) {
        D::with_tile(self)
    }
}

impl<S: QSource> QTileFn for Task<'_, S> {
    type Output = ();
    #[inline(always)]
    fn call<D: QDot, const R: usize, const V: usize>(self) {
        // SAFETY: `gemm_q8`'s contract: the block is ours to write, the source covers it, and
        // the scratch holds the packed panels plus the gather rows.
        unsafe {
            match self.w.orientation {
                Orientation::WeightsBroadcast => task_wb::<D, S, R, V>(&self),
                Orientation::ActivationsBroadcast => task_ab::<D, S, R, V>(&self),
            }
        }
    }
}

/// Packs columns `n0..n_end` of `B` (the groups `gs` of `K`) into `ceil((n_end − n0) / w)` panels of `w`
/// columns, panel `p` at `dst + p·groups·w·4` as `[g][j][4 bytes]`: group `g` of column `j` at
/// byte `(g·w + j)·4` of its panel, zero past `n_end` and `K`.
///
/// Each row of `B` is fetched once for the whole range (into `tmp`, `4·(n_end − n0)` bytes),
/// not once per panel: an im2col row is then gathered in long runs along output rows. Per
/// panel of 16 pixels, the gather's set-up cost more than the copy (stem 3×3/2 at 1 thread:
/// 2.00 → 1.15 ms).
#[inline(always)]
#[allow(clippy::too_many_arguments)] // one packing routine for every source layout; a struct would only rename the arguments
unsafe fn pack<D: QDot, S: QSource>(
    src: &S,
    k: usize,
    groups: usize,
    gs: Range<usize>,
    n0: usize,
    n_end: usize,
    w: usize,
    dst: *mut u8,
    tmp: *mut u8,
) {
    let len = n_end.saturating_sub(n0);
    let panels = len.div_ceil(w);
    let kg = D::KG;
    let cols = src.cols(n0, len);
    for g in gs {
        let mut rows = [std::ptr::null::<u8>(); 4];
        for (t, r) in rows.iter_mut().enumerate().take(kg) {
            let kk = g * kg + t;
            let at = tmp.add(t * len);
            *r = if kk < k {
                src.row(&cols, kk, n0, len, at)
            } else {
                // Rows past K (the last group only): zeros, as the weights there.
                std::ptr::write_bytes(at, 0, len);
                at
            };
        }
        for p in 0..panels {
            let valid = (len - p * w).min(w);
            let mut rp = rows;
            for r in rp.iter_mut().take(kg) {
                *r = r.add(p * w);
            }
            let d = dst.add((p * groups + g) * w * 4);
            if kg == 4 {
                interleave4(&rp, valid, w, d);
            } else {
                interleave2(&rp, valid, w, d);
            }
        }
    }
}

/// `dst[j·4 + t] = rows[t][j]` for `j < valid`, zeros for `valid <= j < w`.
#[inline(always)]
unsafe fn interleave4(rows: &[*const u8; 4], valid: usize, w: usize, dst: *mut u8) {
    let mut j = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        while j + 16 <= valid {
            let ld = |t: usize| _mm_loadu_si128(rows[t].add(j) as *const __m128i);
            let (a, b, c, d) = (ld(0), ld(1), ld(2), ld(3));
            let (ab0, ab1) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let (cd0, cd1) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
            let o = dst.add(j * 4) as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi16(ab0, cd0));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(ab0, cd0));
            _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(ab1, cd1));
            _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(ab1, cd1));
            j += 16;
        }
        // Runs of 8 and 4 (the activations-broadcast tiles are 8 or 6 pixels wide).
        if j + 8 <= valid {
            let ld = |t: usize| _mm_loadl_epi64(rows[t].add(j) as *const __m128i);
            let ab = _mm_unpacklo_epi8(ld(0), ld(1));
            let cd = _mm_unpacklo_epi8(ld(2), ld(3));
            let o = dst.add(j * 4) as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi16(ab, cd));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(ab, cd));
            j += 8;
        }
        if j + 4 <= valid {
            let ld = |t: usize| _mm_cvtsi32_si128((rows[t].add(j) as *const i32).read_unaligned());
            let ab = _mm_unpacklo_epi8(ld(0), ld(1));
            let cd = _mm_unpacklo_epi8(ld(2), ld(3));
            _mm_storeu_si128(dst.add(j * 4) as *mut __m128i, _mm_unpacklo_epi16(ab, cd));
            j += 4;
        }
    }
    while j < valid {
        for (t, row) in rows.iter().enumerate() {
            *dst.add(j * 4 + t) = *row.add(j);
        }
        j += 1;
    }
    if valid < w {
        std::ptr::write_bytes(dst.add(valid * 4), 0, (w - valid) * 4);
    }
}

/// `dst16[j·2 + t] = rows[t][j]` (zero-extended) for `j < valid`, zeros for `valid <= j < w`.
#[inline(always)]
unsafe fn interleave2(rows: &[*const u8; 4], valid: usize, w: usize, dst: *mut u8) {
    let mut j = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let z = _mm_setzero_si128();
        while j + 16 <= valid {
            let a = _mm_loadu_si128(rows[0].add(j) as *const __m128i);
            let b = _mm_loadu_si128(rows[1].add(j) as *const __m128i);
            let (ab0, ab1) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let o = dst.add(j * 4) as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi8(ab0, z));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi8(ab0, z));
            _mm_storeu_si128(o.add(2), _mm_unpacklo_epi8(ab1, z));
            _mm_storeu_si128(o.add(3), _mm_unpackhi_epi8(ab1, z));
            j += 16;
        }
        if j + 8 <= valid {
            let a = _mm_loadl_epi64(rows[0].add(j) as *const __m128i);
            let b = _mm_loadl_epi64(rows[1].add(j) as *const __m128i);
            let ab = _mm_unpacklo_epi8(a, b);
            let o = dst.add(j * 4) as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi8(ab, z));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi8(ab, z));
            j += 8;
        }
        if j + 4 <= valid {
            let ld = |t: usize| _mm_cvtsi32_si128((rows[t].add(j) as *const i32).read_unaligned());
            let ab = _mm_unpacklo_epi8(ld(0), ld(1));
            _mm_storeu_si128(dst.add(j * 4) as *mut __m128i, _mm_unpacklo_epi8(ab, z));
            j += 4;
        }
    }
    while j < valid {
        for (t, row) in rows.iter().enumerate().take(2) {
            let v = u16::from(*row.add(j)).to_le_bytes();
            *dst.add(j * 4 + 2 * t) = v[0];
            *dst.add(j * 4 + 2 * t + 1) = v[1];
        }
        j += 1;
    }
    if valid < w {
        std::ptr::write_bytes(dst.add(valid * 4), 0, (w - valid) * 4);
    }
}

/// `acc[r][v] = Σ_g dot(...)` over `groups` groups: `bc` holds broadcast groups, `bs` bytes
/// per group step (the first `R` used), `vc` vectors of `vs` bytes per group step. `WB`: the vectors are activations
/// and the broadcasts weights; otherwise the reverse.
#[inline(always)]
unsafe fn accumulate<D: QDot, const R: usize, const NV: usize, const WB: bool>(
    groups: usize,
    bc: *const u8,
    bs: usize,
    vc: *const u8,
    vs: usize,
) -> [[D::V; NV]; R] {
    let l4 = D::LANES * 4;
    let mut acc = [[D::zero(); NV]; R];
    for g in 0..groups {
        let vp = vc.add(g * vs);
        let mut x = [D::zero(); NV];
        for (v, xv) in x.iter_mut().enumerate() {
            *xv = D::load(vp.add(v * l4));
        }
        let bp = bc.add(g * bs);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let b = D::bcast(bp.add(r * 4));
            for v in 0..NV {
                acc_r[v] = if WB {
                    D::dot(acc_r[v], x[v], b)
                } else {
                    D::dot(acc_r[v], b, x[v])
                };
            }
        }
    }
    acc
}

/// Requantises one vector with the layer's path (narrow unless some multiplier is 0.5 or more).
#[inline(always)]
unsafe fn requant<D: QDot>(x: D::V, p: &ReqVecs<D::V>, wide: bool) -> D::V {
    if wide {
        D::requant::<true>(x, p)
    } else {
        D::requant::<false>(x, p)
    }
}

/// The task's packed columns in panels of `width`: the shared packing's, or packed here into
/// the scratch (whose first `bytes` hold them, the gather rows after).
#[inline(always)]
unsafe fn packed_columns<D: QDot, S: QSource>(
    t: &Task<'_, S>,
    width: usize,
    bytes: usize,
) -> *const u8 {
    if let Some(p) = t.packed {
        return p;
    }
    let groups = t.w.groups;
    let tmp = t.scratch.add(bytes);
    pack::<D, S>(
        t.src,
        t.w.k,
        groups,
        0..groups,
        t.n.start,
        t.n.end,
        width,
        t.scratch,
        tmp,
    );
    t.scratch
}

/// Weights broadcast: panels of `ROWS` channels × panels of `VECS·LANES` pixels; each packed
/// activation panel meets every weight panel of the task.
#[inline(always)]
unsafe fn task_wb<D: QDot, S: QSource, const R: usize, const V: usize>(t: &Task<'_, S>) {
    let (l, nr) = (D::LANES, V * D::LANES);
    let (m, n, w, out) = (t.m.clone(), t.n.clone(), t.w, t.out);
    let groups = w.groups;
    let n_len = n.len();
    let n_panels = n_len.div_ceil(nr);
    let panel_bytes = groups * nr * 4;
    let panels = packed_columns::<D, S>(t, nr, n_panels * panel_bytes);
    let r_ = R;
    let (p0, p1) = (m.start / r_, m.end.div_ceil(r_));
    for jp in 0..n_panels {
        let b = panels.add(jp * panel_bytes);
        let ncols = nr.min(n_len - jp * nr);
        let nv = ncols.div_ceil(l);
        let col0 = n.start + jp * nr;
        for p in p0..p1 {
            let a = w.data.as_ptr().add(p * groups * r_ * 4);
            let rows = (m.start.max(p * r_), m.end.min(p * r_ + r_));
            macro_rules! go {
                ($nv:literal) => {{
                    let acc = accumulate::<D, R, $nv, true>(groups, a, R * 4, b, nr * 4);
                    store_wb::<D, $nv>(&acc, w, p * r_, rows, col0, ncols, out, t.q);
                }};
            }
            match nv {
                1 => go!(1),
                2 => go!(2),
                3 => go!(3),
                _ => go!(4),
            }
        }
    }
}

/// Requantises and stores a weights-broadcast tile: rows `rows` (channels), `ncols` pixels
/// from `col0`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_wb<D: QDot, const NV: usize>(
    acc: &[[D::V; NV]],
    w: &PackedQWeights,
    m_first: usize,
    rows: (usize, usize),
    col0: usize,
    ncols: usize,
    out: QOutView,
    q: QOut,
) {
    for (r, acc_r) in acc.iter().enumerate() {
        let mrow = m_first + r;
        if mrow < rows.0 || mrow >= rows.1 {
            continue;
        }
        let pr = D::req_row(&w.req, mrow, q);
        let base = out.ptr.add(mrow * out.sm + col0);
        if w.req.wide {
            D::requant_store::<true, NV>(base, acc_r, &pr, ncols);
        } else {
            D::requant_store::<false, NV>(base, acc_r, &pr, ncols);
        }
    }
}

/// Activations broadcast: panels of `VECS·LANES` channels × tiles of `ROWS` pixels (or rows);
/// the packed activation tiles meet every weight panel of the task.
#[inline(always)]
unsafe fn task_ab<D: QDot, S: QSource, const R: usize, const V: usize>(t: &Task<'_, S>) {
    let (l, r_) = (D::LANES, R);
    let vl = V * l;
    debug_assert_eq!(vl, t.w.width);
    let (m, n, w, out) = (t.m.clone(), t.n.clone(), t.w, t.out);
    let groups = w.groups;
    let n_len = n.len();
    let n_tiles = n_len.div_ceil(r_);
    let tile_bytes = groups * r_ * 4;
    let tiles = packed_columns::<D, S>(t, r_, n_tiles * tile_bytes);
    let (q0, q1) = (m.start / vl, m.end.div_ceil(vl));
    for qp in q0..q1 {
        let lanes = (m.start.max(qp * vl), m.end.min(qp * vl + vl));
        let nv = (lanes.1 - qp * vl).div_ceil(l);
        let wv = w.data.as_ptr().add(qp * groups * vl * 4);
        for jt in 0..n_tiles {
            let a = tiles.add(jt * tile_bytes);
            let nrows = r_.min(n_len - jt * r_);
            let row0 = n.start + jt * r_;
            macro_rules! go {
                ($rr:tt, $nv:literal) => {{
                    let acc = accumulate::<D, $rr, $nv, false>(groups, a, R * 4, wv, vl * 4);
                    store_ab::<D, $nv>(&acc[..nrows.min($rr)], w, qp * vl, lanes, row0, out, t.q);
                }};
            }
            macro_rules! by_rows {
                ($nv:literal) => {
                    if nrows == 1 {
                        go!(1, $nv)
                    } else {
                        go!(R, $nv)
                    }
                };
            }
            match nv {
                1 => by_rows!(1),
                2 => by_rows!(2),
                3 => by_rows!(3),
                _ => by_rows!(4),
            }
        }
    }
}

/// Requantises and stores an activations-broadcast tile: rows are pixels from `row0`, lanes
/// are channels `lanes.0..lanes.1` of the panel starting at `m_first`.
#[inline(always)]
unsafe fn store_ab<D: QDot, const NV: usize>(
    acc: &[[D::V; NV]],
    w: &PackedQWeights,
    m_first: usize,
    lanes: (usize, usize),
    row0: usize,
    out: QOutView,
    q: QOut,
) {
    let l = D::LANES;
    // Planar output (a convolution's NCHW): the tile's pixels are contiguous in each
    // channel's plane. All rows are requantised, then transposed 8 × 8 to one run of pixels
    // per channel, instead of a byte store per (pixel, channel).
    let planar = out.sn == 1 && out.sm != 1 && l <= 16 && acc.len() <= 8;
    let mut codes = [0u8; 8 * 16 + 16];
    for v in 0..NV {
        let pr = D::req_lanes(&w.req, m_first + v * l, q);
        let (lo, hi) = (
            lanes.0.max(m_first + v * l),
            lanes.1.min(m_first + v * l + l),
        );
        if lo >= hi {
            continue;
        }
        if planar {
            // Row r's codes at r·LANES, four rows per store.
            for (c, rows) in acc.chunks(4).enumerate() {
                let mut x = [D::zero(); 4];
                for (xi, row) in x.iter_mut().zip(rows) {
                    *xi = row[v];
                }
                let (dst, n) = (codes.as_mut_ptr().add(c * 4 * l), rows.len() * l);
                if w.req.wide {
                    D::requant_store::<true, 4>(dst, &x, &pr, n);
                } else {
                    D::requant_store::<false, 4>(dst, &x, &pr, n);
                }
            }
            transpose_codes(
                &codes[lo - m_first - v * l..],
                l,
                hi - lo,
                acc.len(),
                out.ptr.add(lo * out.sm + row0),
                out.sm,
            );
            continue;
        }
        for (r, acc_r) in acc.iter().enumerate() {
            D::store_codes(
                codes.as_mut_ptr(),
                requant::<D>(acc_r[v], &pr, w.req.wide),
                l,
            );
            let n = row0 + r;
            if out.sm == 1 {
                std::ptr::copy_nonoverlapping(
                    codes.as_ptr().add(lo - m_first - v * l),
                    out.ptr.add(n * out.sn + lo),
                    hi - lo,
                );
            } else {
                for mm in lo..hi {
                    *out.ptr.add(mm * out.sm + n * out.sn) = codes[mm - m_first - v * l];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::Multiplier;
    use std::cell::Cell;

    thread_local! {
        /// Products this thread ran that packed their columns once for all blocks of `m`.
        pub(super) static SHARED_PACKS: Cell<usize> = const { Cell::new(0) };
    }

    /// A plain matrix fetched as a gather is (copied into `tmp`), so that products share
    /// their packing as im2col's do.
    struct Gathered(QMatrix);

    impl QSource for Gathered {
        type Cols = ();
        const SHARE_PACKING: bool = true;
        fn cols(&self, _: usize, _: usize) {}
        unsafe fn row(&self, _: &(), k: usize, n0: usize, len: usize, tmp: *mut u8) -> *const u8 {
            std::ptr::copy_nonoverlapping(self.0.row(&(), k, n0, len, tmp), tmp, len);
            tmp
        }
    }

    /// The product by definition, in i64.
    fn naive(
        w: &[i8],
        b: &[u8],
        m: usize,
        k: usize,
        n: usize,
        req: &[ChannelRequant],
        q: QOut,
    ) -> Vec<u8> {
        let mut out = vec![0u8; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0i64;
                for kk in 0..k {
                    acc += i64::from(w[i * k + kk]) * i64::from(b[kk * n + j]);
                }
                out[i * n + j] =
                    req[i]
                        .mult
                        .to_code((acc + i64::from(req[i].bias)) as i32, q.zp, q.lo, q.hi);
            }
        }
        out
    }

    #[test]
    fn every_variant_and_orientation_matches_the_definition() {
        let mut shared = 0;
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 3, 5),
            (13, 27, 49),
            (24, 16, 17),
            (50, 130, 33),
            (8, 1000, 3),
            (96, 16, 200),
            // Many blocks of m over a deep reduction and a single unit of n: three workers
            // must cut m, so the gathered source shares its packing.
            (384, 8000, 3),
            (200, 600, 130),
        ] {
            let w: Vec<i8> = (0..m * k)
                .map(|_| ((next() % 255) as i32 - 127) as i8)
                .collect();
            let b: Vec<u8> = (0..k * n).map(|_| next() as u8).collect();
            let req: Vec<ChannelRequant> = (0..m)
                .map(|i| ChannelRequant {
                    mult: Multiplier::new(1.0 / (40.0 * (1 + i % 5) as f64 * k as f64)),
                    bias: (next() % 20_000) as i32 - 10_000,
                })
                .collect();
            let q = QOut {
                zp: 17,
                lo: 3,
                hi: 250,
            };
            let want = naive(&w, &b, m, k, n, &req, q);
            for qi in QIsa::available() {
                for o in [
                    Orientation::WeightsBroadcast,
                    Orientation::ActivationsBroadcast,
                ] {
                    for threads in [1, 3] {
                        let ctx = CpuCtx::new(qi.level(), threads).expect("ctx");
                        let pw = PackedQWeights::new(qi, o, &w, m, k, &req);
                        let mut got = vec![0u8; m * n];
                        let src = QMatrix {
                            ptr: b.as_ptr(),
                            sk: n,
                            sn: 1,
                        };
                        let view = QOutView {
                            ptr: got.as_mut_ptr(),
                            sm: n,
                            sn: 1,
                        };
                        // Two slices of channels, the second split by pixels. Each later
                        // slice ends where an earlier one begins, so a store past a
                        // slice's end is caught.
                        let mc = m / 2;
                        let nc = n / 3;
                        // SAFETY: the ranges lie inside the m × n output, which we own.
                        unsafe {
                            gemm_q8(&ctx, &pw, &src, mc..m, nc..n, view, q);
                            gemm_q8(&ctx, &pw, &src, mc..m, 0..nc, view, q);
                            gemm_q8(&ctx, &pw, &src, 0..mc, 0..n, view, q);
                        }
                        assert_eq!(got, want, "{m}×{k}×{n} on {} {o:?} × {threads}", qi.name());
                        // The same through a gathering source, whose packing is shared
                        // between blocks of m when they repeat enough of it.
                        let before = SHARED_PACKS.with(Cell::get);
                        let mut got = vec![0u8; m * n];
                        let view = QOutView {
                            ptr: got.as_mut_ptr(),
                            sm: n,
                            sn: 1,
                        };
                        // SAFETY: as above.
                        unsafe {
                            gemm_q8(&ctx, &pw, &Gathered(src), mc..m, 0..n, view, q);
                            gemm_q8(&ctx, &pw, &Gathered(src), 0..mc, 0..n, view, q);
                        }
                        assert_eq!(got, want, "gathered {m}×{k}×{n} {o:?} × {threads}");
                        shared += SHARED_PACKS.with(Cell::get) - before;
                    }
                }
            }
        }
        assert!(shared > 0, "no product took the shared packing");
    }
}
