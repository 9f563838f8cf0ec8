//! Padded, stride-split copies of input rows for sliding-window kernels (depthwise
//! convolution, pooling): after the copy every window tap is a contiguous vector load, with
//! no border case left in the inner loop.

/// Copies rows `rows` of a `w`-wide plane into `dst`, padded on the left by `pl` and split by
/// stride phase: `dst[((iy - rows.start)·s + ph)·wq + j] = plane[iy][j·s + ph - pl]`, or
/// `pad` where that column lies outside the row. `dst` must hold `rows.len()·s·wq` floats.
pub fn fill_phase_rows(plane: &[f32], w: usize, rows: std::ops::Range<usize>, s: usize, pl: usize, wq: usize, pad: f32, dst: &mut [f32]) {
    for (r, iy) in rows.enumerate() {
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
            for (j, v) in d.iter_mut().enumerate() {
                let x = (j * s + ph) as isize - pl as isize;
                *v = if x >= 0 && (x as usize) < w { row[x as usize] } else { pad };
            }
        }
    }
}

/// Floats per phase row for an output `ow` wide: covers every tap of every output column
/// rounded up to whole vectors of `lanes`.
pub fn phase_width(ow: usize, kw: usize, dw: usize, sw: usize, lanes: usize) -> usize {
    ow.div_ceil(lanes) * lanes + (kw - 1) * dw / sw + 1
}

/// Input rows that output rows `oy0..oy1` read (window `k`, stride `s`, dilation `d`,
/// top padding `pad`), clipped to a plane of `h` rows.
pub fn input_rows(oy0: usize, oy1: usize, s: usize, k: usize, d: usize, pad: usize, h: usize) -> std::ops::Range<usize> {
    let lo = (oy0 * s).saturating_sub(pad).min(h);
    let hi = ((oy1.max(oy0 + 1) - 1) * s + (k - 1) * d + 1).saturating_sub(pad).min(h);
    lo..hi.max(lo)
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
