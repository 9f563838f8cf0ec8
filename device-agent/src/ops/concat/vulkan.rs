//! Concatenation on the GPU (`copy.comp`, one dispatch per input overlapping the slice), and
//! the plain copies of Reshape, Flatten and Constant (one linear box).
use crate::backend::vulkan::{groups_1d, pu, view4, Bind, Dispatch, Prepared, VkKernel};
use crate::tensor::{Slice, Tensor};
use crate::{Error, Result};

/// One source box: where it comes from, its 4-D extent and its offset in the output view.
#[derive(Debug)]
struct Part {
    src: Bind,
    dims: [usize; 4],
    offset: [usize; 4],
}

#[derive(Debug)]
struct VkCopy {
    node: String,
    out: [usize; 4],
    parts: Vec<Part>,
}

/// Prepares the concatenation of inputs of shapes `ins` along `axis`.
pub(crate) fn prepare(
    node: &str,
    axis: usize,
    ins: &[&[usize]],
    output: &[usize],
) -> Result<Prepared> {
    let r = output.len();
    // The view dimension the axis falls on, and the elements one step along it spans there.
    let (vd, unit) = match (r, axis) {
        (1, 0) => (1, 1),
        (_, a) if a < 3 && a < r => (a, 1),
        (_, 3) if r >= 4 => (3, output[4..].iter().product()),
        _ => {
            return Err(Error::node(
                node,
                format!("the GPU concatenates along axes 0..=3 only, not {axis} of rank {r}"),
            ))
        }
    };
    pu(node, output.iter().product::<usize>())?;
    let mut at = 0;
    let parts = ins
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let mut offset = [0; 4];
            offset[vd] = at * unit;
            at += s[axis];
            Part {
                src: Bind::Input(k),
                dims: view4(s),
                offset,
            }
        })
        .collect();
    Ok((
        Box::new(VkCopy {
            node: node.into(),
            out: view4(output),
            parts,
        }),
        vec![],
    ))
}

/// Prepares a whole-tensor copy of the input (or of `constant`) into an output of the same
/// number of elements.
pub(crate) fn prepare_copy(
    node: &str,
    output: &[usize],
    constant: Option<&Tensor>,
) -> Result<Prepared> {
    let len = output.iter().product::<usize>();
    pu(node, len)?;
    let (src, params) = match constant {
        Some(t) => (Bind::Param(0), vec![t.data().to_vec()]),
        None => (Bind::Input(0), vec![]),
    };
    let dims = [1, 1, 1, len];
    let k = VkCopy {
        node: node.into(),
        out: dims,
        parts: vec![Part {
            src,
            dims,
            offset: [0; 4],
        }],
    };
    Ok((Box::new(k), params))
}

impl VkKernel for VkCopy {
    fn shaders(&self) -> Vec<&'static str> {
        vec!["copy"]
    }

    fn dispatches(&self, s: &Slice, out: &mut Vec<Dispatch>) -> Result<()> {
        // Whole-tensor copies ignore the slice's view (their op is not sliceable).
        let linear = self.out[..3] == [1, 1, 1];
        let (cs, rs) = if linear {
            (0..1, 0..1)
        } else {
            (s.channels.clone(), s.rows.clone())
        };
        let u = |x: usize| pu(&self.node, x);
        for p in &self.parts {
            // The slice in the part's own coordinates.
            let ci0 = cs.start.max(p.offset[1]) - p.offset[1];
            let ci1 = cs
                .end
                .min(p.offset[1] + p.dims[1])
                .saturating_sub(p.offset[1]);
            let ri0 = rs.start.max(p.offset[2]) - p.offset[2];
            let ri1 = rs
                .end
                .min(p.offset[2] + p.dims[2])
                .saturating_sub(p.offset[2]);
            if ci0 >= ci1 || ri0 >= ri1 {
                continue;
            }
            let [i0, i1, i2, i3] = p.dims;
            let push = vec![
                u(i0)?,
                u(i1)?,
                u(i2)?,
                u(i3)?,
                u(self.out[1])?,
                u(self.out[2])?,
                u(self.out[3])?,
                u(p.offset[0])?,
                u(p.offset[1])?,
                u(p.offset[2])?,
                u(p.offset[3])?,
                u(ci0)?,
                u(ci1)?,
                u(ri0)?,
                u(ri1)?,
            ];
            out.push(Dispatch {
                shader: "copy",
                binds: [p.src, Bind::Output, Bind::None, Bind::None],
                push,
                groups: groups_1d(i0 * (ci1 - ci0) * (ri1 - ri0) * i3, 256),
            });
        }
        Ok(())
    }
}
