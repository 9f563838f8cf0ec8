//! The 8-bit kernels' instruction sets: an integer dot-product abstraction ([`QDot`]) with
//! its requantising store, one implementation per instruction set, and the run-time choice
//! ([`QIsa`]): detected once, overridable with `ULAYER_Q8_ISA`, logged once at `info`.
//!
//! Every implementation computes exactly the same integers (products are exact, sums are
//! 32-bit, requantisation is [`crate::quant::Multiplier`]'s single rounding), so every variant
//! matches the reference bit for bit.
//!
//! | variant | operands | instruction | MACs per instruction |
//! | --- | --- | --- | --- |
//! | `avx512vnni` | u8 × i8, groups of 4 | `vpdpbusd zmm` | 64 |
//! | `avxvnni` | u8 × i8, groups of 4 | `vpdpbusd ymm` (VEX) | 32 |
//! | `avx512bw` | i16 × i16, pairs | `vpmaddwd zmm` + `vpaddd` | 32 |
//! | `avx2` | i16 × i16, pairs | `vpmaddwd ymm` + `vpaddd` | 16 |
//! | `neon` | i16 × i16, pairs | `smull`/`smull2` + `addp` (aarch64) | 8 per 3 |
//! | `scalar` | u8 × i8, groups of 4 | portable Rust | 1 |
//!
//! **Why AVX2 widens to 16 bits instead of using `vpmaddubsw`**: `vpmaddubsw` multiplies u8 by
//! i8 and adds *pairs* into a *saturating* i16; two products of 255 × 127 sum to 64,770 and
//! saturate at 32,767. The usual remedy, 7-bit weights, costs a bit of weight precision on
//! every layer. Zero-extending the activations to i16 (once, while packing) and using
//! `vpmaddwd` (i16 × i16 pairs summed into i32) is exact with full 8-bit weights; on the
//! cores measured here both run on the same multiplier ports, so the exact form costs little.
//! VNNI's `vpdpbusd` sums four u8 × i8 products straight into i32, without saturation.
//!
//! **Why NEON widens to 16 bits instead of using the dot-product instructions**: `sdot`
//! (ARMv8.2 dotprod) multiplies *signed* by signed bytes, and our activations are unsigned
//! codes 0..=255; `usdot` (u8 × i8) needs the i8mm extension (ARMv8.6), which most phones in
//! labs today lack. Widening to i16 pairs (the same packing as AVX2) is exact on every ARMv8
//! core; a dotprod variant with an offset of 128 on the activations is the next step.
#![allow(clippy::missing_safety_doc)]
use super::isa::Isa;
use super::simd::{self, Simd};
use std::sync::OnceLock;

/// One instruction set's 8-bit dot products and requantising stores.
///
/// Operands come in 4-byte groups: `KG` consecutive reduction elements (`k`) of one row or
/// column, as 4 × u8/i8 (`KG = 4`) or 2 × u16/i16 (`KG = 2`). A vector holds `LANES` groups;
/// `dot` adds, in each 32-bit lane, the `KG` products of that lane's groups.
pub trait QDot: Copy + 'static {
    /// 32-bit lanes per vector.
    const LANES: usize;
    /// Reduction elements per 4-byte group: 4 (8-bit operands) or 2 (16-bit operands).
    const KG: usize;
    /// Broadcast rows of the product's micro-tile.
    const ROWS: usize;
    /// Vectors per row of the micro-tile.
    const VECS: usize;
    /// The F32 SIMD level of the same instruction set (for kernels that mix both).
    type F: Simd;
    type V: Copy;

    /// Calls `f` with this set's micro-tile shape as const parameters.
    fn with_tile<F: QTileFn>(f: F) -> F::Output;

    unsafe fn zero() -> Self::V;
    /// Loads `LANES` groups (`4·LANES` bytes, no alignment needed).
    unsafe fn load(p: *const u8) -> Self::V;
    /// Broadcasts one group (4 bytes) to every lane.
    unsafe fn bcast(p: *const u8) -> Self::V;
    /// `acc + Σ_group act · wgt` per lane; `act` holds activation groups (u8 or u16), `wgt`
    /// weight groups (i8 or i16).
    unsafe fn dot(acc: Self::V, act: Self::V, wgt: Self::V) -> Self::V;
    /// Loads `LANES` i32.
    unsafe fn load_i32(p: *const i32) -> Self::V;
    unsafe fn splat_i32(x: i32) -> Self::V;
    /// Stores `LANES` i32.
    unsafe fn store_i32(p: *mut i32, v: Self::V);
    /// Requantisation operands of channel `m` in every lane.
    unsafe fn req_row(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<Self::V>;
    /// Requantisation operands of channels `m .. m + LANES`, one per lane.
    unsafe fn req_lanes(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<Self::V>;
    /// Requantises each lane: `clamp(zp + ((clamp(acc + bias, −bound, bound)·m0 +
    /// 2^(shift−1)) >> shift), lo, hi)` (see [`crate::quant::Multiplier`]). `WIDE` must be
    /// the arrays' [`ReqArrays::wide`]. `WIDE = false`: every multiplier is narrow (`shift =
    /// 32`, no clamp needed), and the result is the high half of `acc·m0 + nar`, with
    /// [`ReqVecs::nar_e`]'s constant holding the bias, the rounding and the zero point.
    unsafe fn requant<const WIDE: bool>(acc: Self::V, p: &ReqVecs<Self::V>) -> Self::V;
    /// Stores the low byte of the first `n <= LANES` lanes (values already in `0..=255`).
    unsafe fn store_codes(p: *mut u8, v: Self::V, n: usize);
    /// Requantises `NV <= 4` vectors (as [`QDot::requant`]) and stores their codes, vector
    /// `v` at `p + v·LANES`, the first `n <= NV·LANES` of them. Sets with saturating packs
    /// override this to narrow four vectors at once, the packs' saturation doing the
    /// `[0, 255]` part of the clamp.
    #[inline(always)]
    unsafe fn requant_store<const WIDE: bool, const NV: usize>(
        p: *mut u8,
        acc: &[Self::V; NV],
        pr: &ReqVecs<Self::V>,
        n: usize,
    ) {
        for (v, &x) in acc.iter().enumerate() {
            if v * Self::LANES >= n {
                break;
            }
            let r = Self::requant::<WIDE>(x, pr);
            Self::store_codes(
                p.add(v * Self::LANES),
                r,
                (n - v * Self::LANES).min(Self::LANES),
            );
        }
    }
    /// Converts `LANES` f32 holding exact integers (`|v| < 2^24`) to i32 (the F32 level has
    /// as many lanes).
    unsafe fn from_f32(v: <Self::F as Simd>::V) -> Self::V;
}

/// Requantisation operands in vector form (one value per lane, or the same in every lane).
#[derive(Clone, Copy, Debug)]
pub struct ReqVecs<V> {
    pub bias: V,
    pub bound: V,
    /// `m0` in every 32-bit lane (the even lanes feed the even products).
    pub m0: V,
    /// `m0` of the odd lanes, moved to the even positions.
    pub m0_odd: V,
    /// `2^(shift − 1)` in 64-bit lanes, for the even and the odd 32-bit lanes (wide path).
    pub rnd_e: V,
    pub rnd_o: V,
    /// `shift` in 64-bit lanes, even and odd (wide path).
    pub sh_e: V,
    pub sh_o: V,
    /// Narrow path: `bias·m0 + 2^31 + zp·2^32` in 64-bit lanes, for the even and the odd
    /// 32-bit lanes, so that the code is the high half of `acc·m0 + nar` (then clamped).
    pub nar_e: V,
    pub nar_o: V,
    pub zp: V,
    pub lo: V,
    pub hi: V,
    /// `lo` and `hi` in every byte, for the sets whose [`QDot::requant_store`] clamps packed
    /// codes (AVX2 and AVX-512); the scalar and NEON sets leave them unused.
    pub lo8: V,
    pub hi8: V,
}

/// Per-channel requantisation in lane-ready arrays, padded by 64 entries so that a whole
/// vector can be loaded at any channel; `wide` when some multiplier is 0.5 or more.
#[derive(Clone, Debug, Default)]
pub struct ReqArrays {
    pub bias: Vec<i32>,
    pub bound: Vec<i32>,
    pub m0: Vec<i32>,
    pub shift: Vec<i32>,
    /// `2^(shift − 1)`.
    pub rnd: Vec<i64>,
    /// Some multiplier is wide (then the kernels take the general path for all); otherwise
    /// every one is narrow, `shift = 32`.
    pub wide: bool,
}

impl ReqArrays {
    /// The arrays of `req`, padded to `len` (at least `req.len()`) plus 64.
    pub fn new(req: &[crate::quant::ChannelRequant], len: usize) -> ReqArrays {
        let n = len.max(req.len()) + 64;
        let col = |f: &dyn Fn(&crate::quant::ChannelRequant) -> i32, fill: i32| {
            let mut v: Vec<i32> = req.iter().map(f).collect();
            v.resize(n, fill);
            v
        };
        let shift = col(&|r| r.mult.shift as i32, 32);
        ReqArrays {
            bias: col(&|r| r.bias, 0),
            bound: col(&|r| r.mult.acc_bound(), i32::MAX),
            m0: col(&|r| r.mult.m0, 0),
            rnd: shift.iter().map(|&s| 1i64 << (s - 1)).collect(),
            shift,
            wide: req.iter().any(|r| !r.mult.is_narrow()),
        }
    }
}

/// The narrow path's 64-bit constant `bias·m0 + 2^31 + zp·2^32`: with it, the high half of
/// `acc·m0 + constant` is `zp + (((acc + bias)·m0 + 2^31) >> 32)` exactly, since adding
/// `zp·2^32` adds `zp` to a floor division by `2^32`; every term stays far inside 63 bits.
#[inline(always)]
pub fn narrow_constant(bias: i32, m0: i32, zp: i32) -> i64 {
    i64::from(bias) * i64::from(m0) + (1i64 << 31) + (i64::from(zp) << 32)
}

/// The output's zero point and the clamp of the fused activation, in codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QOut {
    pub zp: i32,
    pub lo: i32,
    pub hi: i32,
}

/// A kernel generic over the 8-bit instruction set and its micro-tile (`R` rows × `V`
/// vectors).
pub trait QTileFn {
    type Output;
    fn call<D: QDot, const R: usize, const V: usize>(self) -> Self::Output;
}

/// A kernel generic over the 8-bit instruction set.
pub trait QFn {
    type Output;
    fn call<D: QDot>(self) -> Self::Output;
}

/// The 8-bit kernel variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QIsa {
    /// Portable Rust.
    Scalar,
    /// AVX2: 16-bit pairs with `vpmaddwd`.
    Avx2,
    /// AVX-VNNI (VEX-encoded `vpdpbusd` on 256-bit vectors).
    AvxVnni,
    /// AVX-512BW: 16-bit pairs with `vpmaddwd` on 512-bit vectors.
    Avx512Bw,
    /// AVX-512 VNNI: `vpdpbusd` on 512-bit vectors.
    Avx512Vnni,
    /// aarch64 NEON: 16-bit pairs with widening multiplies.
    Neon,
}

impl QIsa {
    /// The name used in logs and `ULAYER_Q8_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            QIsa::Scalar => "scalar",
            QIsa::Avx2 => "avx2",
            QIsa::AvxVnni => "avxvnni",
            QIsa::Avx512Bw => "avx512bw",
            QIsa::Avx512Vnni => "avx512vnni",
            QIsa::Neon => "neon",
        }
    }

    /// Parses a name as written in `ULAYER_Q8_ISA`.
    pub fn from_name(s: &str) -> Option<QIsa> {
        [
            QIsa::Scalar,
            QIsa::Avx2,
            QIsa::AvxVnni,
            QIsa::Avx512Bw,
            QIsa::Avx512Vnni,
            QIsa::Neon,
        ]
        .into_iter()
        .find(|q| q.name() == s.trim().to_ascii_lowercase())
    }

    /// True when this machine can run it.
    pub fn supported(self) -> bool {
        match self {
            QIsa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx2 => Isa::Avx2.supported(),
            #[cfg(target_arch = "x86_64")]
            QIsa::AvxVnni => {
                Isa::Avx2.supported() && std::arch::is_x86_feature_detected!("avxvnni")
            }
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx512Bw => {
                Isa::Avx512.supported() && std::arch::is_x86_feature_detected!("avx512bw")
            }
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx512Vnni => {
                QIsa::Avx512Bw.supported() && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            QIsa::Neon => Isa::Neon.supported(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The F32 level whose vector width it uses (a backend forced to `isa` uses only
    /// variants at or below it).
    pub fn level(self) -> Isa {
        match self {
            QIsa::Scalar => Isa::Scalar,
            QIsa::Avx2 | QIsa::AvxVnni => Isa::Avx2,
            QIsa::Avx512Bw | QIsa::Avx512Vnni => Isa::Avx512,
            QIsa::Neon => Isa::Neon,
        }
    }

    /// Every variant this machine supports, best first (the tests run each).
    pub fn available() -> Vec<QIsa> {
        [
            QIsa::Avx512Vnni,
            QIsa::Avx512Bw,
            QIsa::AvxVnni,
            QIsa::Avx2,
            QIsa::Neon,
            QIsa::Scalar,
        ]
        .into_iter()
        .filter(|q| q.supported())
        .collect()
    }

    /// The best variant for a backend running `isa` kernels: `ULAYER_Q8_ISA` if set, supported
    /// and within `isa`'s width; else the best supported one within it. Logged once per
    /// level.
    pub fn for_isa(isa: Isa) -> QIsa {
        static CHOSEN: OnceLock<[QIsa; 4]> = OnceLock::new();
        let table = CHOSEN.get_or_init(|| {
            let forced = std::env::var("ULAYER_Q8_ISA").ok();
            [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon].map(|level| {
                let fits = |q: &QIsa| {
                    q.supported()
                        && match (level, q.level()) {
                            (Isa::Avx512, _) => true,
                            (Isa::Avx2, l) => l == Isa::Avx2 || l == Isa::Scalar,
                            (Isa::Neon, l) => l == Isa::Neon || l == Isa::Scalar,
                            (_, l) => l == Isa::Scalar,
                        }
                };
                let best = QIsa::available()
                    .into_iter()
                    .find(fits)
                    .unwrap_or(QIsa::Scalar);
                let chosen = match forced.as_deref().map(QIsa::from_name) {
                    Some(Some(q)) if fits(&q) => q,
                    Some(_) => {
                        tracing::warn!(requested = ?forced, using = best.name(), "ULAYER_Q8_ISA names a variant this CPU or level lacks");
                        best
                    }
                    None => best,
                };
                if level.supported() {
                    tracing::info!(level = level.name(), q8 = chosen.name(), "8-bit CPU kernels");
                }
                chosen
            })
        });
        table[match isa {
            Isa::Scalar => 0,
            Isa::Avx2 => 1,
            Isa::Avx512 => 2,
            Isa::Neon => 3,
        }]
    }

    /// Runs `f` instantiated for this variant inside a function compiled with its target
    /// features (falls back to scalar where unsupported).
    #[inline]
    pub fn dispatch<F: QFn>(self, f: F) -> F::Output {
        match self {
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx2 if cached(self) => {
                // SAFETY: AVX2 and FMA are present (checked).
                unsafe { x86::run_avx2(f) }
            }
            #[cfg(target_arch = "x86_64")]
            QIsa::AvxVnni if cached(self) => {
                // SAFETY: AVX2, FMA and AVX-VNNI are present (checked).
                unsafe { x86::run_avxvnni(f) }
            }
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx512Bw if cached(self) => {
                // SAFETY: AVX-512F/BW and FMA are present (checked).
                unsafe { x86::run_avx512bw(f) }
            }
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx512Vnni if cached(self) => {
                // SAFETY: AVX-512F/BW/VNNI and FMA are present (checked).
                unsafe { x86::run_avx512vnni(f) }
            }
            #[cfg(target_arch = "aarch64")]
            QIsa::Neon if cached(self) => {
                // SAFETY: NEON is present (checked).
                unsafe { arm::run_neon(f) }
            }
            _ => f.call::<ScalarQ>(),
        }
    }
}

/// `supported`, memoised.
#[inline]
fn cached(q: QIsa) -> bool {
    static CACHE: OnceLock<[bool; 6]> = OnceLock::new();
    CACHE.get_or_init(|| {
        [
            QIsa::Scalar,
            QIsa::Avx2,
            QIsa::AvxVnni,
            QIsa::Avx512Bw,
            QIsa::Avx512Vnni,
            QIsa::Neon,
        ]
        .map(QIsa::supported)
    })[q as usize]
}

/// Portable: one lane, groups of four u8 × i8.
#[derive(Clone, Copy, Debug)]
pub struct ScalarQ;

impl QDot for ScalarQ {
    const LANES: usize = 1;
    const KG: usize = 4;
    const ROWS: usize = 4;
    const VECS: usize = 4;
    type F = simd::Scalar;
    type V = i32;

    #[inline(always)]
    fn with_tile<F: QTileFn>(f: F) -> F::Output {
        f.call::<Self, 4, 4>()
    }

    #[inline(always)]
    unsafe fn zero() -> i32 {
        0
    }
    #[inline(always)]
    unsafe fn load(p: *const u8) -> i32 {
        i32::from_ne_bytes(*(p as *const [u8; 4]))
    }
    #[inline(always)]
    unsafe fn bcast(p: *const u8) -> i32 {
        Self::load(p)
    }
    #[inline(always)]
    unsafe fn dot(acc: i32, act: i32, wgt: i32) -> i32 {
        let (a, w) = (act.to_ne_bytes(), wgt.to_ne_bytes());
        let mut s = acc;
        for t in 0..4 {
            s = s.wrapping_add(i32::from(a[t]) * i32::from(w[t] as i8));
        }
        s
    }
    #[inline(always)]
    unsafe fn load_i32(p: *const i32) -> i32 {
        *p
    }
    #[inline(always)]
    unsafe fn splat_i32(x: i32) -> i32 {
        x
    }
    #[inline(always)]
    unsafe fn store_i32(p: *mut i32, v: i32) {
        *p = v
    }
    #[inline(always)]
    unsafe fn req_row(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<i32> {
        ReqVecs {
            bias: a.bias[m],
            bound: a.bound[m],
            m0: a.m0[m],
            m0_odd: 0,
            rnd_e: 0,
            rnd_o: 0,
            sh_e: a.shift[m],
            sh_o: 0,
            nar_e: 0,
            nar_o: 0,
            zp: q.zp,
            lo: q.lo,
            hi: q.hi,
            lo8: q.lo,
            hi8: q.hi,
        }
    }
    #[inline(always)]
    unsafe fn req_lanes(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<i32> {
        Self::req_row(a, m, q)
    }
    #[inline(always)]
    unsafe fn requant<const WIDE: bool>(acc: i32, p: &ReqVecs<i32>) -> i32 {
        let a = acc.wrapping_add(p.bias).clamp(-p.bound, p.bound);
        let v = (i64::from(a) * i64::from(p.m0) + (1i64 << (p.sh_e - 1))) >> p.sh_e;
        (v as i32).wrapping_add(p.zp).clamp(p.lo, p.hi)
    }
    #[inline(always)]
    unsafe fn store_codes(p: *mut u8, v: i32, n: usize) {
        if n > 0 {
            *p = v as u8;
        }
    }
    #[inline(always)]
    unsafe fn from_f32(v: f32) -> i32 {
        v as i32
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2Q, Avx512BwQ, Avx512VnniQ, AvxVnniQ};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{narrow_constant, QDot, QFn, QOut, QTileFn, ReqArrays, ReqVecs};
    use crate::backend::cpu::simd;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_avx2<F: QFn>(f: F) -> F::Output {
        f.call::<Avx2Q>()
    }

    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub(super) unsafe fn run_avxvnni<F: QFn>(f: F) -> F::Output {
        f.call::<AvxVnniQ>()
    }

    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    pub(super) unsafe fn run_avx512bw<F: QFn>(f: F) -> F::Output {
        f.call::<Avx512BwQ>()
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub(super) unsafe fn run_avx512vnni<F: QFn>(f: F) -> F::Output {
        f.call::<Avx512VnniQ>()
    }

    /// AVX2 requantisation of 8 lanes (shared by the two 256-bit variants).
    #[inline(always)]
    unsafe fn requant256<const WIDE: bool>(acc: __m256i, p: &ReqVecs<__m256i>) -> __m256i {
        let r = if WIDE {
            let a = _mm256_add_epi32(acc, p.bias);
            let neg = _mm256_sub_epi32(_mm256_setzero_si256(), p.bound);
            let a = _mm256_min_epi32(_mm256_max_epi32(a, neg), p.bound);
            // Lanes 0, 2, 4, 6 ("even") and 1, 3, 5, 7 ("odd") as 64-bit products, rounded.
            let pe = _mm256_add_epi64(_mm256_mul_epi32(a, p.m0), p.rnd_e);
            let po = _mm256_add_epi64(
                _mm256_mul_epi32(_mm256_shuffle_epi32::<0xF5>(a), p.m0_odd),
                p.rnd_o,
            );
            // Arithmetic 64-bit shifts (AVX2 has only logical ones): flip negatives around.
            let zero = _mm256_setzero_si256();
            let se = _mm256_cmpgt_epi64(zero, pe);
            let so = _mm256_cmpgt_epi64(zero, po);
            let re = _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(pe, se), p.sh_e), se);
            let ro = _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(po, so), p.sh_o), so);
            let r = _mm256_blend_epi32::<0b1010_1010>(re, _mm256_slli_epi64::<32>(ro));
            _mm256_add_epi32(r, p.zp)
        } else {
            // The high halves of acc·m0 + (bias·m0 + 2^31 + zp·2^32).
            let pe = _mm256_add_epi64(_mm256_mul_epi32(acc, p.m0), p.nar_e);
            let po = _mm256_add_epi64(
                _mm256_mul_epi32(_mm256_shuffle_epi32::<0xF5>(acc), p.m0_odd),
                p.nar_o,
            );
            _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(pe), po)
        };
        _mm256_min_epi32(_mm256_max_epi32(r, p.lo), p.hi)
    }

    #[inline(always)]
    unsafe fn req_row256(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<__m256i> {
        let m0 = _mm256_set1_epi32(a.m0[m]);
        let rnd = _mm256_set1_epi64x(a.rnd[m]);
        let nar = _mm256_set1_epi64x(narrow_constant(a.bias[m], a.m0[m], q.zp));
        let sh = _mm256_set1_epi64x(i64::from(a.shift[m]));
        ReqVecs {
            bias: _mm256_set1_epi32(a.bias[m]),
            bound: _mm256_set1_epi32(a.bound[m]),
            m0,
            m0_odd: m0,
            rnd_e: rnd,
            rnd_o: rnd,
            sh_e: sh,
            sh_o: sh,
            nar_e: nar,
            nar_o: nar,
            zp: _mm256_set1_epi32(q.zp),
            lo: _mm256_set1_epi32(q.lo),
            hi: _mm256_set1_epi32(q.hi),
            lo8: _mm256_set1_epi8(q.lo as i8),
            hi8: _mm256_set1_epi8(q.hi as i8),
        }
    }

    #[inline(always)]
    unsafe fn req_lanes256(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<__m256i> {
        let ld = |v: &[i32]| _mm256_loadu_si256(v.as_ptr().add(m) as *const __m256i);
        let m0 = ld(&a.m0);
        let shift = ld(&a.shift);
        let one = _mm256_set1_epi64x(1);
        let sh_e = _mm256_and_si256(shift, _mm256_set1_epi64x(0xFFFF_FFFF));
        let sh_o = _mm256_srli_epi64::<32>(shift);
        let bias = ld(&a.bias);
        let m0_odd = _mm256_shuffle_epi32::<0xF5>(m0);
        let k = _mm256_set1_epi64x(narrow_constant(0, 0, q.zp));
        ReqVecs {
            bias,
            bound: ld(&a.bound),
            m0,
            m0_odd,
            nar_e: _mm256_add_epi64(_mm256_mul_epi32(bias, m0), k),
            nar_o: _mm256_add_epi64(
                _mm256_mul_epi32(_mm256_shuffle_epi32::<0xF5>(bias), m0_odd),
                k,
            ),
            rnd_e: _mm256_sllv_epi64(one, _mm256_sub_epi64(sh_e, one)),
            rnd_o: _mm256_sllv_epi64(one, _mm256_sub_epi64(sh_o, one)),
            sh_e,
            sh_o,
            zp: _mm256_set1_epi32(q.zp),
            lo: _mm256_set1_epi32(q.lo),
            hi: _mm256_set1_epi32(q.hi),
            lo8: _mm256_set1_epi8(q.lo as i8),
            hi8: _mm256_set1_epi8(q.hi as i8),
        }
    }

    /// Low bytes of 8 lanes to `p[..n]`.
    #[inline(always)]
    unsafe fn store_codes256(p: *mut u8, v: __m256i, n: usize) {
        let w = _mm256_packs_epi32(v, v); // [a0..a3 a0..a3 | a4..a7 a4..a7] as i16
        let b = _mm256_packus_epi16(w, w); // bytes, same pattern
        let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
        let bytes = _mm_cvtsi128_si64(_mm256_castsi256_si128(b)) as u64;
        if n >= 8 {
            (p as *mut u64).write_unaligned(bytes);
        } else {
            // Pieces of 4, 2 and 1 bytes: nothing past `p + n` is touched.
            let (mut b, mut o) = (bytes, 0);
            if n & 4 != 0 {
                (p as *mut u32).write_unaligned(b as u32);
                b >>= 32;
                o = 4;
            }
            if n & 2 != 0 {
                (p.add(o) as *mut u16).write_unaligned(b as u16);
                b >>= 16;
                o += 2;
            }
            if n & 1 != 0 {
                *p.add(o) = b as u8;
            }
        }
    }

    macro_rules! common256 {
        () => {
            #[inline(always)]
            unsafe fn zero() -> __m256i {
                _mm256_setzero_si256()
            }
            #[inline(always)]
            unsafe fn load(p: *const u8) -> __m256i {
                _mm256_loadu_si256(p as *const __m256i)
            }
            #[inline(always)]
            unsafe fn bcast(p: *const u8) -> __m256i {
                _mm256_set1_epi32((p as *const i32).read_unaligned())
            }
            #[inline(always)]
            unsafe fn load_i32(p: *const i32) -> __m256i {
                _mm256_loadu_si256(p as *const __m256i)
            }
            #[inline(always)]
            unsafe fn splat_i32(x: i32) -> __m256i {
                _mm256_set1_epi32(x)
            }
            #[inline(always)]
            unsafe fn store_i32(p: *mut i32, v: __m256i) {
                _mm256_storeu_si256(p as *mut __m256i, v)
            }
            #[inline(always)]
            unsafe fn req_row(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<__m256i> {
                req_row256(a, m, q)
            }
            #[inline(always)]
            unsafe fn req_lanes(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<__m256i> {
                req_lanes256(a, m, q)
            }
            #[inline(always)]
            unsafe fn requant<const WIDE: bool>(acc: __m256i, p: &ReqVecs<__m256i>) -> __m256i {
                requant256::<WIDE>(acc, p)
            }
            #[inline(always)]
            unsafe fn store_codes(p: *mut u8, v: __m256i, n: usize) {
                store_codes256(p, v, n)
            }
            #[inline(always)]
            unsafe fn from_f32(v: __m256) -> __m256i {
                _mm256_cvttps_epi32(v)
            }
        };
    }

    /// AVX2: 8 lanes of i16 pairs; micro-tile 6 × 2 vectors (12 accumulators of 16).
    #[derive(Clone, Copy, Debug)]
    pub struct Avx2Q;

    impl QDot for Avx2Q {
        const LANES: usize = 8;
        const KG: usize = 2;
        const ROWS: usize = 6;
        const VECS: usize = 2;
        type F = simd::Avx2;
        type V = __m256i;
        #[inline(always)]
        fn with_tile<F: QTileFn>(f: F) -> F::Output {
            f.call::<Self, 6, 2>()
        }
        common256!();
        #[inline(always)]
        unsafe fn dot(acc: __m256i, act: __m256i, wgt: __m256i) -> __m256i {
            _mm256_add_epi32(acc, _mm256_madd_epi16(act, wgt))
        }
    }

    /// AVX-VNNI: 8 lanes of u8 × i8 quads; micro-tile 6 × 2 vectors.
    #[derive(Clone, Copy, Debug)]
    pub struct AvxVnniQ;

    impl QDot for AvxVnniQ {
        const LANES: usize = 8;
        const KG: usize = 4;
        const ROWS: usize = 6;
        const VECS: usize = 2;
        type F = simd::Avx2;
        type V = __m256i;
        #[inline(always)]
        fn with_tile<F: QTileFn>(f: F) -> F::Output {
            f.call::<Self, 6, 2>()
        }
        common256!();
        #[inline(always)]
        unsafe fn dot(acc: __m256i, act: __m256i, wgt: __m256i) -> __m256i {
            _mm256_dpbusd_avx_epi32(acc, act, wgt)
        }
    }

    /// AVX-512 requantisation of 16 lanes.
    #[inline(always)]
    unsafe fn requant512<const WIDE: bool>(acc: __m512i, p: &ReqVecs<__m512i>) -> __m512i {
        _mm512_min_epi32(_mm512_max_epi32(requant512_raw::<WIDE>(acc, p), p.lo), p.hi)
    }

    /// [`requant512`] before the clamp (the zero point added).
    #[inline(always)]
    unsafe fn requant512_raw<const WIDE: bool>(acc: __m512i, p: &ReqVecs<__m512i>) -> __m512i {
        if WIDE {
            let a = _mm512_add_epi32(acc, p.bias);
            let neg = _mm512_sub_epi32(_mm512_setzero_si512(), p.bound);
            let a = _mm512_min_epi32(_mm512_max_epi32(a, neg), p.bound);
            let pe = _mm512_add_epi64(_mm512_mul_epi32(a, p.m0), p.rnd_e);
            let po = _mm512_add_epi64(
                _mm512_mul_epi32(_mm512_shuffle_epi32::<0xF5>(a), p.m0_odd),
                p.rnd_o,
            );
            let re = _mm512_srav_epi64(pe, p.sh_e);
            let ro = _mm512_srav_epi64(po, p.sh_o);
            let r = _mm512_mask_blend_epi32(0xAAAA, re, _mm512_slli_epi64::<32>(ro));
            _mm512_add_epi32(r, p.zp)
        } else {
            // The high halves of acc·m0 + (bias·m0 + 2^31 + zp·2^32).
            let pe = _mm512_add_epi64(_mm512_mul_epi32(acc, p.m0), p.nar_e);
            let po = _mm512_add_epi64(
                _mm512_mul_epi32(_mm512_shuffle_epi32::<0xF5>(acc), p.m0_odd),
                p.nar_o,
            );
            // Lane 2i: the high half of pe's 64-bit lane i; lane 2i + 1: po's.
            let idx = _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
            _mm512_permutex2var_epi32(pe, idx, po)
        }
    }

    /// Up to four vectors requantised, narrowed to bytes by two saturating packs (i32 → i16
    /// → u8: together a clamp to `[0, 255]`), put back in order by one dword permute, clamped
    /// to `[lo, hi]` as bytes and stored with one (masked) store: 5 operations per 64 codes,
    /// where a clamp and a `vpmovdb` per 16 cost 12.
    #[inline(always)]
    unsafe fn requant_store512<const WIDE: bool, const NV: usize>(
        p: *mut u8,
        acc: &[__m512i; NV],
        pr: &ReqVecs<__m512i>,
        n: usize,
    ) {
        debug_assert!(NV <= 4 && n <= NV * 16);
        let mut r = [_mm512_setzero_si512(); 4];
        for (v, &x) in acc.iter().enumerate() {
            r[v] = requant512_raw::<WIDE>(x, pr);
        }
        // Per 128-bit block k: the four codes of block k of r[0], r[1], r[2], r[3].
        let b = _mm512_packus_epi16(
            _mm512_packs_epi32(r[0], r[1]),
            _mm512_packs_epi32(r[2], r[3]),
        );
        let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let b = _mm512_permutexvar_epi32(idx, b);
        let b = _mm512_min_epu8(_mm512_max_epu8(b, pr.lo8), pr.hi8);
        if n >= 64 {
            _mm512_storeu_si512(p as *mut _, b);
        } else {
            _mm512_mask_storeu_epi8(p as *mut _, (1u64 << n) - 1, b);
        }
    }

    #[inline(always)]
    unsafe fn req_row512(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<__m512i> {
        let m0 = _mm512_set1_epi32(a.m0[m]);
        let rnd = _mm512_set1_epi64(a.rnd[m]);
        let nar = _mm512_set1_epi64(narrow_constant(a.bias[m], a.m0[m], q.zp));
        let sh = _mm512_set1_epi64(i64::from(a.shift[m]));
        ReqVecs {
            bias: _mm512_set1_epi32(a.bias[m]),
            bound: _mm512_set1_epi32(a.bound[m]),
            m0,
            m0_odd: m0,
            rnd_e: rnd,
            rnd_o: rnd,
            sh_e: sh,
            sh_o: sh,
            nar_e: nar,
            nar_o: nar,
            zp: _mm512_set1_epi32(q.zp),
            lo: _mm512_set1_epi32(q.lo),
            hi: _mm512_set1_epi32(q.hi),
            lo8: _mm512_set1_epi8(q.lo as i8),
            hi8: _mm512_set1_epi8(q.hi as i8),
        }
    }

    #[inline(always)]
    unsafe fn req_lanes512(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<__m512i> {
        let ld = |v: &[i32]| _mm512_loadu_si512(v.as_ptr().add(m) as *const _);
        let m0 = ld(&a.m0);
        let shift = ld(&a.shift);
        let one = _mm512_set1_epi64(1);
        let sh_e = _mm512_and_si512(shift, _mm512_set1_epi64(0xFFFF_FFFF));
        let sh_o = _mm512_srli_epi64::<32>(shift);
        let bias = ld(&a.bias);
        let m0_odd = _mm512_shuffle_epi32::<0xF5>(m0);
        let k = _mm512_set1_epi64(narrow_constant(0, 0, q.zp));
        ReqVecs {
            bias,
            bound: ld(&a.bound),
            m0,
            m0_odd,
            nar_e: _mm512_add_epi64(_mm512_mul_epi32(bias, m0), k),
            nar_o: _mm512_add_epi64(
                _mm512_mul_epi32(_mm512_shuffle_epi32::<0xF5>(bias), m0_odd),
                k,
            ),
            rnd_e: _mm512_sllv_epi64(one, _mm512_sub_epi64(sh_e, one)),
            rnd_o: _mm512_sllv_epi64(one, _mm512_sub_epi64(sh_o, one)),
            sh_e,
            sh_o,
            zp: _mm512_set1_epi32(q.zp),
            lo: _mm512_set1_epi32(q.lo),
            hi: _mm512_set1_epi32(q.hi),
            lo8: _mm512_set1_epi8(q.lo as i8),
            hi8: _mm512_set1_epi8(q.hi as i8),
        }
    }

    macro_rules! common512 {
        () => {
            #[inline(always)]
            unsafe fn zero() -> __m512i {
                _mm512_setzero_si512()
            }
            #[inline(always)]
            unsafe fn load(p: *const u8) -> __m512i {
                _mm512_loadu_si512(p as *const _)
            }
            #[inline(always)]
            unsafe fn bcast(p: *const u8) -> __m512i {
                _mm512_set1_epi32((p as *const i32).read_unaligned())
            }
            #[inline(always)]
            unsafe fn load_i32(p: *const i32) -> __m512i {
                _mm512_loadu_si512(p as *const _)
            }
            #[inline(always)]
            unsafe fn splat_i32(x: i32) -> __m512i {
                _mm512_set1_epi32(x)
            }
            #[inline(always)]
            unsafe fn store_i32(p: *mut i32, v: __m512i) {
                _mm512_storeu_si512(p as *mut _, v)
            }
            #[inline(always)]
            unsafe fn req_row(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<__m512i> {
                req_row512(a, m, q)
            }
            #[inline(always)]
            unsafe fn req_lanes(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<__m512i> {
                req_lanes512(a, m, q)
            }
            #[inline(always)]
            unsafe fn requant<const WIDE: bool>(acc: __m512i, p: &ReqVecs<__m512i>) -> __m512i {
                requant512::<WIDE>(acc, p)
            }
            #[inline(always)]
            unsafe fn requant_store<const WIDE: bool, const NV: usize>(
                p: *mut u8,
                acc: &[__m512i; NV],
                pr: &ReqVecs<__m512i>,
                n: usize,
            ) {
                requant_store512::<WIDE, NV>(p, acc, pr, n)
            }
            #[inline(always)]
            unsafe fn store_codes(p: *mut u8, v: __m512i, n: usize) {
                if n >= 16 {
                    _mm_storeu_si128(p as *mut __m128i, _mm512_cvtepi32_epi8(v));
                } else {
                    _mm512_mask_cvtepi32_storeu_epi8(p as *mut _, ((1u32 << n) - 1) as u16, v);
                }
            }
            #[inline(always)]
            unsafe fn from_f32(v: __m512) -> __m512i {
                _mm512_cvttps_epi32(v)
            }
        };
    }

    /// AVX-512BW: 16 lanes of i16 pairs; micro-tile 8 × 3 vectors (24 accumulators of 32).
    #[derive(Clone, Copy, Debug)]
    pub struct Avx512BwQ;

    impl QDot for Avx512BwQ {
        const LANES: usize = 16;
        const KG: usize = 2;
        const ROWS: usize = 8;
        const VECS: usize = 3;
        type F = simd::Avx512;
        type V = __m512i;
        #[inline(always)]
        fn with_tile<F: QTileFn>(f: F) -> F::Output {
            f.call::<Self, 8, 3>()
        }
        common512!();
        #[inline(always)]
        unsafe fn dot(acc: __m512i, act: __m512i, wgt: __m512i) -> __m512i {
            _mm512_add_epi32(acc, _mm512_madd_epi16(act, wgt))
        }
    }

    /// AVX-512 VNNI: 16 lanes of u8 × i8 quads; micro-tile 8 × 3 vectors.
    #[derive(Clone, Copy, Debug)]
    pub struct Avx512VnniQ;

    impl QDot for Avx512VnniQ {
        const LANES: usize = 16;
        const KG: usize = 4;
        const ROWS: usize = 8;
        const VECS: usize = 3;
        type F = simd::Avx512;
        type V = __m512i;
        #[inline(always)]
        fn with_tile<F: QTileFn>(f: F) -> F::Output {
            f.call::<Self, 8, 3>()
        }
        common512!();
        #[inline(always)]
        unsafe fn dot(acc: __m512i, act: __m512i, wgt: __m512i) -> __m512i {
            _mm512_dpbusd_epi32(acc, act, wgt)
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub use arm::NeonQ;

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{QDot, QFn, QOut, QTileFn, ReqArrays, ReqVecs};
    use crate::backend::cpu::simd;
    use std::arch::aarch64::*;

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn run_neon<F: QFn>(f: F) -> F::Output {
        f.call::<NeonQ>()
    }

    /// NEON: 4 lanes of i16 pairs (the AVX2 packing); micro-tile 6 × 3 vectors (18
    /// accumulators of NEON's 32 registers).
    ///
    /// The requantisation's 64-bit operands travel in the `int32x4_t` fields of [`ReqVecs`]
    /// reinterpreted as `int64x2_t`: `rnd_e`/`sh_e` for lanes 0–1 and `rnd_o`/`sh_o` for lanes
    /// 2–3, with the shifts negated (`sshl` by a negative count is an arithmetic right shift).
    #[derive(Clone, Copy, Debug)]
    pub struct NeonQ;

    #[inline(always)]
    unsafe fn pair_i64(lo: i64, hi: i64) -> int32x4_t {
        vreinterpretq_s32_s64(vcombine_s64(vcreate_s64(lo as u64), vcreate_s64(hi as u64)))
    }

    impl QDot for NeonQ {
        const LANES: usize = 4;
        const KG: usize = 2;
        const ROWS: usize = 6;
        const VECS: usize = 3;
        type F = simd::Neon;
        type V = int32x4_t;

        #[inline(always)]
        fn with_tile<F: QTileFn>(f: F) -> F::Output {
            f.call::<Self, 6, 3>()
        }
        #[inline(always)]
        unsafe fn zero() -> int32x4_t {
            vdupq_n_s32(0)
        }
        #[inline(always)]
        unsafe fn load(p: *const u8) -> int32x4_t {
            vreinterpretq_s32_u8(vld1q_u8(p))
        }
        #[inline(always)]
        unsafe fn bcast(p: *const u8) -> int32x4_t {
            vdupq_n_s32((p as *const i32).read_unaligned())
        }
        #[inline(always)]
        unsafe fn dot(acc: int32x4_t, act: int32x4_t, wgt: int32x4_t) -> int32x4_t {
            let (a, w) = (vreinterpretq_s16_s32(act), vreinterpretq_s16_s32(wgt));
            // Eight exact 32-bit products, then the two of each group added pairwise.
            let lo = vmull_s16(vget_low_s16(a), vget_low_s16(w));
            let hi = vmull_high_s16(a, w);
            vaddq_s32(acc, vpaddq_s32(lo, hi))
        }
        #[inline(always)]
        unsafe fn load_i32(p: *const i32) -> int32x4_t {
            vld1q_s32(p)
        }
        #[inline(always)]
        unsafe fn splat_i32(x: i32) -> int32x4_t {
            vdupq_n_s32(x)
        }
        #[inline(always)]
        unsafe fn store_i32(p: *mut i32, v: int32x4_t) {
            vst1q_s32(p, v)
        }
        #[inline(always)]
        unsafe fn req_row(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<int32x4_t> {
            let rnd = pair_i64(a.rnd[m], a.rnd[m]);
            let sh = pair_i64(-i64::from(a.shift[m]), -i64::from(a.shift[m]));
            ReqVecs {
                bias: vdupq_n_s32(a.bias[m]),
                bound: vdupq_n_s32(a.bound[m]),
                m0: vdupq_n_s32(a.m0[m]),
                m0_odd: vdupq_n_s32(a.m0[m]),
                rnd_e: rnd,
                rnd_o: rnd,
                sh_e: sh,
                sh_o: sh,
                nar_e: vdupq_n_s32(0),
                nar_o: vdupq_n_s32(0),
                zp: vdupq_n_s32(q.zp),
                lo: vdupq_n_s32(q.lo),
                hi: vdupq_n_s32(q.hi),
                lo8: vdupq_n_s32(q.lo),
                hi8: vdupq_n_s32(q.hi),
            }
        }
        #[inline(always)]
        unsafe fn req_lanes(a: &ReqArrays, m: usize, q: QOut) -> ReqVecs<int32x4_t> {
            let ld = |v: &[i32]| vld1q_s32(v.as_ptr().add(m));
            let sh = |i: usize| -i64::from(a.shift[m + i]);
            ReqVecs {
                bias: ld(&a.bias),
                bound: ld(&a.bound),
                m0: ld(&a.m0),
                m0_odd: ld(&a.m0),
                rnd_e: pair_i64(a.rnd[m], a.rnd[m + 1]),
                rnd_o: pair_i64(a.rnd[m + 2], a.rnd[m + 3]),
                sh_e: pair_i64(sh(0), sh(1)),
                sh_o: pair_i64(sh(2), sh(3)),
                nar_e: vdupq_n_s32(0),
                nar_o: vdupq_n_s32(0),
                zp: vdupq_n_s32(q.zp),
                lo: vdupq_n_s32(q.lo),
                hi: vdupq_n_s32(q.hi),
                lo8: vdupq_n_s32(q.lo),
                hi8: vdupq_n_s32(q.hi),
            }
        }
        #[inline(always)]
        unsafe fn requant<const WIDE: bool>(acc: int32x4_t, p: &ReqVecs<int32x4_t>) -> int32x4_t {
            let mut a = vaddq_s32(acc, p.bias);
            if WIDE {
                a = vminq_s32(vmaxq_s32(a, vnegq_s32(p.bound)), p.bound);
            }
            // One rounding: (a·m0 + 2^(shift−1)) >> shift in 64 bits, for both paths (the
            // narrow path's high-half trick is an AVX artefact; this is the same integer).
            let lo = vaddq_s64(
                vmull_s32(vget_low_s32(a), vget_low_s32(p.m0)),
                vreinterpretq_s64_s32(p.rnd_e),
            );
            let hi = vaddq_s64(vmull_high_s32(a, p.m0), vreinterpretq_s64_s32(p.rnd_o));
            let lo = vshlq_s64(lo, vreinterpretq_s64_s32(p.sh_e));
            let hi = vshlq_s64(hi, vreinterpretq_s64_s32(p.sh_o));
            let r = vcombine_s32(vmovn_s64(lo), vmovn_s64(hi));
            let r = vaddq_s32(r, p.zp);
            vminq_s32(vmaxq_s32(r, p.lo), p.hi)
        }
        #[inline(always)]
        unsafe fn store_codes(p: *mut u8, v: int32x4_t, n: usize) {
            let h = vmovn_s32(v); // values are already 0..=255
            let b = vmovn_u16(vcombine_u16(
                vreinterpret_u16_s16(h),
                vreinterpret_u16_s16(h),
            ));
            let bytes = vget_lane_u32::<0>(vreinterpret_u32_u8(b)).to_le_bytes();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, n.min(4));
        }
        #[inline(always)]
        unsafe fn from_f32(v: float32x4_t) -> int32x4_t {
            vcvtq_s32_f32(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::Multiplier;

    struct Probe {
        act: [u8; 64],
        wgt: [u8; 64],
        req: ReqArrays,
        wide: bool,
    }

    impl QFn for &Probe {
        type Output = (Vec<i32>, Vec<u8>, Vec<u8>);
        fn call<D: QDot>(self) -> Self::Output {
            // SAFETY: every pointer covers LANES groups of 4 bytes (64 bytes ≥ 16 × 4); the
            // requantisation arrays are padded.
            unsafe {
                let acc = D::dot(
                    D::splat_i32(5),
                    D::load(self.act.as_ptr()),
                    D::load(self.wgt.as_ptr()),
                );
                let mut out = vec![0i32; D::LANES];
                D::store_i32(out.as_mut_ptr(), acc);
                let q = QOut {
                    zp: 3,
                    lo: 0,
                    hi: 250,
                };
                let l = D::LANES;
                let mut lanes = vec![0u8; l];
                let mut rows = vec![0u8; l];
                let p = D::req_lanes(&self.req, 0, q);
                let r = if self.wide {
                    D::requant::<true>(acc, &p)
                } else {
                    D::requant::<false>(acc, &p)
                };
                D::store_codes(lanes.as_mut_ptr(), r, l);
                // Row parameters: every lane with lane 0's channel... checked per channel by
                // requantising the accumulator with each channel's row parameters.
                for (c, row) in rows.iter_mut().enumerate() {
                    let p = D::req_row(&self.req, c, q);
                    let r = if self.wide {
                        D::requant::<true>(acc, &p)
                    } else {
                        D::requant::<false>(acc, &p)
                    };
                    let mut t = vec![0u8; l];
                    D::store_codes(t.as_mut_ptr(), r, l);
                    *row = t[c];
                }
                (out, lanes, rows)
            }
        }
    }

    #[test]
    fn every_variant_computes_the_same_dots_and_codes() {
        let mut act = [0u8; 64];
        let mut wgt = [0u8; 64];
        for i in 0..64 {
            act[i] = (i * 37 % 256) as u8 | 0x80;
            wgt[i] = ((i * 91 + 13) % 255) as u8; // as i8: −128..127
        }
        for (wide, ratios) in [
            (false, [0.0003, 0.02, 0.07, 0.25, 1e-9]),
            (true, [0.0003, 0.02, 0.7, 3.5, 1e-9]),
        ] {
            let req: Vec<crate::quant::ChannelRequant> = (0..16)
                .map(|i| crate::quant::ChannelRequant {
                    mult: Multiplier::new(ratios[i % 5] * (1.0 + i as f64 / 16.0)),
                    bias: i as i32 * 1000 - 7000,
                })
                .collect();
            let arrays = ReqArrays::new(&req, 16);
            assert_eq!(arrays.wide, wide);
            let probe = Probe {
                act,
                wgt,
                req: arrays,
                wide,
            };
            for q in QIsa::available() {
                let (dots, lanes, rows) = q.dispatch(&probe);
                for (lane, &d) in dots.iter().enumerate() {
                    let mut want = 5i32;
                    let g = &probe;
                    if matches!(q, QIsa::Avx2 | QIsa::Avx512Bw | QIsa::Neon) {
                        for t in 0..2 {
                            let a = u16::from_le_bytes([
                                g.act[lane * 4 + 2 * t],
                                g.act[lane * 4 + 2 * t + 1],
                            ]);
                            let w = i16::from_le_bytes([
                                g.wgt[lane * 4 + 2 * t],
                                g.wgt[lane * 4 + 2 * t + 1],
                            ]);
                            want += i32::from(a as i16) * i32::from(w);
                        }
                    } else {
                        for t in 0..4 {
                            want += i32::from(g.act[lane * 4 + t])
                                * i32::from(g.wgt[lane * 4 + t] as i8);
                        }
                    }
                    assert_eq!(d, want, "{}: lane {lane}", q.name());
                    let code = req[lane].mult.to_code(d + req[lane].bias, 3, 0, 250);
                    assert_eq!(lanes[lane], code, "{} (wide {wide}): lane {lane}", q.name());
                    assert_eq!(rows[lane], code, "{} (wide {wide}): row {lane}", q.name());
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for q in QIsa::available() {
            assert_eq!(QIsa::from_name(q.name()), Some(q));
        }
        assert_eq!(QIsa::from_name("nope"), None);
        assert!(QIsa::available().contains(&QIsa::Scalar));
    }
}
