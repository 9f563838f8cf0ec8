//! Byte transposes of code tensors: between a `[pixel][channel]` block that a kernel computes
//! with channels in the vector lanes and the planar NCHW tensor (one channel's pixels
//! contiguous). The 8-bit depthwise kernel (both ways) and the 8-bit matrix product's
//! activations-broadcast store use them.

/// `out[c·plane + i] = codes[i·lanes + c]` for `c < nc`, `i < n`, 8 × 8 at a time on x86.
/// Where `codes` holds 8 rows past a tail of fewer than 8 (`n % 8` rows, any content), the
/// tail is transposed 8 × 8 too, through a small buffer.
///
/// # Safety
/// `out` must be valid for writes at `c·plane + i` for every `c < nc`, `i < n`.
pub(crate) unsafe fn transpose_codes(
    codes: &[u8],
    lanes: usize,
    nc: usize,
    n: usize,
    out: *mut u8,
    plane: usize,
) {
    assert!(
        nc <= lanes && (n == 0 || nc == 0 || codes.len() >= (n - 1) * lanes + nc),
        "transpose_codes: bounds"
    );
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut c = 0;
    #[cfg(target_arch = "x86_64")]
    if lanes.is_multiple_of(8) {
        while c + 8 <= nc {
            let rows = |i: usize| -> [*const u8; 8] {
                std::array::from_fn(|k| codes.as_ptr().add((i + k) * lanes + c))
            };
            let mut i = 0;
            while i + 8 <= n {
                // SAFETY: rows `i .. i + 8`, bytes `c .. c + 8` lie in `codes` (bounds above:
                // `(n − 1)·lanes + nc`); the writes are ours by the contract.
                sse2::bytes8x8_store(rows(i), out.add(c * plane + i), plane);
                i += 8;
            }
            if i < n && codes.len() >= (i + 7) * lanes + c + 8 {
                let mut t = [0u8; 64];
                sse2::bytes8x8_store(rows(i), t.as_mut_ptr(), 8);
                for k in 0..8 {
                    std::ptr::copy_nonoverlapping(
                        t.as_ptr().add(k * 8),
                        out.add((c + k) * plane + i),
                        n - i,
                    );
                }
                i = n;
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
pub(crate) mod sse2 {
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
    pub(crate) unsafe fn bytes8x8_to_f32(rows: [*const u8; 8], dst: *mut f32, stride: usize) {
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
    pub(crate) unsafe fn bytes8x8_store(rows: [*const u8; 8], dst: *mut u8, stride: usize) {
        for (p, d) in transpose(rows).into_iter().enumerate() {
            _mm_storel_epi64(dst.add(2 * p * stride) as *mut __m128i, d);
            _mm_storel_epi64(
                dst.add((2 * p + 1) * stride) as *mut __m128i,
                _mm_unpackhi_epi64(d, d),
            );
        }
    }
}
