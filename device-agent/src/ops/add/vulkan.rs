//! Element-wise addition with numpy broadcasting on the GPU (`add.comp`): each operand is
//! read through strides over the output's `[outer, C, H, inner]` view.
use crate::backend::vulkan::{
    groups_1d, pu, slice_len, slice_push, Bind, Dispatch, Prepared, VkKernel,
};
use crate::tensor::Slice;
use crate::{Error, Result};

#[derive(Debug)]
struct VkAdd {
    node: String,
    output: Vec<usize>,
    sa: [usize; 4],
    sb: [usize; 4],
}

/// Strides of operand `s` broadcast onto `out`, over the 4-D view of `out` (0 where broadcast).
pub(crate) fn view_strides(node: &str, out: &[usize], s: &[usize]) -> Result<[usize; 4]> {
    let r = out.len();
    let mut own = vec![0usize; s.len()];
    let mut acc = 1;
    for d in (0..s.len()).rev() {
        own[d] = acc;
        acc *= s[d];
    }
    // Full-rank strides aligned on the right.
    let full: Vec<usize> = (0..r)
        .map(|d| {
            let sd = d as isize - (r as isize - s.len() as isize);
            if sd >= 0 && s[sd as usize] != 1 {
                own[sd as usize]
            } else {
                0
            }
        })
        .collect();
    Ok(match r {
        0 => [0; 4],
        1 => [0, full[0], 0, 0],
        2 => [full[0], full[1], 0, 0],
        3 => [full[0], full[1], full[2], 0],
        _ => {
            // Dimensions 3.. collapse into one: the operand must hold all of them or none.
            let tail = &full[3..];
            let inner = if tail.iter().all(|&x| x == 0) {
                0
            } else if tail[tail.len() - 1] == 1
                && (0..tail.len() - 1).all(|i| tail[i] == tail[i + 1] * out[4 + i])
            {
                1
            } else {
                return Err(Error::node(
                    node,
                    format!("the GPU cannot broadcast {s:?} onto {out:?} (inside the trailing dimensions)"),
                ));
            };
            [full[0], full[1], full[2], inner]
        }
    })
}

/// Prepares `a + b`.
pub(crate) fn prepare(node: &str, a: &[usize], b: &[usize], output: &[usize]) -> Result<Prepared> {
    pu(node, output.iter().product::<usize>())?;
    let k = VkAdd {
        node: node.into(),
        output: output.to_vec(),
        sa: view_strides(node, output, a)?,
        sb: view_strides(node, output, b)?,
    };
    Ok((Box::new(k), vec![]))
}

impl VkKernel for VkAdd {
    fn shaders(&self) -> Vec<&'static str> {
        vec!["add"]
    }

    fn dispatches(&self, s: &Slice, out: &mut Vec<Dispatch>) -> Result<()> {
        let mut push = slice_push(&self.node, &self.output, s)?;
        for x in self.sa.iter().chain(&self.sb) {
            push.push(pu(&self.node, *x)?);
        }
        out.push(Dispatch {
            shader: "add",
            binds: [Bind::Input(0), Bind::Output, Bind::Input(1), Bind::None],
            push,
            groups: groups_1d(slice_len(&self.output, s), 256),
        });
        Ok(())
    }
}
