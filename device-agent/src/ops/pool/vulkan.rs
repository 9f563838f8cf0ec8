//! Max, average and global average pooling on the GPU (`pool.comp`, `global_avg_pool.comp`).
use super::Pool;
use crate::backend::vulkan::{groups_1d, groups_items, pu, Bind, Dispatch, Prepared, VkKernel};
use crate::tensor::Slice;
use crate::Result;

#[derive(Debug)]
struct VkPool {
    node: String,
    max: bool,
    /// [N, C, H, W, OH, OW]
    dims: [usize; 6],
    pool: Pool,
}

/// Prepares max (`max`) or average pooling.
pub(crate) fn prepare(
    node: &str,
    p: &Pool,
    max: bool,
    input: &[usize],
    output: &[usize],
) -> Result<Prepared> {
    let [n, c, h, w] = crate::ops::expect_nchw(node, "input", input)?;
    pu(node, n * c * h * w)?;
    let k = VkPool {
        node: node.into(),
        max,
        dims: [n, c, h, w, output[2], output[3]],
        pool: p.clone(),
    };
    Ok((Box::new(k), vec![]))
}

impl VkKernel for VkPool {
    fn shaders(&self) -> Vec<&'static str> {
        vec!["pool"]
    }

    fn dispatches(&self, s: &Slice, out: &mut Vec<Dispatch>) -> Result<()> {
        let u = |x: usize| pu(&self.node, x);
        let [n, c, h, w, oh, ow] = self.dims;
        let p = &self.pool;
        let push = vec![
            u(n)?,
            u(c)?,
            u(h)?,
            u(w)?,
            u(oh)?,
            u(ow)?,
            u(p.kernel[0])?,
            u(p.kernel[1])?,
            u(p.stride[0])?,
            u(p.stride[1])?,
            u(p.pads[0])?,
            u(p.pads[1])?,
            u(p.pads[2])?,
            u(p.pads[3])?,
            u(s.channels.start)?,
            u(s.channels.end)?,
            u(s.rows.start)?,
            u(s.rows.end)?,
            self.max as u32,
            p.count_include_pad as u32,
        ];
        out.push(Dispatch {
            shader: "pool",
            binds: [Bind::Input(0), Bind::Output, Bind::None, Bind::None],
            push,
            groups: groups_1d(n * s.channels.len() * s.rows.len() * ow, 256),
        });
        Ok(())
    }
}

#[derive(Debug)]
struct VkGlobal {
    node: String,
    n: usize,
    c: usize,
    hw: usize,
}

/// Prepares global average pooling.
pub(crate) fn prepare_global(node: &str, input: &[usize], _output: &[usize]) -> Result<Prepared> {
    let [n, c, h, w] = crate::ops::expect_nchw(node, "input", input)?;
    pu(node, n * c * h * w)?;
    Ok((
        Box::new(VkGlobal {
            node: node.into(),
            n,
            c,
            hw: h * w,
        }),
        vec![],
    ))
}

impl VkKernel for VkGlobal {
    fn shaders(&self) -> Vec<&'static str> {
        vec!["global_avg_pool"]
    }

    fn dispatches(&self, s: &Slice, out: &mut Vec<Dispatch>) -> Result<()> {
        let u = |x: usize| pu(&self.node, x);
        out.push(Dispatch {
            shader: "global_avg_pool",
            binds: [Bind::Input(0), Bind::Output, Bind::None, Bind::None],
            push: vec![
                u(self.n)?,
                u(self.c)?,
                u(self.hw)?,
                u(s.channels.start)?,
                u(s.channels.end)?,
            ],
            groups: groups_items(self.n * s.channels.len()),
        });
        Ok(())
    }
}
