//! CPU 8-bit pooling. Max pooling takes the largest code of each window (quantization is
//! monotonic; mapped through a table only when the output's quantization differs); average
//! pooling sums `x − z_x` in 32-bit integers and requantises with `M = s_x / (s_y·count)`
//! (one multiplier per possible divisor, computed at prepare); global average pooling does the
//! same over whole planes. Work is split over planes and row blocks.
use super::Pool;
use crate::backend::cpu::CpuCtx;
use crate::ops::pool::reference::window;
use crate::ops::pool::reference_q8::average_multiplier;
use crate::quant::{requant_table_of, Multiplier, QTensor, QuantNode, SharedQTensor};
use crate::tensor::Slice;
use crate::Result;

/// What a pooling layer needs at run time.
#[derive(Debug)]
pub enum PreparedPoolQ8 {
    /// Max pooling; the code map when the output's quantization differs from the input's.
    Max {
        pool: Pool,
        table: Option<Box<[u8; 256]>>,
    },
    /// Average pooling: `mults[count]` requantises a window sum over `count` values.
    Average {
        pool: Pool,
        mults: Vec<Multiplier>,
        zx: i32,
        zy: i32,
    },
    /// Global average pooling over `count` values per plane.
    Global { mult: Multiplier, zx: i32, zy: i32 },
}

/// Prepares max (`max`) or average pooling, or global average pooling (`pool` is `None`).
pub fn prepare(
    pool: Option<&Pool>,
    max: bool,
    q: &QuantNode<'_>,
    input: &[usize],
) -> PreparedPoolQ8 {
    let (xq, yq) = (q.inputs[0], q.output);
    let (zx, zy) = (i32::from(xq.zero_point), i32::from(yq.zero_point));
    match pool {
        None => PreparedPoolQ8::Global {
            mult: average_multiplier((input[2] * input[3]).max(1), xq, yq),
            zx,
            zy,
        },
        Some(p) if max => PreparedPoolQ8::Max {
            pool: p.clone(),
            table: (xq != yq).then(|| Box::new(requant_table_of(xq, yq))),
        },
        Some(p) => PreparedPoolQ8::Average {
            pool: p.clone(),
            mults: (0..=p.kernel[0] * p.kernel[1])
                .map(|c| average_multiplier(c.max(1), xq, yq))
                .collect(),
            zx,
            zy,
        },
    }
}

/// Computes `slice` of the pooling of `x` into `out`.
pub fn run(
    ctx: &CpuCtx,
    p: &PreparedPoolQ8,
    x: &QTensor,
    out: &SharedQTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let s = x.shape();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let os = out.shape();
    let (oh, ow) = (os[2], os[3]);
    let chans = slice.channels.clone();
    let planes = n * chans.len();
    let rows = slice.rows.clone();
    // Tasks: blocks of planes × row blocks, about 8 per worker.
    let target = ctx.threads() * 8;
    let (pp, rb) = if planes >= target {
        (planes.div_ceil(target), 1)
    } else {
        (1, target.div_ceil(planes.max(1)).min(rows.len().max(1)))
    };
    let rp = rows.len().div_ceil(rb).max(1);
    let row_blocks = rows.len().div_ceil(rp);
    let plane_blocks = planes.div_ceil(pp);
    let xd = x.data();
    ctx.for_each_task(plane_blocks * row_blocks, |t| {
        let (pbk, b) = (t / row_blocks, t % row_blocks);
        for pi in pbk * pp..((pbk + 1) * pp).min(planes) {
            plane_rows(p, out, &chans, pi, b * rp, rp, (h, w, c, oh, ow), xd, &rows);
        }
    });
    Ok(())
}

thread_local! {
    /// Max pooling's two row buffers (the window's rows' maximum, the windows' maxima).
    static ROWS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Output rows `rows.start + r0 ..` (at most `rp`) of plane `pi` of the slice.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn plane_rows(
    p: &PreparedPoolQ8,
    out: &SharedQTensor<'_>,
    chans: &std::ops::Range<usize>,
    pi: usize,
    r0: usize,
    rp: usize,
    (h, w, c, oh, ow): (usize, usize, usize, usize, usize),
    xd: &[u8],
    rows: &std::ops::Range<usize>,
) {
    let os = out.shape();
    {
        let (img, ch) = (pi / chans.len(), chans.start + pi % chans.len());
        let plane = &xd[(img * c + ch) * h * w..(img * c + ch + 1) * h * w];
        let oy0 = rows.start + r0;
        let oy1 = (oy0 + rp).min(rows.end);
        let base = ((img * os[1] + ch) * oh + oy0) * ow;
        // SAFETY: rows oy0..oy1 of plane (img, ch) lie in the caller's slice; tasks are
        // disjoint.
        let dst = unsafe { out.range_mut(base, (oy1 - oy0) * ow) };
        match p {
            PreparedPoolQ8::Global { mult, zx, zy } => {
                // Sums of u16 lanes (no overflow below 257 codes per lane), vectorised.
                let sum: u32 = plane
                    .chunks(256)
                    .map(|c| u32::from(c.iter().map(|&v| u16::from(v)).sum::<u16>()))
                    .sum();
                let acc = sum as i32 - zx * plane.len() as i32;
                dst[0] = mult.to_code(acc, *zy, 0, 255);
            }
            PreparedPoolQ8::Max { pool, table } => {
                // Two passes per output row over whole rows, which compile to vector byte
                // maxima: the window's input rows into `vm`, then every whole window along
                // the row into `hm`; an output reads `hm` at its window's start, or `vm` where
                // the padding clips its window. (Window by window, this layer took 3× the
                // F32 one.)
                let (kw, sw, pl) = (pool.kernel[1], pool.stride[1], pool.pads[1]);
                let starts = (w + 1).saturating_sub(kw);
                // Output columns `lo..hi` have their whole window inside the input row.
                let hi = if w + pl >= kw {
                    (w + pl - kw) / sw + 1
                } else {
                    0
                }
                .min(ow);
                let lo = pl.div_ceil(sw).min(hi);
                ROWS.with(|rows| {
                    let mut rows = rows.borrow_mut();
                    if rows.len() < 2 * w {
                        rows.resize(2 * w, 0);
                    }
                    let (vm, hm) = rows[..2 * w].split_at_mut(w);
                    for (r, orow) in dst.chunks_mut(ow).enumerate() {
                        let (_, (ys, ye)) = window(
                            oy0 + r,
                            pool.stride[0],
                            pool.kernel[0],
                            pool.pads[0],
                            pool.pads[2],
                            h,
                        );
                        vm.fill(0);
                        for yy in ys..ye {
                            for (a, &b) in vm.iter_mut().zip(&plane[yy * w..(yy + 1) * w]) {
                                *a = (*a).max(b);
                            }
                        }
                        hm[..starts].copy_from_slice(&vm[..starts]);
                        // (No window start at all where the row is narrower than the window.)
                        for t in (1..kw).filter(|_| starts > 0) {
                            for (a, &b) in hm[..starts].iter_mut().zip(&vm[t..t + starts]) {
                                *a = (*a).max(b);
                            }
                        }
                        // Outputs whose window lies inside the row read `hm` at its start
                        // (a copy at stride 1); the others, clipped by the padding, fold `vm`.
                        if sw == 1 && lo < hi {
                            orow[lo..hi].copy_from_slice(&hm[lo - pl..hi - pl]);
                        } else {
                            for (ox, o) in orow[lo..hi].iter_mut().enumerate() {
                                *o = hm[(lo + ox) * sw - pl];
                            }
                        }
                        for ox in (0..lo).chain(hi..orow.len()) {
                            let (_, (xs, xe)) = window(ox, sw, kw, pl, pool.pads[3], w);
                            orow[ox] = vm[xs..xe].iter().fold(0, |a, &v| a.max(v));
                        }
                        if let Some(t) = table {
                            for o in orow.iter_mut() {
                                *o = t[*o as usize];
                            }
                        }
                    }
                });
            }
            PreparedPoolQ8::Average {
                pool,
                mults,
                zx,
                zy,
            } => {
                for (r, orow) in dst.chunks_mut(ow).enumerate() {
                    let ((hs, he), (ys, ye)) = window(
                        oy0 + r,
                        pool.stride[0],
                        pool.kernel[0],
                        pool.pads[0],
                        pool.pads[2],
                        h,
                    );
                    for (ox, o) in orow.iter_mut().enumerate() {
                        let ((ws, we), (xs, xe)) = window(
                            ox,
                            pool.stride[1],
                            pool.kernel[1],
                            pool.pads[1],
                            pool.pads[3],
                            w,
                        );
                        let mut sum = 0u32;
                        for yy in ys..ye {
                            sum += plane[yy * w + xs..yy * w + xe]
                                .iter()
                                .map(|&v| u32::from(v))
                                .sum::<u32>();
                        }
                        let inside = (ye - ys) * (xe - xs);
                        let count = if pool.count_include_pad {
                            ((he - hs) * (we - ws)) as usize
                        } else {
                            inside
                        };
                        let acc = sum as i32 - zx * inside as i32;
                        let m = mults[count.clamp(1, mults.len() - 1)];
                        *o = m.to_code(acc, *zy, 0, 255);
                    }
                }
            }
        }
    }
}
