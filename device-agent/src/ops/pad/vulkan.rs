//! Constant padding on the GPU (`pad.comp`).
use super::Pad;
use crate::backend::vulkan::{groups_1d, pf, pu, Bind, Dispatch, Prepared, VkKernel};
use crate::tensor::Slice;
use crate::Result;

#[derive(Debug)]
struct VkPad {
    node: String,
    /// [N, C, H, W, OH, OW]
    dims: [usize; 6],
    pad: Pad,
}

/// Prepares `p` for an input of shape `input`.
pub(crate) fn prepare(node: &str, p: &Pad, input: &[usize], output: &[usize]) -> Result<Prepared> {
    let [n, c, h, w] = crate::ops::expect_nchw(node, "input", input)?;
    pu(node, output.iter().product::<usize>())?;
    let k = VkPad {
        node: node.into(),
        dims: [n, c, h, w, output[2], output[3]],
        pad: p.clone(),
    };
    Ok((Box::new(k), vec![]))
}

impl VkKernel for VkPad {
    fn shaders(&self) -> Vec<&'static str> {
        vec!["pad"]
    }

    fn dispatches(&self, s: &Slice, out: &mut Vec<Dispatch>) -> Result<()> {
        let u = |x: usize| pu(&self.node, x);
        let [n, c, h, w, oh, ow] = self.dims;
        let push = vec![
            u(n)?,
            u(c)?,
            u(h)?,
            u(w)?,
            u(oh)?,
            u(ow)?,
            u(self.pad.pads[0])?,
            u(self.pad.pads[1])?,
            u(s.channels.start)?,
            u(s.channels.end)?,
            u(s.rows.start)?,
            u(s.rows.end)?,
            pf(self.pad.value),
        ];
        out.push(Dispatch {
            shader: "pad",
            binds: [Bind::Input(0), Bind::Output, Bind::None, Bind::None],
            push,
            groups: groups_1d(n * s.channels.len() * s.rows.len() * ow, 256),
        });
        Ok(())
    }
}
