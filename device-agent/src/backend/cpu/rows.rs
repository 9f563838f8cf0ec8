//! Padded, stride-split copies of input rows for sliding-window kernels (depthwise
//! convolution, pooling): after the copy every window tap is a contiguous vector load, with
//! no border case left in the inner loop.
use super::simd::Simd;

/// Copies rows `rows` of an `h × w` plane into `dst`, padded on the left by `pl` and split by
/// stride phase: `dst[((iy - rows.start)·s + ph)·wq + j] = plane[iy][j·s + ph - pl]`, or
/// `pad` where that element lies outside the plane (rows above or below it included, so that
/// every window tap of every output row exists). `dst` must hold `rows.len()·s·wq` floats.
///
/// Inlined into the caller's SIMD kernel (rows are short: calls to `memcpy` would dominate).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn fill_phase_rows<S: Simd>(
    plane: &[f32],
    h: usize,
    w: usize,
    rows: std::ops::Range<isize>,
    s: usize,
    pl: usize,
    wq: usize,
    pad: f32,
    dst: &mut [f32],
) {
    let need = rows.len() * s * wq;
    assert!(
        dst.len() >= need && plane.len() >= h * w,
        "phase rows: buffer too small"
    );
    let d = dst.as_mut_ptr();
    // SAFETY: every write is below `rows.len()·s·wq <= dst.len()` (asserted); every read is
    // of row `iy < h` at a column `< w` of a plane of `h·w` floats (asserted).
    unsafe {
        for (r, iy) in rows.enumerate() {
            let base = d.add(r * s * wq);
            if iy < 0 || iy >= h as isize {
                fill::<S>(base, s * wq, pad);
                continue;
            }
            let row = plane.as_ptr().add(iy as usize * w);
            if s == 1 {
                let left = pl.min(wq);
                fill::<S>(base, left, pad);
                let n = w.min(wq - left);
                copy::<S>(row, base.add(left), n);
                fill::<S>(base.add(left + n), wq - left - n, pad);
                continue;
            }
            for ph in 0..s {
                let dp = base.add(ph * wq);
                // Columns j with 0 <= j·s + ph − pl < w.
                let j_lo = (pl.saturating_sub(ph)).div_ceil(s).min(wq);
                let j_hi = (w + pl).saturating_sub(ph).div_ceil(s).clamp(j_lo, wq);
                fill::<S>(dp, j_lo, pad);
                if j_lo < j_hi {
                    let src = row.add(j_lo * s + ph - pl);
                    for j in 0..j_hi - j_lo {
                        *dp.add(j_lo + j) = *src.add(j * s);
                    }
                }
                fill::<S>(dp.add(j_hi), wq - j_hi, pad);
            }
        }
    }
}

/// `n` copies of `v` at `p`.
#[inline(always)]
unsafe fn fill<S: Simd>(p: *mut f32, n: usize, v: f32) {
    let (l, x) = (S::LANES, S::splat(v));
    let mut i = 0;
    while i + l <= n {
        S::store(p.add(i), x);
        i += l;
    }
    if i < n {
        S::store_partial(p.add(i), x, n - i);
    }
}

/// Copies `n` floats from `src` to `dst`.
#[inline(always)]
unsafe fn copy<S: Simd>(src: *const f32, dst: *mut f32, n: usize) {
    let l = S::LANES;
    let mut i = 0;
    while i + l <= n {
        S::store(dst.add(i), S::load(src.add(i)));
        i += l;
    }
    if i < n {
        S::store_partial(dst.add(i), S::load_partial(src.add(i), n - i), n - i);
    }
}

/// Floats per phase row for an output `ow` wide: covers every tap of every output column
/// rounded up to whole vectors of `lanes`.
pub fn phase_width(ow: usize, kw: usize, dw: usize, sw: usize, lanes: usize) -> usize {
    ow.div_ceil(lanes) * lanes + (kw - 1) * dw / sw + 1
}

/// Input rows (unclipped: negative or past the plane in the padding) that output rows
/// `oy0..oy1` read, for a window `k` with stride `s`, dilation `d` and top padding `pad`.
pub fn window_rows(
    oy0: usize,
    oy1: usize,
    s: usize,
    k: usize,
    d: usize,
    pad: usize,
) -> std::ops::Range<isize> {
    let lo = (oy0 * s) as isize - pad as isize;
    let hi = ((oy1.max(oy0 + 1) - 1) * s + (k - 1) * d + 1) as isize - pad as isize;
    lo..hi
}

/// Splits `planes` planes of `rows` rows into tasks for `threads` workers: whole planes
/// grouped when there are many, row blocks when there are few. Returns
/// `(planes per task, rows per task)`.
pub fn plan_planes(planes: usize, rows: usize, threads: usize) -> (usize, usize) {
    let target = threads * 8;
    if threads <= 1 || planes == 0 || rows == 0 {
        return (planes.max(1), rows.max(1));
    }
    if planes >= target {
        (planes.div_ceil(target), rows)
    } else {
        let row_blocks = target.div_ceil(planes).min(rows);
        (1, rows.div_ceil(row_blocks))
    }
}
