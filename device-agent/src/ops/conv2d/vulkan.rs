//! Convolution on the GPU: an implicit matrix product (`conv2d.comp`, one dispatch per group
//! touching the slice) with a 1×1 fast path (`conv2d_1x1`), a 1×1 path for small outputs
//! (`conv2d_pw_small.comp`: 8×8 tiles, K split four ways, where 64×64 tiles would leave
//! the GPU idle), barrier-free direct shaders for CPU Vulkan devices (`conv2d_direct.comp`)
//! and a
//! depthwise shader (`conv2d_dw.comp`). Weights keep their `[oc, icg, kh, kw]` layout: row `oc` of the A matrix.
use super::Conv2d;
use crate::backend::vulkan::{groups_1d, pf, pu, Bind, ConvShaders, Dispatch, Prepared, VkKernel};
use crate::tensor::Slice;
use crate::Result;

#[derive(Debug)]
struct VkConv {
    node: String,
    shader: &'static str,
    depthwise: bool,
    /// [N, C, H, W] of the input, [OC, OH, OW] of the output.
    input: [usize; 4],
    output: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pads: [usize; 4],
    groups: usize,
    lo: f32,
    hi: f32,
    /// Which shaders (see [`ConvShaders`]).
    conv: ConvShaders,
    pointwise: bool,
}

/// A 1×1 slice with fewer 64×64 output tiles than this runs on 8×8 tiles with K split four
/// ways (when enabled): below it a large GPU has more compute units than work groups.
const SMALL_TILE_THRESHOLD: usize = 64;

/// Prepares `c` for an input of shape `input` and an output of shape `output`.
pub(crate) fn prepare(
    node: &str,
    c: &Conv2d,
    input: &[usize],
    output: &[usize],
    conv: ConvShaders,
) -> Result<Prepared> {
    let [n, ch, h, w] = crate::ops::expect_nchw(node, "input", input)?;
    let oc = c.out_channels();
    let depthwise = c.is_depthwise();
    let shader = if depthwise {
        "conv2d_dw"
    } else if c.is_pointwise() {
        "conv2d_1x1"
    } else {
        "conv2d"
    };
    let (lo, hi) = c.activation.bounds();
    let bias = c
        .bias
        .as_ref()
        .map_or_else(|| vec![0.0; oc], |b| b.data().to_vec());
    let k = VkConv {
        node: node.to_string(),
        shader,
        depthwise,
        input: [n, ch, h, w],
        output: [oc, output[2], output[3]],
        kernel: c.kernel(),
        stride: c.stride,
        dilation: c.dilation,
        pads: c.pads,
        groups: c.groups,
        lo,
        hi,
        conv,
        pointwise: c.is_pointwise(),
    };
    // Indices must fit the shaders' 32-bit arithmetic.
    pu(node, n * ch * h * w)?;
    pu(node, n * oc * output[2] * output[3])?;
    pu(node, c.weight.len())?;
    Ok((Box::new(k), vec![c.weight.data().to_vec(), bias]))
}

impl VkConv {
    fn direct_shader(&self) -> &'static str {
        if self.pointwise {
            "conv2d_pw_direct"
        } else {
            "conv2d_direct"
        }
    }
}

impl VkKernel for VkConv {
    fn shaders(&self) -> Vec<&'static str> {
        match self.conv {
            ConvShaders::Direct if self.depthwise => vec!["conv2d_dw_direct"],
            _ if self.depthwise => vec![self.shader],
            ConvShaders::Direct => vec![self.direct_shader()],
            ConvShaders::SmallTiles if self.pointwise => vec![self.shader, "conv2d_pw_small"],
            _ => vec![self.shader],
        }
    }

    fn dispatches(&self, s: &Slice, out: &mut Vec<Dispatch>) -> Result<()> {
        let node = self.node.as_str();
        let [n, c, h, w] = self.input;
        let [oc, oh, ow] = self.output;
        let [kh, kw] = self.kernel;
        let u = |x: usize| pu(node, x);
        let binds = [Bind::Input(0), Bind::Output, Bind::Param(0), Bind::Param(1)];
        let (nr, (c0, c1), (r0, r1)) = (
            s.rows.len(),
            (s.channels.start, s.channels.end),
            (s.rows.start, s.rows.end),
        );
        if self.depthwise {
            let push = vec![
                u(n)?,
                u(c)?,
                u(h)?,
                u(w)?,
                u(oh)?,
                u(ow)?,
                u(kh)?,
                u(kw)?,
                u(self.stride[0])?,
                u(self.stride[1])?,
                u(self.dilation[0])?,
                u(self.dilation[1])?,
                u(self.pads[0])?,
                u(self.pads[1])?,
                u(c0)?,
                u(c1)?,
                u(r0)?,
                u(r1)?,
                pf(self.lo),
                pf(self.hi),
            ];
            // conv2d_dw_direct: 4 outputs of a row per invocation, 64 per work group.
            let (shader, groups) = match self.conv {
                ConvShaders::Direct => (
                    "conv2d_dw_direct",
                    groups_1d(n * s.channels.len() * nr * ow.div_ceil(4), 64),
                ),
                _ => (self.shader, groups_1d(n * s.channels.len() * nr * ow, 256)),
            };
            out.push(Dispatch {
                shader,
                binds,
                push,
                groups,
            });
            return Ok(());
        }
        let (icg, ocg) = (c / self.groups, oc / self.groups);
        for g in 0..self.groups {
            let (a, b) = (c0.max(g * ocg), c1.min((g + 1) * ocg));
            if a >= b {
                continue;
            }
            let push = vec![
                u(c)?,
                u(h)?,
                u(w)?,
                u(oc)?,
                u(oh)?,
                u(ow)?,
                u(icg)?,
                u(g * icg)?,
                u(kh)?,
                u(kw)?,
                u(self.stride[0])?,
                u(self.stride[1])?,
                u(self.dilation[0])?,
                u(self.dilation[1])?,
                u(self.pads[0])?,
                u(self.pads[1])?,
                u(a)?,
                u(b)?,
                u(r0)?,
                u(r1)?,
                pf(self.lo),
                pf(self.hi),
            ];
            let tiles = (nr * ow).div_ceil(64) * (b - a).div_ceil(64) * n;
            // Work groups cover (pixels, channels) in blocks of this size.
            let (shader, px, chans) = match self.conv {
                // conv2d_pw_direct: 4 pixels per invocation.
                ConvShaders::Direct if self.pointwise => (self.direct_shader(), 256, 8),
                ConvShaders::Direct => (self.direct_shader(), 64, 8),
                ConvShaders::SmallTiles if self.pointwise && tiles < SMALL_TILE_THRESHOLD => {
                    ("conv2d_pw_small", 8, 8)
                }
                _ => (self.shader, 64, 64),
            };
            let groups = [
                u((nr * ow).div_ceil(px))?,
                u((b - a).div_ceil(chans))?,
                u(n)?,
            ];
            if groups[0] > 65535 || groups[1] > 65535 || groups[2] > 65535 {
                return Err(crate::Error::node(
                    node,
                    "convolution too large for one dispatch",
                ));
            }
            out.push(Dispatch {
                shader,
                binds,
                push,
                groups,
            });
        }
        Ok(())
    }
}
