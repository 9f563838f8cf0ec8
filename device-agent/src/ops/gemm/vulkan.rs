//! Fully connected layer on the GPU (`gemm.comp`): one work group per output element of the
//! slice, reducing over the input features.
use super::Gemm;
use crate::backend::vulkan::{
    groups_items, pf, pu, slice_len, slice_push, Bind, Dispatch, Prepared, VkKernel,
};
use crate::tensor::Slice;
use crate::Result;

#[derive(Debug)]
struct VkGemm {
    node: String,
    output: Vec<usize>,
    o: usize,
    k: usize,
    lo: f32,
    hi: f32,
}

/// Prepares `g` for an input of shape `input`.
pub(crate) fn prepare(node: &str, g: &Gemm, input: &[usize], output: &[usize]) -> Result<Prepared> {
    let (o, k) = (g.weight.shape()[0], g.weight.shape()[1]);
    pu(node, input.iter().product::<usize>())?;
    pu(node, g.weight.len())?;
    let (lo, hi) = g.activation.bounds();
    let bias = g
        .bias
        .as_ref()
        .map_or_else(|| vec![0.0; o], |b| b.data().to_vec());
    let kernel = VkGemm {
        node: node.into(),
        output: output.to_vec(),
        o,
        k,
        lo,
        hi,
    };
    Ok((Box::new(kernel), vec![g.weight.data().to_vec(), bias]))
}

impl VkKernel for VkGemm {
    fn shaders(&self) -> Vec<&'static str> {
        vec!["gemm"]
    }

    fn dispatches(&self, s: &Slice, out: &mut Vec<Dispatch>) -> Result<()> {
        let mut push = slice_push(&self.node, &self.output, s)?;
        push.extend([
            pu(&self.node, self.o)?,
            pu(&self.node, self.k)?,
            pf(self.lo),
            pf(self.hi),
        ]);
        out.push(Dispatch {
            shader: "gemm",
            binds: [Bind::Input(0), Bind::Output, Bind::Param(0), Bind::Param(1)],
            push,
            groups: groups_items(slice_len(&self.output, s)),
        });
        Ok(())
    }
}
