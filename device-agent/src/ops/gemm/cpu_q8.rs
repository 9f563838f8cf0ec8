//! Optimised CPU 8-bit fully connected layer: the shared 8-bit matrix product with the
//! weights packed at prepare. With one or a few input rows (batch 1) it broadcasts the
//! activations and runs the weights as vectors along the output neurons, so each weight is
//! loaded once.
//!
//! Slices as the F32 kernel: for a 2-D output `[rows, neurons]` the slice's channels are
//! neurons (all rows); for higher ranks they follow [`crate::tensor::channels_rows`].
use super::Gemm;
use crate::backend::cpu::gemm_q8::{
    self, choose_orientation, PackedQWeights, QMatrix, QOut, QOutView,
};
use crate::backend::cpu::simd_q8::QIsa;
use crate::backend::cpu::CpuCtx;
use crate::ops::conv2d::cpu_q8::{channel_requants, out_codes};
use crate::quant::{QTensor, QuantNode, SharedQTensor};
use crate::tensor::Slice;
use crate::{Error, Result};

/// An 8-bit fully connected layer prepared for the CPU.
#[derive(Debug)]
pub struct PreparedGemmQ8 {
    w: PackedQWeights,
    out: QOut,
    out_shape: Vec<usize>,
}

/// Packs the 8-bit weights for `isa`.
pub fn prepare(
    node: &str,
    g: &Gemm,
    q: &QuantNode<'_>,
    input: &[usize],
    output: &[usize],
    isa: QIsa,
) -> Result<PreparedGemmQ8> {
    let (o, k) = (g.weight.shape()[0], g.weight.shape()[1]);
    if input.last() != Some(&k) || output.last() != Some(&o) {
        return Err(Error::node(
            node,
            format!("input {input:?} / output {output:?} do not fit weights [{o}, {k}]"),
        ));
    }
    let qw = q
        .weights
        .ok_or_else(|| Error::node(node, "8-bit weights missing from the quantized model"))?;
    if qw.data.len() != o * k || qw.out_channels() != o {
        return Err(Error::node(
            node,
            format!(
                "8-bit weights of shape {:?} do not fit [{o}, {k}]",
                qw.shape
            ),
        ));
    }
    let rows: usize = input[..input.len() - 1].iter().product();
    let req = channel_requants(q, k).map_err(|e| Error::node(node, e.to_string()))?;
    let w = PackedQWeights::new(
        isa,
        choose_orientation(isa, o, rows, true),
        &qw.data,
        o,
        k,
        &req,
    );
    Ok(PreparedGemmQ8 {
        w,
        out: out_codes(g.activation, q),
        out_shape: output.to_vec(),
    })
}

/// Computes `slice` of the layer on `x` into `out`.
pub fn run(
    ctx: &CpuCtx,
    p: &PreparedGemmQ8,
    x: &QTensor,
    out: &SharedQTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let (o, k) = (p.w.m(), p.w.k());
    let src = QMatrix {
        ptr: x.data().as_ptr(),
        sk: 1,
        sn: k,
    };
    let ov = QOutView {
        ptr: out.as_ptr(),
        sm: 1,
        sn: o,
    };
    let s = &p.out_shape;
    // SAFETY (each call): the (neurons × rows) block lies inside the slice of `out` owned by
    // the caller; `x` holds `rows × k` codes (shapes checked by the backend).
    match s.len() {
        2 => unsafe {
            gemm_q8::gemm_q8(ctx, &p.w, &src, slice.channels.clone(), 0..s[0], ov, p.out)
        },
        3 => {
            for i0 in 0..s[0] {
                let base = i0 * s[1];
                unsafe {
                    gemm_q8::gemm_q8(
                        ctx,
                        &p.w,
                        &src,
                        slice.rows.clone(),
                        base + slice.channels.start..base + slice.channels.end,
                        ov,
                        p.out,
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
                    unsafe { gemm_q8::gemm_q8(ctx, &p.w, &src, 0..o, ns, ov, p.out) };
                }
            }
        }
    }
    Ok(())
}
