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
use super::padded::{with_reals, Im2colPlan};
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

impl ConvGeom {
    /// The elements of image `b` of the input.
    pub fn image(&self, b: usize) -> std::ops::Range<usize> {
        let len = self.cin * self.h * self.w;
        b * len..(b + 1) * len
    }

    /// The groups that `channels` (output channels) meet: each group's index and its part of
    /// `channels`, relative to the group's first channel.
    pub fn groups_in(
        &self,
        channels: &std::ops::Range<usize>,
    ) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> + '_ {
        let (lo, hi) = (channels.start, channels.end);
        (0..self.groups).filter_map(move |gi| {
            let m0 = gi * self.cout_g;
            let (a, b) = (lo.max(m0), hi.min(m0 + self.cout_g));
            (a < b).then(|| (gi, a - m0..b - m0))
        })
    }
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
    /// One packed weight matrix per group; without `im2col` (1×1, stride 1, no padding) the
    /// input is the `B` operand as is.
    Gemm {
        groups: Vec<PackedWeights>,
        im2col: Option<Im2colPlan>,
    },
    Depthwise(PreparedDepthwise),
}

impl PreparedConv {
    /// The algorithm chosen ("gemm-1x1", "gemm-im2col", "depthwise") and, for products, the
    /// orientation.
    pub fn algorithm(&self) -> String {
        match &self.algo {
            Algo::Depthwise(_) => "depthwise".into(),
            Algo::Gemm { groups, im2col } => {
                let o = groups.first().map(|g| g.orientation());
                format!(
                    "{}{}",
                    if im2col.is_none() {
                        "gemm-1x1"
                    } else {
                        "gemm-im2col"
                    },
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
        Algo::Gemm {
            groups,
            im2col: (!direct).then(|| Im2colPlan::new(&geom)),
        }
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
        Algo::Gemm { groups, im2col } => {
            let ns = slice.rows.start * g.ow..slice.rows.end * g.ow;
            for b in 0..g.n {
                let image = &x.data()[g.image(b)];
                let len = im2col.as_ref().map_or(0, |i| g.cin * i.pad.plane());
                with_reals(len, |padded| {
                    if let Some(i) = im2col {
                        i.pad.fill(image, g.h, g.w, 0.0, padded);
                    }
                    for (gi, ms) in g.groups_in(&slice.channels) {
                        let (pw, m0) = (&groups[gi], gi * g.cout_g);
                        // SAFETY: the output block (channels ms of group gi of image b, rows
                        // of the slice) lies inside `out` (checked by the backend) and belongs
                        // to the caller; the input pointers cover this group's `cin_g` planes
                        // (as they are, or padded).
                        unsafe {
                            let ov = OutView {
                                ptr: out.as_ptr().add((b * g.cout + m0) * g.oh * g.ow),
                                sm: g.oh * g.ow,
                                sn: 1,
                            };
                            let ns = ns.clone();
                            if let Some(plan) = im2col {
                                let src = Im2col {
                                    x: padded[gi * g.cin_g * plan.pad.plane()..].as_ptr(),
                                    plan,
                                    g,
                                };
                                gemm::gemm(ctx, pw, &src, ms, ns, ov, p.clamp);
                            } else {
                                let src = MatrixSource {
                                    ptr: image[gi * g.cin_g * g.h * g.w..].as_ptr(),
                                    sk: g.h * g.w,
                                    sn: 1,
                                };
                                gemm::gemm(ctx, pw, &src, ms, ns, ov, p.clamp);
                            }
                        }
                    }
                });
            }
            Ok(())
        }
    }
}

/// The im2col view of one group's padded input planes (see [`super::padded`]): `B[k, n]`
/// with `k = (ci·kh + ky)·kw + kx` and `n = oy·ow + ox`.
struct Im2col<'a> {
    /// The group's first padded plane.
    x: *const f32,
    plan: &'a Im2colPlan,
    g: &'a ConvGeom,
}

// SAFETY: read-only view of padded planes that outlive the product.
unsafe impl Sync for Im2col<'_> {}

impl PackSource for Im2col<'_> {
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
        let g = self.g;
        let valid = n_end.saturating_sub(n0).min(w);
        // Divisions once per panel; each row of B then repeats the same runs.
        let (oy0, ox0) = (n0 / g.ow, n0 % g.ow);
        for k in k0..k1 {
            let base = *self.plan.k_off.get_unchecked(k);
            let d = dst.add((k - k0) * w);
            let (mut oy, mut ox, mut j) = (oy0, ox0, 0);
            while j < valid {
                let run = (g.ow - ox).min(valid - j);
                let src = self.x.add(base + self.plan.at(g, oy, ox));
                if g.sw == 1 {
                    copy_short(src, d.add(j), run);
                } else {
                    for t in 0..run {
                        *d.add(j + t) = *src.add(t * g.sw);
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

/// Copies `n` floats in blocks of 8 and 4 and a tail of at most 3: runs are an output row
/// (7 to 56 floats), for which a `memcpy` call costs more than the copy.
#[inline(always)]
unsafe fn copy_short(src: *const f32, dst: *mut f32, n: usize) {
    let mut t = 0;
    while t + 8 <= n {
        (dst.add(t) as *mut [f32; 8])
            .write_unaligned((src.add(t) as *const [f32; 8]).read_unaligned());
        t += 8;
    }
    if t + 4 <= n {
        (dst.add(t) as *mut [f32; 4])
            .write_unaligned((src.add(t) as *const [f32; 4]).read_unaligned());
        t += 4;
    }
    match n - t {
        3 => {
            *dst.add(t) = *src.add(t);
            *dst.add(t + 1) = *src.add(t + 1);
            *dst.add(t + 2) = *src.add(t + 2);
        }
        2 => {
            *dst.add(t) = *src.add(t);
            *dst.add(t + 1) = *src.add(t + 1);
        }
        1 => *dst.add(t) = *src.add(t),
        _ => {}
    }
}
