//! The CPU backend's QUInt8 side: prepares the nodes of a [`QuantizedModel`]
//! (`crate::quant::QuantizedModel`) and runs any slice of them on QUInt8 tensors.
//!
//! | op | 8-bit kernel |
//! | --- | --- |
//! | Conv2d (1×1, k×k, grouped, depthwise) | `ops/conv2d/cpu_q8*.rs` on the 8-bit product ([`super::gemm_q8`]) |
//! | Gemm (fully connected) | `ops/gemm/cpu_q8.rs` |
//! | MaxPool, AveragePool, GlobalAveragePool | `ops/pool/cpu_q8.rs` |
//! | Add | `ops/add/cpu_q8.rs` (fixed-point rescale of both operands) |
//! | Concat | `ops/concat/cpu_q8.rs` (copies; code tables where scales differ) |
//! | Relu/Clip, Dropout, Flatten, Reshape, Pad | code tables and copies, here |
//! | BatchNorm, LRN, Softmax, MatMul, Constant | float island: dequantize the inputs, run the F32 kernel, quantize the output (logged once per node at `info`) |
use super::{check_slice, CpuBackend, CpuPrepared, Kernel};
use crate::backend::cpu::simd_q8::QIsa;
use crate::backend::{Backend, Precision};
use crate::graph::Node;
use crate::ops::{self, Op};
use crate::quant::{
    activation_codes, requant_table, AddRequant, QParams, QTensor, QuantNode, SharedQTensor,
};
use crate::tensor::Slice;
use crate::{Error, Result};

/// A node's 8-bit kernel.
#[derive(Debug)]
pub(crate) enum Q8Kernel {
    Conv(ops::conv2d::cpu_q8::PreparedConvQ8),
    Gemm(ops::gemm::cpu_q8::PreparedGemmQ8),
    Pool(ops::pool::cpu_q8::PreparedPoolQ8),
    Add(AddRequant),
    Concat {
        axis: usize,
        tables: Vec<Option<Box<[u8; 256]>>>,
    },
    /// Element-wise code map (standalone activation, dropout); `None` copies.
    Map(Option<Box<[u8; 256]>>),
    /// Flatten/Reshape: the codes in order, whole output only.
    Reshape(Option<Box<[u8; 256]>>),
    /// Constant padding with the code of the pad value.
    Pad {
        pads: [usize; 4],
        value: u8,
        table: Option<Box<[u8; 256]>>,
    },
    /// Dequantize, run the prepared F32 kernel on the whole output, quantize the slice.
    Float(Box<CpuPrepared>),
}

/// A node prepared for QUInt8: its kernel, the 8-bit variant and the quantization it expects.
#[derive(Debug)]
pub(crate) struct Q8Prepared {
    kernel: Q8Kernel,
    isa: QIsa,
    inputs: Vec<QParams>,
    output: QParams,
}

/// A code table, or `None` when it is the identity.
fn table(from: QParams, to: QParams, lo: u8, hi: u8) -> Option<Box<[u8; 256]>> {
    let t = requant_table(from, to, lo, hi);
    (!t.iter().enumerate().all(|(i, &v)| v as usize == i)).then(|| Box::new(t))
}

/// `Backend::prepare_quantized` for the CPU, with the backend's 8-bit variant.
pub(super) fn prepare(
    b: &CpuBackend,
    node: &Node,
    q: &QuantNode<'_>,
    input_shapes: &[&[usize]],
    output_shape: &[usize],
) -> Result<CpuPrepared> {
    prepare_with(
        b,
        node,
        q,
        input_shapes,
        output_shape,
        QIsa::for_isa(b.ctx.isa),
    )
}

/// Prepares for one 8-bit variant (the tests run each).
pub(crate) fn prepare_with(
    b: &CpuBackend,
    node: &Node,
    q: &QuantNode<'_>,
    input_shapes: &[&[usize]],
    output_shape: &[usize],
    isa: QIsa,
) -> Result<CpuPrepared> {
    let name = node.name.as_str();
    super::super::check_quantized_prepare(node, q, input_shapes, output_shape)?;
    let (xq, yq) = (q.inputs.first().copied(), q.output);
    let same = |x: Option<QParams>| x.and_then(|x| table(x, yq, 0, 255));
    let kernel = match &node.op {
        Op::Conv2d(c) => Q8Kernel::Conv(ops::conv2d::cpu_q8::prepare(
            name,
            c,
            q,
            input_shapes[0],
            output_shape,
            isa,
        )?),
        Op::Gemm(g) => Q8Kernel::Gemm(ops::gemm::cpu_q8::prepare(
            name,
            g,
            q,
            input_shapes[0],
            output_shape,
            isa,
        )?),
        Op::MaxPool(p) => Q8Kernel::Pool(ops::pool::cpu_q8::prepare(
            Some(p),
            true,
            q,
            input_shapes[0],
        )),
        Op::AveragePool(p) => Q8Kernel::Pool(ops::pool::cpu_q8::prepare(
            Some(p),
            false,
            q,
            input_shapes[0],
        )),
        Op::GlobalAveragePool => {
            Q8Kernel::Pool(ops::pool::cpu_q8::prepare(None, false, q, input_shapes[0]))
        }
        Op::Add => Q8Kernel::Add(AddRequant::new(q.inputs[0], q.inputs[1], yq, 0, 255)),
        Op::Concat { axis } => Q8Kernel::Concat {
            axis: *axis,
            tables: q.inputs.iter().map(|&x| table(x, yq, 0, 255)).collect(),
        },
        Op::Activation(a) => {
            let (lo, hi) = activation_codes(*a, yq);
            Q8Kernel::Map(xq.and_then(|x| table(x, yq, lo, hi)))
        }
        Op::Dropout => Q8Kernel::Map(same(xq)),
        Op::Flatten { .. } | Op::Reshape { .. } => Q8Kernel::Reshape(same(xq)),
        Op::Pad(p) => Q8Kernel::Pad {
            pads: p.pads,
            value: yq.quantize(p.value),
            table: same(xq),
        },
        _ => {
            tracing::info!(
                node = name,
                op = node.op.kind(),
                "QUInt8: no 8-bit kernel, runs as an F32 island (dequantize, F32, quantize)"
            );
            Q8Kernel::Float(Box::new(b.prepare(
                node,
                input_shapes,
                output_shape,
                Precision::F32,
            )?))
        }
    };
    Ok(CpuPrepared {
        node: node.name.clone(),
        kernel: Kernel::Q8(Box::new(Q8Prepared {
            kernel,
            isa,
            inputs: q.inputs.to_vec(),
            output: yq,
        })),
        inputs: input_shapes.iter().map(|s| s.to_vec()).collect(),
        output: output_shape.to_vec(),
        sliceable: node.op.sliceable(),
    })
}

/// `Backend::run_quantized` for the CPU.
pub(super) fn run(
    b: &CpuBackend,
    p: &CpuPrepared,
    inputs: &[&QTensor],
    out: &SharedQTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let node = p.node.as_str();
    let Kernel::Q8(k) = &p.kernel else {
        return Err(Error::node(
            node,
            "prepared for F32: run it with `run`, not `run_quantized`",
        ));
    };
    if inputs.len() != p.inputs.len()
        || inputs
            .iter()
            .zip(&p.inputs)
            .any(|(t, s)| t.shape() != s.as_slice())
    {
        let got: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        return Err(Error::node(
            node,
            format!("inputs of shapes {got:?}, prepared for {:?}", p.inputs),
        ));
    }
    if let Some((i, t)) = inputs
        .iter()
        .enumerate()
        .find(|(i, t)| t.qparams() != k.inputs[*i])
    {
        return Err(Error::node(
            node,
            format!(
                "input {i} quantized as {:?}, prepared for {:?}",
                t.qparams(),
                k.inputs[i]
            ),
        ));
    }
    if out.shape() != p.output.as_slice() || out.qparams() != k.output {
        return Err(Error::node(
            node,
            format!(
                "output tensor {:?} quantized as {:?}, prepared for {:?} as {:?}",
                out.shape(),
                out.qparams(),
                p.output,
                k.output
            ),
        ));
    }
    check_slice(node, &p.output, slice, p.sliceable)?;
    if slice.is_empty() {
        return Ok(());
    }
    let ctx = &b.ctx;
    match &k.kernel {
        Q8Kernel::Conv(c) => ops::conv2d::cpu_q8::run(ctx, c, k.isa, inputs[0], out, slice),
        Q8Kernel::Gemm(g) => ops::gemm::cpu_q8::run(ctx, g, inputs[0], out, slice),
        Q8Kernel::Pool(pl) => ops::pool::cpu_q8::run(ctx, pl, inputs[0], out, slice),
        Q8Kernel::Add(r) => ops::add::cpu_q8::run(ctx, k.isa, r, inputs[0], inputs[1], out, slice),
        Q8Kernel::Concat { axis, tables } => {
            ops::concat::cpu_q8::run(ctx, *axis, tables, inputs, out, slice)
        }
        Q8Kernel::Map(t) => {
            let xd = inputs[0].data();
            super::par_spans(ctx, super::Geom::of(out.shape()), slice, |_, off, len| {
                // SAFETY: the run lies inside the caller's slice; runs of different tasks are
                // disjoint.
                let dst = unsafe { out.range_mut(off, len) };
                map(t.as_deref(), &xd[off..off + len], dst);
            });
            Ok(())
        }
        Q8Kernel::Reshape(t) => {
            if inputs[0].len() != out.len() {
                return Err(Error::node(
                    node,
                    format!("reshape: {} codes into {}", inputs[0].len(), out.len()),
                ));
            }
            // SAFETY: non-sliceable op: the caller owns the whole output.
            let dst = unsafe { out.range_mut(0, out.len()) };
            map(t.as_deref(), inputs[0].data(), dst);
            Ok(())
        }
        Q8Kernel::Pad { pads, value, table } => {
            pad(ctx, *pads, *value, table.as_deref(), inputs[0], out, slice);
            Ok(())
        }
        Q8Kernel::Float(f) => {
            // The inputs are dequantized whole (the op may read across the slice, as LRN's
            // channel window does), on every worker; the F32 kernel computes the caller's
            // slice only, which is quantized back on every worker.
            let xs: Vec<crate::Tensor> = inputs.iter().map(|t| dequantize(ctx, t)).collect();
            let refs: Vec<&crate::Tensor> = xs.iter().collect();
            let mut y = island_tensor(&p.output);
            let ran = {
                let shared = y.shared();
                b.run(f, &refs, &shared, slice)
            };
            if ran.is_ok() {
                let yd = y.data();
                super::par_spans(ctx, super::Geom::of(&p.output), slice, |_, off, len| {
                    // SAFETY: the run lies inside the caller's slice; runs of different tasks
                    // are disjoint.
                    let dst = unsafe { out.range_mut(off, len) };
                    crate::quant::quantize_into(&yd[off..off + len], k.output, dst);
                });
            }
            xs.into_iter().chain([y]).for_each(island_keep);
            ran
        }
    }
}

thread_local! {
    /// The F32 islands' tensors, kept between runs: a fresh one per run paid its page faults
    /// on every inference (GoogLeNet's LRN layers took 2.4 MB each, 3× their F32 time).
    static ISLAND: std::cell::RefCell<Vec<crate::Tensor>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A kept island tensor refitted to `shape` (its elements unspecified), or a new one.
fn island_tensor(shape: &[usize]) -> crate::Tensor {
    match ISLAND.with(|k| k.borrow_mut().pop()) {
        Some(mut t) => {
            t.refit(shape);
            t
        }
        None => crate::Tensor::zeros(shape),
    }
}

/// Keeps `t` for the next island on this thread (a few at most).
fn island_keep(t: crate::Tensor) {
    ISLAND.with(|k| {
        let mut k = k.borrow_mut();
        if k.len() < 4 {
            k.push(t);
        }
    });
}

/// `x` as F32, dequantized in blocks on the context's workers.
fn dequantize(ctx: &super::CpuCtx, x: &QTensor) -> crate::Tensor {
    const BLOCK: usize = 1 << 16;
    let q = x.qparams();
    let lut: [f32; 256] = std::array::from_fn(|i| q.dequantize(i as u8));
    let src = x.data();
    let mut t = island_tensor(x.shape());
    {
        let shared = t.shared();
        ctx.for_each_task(src.len().div_ceil(BLOCK), |i| {
            let (a, e) = (i * BLOCK, ((i + 1) * BLOCK).min(src.len()));
            // SAFETY: blocks of different tasks are disjoint and inside the tensor.
            let dst = unsafe { shared.range_mut(a, e - a) };
            for (d, &c) in dst.iter_mut().zip(&src[a..e]) {
                *d = lut[c as usize];
            }
        });
    }
    t
}

/// `dst[i] = t[src[i]]`, or a copy.
fn map(t: Option<&[u8; 256]>, src: &[u8], dst: &mut [u8]) {
    match t {
        None => dst.copy_from_slice(src),
        Some(t) => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, &s)| *d = t[s as usize]),
    }
}

/// Rows of the slice of `x` padded: each output row is a fill, a (mapped) copy and a fill.
fn pad(
    ctx: &super::CpuCtx,
    pads: [usize; 4],
    value: u8,
    t: Option<&[u8; 256]>,
    x: &QTensor,
    out: &SharedQTensor<'_>,
    slice: &Slice,
) {
    let s = x.shape();
    let (c, h, w) = (s[1], s[2], s[3]);
    let os = out.shape();
    let (oh, ow) = (os[2], os[3]);
    let (pt, pl) = (pads[0], pads[1]);
    let chans = slice.channels.clone();
    let planes = s[0] * chans.len();
    ctx.for_each_task(planes, |pi| {
        let (img, ch) = (pi / chans.len(), chans.start + pi % chans.len());
        let base = ((img * c + ch) * oh + slice.rows.start) * ow;
        // SAFETY: the rows of plane (img, ch) in the slice belong to the caller; one task each.
        let dst = unsafe { out.range_mut(base, slice.rows.len() * ow) };
        for (r, row) in dst.chunks_mut(ow).enumerate() {
            let oy = slice.rows.start + r;
            if oy < pt || oy - pt >= h {
                row.fill(value);
                continue;
            }
            let src = &x.data()[((img * c + ch) * h + oy - pt) * w..][..w];
            let left = pl.min(ow);
            row[..left].fill(value);
            let n = w.min(ow - left);
            map(t, &src[..n], &mut row[left..left + n]);
            row[left + n..].fill(value);
        }
    });
}
