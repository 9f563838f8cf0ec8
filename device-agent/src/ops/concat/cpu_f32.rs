//! CPU F32 concatenation: along channels (Inception, Fire modules) each run of the slice is
//! one copy from the input holding that channel; other axes walk indices.
use super::reference::source;
use crate::backend::cpu::{par_spans, CpuCtx, Geom};
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::Result;

/// Computes `slice` of the concatenation of `inputs` along `axis` into `out`.
pub fn run(
    ctx: &CpuCtx,
    axis: usize,
    inputs: &[&Tensor],
    out: &SharedTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let shape = out.shape().to_vec();
    let g = Geom::of(&shape);
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    if axis == 1 && shape.len() >= 2 {
        // Channel c of the output is channel c - first[k] of input k.
        let mut first = Vec::with_capacity(inputs.len());
        let mut acc = 0;
        for s in &shapes {
            first.push(acc);
            acc += s[1];
        }
        par_spans(ctx, g, slice, |c, off, len| {
            let k = first.partition_point(|&f| f <= c) - 1;
            let ck = shapes[k][1];
            let o = off / (g.c * g.h * g.inner);
            // The run may be a piece of a channel's rows: keep its offset inside the channel.
            let within = off - ((o * g.c + c) * g.h) * g.inner;
            let src = (o * ck + c - first[k]) * g.h * g.inner + within;
            // SAFETY: the run lies inside the caller's slice; runs of different tasks are disjoint.
            let dst = unsafe { out.range_mut(off, len) };
            dst.copy_from_slice(&inputs[k].data()[src..src + len]);
        });
    } else {
        par_spans(ctx, g, slice, |_, off, len| {
            // SAFETY: as above.
            let dst = unsafe { out.range_mut(off, len) };
            for (e, v) in dst.iter_mut().enumerate() {
                let (k, j) = source(&shape, axis, &shapes, off + e);
                *v = inputs[k].data()[j];
            }
        });
    }
    Ok(())
}
