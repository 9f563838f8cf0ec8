//! Local response normalisation on the GPU (`lrn.comp`).
use super::Lrn;
use crate::backend::vulkan::{
    groups_1d, pf, pu, slice_len, slice_push, Bind, Dispatch, Prepared, VkKernel,
};
use crate::tensor::Slice;
use crate::Result;

#[derive(Debug)]
struct VkLrn {
    node: String,
    output: Vec<usize>,
    lrn: Lrn,
}

/// Prepares `l`.
pub(crate) fn prepare(node: &str, l: &Lrn, output: &[usize]) -> Result<Prepared> {
    pu(node, output.iter().product::<usize>())?;
    Ok((
        Box::new(VkLrn {
            node: node.into(),
            output: output.to_vec(),
            lrn: l.clone(),
        }),
        vec![],
    ))
}

impl VkKernel for VkLrn {
    fn shaders(&self) -> Vec<&'static str> {
        vec!["lrn"]
    }

    fn dispatches(&self, s: &Slice, out: &mut Vec<Dispatch>) -> Result<()> {
        let l = &self.lrn;
        let before = (l.size - 1) / 2;
        let mut push = slice_push(&self.node, &self.output, s)?;
        push.extend([
            pu(&self.node, before)?,
            pu(&self.node, l.size - 1 - before)?,
            pf(l.alpha / l.size as f32),
            pf(l.beta),
            pf(l.bias),
        ]);
        out.push(Dispatch {
            shader: "lrn",
            binds: [Bind::Input(0), Bind::Output, Bind::None, Bind::None],
            push,
            groups: groups_1d(slice_len(&self.output, s), 256),
        });
        Ok(())
    }
}
