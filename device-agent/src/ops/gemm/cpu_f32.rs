//! Optimised CPU F32 fully connected layer: the shared matrix product with the weights packed
//! at prepare. With one or a few input rows (batch 1) it broadcasts the activations and runs
//! the weights as vectors along the output neurons, so each weight is loaded once.
//!
//! Slices: for a 2-D output `[rows, neurons]` the slice's channels are neurons (all rows);
//! for higher ranks they follow [`crate::tensor::channels_rows`] (dimension 1 and 2).
use super::Gemm;
use crate::backend::cpu::gemm::{self, MatrixSource, Orientation, OutView, PackedWeights};
use crate::backend::cpu::{CpuCtx, Isa};
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::{Error, Result};

/// A fully connected layer prepared for the CPU.
#[derive(Debug)]
pub struct PreparedGemm {
    w: PackedWeights,
    clamp: (f32, f32),
    out_shape: Vec<usize>,
}

/// Packs the weights for `isa`.
pub fn prepare(
    node: &str,
    g: &Gemm,
    input: &[usize],
    output: &[usize],
    isa: Isa,
) -> Result<PreparedGemm> {
    let (o, k) = (g.weight.shape()[0], g.weight.shape()[1]);
    if input.last() != Some(&k) || output.last() != Some(&o) {
        return Err(Error::node(
            node,
            format!("input {input:?} / output {output:?} do not fit weights [{o}, {k}]"),
        ));
    }
    let rows: usize = input[..input.len() - 1].iter().product();
    let orientation = Orientation::choose(isa, o, rows, true);
    let w = PackedWeights::new(
        isa,
        orientation,
        g.weight.data(),
        o,
        k,
        g.bias.as_ref().map(|b| b.data()),
    );
    Ok(PreparedGemm {
        w,
        clamp: g.activation.bounds(),
        out_shape: output.to_vec(),
    })
}

/// Computes `slice` of the layer on `x` into `out`.
pub fn run(
    ctx: &CpuCtx,
    p: &PreparedGemm,
    x: &Tensor,
    out: &SharedTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let (o, k) = (p.w.m(), p.w.k());
    let src = MatrixSource {
        ptr: x.data().as_ptr(),
        sk: 1,
        sn: k,
    };
    let ov = OutView {
        ptr: out.as_ptr(),
        sm: 1,
        sn: o,
    };
    let s = &p.out_shape;
    // SAFETY (each call): the (neurons × rows) block lies inside the slice of `out` owned by
    // the caller; `x` holds `rows × k` floats (shapes checked by the backend).
    match s.len() {
        2 => unsafe {
            gemm::gemm(
                ctx,
                &p.w,
                &src,
                slice.channels.clone(),
                0..s[0],
                ov,
                p.clamp,
            )
        },
        3 => {
            for i0 in 0..s[0] {
                let base = i0 * s[1];
                unsafe {
                    gemm::gemm(
                        ctx,
                        &p.w,
                        &src,
                        slice.rows.clone(),
                        base + slice.channels.start..base + slice.channels.end,
                        ov,
                        p.clamp,
                    )
                };
            }
        }
        _ => {
            let t: usize = s[3..s.len() - 1].iter().product();
            for i0 in 0..s[0] {
                for c in slice.channels.clone() {
                    let base = (i0 * s[1] + c) * s[2];
                    let ns = (base + slice.rows.start) * t..(base + slice.rows.end) * t;
                    unsafe { gemm::gemm(ctx, &p.w, &src, 0..o, ns, ov, p.clamp) };
                }
            }
        }
    }
    Ok(())
}
