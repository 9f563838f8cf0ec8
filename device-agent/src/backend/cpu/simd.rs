//! A small SIMD abstraction: kernel bodies are written once, generic over [`Simd`], and
//! instantiated for each instruction set by [`super::isa::Isa::dispatch`], which calls them
//! inside a `#[target_feature]` function. Every method is `#[inline(always)]` so that the
//! whole kernel is compiled for that function's features.
//!
//! Methods are `unsafe`: they may only run where the instruction set exists (guaranteed by
//! `Isa::dispatch`) and the pointer ones read or write `LANES` elements (or `n` for the
//! partial forms) that the caller must own.
#![allow(clippy::missing_safety_doc)]

/// A generic kernel entry point: `call::<S>()` runs the kernel for instruction set `S`.
pub trait SimdFn {
    type Output;
    fn call<S: Simd>(self) -> Self::Output;
}

/// A kernel generic over the GEMM micro-tile shape (`ROWS` broadcast rows × `VECS` vectors).
pub trait TileFn {
    type Output;
    fn call<S: Simd, const ROWS: usize, const VECS: usize>(self) -> Self::Output;
}

/// One instruction set's f32 vector operations.
pub trait Simd: Copy + 'static {
    /// f32 lanes per vector.
    const LANES: usize;
    /// Broadcast rows of the GEMM micro-tile.
    const GEMM_ROWS: usize;
    /// Vectors per row of the GEMM micro-tile.
    const GEMM_VECS: usize;
    type V: Copy;

    /// Calls `f` with this set's GEMM micro-tile shape.
    fn with_tile<F: TileFn>(f: F) -> F::Output;

    unsafe fn zero() -> Self::V;
    unsafe fn splat(x: f32) -> Self::V;
    /// Loads `LANES` elements (no alignment needed).
    unsafe fn load(p: *const f32) -> Self::V;
    /// Stores `LANES` elements (no alignment needed).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Loads the first `n < LANES` elements, the other lanes zero; reads nothing past `p + n`.
    unsafe fn load_partial(p: *const f32, n: usize) -> Self::V;
    /// Stores the first `n <= LANES` lanes; writes nothing past `p + n`.
    unsafe fn store_partial(p: *mut f32, v: Self::V, n: usize);
    /// Stores lanes `lo..hi` (`lo <= hi <= LANES`) of `v` to `p + lo .. p + hi`; nothing else
    /// is accessed, so `p` itself may point before the owned elements.
    unsafe fn store_lanes(p: *mut f32, v: Self::V, lo: usize, hi: usize);
    /// Splits `[a, b]` (2·LANES consecutive floats) into its even and odd elements.
    unsafe fn deinterleave(a: Self::V, b: Self::V) -> (Self::V, Self::V);
    /// `a * b + c`.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sqrt(a: Self::V) -> Self::V;
    unsafe fn reduce_add(a: Self::V) -> f32;
    unsafe fn reduce_max(a: Self::V) -> f32;

    /// `min(max(v, lo), hi)`.
    #[inline(always)]
    unsafe fn clamp(v: Self::V, lo: Self::V, hi: Self::V) -> Self::V {
        Self::min(Self::max(v, lo), hi)
    }
}

/// Portable fallback: one lane.
#[derive(Clone, Copy, Debug)]
pub struct Scalar;

impl Simd for Scalar {
    const LANES: usize = 1;
    const GEMM_ROWS: usize = 4;
    const GEMM_VECS: usize = 4;
    type V = f32;

    #[inline(always)]
    fn with_tile<F: TileFn>(f: F) -> F::Output {
        f.call::<Self, 4, 4>()
    }
    #[inline(always)]
    unsafe fn zero() -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32 {
        *p
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32) {
        *p = v
    }
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> f32 {
        if n > 0 {
            *p
        } else {
            0.0
        }
    }
    #[inline(always)]
    unsafe fn store_partial(p: *mut f32, v: f32, n: usize) {
        if n > 0 {
            *p = v
        }
    }
    #[inline(always)]
    unsafe fn store_lanes(p: *mut f32, v: f32, lo: usize, hi: usize) {
        if lo == 0 && hi > 0 {
            *p = v
        }
    }
    #[inline(always)]
    unsafe fn deinterleave(a: f32, b: f32) -> (f32, f32) {
        (a, b)
    }
    #[inline(always)]
    unsafe fn fma(a: f32, b: f32, c: f32) -> f32 {
        // Not `mul_add`: without hardware FMA it is a slow libm call.
        a * b + c
    }
    #[inline(always)]
    unsafe fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    unsafe fn sub(a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    unsafe fn mul(a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    unsafe fn div(a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    unsafe fn max(a: f32, b: f32) -> f32 {
        a.max(b)
    }
    #[inline(always)]
    unsafe fn min(a: f32, b: f32) -> f32 {
        a.min(b)
    }
    #[inline(always)]
    unsafe fn sqrt(a: f32) -> f32 {
        a.sqrt()
    }
    #[inline(always)]
    unsafe fn reduce_add(a: f32) -> f32 {
        a
    }
    #[inline(always)]
    unsafe fn reduce_max(a: f32) -> f32 {
        a
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Simd, TileFn};
    use std::arch::x86_64::*;

    /// AVX2 + FMA: 8 lanes, 16 registers (micro-tile 4 × 3 vectors: 12 accumulators).
    #[derive(Clone, Copy, Debug)]
    pub struct Avx2;

    #[inline(always)]
    unsafe fn avx2_mask(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    impl Simd for Avx2 {
        const LANES: usize = 8;
        const GEMM_ROWS: usize = 4;
        const GEMM_VECS: usize = 3;
        type V = __m256;

        #[inline(always)]
        fn with_tile<F: TileFn>(f: F) -> F::Output {
            f.call::<Self, 4, 3>()
        }
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn load_partial(p: *const f32, n: usize) -> __m256 {
            _mm256_maskload_ps(p, avx2_mask(n))
        }
        #[inline(always)]
        unsafe fn store_partial(p: *mut f32, v: __m256, n: usize) {
            _mm256_maskstore_ps(p, avx2_mask(n), v)
        }
        #[inline(always)]
        unsafe fn store_lanes(p: *mut f32, v: __m256, lo: usize, hi: usize) {
            if lo == 0 && hi == 8 {
                // Masked stores are slow on some cores (microcoded on AMD Zen).
                return _mm256_storeu_ps(p, v);
            }
            let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let m = _mm256_and_si256(
                _mm256_cmpgt_epi32(_mm256_set1_epi32(hi as i32), idx),
                _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(lo as i32 - 1)),
            );
            _mm256_maskstore_ps(p, m, v)
        }
        #[inline(always)]
        unsafe fn deinterleave(a: __m256, b: __m256) -> (__m256, __m256) {
            // [a0 a2 b0 b2 | a4 a6 b4 b6] → [a0 a2 a4 a6 b0 b2 b4 b6] (same for odd).
            let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
            (
                _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e))),
                _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o))),
            )
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            _mm256_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            _mm256_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn div(a: __m256, b: __m256) -> __m256 {
            _mm256_div_ps(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m256, b: __m256) -> __m256 {
            _mm256_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn min(a: __m256, b: __m256) -> __m256 {
            _mm256_min_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sqrt(a: __m256) -> __m256 {
            _mm256_sqrt_ps(a)
        }
        #[inline(always)]
        unsafe fn reduce_add(a: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            _mm_cvtss_f32(s)
        }
        #[inline(always)]
        unsafe fn reduce_max(a: __m256) -> f32 {
            let s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
            _mm_cvtss_f32(s)
        }
    }

    /// AVX-512F: 16 lanes, 32 registers (micro-tile 8 × 3 vectors: 24 accumulators).
    #[derive(Clone, Copy, Debug)]
    pub struct Avx512;

    #[inline(always)]
    fn avx512_mask(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
    }

    impl Simd for Avx512 {
        const LANES: usize = 16;
        const GEMM_ROWS: usize = 8;
        const GEMM_VECS: usize = 3;
        type V = __m512;

        #[inline(always)]
        fn with_tile<F: TileFn>(f: F) -> F::Output {
            f.call::<Self, 8, 3>()
        }
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn load_partial(p: *const f32, n: usize) -> __m512 {
            _mm512_maskz_loadu_ps(avx512_mask(n), p)
        }
        #[inline(always)]
        unsafe fn store_partial(p: *mut f32, v: __m512, n: usize) {
            _mm512_mask_storeu_ps(p, avx512_mask(n), v)
        }
        #[inline(always)]
        unsafe fn store_lanes(p: *mut f32, v: __m512, lo: usize, hi: usize) {
            _mm512_mask_storeu_ps(p, avx512_mask(hi) & !avx512_mask(lo), v)
        }
        #[inline(always)]
        unsafe fn deinterleave(a: __m512, b: __m512) -> (__m512, __m512) {
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            (
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
            )
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m512, b: __m512) -> __m512 {
            _mm512_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            _mm512_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn div(a: __m512, b: __m512) -> __m512 {
            _mm512_div_ps(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m512, b: __m512) -> __m512 {
            _mm512_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn min(a: __m512, b: __m512) -> __m512 {
            _mm512_min_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sqrt(a: __m512) -> __m512 {
            _mm512_sqrt_ps(a)
        }
        #[inline(always)]
        unsafe fn reduce_add(a: __m512) -> f32 {
            _mm512_reduce_add_ps(a)
        }
        #[inline(always)]
        unsafe fn reduce_max(a: __m512) -> f32 {
            _mm512_reduce_max_ps(a)
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub use arm::Neon;

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{Simd, TileFn};
    use std::arch::aarch64::*;

    /// NEON: 4 lanes, 32 registers (micro-tile 8 × 3 vectors: 24 accumulators).
    #[derive(Clone, Copy, Debug)]
    pub struct Neon;

    impl Simd for Neon {
        const LANES: usize = 4;
        const GEMM_ROWS: usize = 8;
        const GEMM_VECS: usize = 3;
        type V = float32x4_t;

        #[inline(always)]
        fn with_tile<F: TileFn>(f: F) -> F::Output {
            f.call::<Self, 8, 3>()
        }
        #[inline(always)]
        unsafe fn zero() -> float32x4_t {
            vdupq_n_f32(0.0)
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> float32x4_t {
            vdupq_n_f32(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> float32x4_t {
            vld1q_f32(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: float32x4_t) {
            vst1q_f32(p, v)
        }
        #[inline(always)]
        unsafe fn load_partial(p: *const f32, n: usize) -> float32x4_t {
            let mut t = [0.0f32; 4];
            std::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n.min(4));
            vld1q_f32(t.as_ptr())
        }
        #[inline(always)]
        unsafe fn store_partial(p: *mut f32, v: float32x4_t, n: usize) {
            let mut t = [0.0f32; 4];
            vst1q_f32(t.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(t.as_ptr(), p, n.min(4));
        }
        #[inline(always)]
        unsafe fn store_lanes(p: *mut f32, v: float32x4_t, lo: usize, hi: usize) {
            let mut t = [0.0f32; 4];
            vst1q_f32(t.as_mut_ptr(), v);
            for (i, &x) in t.iter().enumerate().take(hi.min(4)).skip(lo) {
                *p.add(i) = x;
            }
        }
        #[inline(always)]
        unsafe fn deinterleave(a: float32x4_t, b: float32x4_t) -> (float32x4_t, float32x4_t) {
            (vuzp1q_f32(a, b), vuzp2q_f32(a, b))
        }
        #[inline(always)]
        unsafe fn fma(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
            vfmaq_f32(c, a, b)
        }
        #[inline(always)]
        unsafe fn add(a: float32x4_t, b: float32x4_t) -> float32x4_t {
            vaddq_f32(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: float32x4_t, b: float32x4_t) -> float32x4_t {
            vsubq_f32(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: float32x4_t, b: float32x4_t) -> float32x4_t {
            vmulq_f32(a, b)
        }
        #[inline(always)]
        unsafe fn div(a: float32x4_t, b: float32x4_t) -> float32x4_t {
            vdivq_f32(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: float32x4_t, b: float32x4_t) -> float32x4_t {
            vmaxq_f32(a, b)
        }
        #[inline(always)]
        unsafe fn min(a: float32x4_t, b: float32x4_t) -> float32x4_t {
            vminq_f32(a, b)
        }
        #[inline(always)]
        unsafe fn sqrt(a: float32x4_t) -> float32x4_t {
            vsqrtq_f32(a)
        }
        #[inline(always)]
        unsafe fn reduce_add(a: float32x4_t) -> f32 {
            vaddvq_f32(a)
        }
        #[inline(always)]
        unsafe fn reduce_max(a: float32x4_t) -> f32 {
            vmaxvq_f32(a)
        }
    }
}
