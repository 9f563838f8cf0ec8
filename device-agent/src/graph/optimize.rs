//! Load-time graph rewrites: BatchNorm folding, Dropout removal, activation fusion.
use super::{Graph, Node};
use crate::ops::{Activation, Op};
use crate::Result;
use std::collections::HashMap;

pub(super) fn optimize(mut g: Graph) -> Result<Graph> {
    g.infer_shapes()?;
    drop_identities(&mut g);
    fold_batchnorm(&mut g);
    fuse_activations(&mut g);
    Ok(g)
}

/// Renames every read of `from` to `to`, including graph outputs.
fn rename(g: &mut Graph, from: &str, to: &str) {
    for n in &mut g.nodes {
        for i in &mut n.inputs {
            if i == from {
                *i = to.to_string();
            }
        }
    }
    for o in &mut g.outputs {
        if o == from {
            *o = to.to_string();
        }
    }
}

/// Removes Dropout (identity at inference) unless its output is a graph output fed by an input.
fn drop_identities(g: &mut Graph) {
    let mut i = 0;
    while i < g.nodes.len() {
        if matches!(g.nodes[i].op, Op::Dropout) && !g.outputs.contains(&g.nodes[i].output) {
            let n = g.nodes.remove(i);
            rename(g, &n.output, &n.inputs[0]);
        } else {
            i += 1;
        }
    }
}

/// Index of the single node producing `value` if only that node reads... returns producer index.
fn producers(g: &Graph) -> HashMap<String, usize> {
    g.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.output.clone(), i))
        .collect()
}

/// Folds `BatchNorm(Conv(x))` into the convolution when the conv's output has no other reader.
fn fold_batchnorm(g: &mut Graph) {
    let mut i = 0;
    while i < g.nodes.len() {
        let fold = match &g.nodes[i].op {
            Op::BatchNorm(bn) => {
                let prod = producers(g);
                let readers = g.readers();
                let src = &g.nodes[i].inputs[0];
                match prod.get(src) {
                    Some(&p)
                        if readers.get(src.as_str()) == Some(&1)
                            && matches!(&g.nodes[p].op, Op::Conv2d(c) if c.activation == Activation::None) =>
                    {
                        Some((p, bn.affine()))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some((p, affine)) = fold {
            let bn_node = g.nodes.remove(i);
            if let Op::Conv2d(c) = &mut g.nodes[p].op {
                let m = c.out_channels();
                let per = c.weight.len() / m.max(1);
                let w = c.weight.data_mut();
                for (oc, (mul, _)) in affine.iter().enumerate() {
                    for v in &mut w[oc * per..(oc + 1) * per] {
                        *v *= mul;
                    }
                }
                let mut bias = c
                    .bias
                    .take()
                    .map(|b| b.into_vec())
                    .unwrap_or_else(|| vec![0.0; m]);
                for (oc, (mul, off)) in affine.iter().enumerate() {
                    bias[oc] = bias[oc] * mul + off;
                }
                c.bias = crate::Tensor::from_vec(&[m], bias);
            }
            // The convolution's old output had the BatchNorm as its only reader: the fused node
            // takes over the BatchNorm's output name, so downstream names (and graph outputs)
            // stay as they were.
            g.nodes[p].output = bn_node.output;
        } else {
            i += 1;
        }
    }
}

/// Fuses ReLU/Clip onto a preceding Conv2d or Gemm whose output has no other reader.
fn fuse_activations(g: &mut Graph) {
    let mut i = 0;
    while i < g.nodes.len() {
        let fuse = match &g.nodes[i].op {
            Op::Activation(a) => {
                let prod = producers(g);
                let readers = g.readers();
                let src = &g.nodes[i].inputs[0];
                match prod.get(src) {
                    Some(&p) if readers.get(src.as_str()) == Some(&1) => match &g.nodes[p].op {
                        Op::Conv2d(c) if c.activation == Activation::None => Some((p, *a)),
                        Op::Gemm(c) if c.activation == Activation::None => Some((p, *a)),
                        _ => None,
                    },
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some((p, a)) = fuse {
            let act: Node = g.nodes.remove(i);
            match &mut g.nodes[p].op {
                Op::Conv2d(c) => c.activation = a,
                Op::Gemm(c) => c.activation = a,
                _ => {}
            }
            // As for BatchNorm folding: the fused node produces the activation's output name.
            g.nodes[p].output = act.output;
        } else {
            i += 1;
        }
    }
}
