//! Softmax on the GPU (`softmax.comp`): whole output only, as on the CPU.
use crate::backend::vulkan::{groups_items, pu, Bind, Dispatch, Prepared, VkKernel};
use crate::tensor::Slice;
use crate::Result;

#[derive(Debug)]
struct VkSoftmax {
    node: String,
    /// [outer, n, inner] around the axis.
    dims: [usize; 3],
}

/// Prepares softmax along `axis` of an output of shape `output`.
pub(crate) fn prepare(node: &str, axis: usize, output: &[usize]) -> Result<Prepared> {
    pu(node, output.iter().product::<usize>())?;
    let dims = [
        output[..axis].iter().product(),
        output[axis],
        output[axis + 1..].iter().product(),
    ];
    Ok((
        Box::new(VkSoftmax {
            node: node.into(),
            dims,
        }),
        vec![],
    ))
}

impl VkKernel for VkSoftmax {
    fn shaders(&self) -> Vec<&'static str> {
        vec!["softmax"]
    }

    fn dispatches(&self, _s: &Slice, out: &mut Vec<Dispatch>) -> Result<()> {
        let [o, n, i] = self.dims;
        let u = |x: usize| pu(&self.node, x);
        out.push(Dispatch {
            shader: "softmax",
            binds: [Bind::Input(0), Bind::Output, Bind::None, Bind::None],
            push: vec![u(o)?, u(n)?, u(i)?],
            groups: groups_items(o * i),
        });
        Ok(())
    }
}
