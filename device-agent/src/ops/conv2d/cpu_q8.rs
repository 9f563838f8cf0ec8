//! Optimised CPU 8-bit convolution (QUInt8 activations, per-channel 8-bit weights, 32-bit
//! accumulators). Algorithms, chosen at prepare as for F32:
//! - 1×1, stride 1, no padding: the 8-bit matrix product straight on the NCHW codes;
//! - depthwise: a direct kernel; on AVX-512 VNNI + VBMI cores `vpdpbusd` over quads of
//!   horizontal taps along output positions (`cpu_q8_depthwise_vnni.rs`), elsewhere channels
//!   in the vector lanes (`cpu_q8_depthwise.rs`);
//! - anything else (k×k, strided, dilated, padded, grouped): the 8-bit product whose
//!   activation panels are gathered by im2col in the packing step, padding filled with the
//!   input's zero point (real 0).
//!
//! The input zero point is folded into each channel's bias at prepare (`b − z_x·Σ w`), the
//! requantisation and the fused ReLU/ReLU6 clamp happen in the tile store.
use super::cpu_f32::ConvGeom;
use super::cpu_q8_depthwise::{self as dw, PreparedDepthwiseQ8};
use super::padded::{with_codes, Im2colPlan};
use super::Conv2d;
use crate::backend::cpu::gemm_q8::{
    self, choose_orientation, Orientation, PackedQWeights, QMatrix, QOut, QOutView, QSource,
};
use crate::backend::cpu::simd_q8::QIsa;
use crate::backend::cpu::CpuCtx;
use crate::ops::expect_nchw;
use crate::quant::{
    activation_codes, ChannelRequant, Multiplier, QTensor, QuantNode, SharedQTensor,
};
use crate::tensor::Slice;
use crate::{Error, Result};

/// An 8-bit convolution prepared for the CPU.
#[derive(Debug)]
pub struct PreparedConvQ8 {
    geom: ConvGeom,
    out: QOut,
    algo: Algo,
}

#[derive(Debug)]
enum Algo {
    /// One packed weight matrix per group; without `im2col` (1×1, stride 1, no padding) the
    /// input is the `B` operand as is.
    Gemm {
        groups: Vec<PackedQWeights>,
        im2col: Option<Im2colPlan>,
        zx: u8,
    },
    Depthwise(Box<PreparedDepthwiseQ8>),
}

impl PreparedConvQ8 {
    /// The algorithm chosen ("gemm-1x1", "gemm-im2col", "depthwise"), with "-t" for the
    /// activations-broadcast orientation.
    pub fn algorithm(&self) -> String {
        match &self.algo {
            Algo::Depthwise(_) => "depthwise".into(),
            Algo::Gemm { groups, im2col, .. } => format!(
                "{}{}",
                if im2col.is_none() {
                    "gemm-1x1"
                } else {
                    "gemm-im2col"
                },
                if groups.first().map(|g| g.orientation())
                    == Some(Orientation::ActivationsBroadcast)
                {
                    "-t"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The requantisation of every output channel: `M_c = s_x·s_w[c]/s_y` and the bias with the
/// input zero point folded in, `b_c − z_x·Σ_k w[c, k]` (`per` weights per channel).
pub(crate) fn channel_requants(q: &QuantNode<'_>, per: usize) -> Result<Vec<ChannelRequant>> {
    let w = q
        .weights
        .ok_or_else(|| Error::Other("8-bit weights missing".into()))?;
    let sx = f64::from(q.inputs[0].scale);
    let zx = i64::from(q.inputs[0].zero_point);
    Ok((0..w.out_channels())
        .map(|c| {
            let sum: i64 = w.data[c * per..(c + 1) * per]
                .iter()
                .map(|&v| i64::from(v))
                .sum();
            let bias = i64::from(w.bias[c]) - zx * sum;
            ChannelRequant {
                mult: Multiplier::new(sx * f64::from(w.scales[c]) / f64::from(q.output.scale)),
                bias: bias.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            }
        })
        .collect())
}

/// The output zero point and the fused activation's clamp in codes.
pub(crate) fn out_codes(act: crate::ops::Activation, q: &QuantNode<'_>) -> QOut {
    let (lo, hi) = activation_codes(act, q.output);
    QOut {
        zp: i32::from(q.output.zero_point),
        lo: i32::from(lo),
        hi: i32::from(hi),
    }
}

/// Packs the 8-bit weights for `isa` and chooses the algorithm.
pub fn prepare(
    node: &str,
    c: &Conv2d,
    q: &QuantNode<'_>,
    input: &[usize],
    output: &[usize],
    isa: QIsa,
) -> Result<PreparedConvQ8> {
    let [n, cin, h, w] = expect_nchw(node, "input", input)?;
    let [_, cout, oh, ow] = expect_nchw(node, "output", output)?;
    let [kh, kw] = c.kernel();
    let geom = ConvGeom {
        n,
        cin,
        h,
        w,
        cout,
        oh,
        ow,
        kh,
        kw,
        sh: c.stride[0],
        sw: c.stride[1],
        dh: c.dilation[0],
        dw: c.dilation[1],
        pt: c.pads[0],
        pl: c.pads[1],
        groups: c.groups,
        cin_g: cin / c.groups,
        cout_g: cout / c.groups,
    };
    let qw = q
        .weights
        .ok_or_else(|| Error::node(node, "8-bit weights missing from the quantized model"))?;
    if qw.data.len() != c.weight.len() || qw.out_channels() != cout {
        return Err(Error::node(
            node,
            format!(
                "8-bit weights of shape {:?} do not fit the layer's {:?}",
                qw.shape,
                c.weight.shape()
            ),
        ));
    }
    let k = geom.cin_g * kh * kw;
    let req = channel_requants(q, k).map_err(|e| Error::node(node, e.to_string()))?;
    let out = out_codes(c.activation, q);
    let algo = if c.is_depthwise() && dw::fits(kh * kw) {
        Algo::Depthwise(Box::new(dw::prepare(&qw.data, &req, cout, kh, kw)))
    } else {
        let orientation = choose_orientation(isa, geom.cout_g, oh * ow, false);
        let groups = (0..c.groups)
            .map(|g| {
                let rows = g * geom.cout_g..(g + 1) * geom.cout_g;
                PackedQWeights::new(
                    isa,
                    orientation,
                    &qw.data[rows.start * k..rows.end * k],
                    geom.cout_g,
                    k,
                    &req[rows],
                )
            })
            .collect();
        let direct = kh == 1 && kw == 1 && c.stride == [1, 1] && c.pads == [0; 4];
        Algo::Gemm {
            groups,
            im2col: (!direct).then(|| Im2colPlan::new(&geom)),
            zx: q.inputs[0].zero_point,
        }
    };
    Ok(PreparedConvQ8 { geom, out, algo })
}

/// Computes `slice` of the convolution of `x` into `out`. Shapes are those of `prepare`.
pub fn run(
    ctx: &CpuCtx,
    p: &PreparedConvQ8,
    isa: QIsa,
    x: &QTensor,
    out: &SharedQTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let g = &p.geom;
    match &p.algo {
        Algo::Depthwise(d) => dw::run(ctx, isa, d, g, p.out, x, out, slice),
        Algo::Gemm { groups, im2col, zx } => {
            let ns = slice.rows.start * g.ow..slice.rows.end * g.ow;
            for b in 0..g.n {
                let image = &x.data()[g.image(b)];
                let bytes = im2col.as_ref().map_or(0, |i| g.cin * i.pad.plane() + SLACK);
                with_codes(bytes, |padded| {
                    if let Some(i) = im2col {
                        i.pad.fill(image, g.h, g.w, *zx, padded);
                    }
                    for (gi, ms) in g.groups_in(&slice.channels) {
                        let (pw, m0) = (&groups[gi], gi * g.cout_g);
                        // SAFETY: the output block (channels ms of group gi of image b, rows
                        // of the slice) lies inside `out` (checked by the backend) and belongs
                        // to the caller; the input pointers cover this group's `cin_g` planes
                        // (as they are, or padded with their slack).
                        unsafe {
                            let ov = QOutView {
                                ptr: out.as_ptr().add((b * g.cout + m0) * g.oh * g.ow),
                                sm: g.oh * g.ow,
                                sn: 1,
                            };
                            let ns = ns.clone();
                            if let Some(plan) = im2col {
                                let at = gi * g.cin_g * plan.pad.plane();
                                let src = Im2colQ8 {
                                    x: padded[at..].as_ptr(),
                                    avail: padded.len() - at,
                                    plan,
                                    g,
                                };
                                gemm_q8::gemm_q8(ctx, pw, &src, ms, ns, ov, p.out);
                            } else {
                                let src = QMatrix {
                                    ptr: image[gi * g.cin_g * g.h * g.w..].as_ptr(),
                                    sk: g.h * g.w,
                                    sn: 1,
                                };
                                gemm_q8::gemm_q8(ctx, pw, &src, ms, ns, ov, p.out);
                            }
                        }
                    }
                });
            }
            Ok(())
        }
    }
}

/// Bytes readable past the end of the padded planes: runs are copied in whole 16-byte blocks.
const SLACK: usize = 16;

/// The im2col view of one group's padded input planes: `B[k, n]` with
/// `k = (ci·kh + ky)·kw + kx` and `n = oy·ow + ox`.
struct Im2colQ8<'a> {
    /// The group's first padded plane; `avail` bytes are readable from it.
    x: *const u8,
    avail: usize,
    plan: &'a Im2colPlan,
    g: &'a ConvGeom,
}

// SAFETY: read-only view of padded planes that outlive the product.
unsafe impl Sync for Im2colQ8<'_> {}

/// One output row's part of a task's columns: `len` codes to `dst` (from the task's first
/// column) from `src` (relative to a row of `B`'s start in the padded planes).
#[derive(Clone, Copy, Debug)]
struct Run {
    dst: usize,
    src: usize,
    len: usize,
}

impl QSource for Im2colQ8<'_> {
    /// The task's runs, one per output row its columns touch: the same for every row of `B`,
    /// so worked out once (with the divisions) rather than per fetched row.
    type Cols = Vec<Run>;

    const SHARE_PACKING: bool = true;

    fn cols(&self, n0: usize, len: usize) -> Vec<Run> {
        let g = self.g;
        let (mut oy, mut ox) = (n0 / g.ow.max(1), n0 % g.ow.max(1));
        let mut runs = Vec::with_capacity(len / g.ow.max(1) + 2);
        let mut j = 0;
        while j < len {
            let run = (g.ow - ox).min(len - j);
            runs.push(Run {
                dst: j,
                src: self.plan.at(g, oy, ox),
                len: run,
            });
            j += run;
            ox = 0;
            oy += 1;
        }
        runs
    }

    /// Writes up to 15 bytes past `len` in `tmp`: the packing's gather rows are filled in
    /// order, and the scratch has 64 bytes past the last.
    #[inline(always)]
    unsafe fn row(&self, runs: &Vec<Run>, k: usize, _: usize, _: usize, tmp: *mut u8) -> *const u8 {
        let base = *self.plan.k_off.get_unchecked(k);
        for r in runs {
            let at = base + r.src;
            let (src, dst) = (self.x.add(at), tmp.add(r.dst));
            if self.g.sw == 1 {
                copy_blocks(src, dst, r.len);
            } else {
                gather_strided(src, self.avail - at, self.g.sw, r.len, dst);
            }
        }
        tmp
    }
}

/// Copies `n` bytes in 16-byte blocks: up to 15 bytes past `n` are read and written.
#[inline(always)]
unsafe fn copy_blocks(src: *const u8, dst: *mut u8, n: usize) {
    let mut i = 0;
    while i < n {
        let v = (src.add(i) as *const [u8; 16]).read_unaligned();
        (dst.add(i) as *mut [u8; 16]).write_unaligned(v);
        i += 16;
    }
}

/// `dst[t] = src[t·stride]` for `t < n`; `avail` bytes are readable from `src`. Stride 2 takes
/// the even bytes of 32-byte blocks (SSE2) while whole blocks are readable.
#[inline(always)]
unsafe fn gather_strided(src: *const u8, avail: usize, stride: usize, n: usize, dst: *mut u8) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = avail; // only the SSE2 path reads whole blocks
    let mut t = 0;
    #[cfg(target_arch = "x86_64")]
    if stride == 2 {
        use std::arch::x86_64::*;
        let mask = _mm_set1_epi16(0xFF);
        while t + 16 <= n && 2 * t + 32 <= avail {
            let a = _mm_and_si128(_mm_loadu_si128(src.add(2 * t) as *const __m128i), mask);
            let b = _mm_and_si128(_mm_loadu_si128(src.add(2 * t + 16) as *const __m128i), mask);
            _mm_storeu_si128(dst.add(t) as *mut __m128i, _mm_packus_epi16(a, b));
            t += 16;
        }
    }
    while t < n {
        *dst.add(t) = *src.add(t * stride);
        t += 1;
    }
}
