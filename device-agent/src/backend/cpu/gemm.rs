//! The matrix-product engine under convolution, fully connected and MatMul:
//! `C[m, n] = clamp(bias[m] + Σ_k W[m, k] · B[k, n])`, computed for any `m` range (output
//! channels or neurons) and `n` range (output pixels or batch rows) straight into the shared
//! output tensor.
//!
//! Why hand-written rather than a GEMM crate: our products are the NCHW convolutions of small
//! networks, where `n` is the output pixels of one row slice and often narrow (49 or 196 at
//! MobileNet's end), `k` is small (32–1024) and `m` is an arbitrary channel range of a split
//! layer. A general crate packs both operands on every call and cannot fuse bias + clamp into
//! the tile store or build im2col panels directly in its packing step; here weights are packed
//! once at prepare, the activation panels are packed straight from the tensor (or by im2col),
//! and the orientation is chosen per layer (see [`Orientation`]).
//!
//! One micro-kernel, generic over [`Simd`] and the tile shape: `ROWS` broadcast scalars ×
//! `VECS` vectors of accumulators (AVX-512: 8 × 3·16 = 24 zmm accumulators).
use super::buf::{with_scratch, AlignedVec};
use super::isa::Isa;
use super::plan::{plan_with_span, TaskCosts};
use super::simd::{Simd, SimdFn, TileFn};
use super::CpuCtx;
use std::ops::Range;

/// Which operand the micro-kernel broadcasts and which it loads as vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Orientation {
    /// Weights broadcast (panels of `ROWS` output channels), activations as vectors along `n`:
    /// stores run along output rows. For wide `n` (early convolution layers).
    WeightsBroadcast,
    /// Activations broadcast (panels of `ROWS` values of `n`), weights as vectors along `m`.
    /// For narrow `n` (late convolution layers, fully connected layers with a few rows).
    ActivationsBroadcast,
}

impl Orientation {
    /// The orientation for an `m × n` product. Outputs contiguous along `m` (fully connected
    /// `[rows, neurons]`) need activations broadcast (weights-broadcast tiles store along
    /// `n`). Otherwise (NCHW, contiguous along `n`) the one wasting fewer vector lanes; the
    /// activations-broadcast stores are then scattered, so it must win by 5%.
    pub fn choose(isa: Isa, m: usize, n: usize, out_m_contiguous: bool) -> Orientation {
        let l = isa.lanes() as f64;
        let waste = |len: usize| (len as f64 / l).ceil() * l / len.max(1) as f64;
        if out_m_contiguous || waste(m) * 1.05 < waste(n) || n < isa.lanes() {
            Orientation::ActivationsBroadcast
        } else {
            Orientation::WeightsBroadcast
        }
    }
}

/// A weight matrix `W[M, K]` (row-major) packed for one instruction set and orientation,
/// with its bias padded to whole panels.
#[derive(Clone, Debug)]
pub struct PackedWeights {
    data: AlignedVec,
    bias: AlignedVec,
    m: usize,
    k: usize,
    width: usize,
    orientation: Orientation,
    isa: Isa,
}

impl PackedWeights {
    /// Packs `w` (`m × k`, row-major) into panels of `width` rows of `m`, each stored `k`-major:
    /// `data[(p·k + kk)·width + i] = w[(p·width + i)·k + kk]` (zero past `m`).
    pub fn new(
        isa: Isa,
        orientation: Orientation,
        w: &[f32],
        m: usize,
        k: usize,
        bias: Option<&[f32]>,
    ) -> PackedWeights {
        let (rows, vecs) = isa.gemm_tile();
        let width = match orientation {
            Orientation::WeightsBroadcast => rows,
            Orientation::ActivationsBroadcast => vecs * isa.lanes(),
        };
        let panels = m.div_ceil(width);
        let mut data = AlignedVec::zeros(panels * k * width);
        let d = data.as_mut_slice();
        for p in 0..panels {
            for i in 0..width.min(m - p * width) {
                let row = &w[(p * width + i) * k..(p * width + i + 1) * k];
                for (kk, &v) in row.iter().enumerate() {
                    d[(p * k + kk) * width + i] = v;
                }
            }
        }
        let mut b = AlignedVec::zeros(panels * width + 64);
        if let Some(bias) = bias {
            b.as_mut_slice()[..m].copy_from_slice(&bias[..m]);
        }
        PackedWeights {
            data,
            bias: b,
            m,
            k,
            width,
            orientation,
            isa,
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
}

/// Where the `B[K, N]` operand comes from; packs it into panels.
pub trait PackSource: Sync {
    /// Writes `B[k0..k1][n0..n0 + w]` into `dst[(k - k0)·w + j]`, zeros where `n0 + j >= n_end`.
    ///
    /// # Safety
    /// `dst` must hold `(k1 - k0)·w` elements; the source must cover `k1` and `n_end`.
    unsafe fn pack<S: Simd>(
        &self,
        k0: usize,
        k1: usize,
        n0: usize,
        n_end: usize,
        w: usize,
        dst: *mut f32,
    );
}

/// A strided matrix: `B[k, n] = ptr[k·sk + n·sn]` (1×1 convolution: `sk = H·W, sn = 1`;
/// fully connected: `sk = 1, sn = K`).
#[derive(Clone, Copy, Debug)]
pub struct MatrixSource {
    pub ptr: *const f32,
    pub sk: usize,
    pub sn: usize,
}

// SAFETY: the source is only read, and the tensor it points into outlives the product.
unsafe impl Sync for MatrixSource {}
unsafe impl Send for MatrixSource {}

impl PackSource for MatrixSource {
    #[inline(always)]
    unsafe fn pack<S: Simd>(
        &self,
        k0: usize,
        k1: usize,
        n0: usize,
        n_end: usize,
        w: usize,
        dst: *mut f32,
    ) {
        let valid = n_end.saturating_sub(n0).min(w);
        let l = S::LANES;
        if self.sn == 1 {
            for k in k0..k1 {
                let d = dst.add((k - k0) * w);
                let s = self.ptr.add(k * self.sk + n0);
                let mut j = 0;
                while j + l <= valid {
                    S::store(d.add(j), S::load(s.add(j)));
                    j += l;
                }
                if j < valid {
                    S::store_partial(d.add(j), S::load_partial(s.add(j), valid - j), valid - j);
                    j = valid;
                }
                while j < w {
                    *d.add(j) = 0.0;
                    j += 1;
                }
            }
        } else {
            for k in k0..k1 {
                let d = dst.add((k - k0) * w);
                for j in 0..w {
                    *d.add(j) = if j < valid {
                        *self.ptr.add(k * self.sk + (n0 + j) * self.sn)
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// Where `C[m, n]` goes: `ptr[m·sm + n·sn]`.
#[derive(Clone, Copy, Debug)]
pub struct OutView {
    pub ptr: *mut f32,
    pub sm: usize,
    pub sn: usize,
}

// SAFETY: each task writes a disjoint (m, n) block; the caller owns the whole slice.
unsafe impl Sync for OutView {}
unsafe impl Send for OutView {}

/// Bytes of the vector operand's panel kept in L1 for one `K` chunk: the chunk length is
/// chosen so that `kc × VECS·LANES` floats fit (AVX-512: 128 × 48 floats = 24 KiB).
const L1_PANEL_BYTES: usize = 24 * 1024;
/// Target size (floats) of one task's packed activation block (stays in L2).
const PACK_TARGET: usize = 96 * 1024;

/// A tuning knob for measurements: `ULAYER_GEMM_KC=N` sets the K chunk (0: never chunk).
fn kc_override() -> Option<usize> {
    static KC: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *KC.get_or_init(|| {
        std::env::var("ULAYER_GEMM_KC")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(|v: usize| if v == 0 { usize::MAX / 2 } else { v })
    })
}

/// Units along `m` (weight panels) and `n` (activation panels) of an orientation.
fn units(isa: Isa, o: Orientation) -> (usize, usize) {
    let (rows, vecs) = isa.gemm_tile();
    match o {
        Orientation::WeightsBroadcast => (rows, vecs * isa.lanes()),
        Orientation::ActivationsBroadcast => (vecs * isa.lanes(), rows),
    }
}

/// A product's task grid: the units of `n`, the planned blocks `(mb, nb)` and their simulated
/// makespan (multiply-adds).
fn grid(
    isa: Isa,
    o: Orientation,
    k: usize,
    m_units: usize,
    n_len: usize,
    threads: usize,
) -> (usize, usize, usize, u128) {
    let (m_unit, n_unit) = units(isa, o);
    let n_units = n_len.div_ceil(n_unit);
    // The most n units per task: the packed activations stay in cache.
    let n_max = (PACK_TARGET / (k.max(1) * n_unit)).max(1);
    let (mb, nb, span) = plan_with_span(
        m_units,
        n_units,
        n_max,
        threads,
        k * m_unit * n_unit,
        // About 4 µs per task (scheduling, set-up).
        TaskCosts {
            overhead: 100_000,
            pack_div: 0,
            share_min: None,
        },
    );
    (n_units, mb, nb, span)
}

/// The engine's own estimate of a product's time, in multiply-adds: the simulated makespan of
/// the task grid it would run for `m × n` of a layer whose whole product is `layer_m ×
/// layer_n` (which fixes the orientation) over `k`, on `threads` workers of `isa`.
pub fn predicted_span(
    isa: Isa,
    (layer_m, layer_n): (usize, usize),
    out_m_contiguous: bool,
    k: usize,
    (m, n): (usize, usize),
    threads: usize,
) -> u128 {
    let o = Orientation::choose(isa, layer_m, layer_n, out_m_contiguous);
    let m_units = m.div_ceil(units(isa, o).0);
    grid(isa, o, k, m_units, n, threads).3
}

/// Computes `C[m, n] = clamp(bias[m] + Σ_k W[m, k]·B[k, n], lo, hi)` for `m ∈ ms`, `n ∈ ns`.
/// Weights-broadcast products need `out.sn == 1`.
///
/// # Safety
/// `out` must be valid for writes at every `(m, n)` of the ranges, and no other thread may
/// access those elements meanwhile; `src` must cover `K × ns.end`; `ms.end <= w.m()`.
pub unsafe fn gemm<P: PackSource>(
    ctx: &CpuCtx,
    w: &PackedWeights,
    src: &P,
    ms: Range<usize>,
    ns: Range<usize>,
    out: OutView,
    clamp: (f32, f32),
) {
    if ms.is_empty() || ns.is_empty() {
        return;
    }
    debug_assert!(ms.end <= w.m);
    debug_assert_eq!(w.isa, ctx.isa);
    debug_assert!(w.orientation == Orientation::ActivationsBroadcast || out.sn == 1);
    let isa = w.isa;
    let (_, vecs) = isa.gemm_tile();
    let lanes = isa.lanes();
    let k = w.k;
    // K chunk: the vector operand's panel chunk stays in L1 across the other operand's tiles.
    let kc_target = kc_override().unwrap_or((L1_PANEL_BYTES / (4 * vecs * lanes)).max(32));
    let kc = if k <= kc_target * 5 / 4 {
        k
    } else {
        k.div_ceil(k.div_ceil(kc_target))
    };
    let (m_unit, n_unit) = units(isa, w.orientation);
    let m_units = ms.end.div_ceil(m_unit) - ms.start / m_unit;
    let (n_units, mb, nb, _) = grid(isa, w.orientation, k, m_units, ns.len(), ctx.threads);
    let m_blocks = m_units.div_ceil(mb);
    let n_blocks = n_units.div_ceil(nb);
    // Packed activations for the whole K, plus (activations broadcast, chunked K) the tile
    // accumulators between chunks.
    let acc_len = if w.orientation == Orientation::ActivationsBroadcast && kc < k {
        nb * n_unit * w.width
    } else {
        0
    };
    let scratch_len = k * nb * n_unit + acc_len;
    let p_first = ms.start / m_unit;
    ctx.for_each_task(m_blocks * n_blocks, |t| {
        let (bm, bn) = (t / n_blocks, t % n_blocks);
        let m0 = ((p_first + bm * mb) * m_unit).max(ms.start);
        let m1 = ((p_first + (bm + 1) * mb) * m_unit).min(ms.end);
        let n0 = ns.start + bn * nb * n_unit;
        let n1 = (n0 + nb * n_unit).min(ns.end);
        with_scratch(scratch_len, |scratch| {
            let job = Task {
                w,
                src,
                m: m0..m1,
                n: n0..n1,
                kc,
                out,
                clamp,
                scratch: scratch.as_mut_ptr(),
            };
            isa.dispatch(job)
        })
    });
}

/// One task: a block of `m` × a block of `n`.
struct Task<'a, P> {
    w: &'a PackedWeights,
    src: &'a P,
    m: Range<usize>,
    n: Range<usize>,
    kc: usize,
    out: OutView,
    clamp: (f32, f32),
    scratch: *mut f32,
}

impl<P: PackSource> SimdFn for Task<'_, P> {
    type Output = ();
    #[inline(always)]
    fn call<S: Simd>(self) {
        S::with_tile(self)
    }
}

impl<P: PackSource> TileFn for Task<'_, P> {
    type Output = ();
    #[inline(always)]
    fn call<S: Simd, const R: usize, const V: usize>(self) {
        // SAFETY: `gemm`'s contract: the block is ours to write, the source covers it, and the
        // scratch holds `K × nb × n_unit` floats (+ the chunk accumulators).
        unsafe {
            match self.w.orientation {
                Orientation::WeightsBroadcast => task_wb::<S, R, V, P>(&self),
                Orientation::ActivationsBroadcast => task_ab::<S, R, V, P>(&self),
            }
        }
    }
}

/// Weights broadcast: panels of `R` channels × panels of `V·LANES` pixels. The activation
/// panels are packed once for the whole K; for each K chunk, each activation panel chunk
/// (`kc × V·LANES`, in L1) meets every weight panel of the task.
#[inline(always)]
unsafe fn task_wb<S: Simd, const R: usize, const V: usize, P: PackSource>(t: &Task<'_, P>) {
    let l = S::LANES;
    let nr = V * l;
    let (m, n, w, out) = (t.m.clone(), t.n.clone(), t.w, t.out);
    let k = w.k;
    let n_len = n.len();
    let n_panels = n_len.div_ceil(nr);
    let (p0, p1) = (m.start / R, m.end.div_ceil(R));
    for jp in 0..n_panels {
        t.src.pack::<S>(
            0,
            k,
            n.start + jp * nr,
            n.end,
            nr,
            t.scratch.add(jp * k * nr),
        );
    }
    let mut k0 = 0;
    while k0 < k {
        let k1 = (k0 + t.kc).min(k);
        let kl = k1 - k0;
        let tail = TileTail {
            first: k0 == 0,
            last: k1 == k,
            lo: t.clamp.0,
            hi: t.clamp.1,
        };
        for jp in 0..n_panels {
            let b = t.scratch.add((jp * k + k0) * nr) as *const f32;
            let ncols = nr.min(n_len - jp * nr);
            let nv = ncols.div_ceil(l);
            for p in p0..p1 {
                let a = w.data.as_ptr().add((p * k + k0) * R);
                let rows = (m.start.max(p * R) - p * R, m.end.min(p * R + R) - p * R);
                let bias = w.bias.as_ptr().add(p * R);
                let c = out
                    .ptr
                    .wrapping_add(p * R * out.sm + (n.start + jp * nr) * out.sn);
                let args = (kl, a, b, nr, c, out.sm, rows, ncols, bias, tail);
                if nv == V {
                    tile_wb::<S, R, V>(args);
                } else if nv == 1 {
                    tile_wb::<S, R, 1>(args);
                } else if nv == 2 {
                    tile_wb::<S, R, 2>(args);
                } else {
                    tile_wb::<S, R, 3>(args);
                }
            }
        }
        k0 = k1;
    }
}

#[derive(Clone, Copy)]
struct TileTail {
    first: bool,
    last: bool,
    lo: f32,
    hi: f32,
}

type WbArgs = (
    usize,
    *const f32,
    *const f32,
    usize,
    *mut f32,
    usize,
    (usize, usize),
    usize,
    *const f32,
    TileTail,
);

/// One weights-broadcast tile: rows `r` of `C` (channels `p·R + r`, only `rows.0..rows.1`
/// are written) × `ncols` pixels.
#[inline(always)]
unsafe fn tile_wb<S: Simd, const R: usize, const NV: usize>(
    (kl, a, b, bs, c, ldc, rows, ncols, bias, tail): WbArgs,
) {
    let l = S::LANES;
    // The tile in memory for the data-dependent prologue and epilogue; the k loop works on a
    // copy indexed only by constants, which stays in registers.
    let mut buf = [[S::zero(); NV]; R];
    for (r, acc_r) in buf.iter_mut().enumerate() {
        if tail.first {
            let bv = S::splat(*bias.add(r));
            *acc_r = [bv; NV];
        } else if r >= rows.0 && r < rows.1 {
            let cr = c.wrapping_add(r * ldc);
            for (v, a) in acc_r.iter_mut().enumerate() {
                *a = if (v + 1) * l <= ncols {
                    S::load(cr.add(v * l))
                } else {
                    S::load_partial(cr.add(v * l), ncols - v * l)
                };
            }
        }
    }
    let buf = accumulate::<S, R, NV>(buf, kl, a, R, b, bs);
    let (lo, hi) = (S::splat(tail.lo), S::splat(tail.hi));
    for (r, acc_r) in buf.iter().enumerate() {
        if r >= rows.0 && r < rows.1 {
            let cr = c.wrapping_add(r * ldc);
            for (v, &x) in acc_r.iter().enumerate() {
                let x = if tail.last { S::clamp(x, lo, hi) } else { x };
                if (v + 1) * l <= ncols {
                    S::store(cr.add(v * l), x);
                } else {
                    S::store_partial(cr.add(v * l), x, ncols - v * l);
                }
            }
        }
    }
}

/// The micro-kernel: `acc[r][v] += bc[k·bs + r] · vc[k·vs + v·LANES ..]` for `k < kl`.
/// Takes and returns the tile by value and indexes it only by constants, so that it lives in
/// registers (a data-dependent index anywhere would keep it in memory, a store per FMA).
#[inline(always)]
unsafe fn accumulate<S: Simd, const R: usize, const NV: usize>(
    init: [[S::V; NV]; R],
    kl: usize,
    bc: *const f32,
    bs: usize,
    vc: *const f32,
    vs: usize,
) -> [[S::V; NV]; R] {
    let l = S::LANES;
    let mut acc = [[S::zero(); NV]; R];
    for r in 0..R {
        for v in 0..NV {
            acc[r][v] = init[r][v];
        }
    }
    for kk in 0..kl {
        let vp = vc.add(kk * vs);
        let mut x = [S::zero(); NV];
        for (v, xv) in x.iter_mut().enumerate() {
            *xv = S::load(vp.add(v * l));
        }
        let bp = bc.add(kk * bs);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = S::splat(*bp.add(r));
            for v in 0..NV {
                acc_r[v] = S::fma(av, x[v], acc_r[v]);
            }
        }
    }
    let mut out = [[S::zero(); NV]; R];
    for r in 0..R {
        for v in 0..NV {
            out[r][v] = acc[r][v];
        }
    }
    out
}

/// Activations broadcast: panels of `V·LANES` channels × tiles of `R` pixels (or rows). The
/// activation tiles are packed once for the whole K; each weight panel chunk
/// (`kc × V·LANES`, in L1) meets every activation tile, whose partial sums wait in the
/// scratch between chunks (the output is scattered, so it is written once, at the end).
#[inline(always)]
unsafe fn task_ab<S: Simd, const R: usize, const V: usize, P: PackSource>(t: &Task<'_, P>) {
    let l = S::LANES;
    let vl = V * l;
    debug_assert_eq!(vl, t.w.width);
    let (m, n, w, out) = (t.m.clone(), t.n.clone(), t.w, t.out);
    let k = w.k;
    let n_len = n.len();
    let n_tiles = n_len.div_ceil(R);
    let (q0, q1) = (m.start / vl, m.end.div_ceil(vl));
    for jt in 0..n_tiles {
        t.src
            .pack::<S>(0, k, n.start + jt * R, n.end, R, t.scratch.add(jt * k * R));
    }
    let accs = t.scratch.add(n_tiles * k * R);
    for q in q0..q1 {
        let lanes = (
            m.start.max(q * vl) - q * vl,
            m.end.min(q * vl + vl) - q * vl,
        );
        let bias = w.bias.as_ptr().add(q * vl);
        let nv = lanes.1.div_ceil(l);
        let mut k0 = 0;
        while k0 < k {
            let k1 = (k0 + t.kc).min(k);
            let kl = k1 - k0;
            let tail = TileTail {
                first: k0 == 0,
                last: k1 == k,
                lo: t.clamp.0,
                hi: t.clamp.1,
            };
            let wv = w.data.as_ptr().add((q * k + k0) * vl);
            for jt in 0..n_tiles {
                let nrows = R.min(n_len - jt * R);
                let args = AbArgs {
                    kl,
                    a: t.scratch.add((jt * k + k0) * R),
                    w: wv,
                    ws: vl,
                    c: out
                        .ptr
                        .wrapping_add(q * vl * out.sm + (n.start + jt * R) * out.sn),
                    sm: out.sm,
                    sn: out.sn,
                    acc: accs.wrapping_add(jt * R * vl),
                    nrows,
                    lanes,
                    bias,
                    tail,
                };
                macro_rules! rows_dispatch {
                    ($nv:literal) => {
                        match nrows {
                            1 => tile_ab::<S, 1, $nv, R>(&args),
                            2 if R > 2 => tile_ab::<S, 2, $nv, R>(&args),
                            4 if R > 4 => tile_ab::<S, 4, $nv, R>(&args),
                            _ => tile_ab::<S, R, $nv, R>(&args),
                        }
                    };
                }
                match nv {
                    1 => rows_dispatch!(1),
                    2 => rows_dispatch!(2),
                    3 => rows_dispatch!(3),
                    _ => match nrows {
                        1 => tile_ab::<S, 1, V, R>(&args),
                        _ => tile_ab::<S, R, V, R>(&args),
                    },
                }
            }
            k0 = k1;
        }
    }
}

struct AbArgs {
    kl: usize,
    /// Packed activations, `RP` per k (only the first `RR` used).
    a: *const f32,
    /// Weight panel, `ws` per k.
    w: *const f32,
    ws: usize,
    c: *mut f32,
    sm: usize,
    sn: usize,
    /// This tile's partial sums between K chunks (`RP × ws` floats, row-major).
    acc: *mut f32,
    nrows: usize,
    lanes: (usize, usize),
    bias: *const f32,
    tail: TileTail,
}

/// One activations-broadcast tile: `RR` pixels (of a panel of `RP`) × `NV` channel vectors.
#[inline(always)]
unsafe fn tile_ab<S: Simd, const RR: usize, const NV: usize, const RP: usize>(g: &AbArgs) {
    let l = S::LANES;
    let mut acc = [[S::zero(); NV]; RR];
    for (r, acc_r) in acc.iter_mut().enumerate() {
        for (v, a) in acc_r.iter_mut().enumerate() {
            *a = if g.tail.first {
                S::load(g.bias.add(v * l))
            } else {
                S::load(g.acc.add(r * g.ws + v * l))
            };
        }
    }
    let acc = accumulate::<S, RR, NV>(acc, g.kl, g.a, RP, g.w, g.ws);
    if !g.tail.last {
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &x) in acc_r.iter().enumerate() {
                S::store(g.acc.add(r * g.ws + v * l), x);
            }
        }
        return;
    }
    let (lo, hi) = (S::splat(g.tail.lo), S::splat(g.tail.hi));
    for (r, acc_r) in acc.iter().enumerate() {
        if r >= g.nrows {
            continue;
        }
        for (v, &x) in acc_r.iter().enumerate() {
            let x = S::clamp(x, lo, hi);
            let (vlo, vhi) = (g.lanes.0.max(v * l), g.lanes.1.min(v * l + l));
            if vlo >= vhi {
                continue;
            }
            if g.sm == 1 {
                S::store_lanes(
                    g.c.wrapping_add(v * l + r * g.sn),
                    x,
                    vlo - v * l,
                    vhi - v * l,
                );
            } else {
                let mut t = [0.0f32; 16];
                S::store(t.as_mut_ptr(), x);
                for j in vlo..vhi {
                    *g.c.wrapping_add(j * g.sm + r * g.sn) = t[j - v * l];
                }
            }
        }
    }
}
