//! Optimised CPU F32 convolution. Three algorithms, chosen at prepare:
//! - 1×1, stride 1, no padding: a matrix product straight on NCHW,
//!   `out[c, hw] = W[c, :] · X[:, hw]`, the activation panels packed from the tensor;
//! - depthwise (one filter per channel): a direct kernel with channels in the vector lanes
//!   ([`super::cpu_f32_depthwise`]);
//! - anything else (k×k, strided, dilated, padded, grouped): a matrix product whose
//!   activation panels are built by im2col directly in the packing step (no im2col matrix).
//!
//! Bias and the fused activation are applied in the product's tile store.
use super::cpu_f32_depthwise::{self as dw, PreparedDepthwise};
use super::Conv2d;
use crate::backend::cpu::gemm::{
    self, MatrixSource, Orientation, OutView, PackSource, PackedWeights,
};
use crate::backend::cpu::simd::Simd;
use crate::backend::cpu::{CpuCtx, Isa};
use crate::ops::expect_nchw;
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::Result;

/// Every size a convolution kernel needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pt: usize,
    pub pl: usize,
    pub groups: usize,
    pub cin_g: usize,
    pub cout_g: usize,
}

/// A convolution prepared for the CPU.
#[derive(Debug)]
pub struct PreparedConv {
    geom: ConvGeom,
    clamp: (f32, f32),
    algo: Algo,
}

#[derive(Debug)]
enum Algo {
    /// One packed weight matrix per group; `direct`: the input is the `B` operand as is.
    Gemm {
        groups: Vec<PackedWeights>,
        direct: bool,
    },
    Depthwise(PreparedDepthwise),
}

impl PreparedConv {
    /// The algorithm chosen ("gemm-1x1", "gemm-im2col", "depthwise") and, for products, the
    /// orientation.
    pub fn algorithm(&self) -> String {
        match &self.algo {
            Algo::Depthwise(_) => "depthwise".into(),
            Algo::Gemm { groups, direct } => {
                let o = groups.first().map(|g| g.orientation());
                format!(
                    "{}{}",
                    if *direct { "gemm-1x1" } else { "gemm-im2col" },
                    if o == Some(Orientation::ActivationsBroadcast) {
                        "-t"
                    } else {
                        ""
                    }
                )
            }
        }
    }
}

/// Packs the weights for `isa` and chooses the algorithm.
pub fn prepare(
    node: &str,
    c: &Conv2d,
    input: &[usize],
    output: &[usize],
    isa: Isa,
) -> Result<PreparedConv> {
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
    let clamp = c.activation.bounds();
    let bias = c.bias.as_ref().map(|b| b.data());
    let algo = if c.is_depthwise() {
        Algo::Depthwise(dw::prepare(c.weight.data(), bias, cout, kh * kw))
    } else {
        let k = geom.cin_g * kh * kw;
        let orientation = Orientation::choose(isa, geom.cout_g, oh * ow, false);
        let groups = (0..c.groups)
            .map(|g| {
                let rows = g * geom.cout_g..(g + 1) * geom.cout_g;
                let wg = &c.weight.data()[rows.start * k..rows.end * k];
                PackedWeights::new(isa, orientation, wg, geom.cout_g, k, bias.map(|b| &b[rows]))
            })
            .collect();
        let direct = kh == 1 && kw == 1 && c.stride == [1, 1] && c.pads == [0; 4];
        Algo::Gemm { groups, direct }
    };
    Ok(PreparedConv { geom, clamp, algo })
}

/// Computes `slice` of the convolution of `x` into `out`. Shapes are those of `prepare`.
pub fn run(
    ctx: &CpuCtx,
    p: &PreparedConv,
    x: &Tensor,
    out: &SharedTensor<'_>,
    slice: &Slice,
) -> Result<()> {
    let g = &p.geom;
    match &p.algo {
        Algo::Depthwise(d) => dw::run(ctx, d, g, p.clamp, x, out, slice),
        Algo::Gemm { groups, direct } => {
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
                    // SAFETY: the output block (channels lo..hi of image b, rows of the slice) lies
                    // inside `out` (checked by the backend) and belongs to the caller; the input
                    // pointer covers this group's `cin_g` planes.
                    unsafe {
                        let ov = OutView {
                            ptr: out.as_ptr().add((b * g.cout + m0) * g.oh * g.ow),
                            sm: g.oh * g.ow,
                            sn: 1,
                        };
                        if *direct {
                            let src = MatrixSource {
                                ptr: xb,
                                sk: g.h * g.w,
                                sn: 1,
                            };
                            gemm::gemm(ctx, pw, &src, lo - m0..hi - m0, ns.clone(), ov, p.clamp);
                        } else {
                            let src = Im2col { x: xb, g: *g };
                            gemm::gemm(ctx, pw, &src, lo - m0..hi - m0, ns.clone(), ov, p.clamp);
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

/// The im2col view of one group's input planes: `B[k, n]` with `k = (ci·kh + ky)·kw + kx`
/// and `n = oy·ow + ox`, zero where the window falls in the padding.
struct Im2col {
    x: *const f32,
    g: ConvGeom,
}

// SAFETY: read-only view of an input tensor that outlives the product.
unsafe impl Sync for Im2col {}

impl PackSource for Im2col {
    #[inline(always)]
    unsafe fn pack<S: Simd>(
        &self,
        k0: usize,
        k1: usize,
        n0: usize,
        n_end: usize,
        w: usize,
        dst: *mut f32,
    ) {
        let g = &self.g;
        let khw = g.kh * g.kw;
        let valid = n_end.saturating_sub(n0).min(w);
        for k in k0..k1 {
            let (ci, ky, kx) = (k / khw, (k / g.kw) % g.kh, k % g.kw);
            let d = dst.add((k - k0) * w);
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
            while j < valid {
                let run = (g.ow - ox).min(valid - j);
                let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                let dd = d.add(j);
                if iy < 0 || iy >= g.h as isize {
                    for t in 0..run {
                        *dd.add(t) = 0.0;
                    }
                } else {
                    let row = plane.add(iy as usize * g.w);
                    let a = ox_lo.clamp(ox, ox + run) - ox;
                    let b = ox_hi.clamp(ox + a, ox + run) - ox;
                    for t in 0..a {
                        *dd.add(t) = 0.0;
                    }
                    if g.sw == 1 {
                        let src = row.offset((ox + a) as isize + off);
                        std::ptr::copy_nonoverlapping(src, dd.add(a), b - a);
                    } else {
                        for t in a..b {
                            *dd.add(t) = *row.offset(((ox + t) * g.sw) as isize + off);
                        }
                    }
                    for t in b..run {
                        *dd.add(t) = 0.0;
                    }
                }
                j += run;
                ox = 0;
                oy += 1;
            }
            for t in valid..w {
                *d.add(t) = 0.0;
            }
        }
    }
}
