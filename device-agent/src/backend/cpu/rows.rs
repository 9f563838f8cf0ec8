//! Padded, stride-split copies of input rows for sliding-window kernels (depthwise
//! convolution, pooling): after the copy every window tap is a contiguous vector load, with
//! no border case left in the inner loop.

/// Copies rows `rows` of an `h × w` plane into `dst`, padded on the left by `pl` and split by
/// stride phase: `dst[((iy - rows.start)·s + ph)·wq + j] = plane[iy][j·s + ph - pl]`, or
/// `pad` where that element lies outside the plane (rows above or below it included, so that
/// every window tap of every output row exists). `dst` must hold `rows.len()·s·wq` floats.
#[allow(clippy::too_many_arguments)]
pub fn fill_phase_rows(
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
    for (r, iy) in rows.enumerate() {
        if iy < 0 || iy >= h as isize {
            dst[r * s * wq..(r + 1) * s * wq].fill(pad);
            continue;
        }
        let iy = iy as usize;
        let row = &plane[iy * w..(iy + 1) * w];
        let base = r * s * wq;
        if s == 1 {
            let d = &mut dst[base..base + wq];
            let left = pl.min(wq);
            d[..left].fill(pad);
            let copy = w.min(wq - left);
            d[left..left + copy].copy_from_slice(&row[..copy]);
            d[left + copy..].fill(pad);
            continue;
        }
        for ph in 0..s {
            let d = &mut dst[base + ph * wq..base + (ph + 1) * wq];
            // Columns j with 0 <= j·s + ph − pl < w.
            let j_lo = (pl.saturating_sub(ph)).div_ceil(s).min(wq);
            let j_hi = (w + pl).saturating_sub(ph).div_ceil(s).clamp(j_lo, wq);
            d[..j_lo].fill(pad);
            if j_lo < j_hi {
                let first = j_lo * s + ph - pl;
                let (d, src) = (&mut d[j_lo..j_hi], &row[first..]);
                if s == 2 {
                    for (v, pair) in d.iter_mut().zip(src.chunks_exact(2)) {
                        *v = pair[0];
                    }
                    // The last column may start an incomplete pair.
                    if src.len() % 2 == 1 && d.len() > src.len() / 2 {
                        d[src.len() / 2] = src[src.len() - 1];
                    }
                } else {
                    for (v, c) in d.iter_mut().zip(src.chunks(s)) {
                        *v = c[0];
                    }
                }
            }
            d[j_hi..].fill(pad);
        }
    }
}

/// Floats per phase row for an output `ow` wide: covers every tap of every output column
/// rounded up to whole vectors of `lanes`.
pub fn phase_width(ow: usize, kw: usize, dw: usize, sw: usize, lanes: usize) -> usize {
    ow.div_ceil(lanes) * lanes + (kw - 1) * dw / sw + 1
}

/// Input rows (unclipped: negative or past the plane in the padding) that output rows
/// `oy0..oy1` read, for a window `k` with stride `s`, dilation `d` and top padding `pad`.
pub fn window_rows(oy0: usize, oy1: usize, s: usize, k: usize, d: usize, pad: usize) -> std::ops::Range<isize> {
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
