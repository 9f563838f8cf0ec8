//! Activations, Dropout (identity) and unfolded BatchNorm on the GPU (`activation.comp`):
//! `y = clamp(x · m[c] + o[c], lo, hi)` over the slice.
use super::Activation;
use crate::backend::vulkan::{
    groups_1d, pf, slice_len, slice_push, Bind, Dispatch, Prepared, VkKernel,
};
use crate::ops::BatchNorm;
use crate::tensor::Slice;
use crate::Result;

#[derive(Debug)]
struct VkUnary {
    node: String,
    output: Vec<usize>,
    affine: bool,
    lo: f32,
    hi: f32,
}

/// Prepares an activation, with the per-channel affine map of `bn` when given.
pub(crate) fn prepare(
    node: &str,
    act: Activation,
    bn: Option<&BatchNorm>,
    output: &[usize],
) -> Result<Prepared> {
    let (lo, hi) = act.bounds();
    let params = match bn {
        Some(b) => vec![b.affine().into_iter().flat_map(|(m, o)| [m, o]).collect()],
        None => vec![],
    };
    let k = VkUnary {
        node: node.into(),
        output: output.to_vec(),
        affine: bn.is_some(),
        lo,
        hi,
    };
    Ok((Box::new(k), params))
}

impl VkKernel for VkUnary {
    fn shaders(&self) -> Vec<&'static str> {
        vec!["activation"]
    }

    fn dispatches(&self, s: &Slice, out: &mut Vec<Dispatch>) -> Result<()> {
        let mut push = slice_push(&self.node, &self.output, s)?;
        push.extend([self.affine as u32, pf(self.lo), pf(self.hi)]);
        let aff = if self.affine {
            Bind::Param(0)
        } else {
            Bind::None
        };
        out.push(Dispatch {
            shader: "activation",
            binds: [Bind::Input(0), Bind::Output, aff, Bind::None],
            push,
            groups: groups_1d(slice_len(&self.output, s), 256),
        });
        Ok(())
    }
}
