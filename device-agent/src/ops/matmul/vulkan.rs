//! Matrix product of two run-time values on the GPU (`matmul.comp`): whole output only.
use crate::backend::vulkan::{groups_1d, pu, Bind, Dispatch, Prepared, VkKernel};
use crate::tensor::Slice;
use crate::{Error, Result};

#[derive(Debug)]
struct VkMatMul {
    node: String,
    /// [batch, M, N, K, a batch stride, b batch stride]
    dims: [usize; 6],
}

/// Prepares `a @ b`. Each operand's batch must equal the output's or be 1.
pub(crate) fn prepare(node: &str, a: &[usize], b: &[usize], output: &[usize]) -> Result<Prepared> {
    let r = output.len();
    let (m, n, k) = (output[r - 2], output[r - 1], a[a.len() - 1]);
    let batch: usize = output[..r - 2].iter().product();
    // An operand's batch is the output's (stride one matrix) or absent (stride 0).
    let stride = |s: &[usize], size: usize| -> Result<usize> {
        let dims = &s[..s.len() - 2];
        if dims.iter().all(|&d| d == 1) {
            Ok(if batch == 1 { size } else { 0 })
        } else if dims.iter().product::<usize>() == batch
            && output[r - 2 - dims.len()..r - 2] == *dims
        {
            Ok(size)
        } else {
            Err(Error::node(
                node,
                format!("the GPU cannot broadcast the batch of {s:?} onto {output:?}"),
            ))
        }
    };
    let dims = [batch, m, n, k, stride(a, m * k)?, stride(b, k * n)?];
    pu(node, output.iter().product::<usize>())?;
    Ok((
        Box::new(VkMatMul {
            node: node.into(),
            dims,
        }),
        vec![],
    ))
}

impl VkKernel for VkMatMul {
    fn shaders(&self) -> Vec<&'static str> {
        vec!["matmul"]
    }

    fn dispatches(&self, _s: &Slice, out: &mut Vec<Dispatch>) -> Result<()> {
        let push = self
            .dims
            .iter()
            .map(|&x| pu(&self.node, x))
            .collect::<Result<Vec<_>>>()?;
        out.push(Dispatch {
            shader: "matmul",
            binds: [Bind::Input(0), Bind::Output, Bind::Input(1), Bind::None],
            push,
            groups: groups_1d(self.dims[0] * self.dims[1] * self.dims[2], 256),
        });
        Ok(())
    }
}
