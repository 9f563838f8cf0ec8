//! CPU F32 constant padding: each output row is a fill, a copy and a fill.
use super::Pad;
use crate::backend::cpu::{par_spans, CpuCtx, Geom};
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::Result;

/// Computes `slice` of `x` padded into `out`.
pub fn run(ctx: &CpuCtx, p: &Pad, x: &Tensor, out: &SharedTensor<'_>, slice: &Slice) -> Result<()> {
    let s = x.shape();
    let (h, w) = (s[2], s[3]);
    let g = Geom::of(out.shape());
    let ow = g.inner;
    let (pt, pl) = (p.pads[0], p.pads[1]);
    par_spans(ctx, g, slice, |_, off, len| {
        // SAFETY: the run lies inside the caller's slice; runs of different tasks are disjoint.
        let dst = unsafe { out.range_mut(off, len) };
        let plane = off / (g.h * ow);
        let oy0 = (off / ow) % g.h;
        for (r, row) in dst.chunks_mut(ow).enumerate() {
            let oy = oy0 + r;
            if oy < pt || oy - pt >= h {
                row.fill(p.value);
                continue;
            }
            let src = &x.data()[(plane * h + oy - pt) * w..(plane * h + oy - pt + 1) * w];
            let left = pl.min(ow);
            row[..left].fill(p.value);
            let n = w.min(ow - left);
            row[left..left + n].copy_from_slice(&src[..n]);
            row[left + n..].fill(p.value);
        }
    });
    Ok(())
}
