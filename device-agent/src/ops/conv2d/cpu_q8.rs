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
    /// One packed weight matrix per group; `direct`: the input is the `B` operand as is.
    Gemm {
        groups: Vec<PackedQWeights>,
        direct: bool,
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
            Algo::Gemm { groups, direct, .. } => format!(
                "{}{}",
                if *direct { "gemm-1x1" } else { "gemm-im2col" },
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
            direct,
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
        Algo::Gemm {
            groups, direct, zx, ..
        } => {
            let ns = slice.rows.start * g.ow..slice.rows.end * g.ow;
            for b in 0..g.n {
                for (gi, pw) in groups.iter().enumerate() {
                    let m0 = gi * g.cout_g;
                    let (lo, hi) = (
                        slice.channels.start.max(m0),
                        slice.channels.end.min(m0 + g.cout_g),
                    );
                    if lo >= hi {
                        continue;
                    }
                    let x_off = (b * g.cin + gi * g.cin_g) * g.h * g.w;
                    let xb = x.data()[x_off..].as_ptr();
                    // SAFETY: the output block (channels lo..hi of image b, rows of the slice)
                    // lies inside `out` (checked by the backend) and belongs to the caller; the
                    // input pointer covers this group's `cin_g` planes.
                    unsafe {
                        let ov = QOutView {
                            ptr: out.as_ptr().add((b * g.cout + m0) * g.oh * g.ow),
                            sm: g.oh * g.ow,
                            sn: 1,
                        };
                        if *direct {
                            let src = QMatrix {
                                ptr: xb,
                                sk: g.h * g.w,
                                sn: 1,
                            };
                            gemm_q8::gemm_q8(
                                ctx,
                                pw,
                                &src,
                                lo - m0..hi - m0,
                                ns.clone(),
                                ov,
                                p.out,
                            );
                        } else {
                            let src = Im2colQ8 {
                                x: xb,
                                g: *g,
                                zx: *zx,
                            };
                            gemm_q8::gemm_q8(
                                ctx,
                                pw,
                                &src,
                                lo - m0..hi - m0,
                                ns.clone(),
                                ov,
                                p.out,
                            );
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

/// The im2col view of one group's input planes: `B[k, n]` with `k = (ci·kh + ky)·kw + kx`
/// and `n = oy·ow + ox`, the zero point where the window falls in the padding.
struct Im2colQ8 {
    x: *const u8,
    g: ConvGeom,
    zx: u8,
}

// SAFETY: read-only view of an input tensor that outlives the product.
unsafe impl Sync for Im2colQ8 {}

impl QSource for Im2colQ8 {
    #[inline(always)]
    unsafe fn row(&self, k: usize, n0: usize, len: usize, tmp: *mut u8) -> *const u8 {
        let g = &self.g;
        let khw = g.kh * g.kw;
        let (ci, ky, kx) = (k / khw, (k / g.kw) % g.kh, k % g.kw);
        let plane = self.x.add(ci * g.h * g.w);
        // Columns ox with 0 <= ox·sw + off < w.
        let off = (kx * g.dw) as isize - g.pl as isize;
        let ox_lo = if off >= 0 {
            0
        } else {
            ((-off) as usize).div_ceil(g.sw)
        };
        let ox_hi = if (g.w as isize) > off {
            ((g.w as isize - off) as usize).div_ceil(g.sw)
        } else {
            0
        };
        // One division for the first output position; the runs after it start rows.
        let (mut oy, mut ox) = (n0 / g.ow, n0 % g.ow);
        let mut j = 0;
        while j < len {
            let run = (g.ow - ox).min(len - j);
            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
            let dd = tmp.add(j);
            if iy < 0 || iy >= g.h as isize {
                std::ptr::write_bytes(dd, self.zx, run);
            } else {
                let row = plane.add(iy as usize * g.w);
                let a = ox_lo.clamp(ox, ox + run) - ox;
                let b = ox_hi.clamp(ox + a, ox + run) - ox;
                // Runs are short (an output row): skip the empty padding fills' calls.
                if a > 0 {
                    std::ptr::write_bytes(dd, self.zx, a);
                }
                if g.sw == 1 {
                    let src = row.offset((ox + a) as isize + off);
                    std::ptr::copy_nonoverlapping(src, dd.add(a), b - a);
                } else {
                    let first = ((ox + a) * g.sw) as isize + off;
                    gather_strided(
                        row.offset(first),
                        g.w - first as usize,
                        g.sw,
                        b - a,
                        dd.add(a),
                    );
                }
                if run > b {
                    std::ptr::write_bytes(dd.add(b), self.zx, run - b);
                }
            }
            j += run;
            ox = 0;
            oy += 1;
        }
        tmp
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
