//! One ONNX node → graph IR node(s). Weights come from constants (initializers and `Constant`
//! nodes); a constant that an op reads at run time becomes an [`Op::Constant`] node (see
//! [`Ctx::runtime`]).
use super::attributes::{to_size, Attrs, MAX_ATTR_SIZE};
use super::context::{opt, req, Constant, Ctx, Fixup};
use super::proto::NodeProto;
use super::values::{self, Data, Value};
use crate::ops::{Activation, BatchNorm, Conv2d, Gemm, Lrn, Op, Pad, Pool};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Converts one (supported) ONNX node named `name` in the IR.
pub(super) fn convert(ctx: &mut Ctx, n: &NodeProto, name: &str) -> Result<()> {
    let a = Attrs::new(name, &n.attribute);
    let out = n
        .output
        .first()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| Error::node(name, "has no output"))?
        .clone();
    for (k, o) in n.output.iter().enumerate().skip(1) {
        if !o.is_empty() && ctx.read.contains(o) {
            return Err(Error::node(
                name,
                format!(
                    "output #{k} ('{o}') of {} is read, but only the first output is supported",
                    n.op_type()
                ),
            ));
        }
    }
    let x =
        |ctx: &mut Ctx| -> Result<Vec<String>> { Ok(vec![ctx.runtime(name, req(n, 0, name)?)?]) };
    let op = match n.op_type() {
        "Constant" => {
            let value = constant_value(name, &a)?;
            ctx.consts.insert(
                out,
                Constant {
                    value,
                    node: Some((name.to_string(), ctx.position)),
                },
            );
            return Ok(());
        }
        "Identity" => Op::Activation(Activation::None),
        "Relu" => Op::Activation(Activation::Relu),
        "Clip" => Op::Activation(clip(ctx, n, name, &a)?),
        "Conv" => conv(ctx, n, name, &a)?,
        "BatchNormalization" => batchnorm(ctx, n, name, &a)?,
        "MaxPool" | "AveragePool" => pool(ctx, n, name, &a)?,
        "GlobalAveragePool" => Op::GlobalAveragePool,
        "LRN" => Op::Lrn(Lrn {
            size: to_size(
                name,
                "size",
                a.int_opt("size")?
                    .ok_or_else(|| Error::node(name, "LRN needs the 'size' attribute"))?,
                1,
            )?,
            alpha: a.float("alpha", 1e-4)?,
            beta: a.float("beta", 0.75)?,
            bias: a.float("bias", 1.0)?,
        }),
        "Gemm" => gemm(ctx, n, name, &a)?,
        "MatMul" => {
            let (lhs, rhs) = (req(n, 0, name)?, req(n, 1, name)?);
            match ctx
                .consts
                .get(rhs)
                .and_then(|c| c.value.to_tensor())
                .filter(|t| t.shape().len() == 2)
            {
                Some(b) => Op::Gemm(Gemm {
                    weight: transpose(&b),
                    bias: None,
                    activation: Activation::None,
                }),
                None => {
                    let inputs = vec![ctx.runtime(name, lhs)?, ctx.runtime(name, rhs)?];
                    ctx.push(name, Op::MatMul, inputs, &out);
                    return Ok(());
                }
            }
        }
        "Add" => {
            let (mut lhs, mut rhs) = (req(n, 0, name)?, req(n, 1, name)?);
            // The run-time operand first: the constant broadcasts onto it.
            if ctx.consts.contains_key(lhs) && !ctx.consts.contains_key(rhs) {
                std::mem::swap(&mut lhs, &mut rhs);
            }
            let inputs = vec![ctx.runtime(name, lhs)?, ctx.runtime(name, rhs)?];
            ctx.push(name, Op::Add, inputs, &out);
            return Ok(());
        }
        "Concat" => {
            let axis = a
                .int_opt("axis")?
                .ok_or_else(|| Error::node(name, "Concat needs the 'axis' attribute"))?;
            let inputs = n
                .input
                .iter()
                .map(|v| ctx.runtime(name, v))
                .collect::<Result<Vec<_>>>()?;
            if inputs.is_empty() {
                return Err(Error::node(name, "Concat needs at least one input"));
            }
            ctx.fixups.insert(name.to_string(), Fixup::Axis(axis));
            ctx.push(name, Op::Concat { axis: 0 }, inputs, &out);
            return Ok(());
        }
        "Flatten" => {
            ctx.fixups
                .insert(name.to_string(), Fixup::Axis(a.int("axis", 1)?));
            Op::Flatten { axis: 0 }
        }
        "Reshape" => Op::Reshape {
            shape: reshape_target(ctx, n, name, &a)?,
        },
        "Softmax" => {
            let fix = if ctx.opset >= 13 {
                Fixup::Axis(a.int("axis", -1)?)
            } else {
                Fixup::LegacySoftmax(a.int("axis", 1)?)
            };
            ctx.fixups.insert(name.to_string(), fix);
            Op::Softmax { axis: 0 }
        }
        "Dropout" => {
            if let Some(t) = opt(n, 2) {
                if ctx
                    .int_const(name, t, "training_mode")?
                    .iter()
                    .any(|&v| v != 0)
                {
                    return Err(Error::node(
                        name,
                        "Dropout in training mode is not supported",
                    ));
                }
            }
            Op::Dropout
        }
        "Pad" => Op::Pad(pad(ctx, n, name, &a)?),
        other => return Err(Error::Unsupported(vec![format!("{other} (nodes: {name})")])),
    };
    let inputs = x(ctx)?;
    ctx.push(name, op, inputs, &out);
    Ok(())
}

/// The value of a `Constant` node.
fn constant_value(name: &str, a: &Attrs) -> Result<Value> {
    if let Some(t) = a.tensor("value")? {
        return values::decode(t).map_err(|m| Error::node(name, format!("value: {m}")));
    }
    if let Some(f) = a.float_opt("value_float")? {
        return Ok(Value {
            shape: vec![],
            data: Data::Float(vec![f]),
        });
    }
    if let Some(f) = a.floats("value_floats")? {
        return Ok(Value {
            shape: vec![f.len()],
            data: Data::Float(f.to_vec()),
        });
    }
    if let Some(i) = a.int_opt("value_int")? {
        return Ok(Value {
            shape: vec![],
            data: Data::Int(vec![i]),
        });
    }
    if let Some(i) = a.ints("value_ints")? {
        return Ok(Value {
            shape: vec![i.len()],
            data: Data::Int(i.to_vec()),
        });
    }
    Err(Error::node(name, "Constant needs a value, value_float(s) or value_int(s) attribute (sparse and string constants are not supported)"))
}

/// Clip: bounds as attributes before opset 11, as optional constant inputs from 11 on.
fn clip(ctx: &Ctx, n: &NodeProto, name: &str, a: &Attrs) -> Result<Activation> {
    let (min, max) = if ctx.opset < 11 {
        (
            a.float("min", f32::NEG_INFINITY)?,
            a.float("max", f32::INFINITY)?,
        )
    } else {
        let bound = |k: usize, what: &str, default: f32| {
            opt(n, k).map_or(Ok(default), |v| ctx.float_scalar(name, v, what))
        };
        (
            bound(1, "Clip min", f32::NEG_INFINITY)?,
            bound(2, "Clip max", f32::INFINITY)?,
        )
    };
    Ok(Activation::Clip { min, max })
}

/// `auto_pad`: `None` for explicit pads (NOTSET), else whether it is VALID, SAME_UPPER or
/// SAME_LOWER.
enum AutoPad {
    Explicit,
    Valid,
    Same { lower: bool },
}

fn auto_pad(name: &str, a: &Attrs) -> Result<AutoPad> {
    match a.string("auto_pad")?.as_deref() {
        None | Some("NOTSET") | Some("") => Ok(AutoPad::Explicit),
        Some("VALID") => Ok(AutoPad::Valid),
        Some("SAME_UPPER") => Ok(AutoPad::Same { lower: false }),
        Some("SAME_LOWER") => Ok(AutoPad::Same { lower: true }),
        Some(other) => Err(Error::node(name, format!("unknown auto_pad '{other}'"))),
    }
}

/// Explicit pads, or a SAME fix-up for the node.
fn padding(
    ctx: &mut Ctx,
    name: &str,
    a: &Attrs,
    kernel_eff: [usize; 2],
    stride: [usize; 2],
) -> Result<[usize; 4]> {
    match auto_pad(name, a)? {
        AutoPad::Explicit => a.pads("pads"),
        AutoPad::Valid => Ok([0; 4]),
        AutoPad::Same { lower } => {
            ctx.fixups.insert(
                name.to_string(),
                Fixup::AutoPad {
                    same_lower: lower,
                    kernel: kernel_eff,
                    stride,
                },
            );
            Ok([0; 4])
        }
    }
}

fn conv(ctx: &mut Ctx, n: &NodeProto, name: &str, a: &Attrs) -> Result<Op> {
    let weight = ctx.float_const(name, req(n, 1, name)?, "weight")?;
    let &[m, _, kh, kw] = weight.shape() else {
        return Err(Error::node(
            name,
            format!(
                "only 2-D convolution is supported (weight shape {:?})",
                weight.shape()
            ),
        ));
    };
    if weight.shape().contains(&0) {
        return Err(Error::node(
            name,
            format!("weight shape {:?} has an empty dimension", weight.shape()),
        ));
    }
    let bias = match opt(n, 2) {
        Some(b) => {
            let b = ctx.float_const(name, b, "bias")?;
            Some(
                b.reshaped(&[m])
                    .ok_or_else(|| Error::node(name, format!("bias must have {m} elements")))?,
            )
        }
        None => None,
    };
    if let Some(ks) = a.ints("kernel_shape")? {
        if ks != [kh as i64, kw as i64] {
            return Err(Error::node(
                name,
                format!(
                    "kernel_shape {ks:?} disagrees with the weight shape {:?}",
                    weight.shape()
                ),
            ));
        }
    }
    let stride = a.pair("strides", [1, 1], 1)?;
    let dilation = a.pair("dilations", [1, 1], 1)?;
    let groups = a.size("group", 1, 1)?;
    let kernel_eff = [
        (kh.saturating_sub(1)) * dilation[0] + 1,
        (kw.saturating_sub(1)) * dilation[1] + 1,
    ];
    let pads = padding(ctx, name, a, kernel_eff, stride)?;
    Ok(Op::Conv2d(Conv2d {
        weight,
        bias,
        stride,
        dilation,
        pads,
        groups,
        activation: Activation::None,
    }))
}

fn batchnorm(ctx: &Ctx, n: &NodeProto, name: &str, a: &Attrs) -> Result<Op> {
    if a.flag("training_mode", false)? {
        return Err(Error::node(
            name,
            "BatchNormalization in training mode is not supported",
        ));
    }
    let param = |k: usize, what: &str| -> Result<Vec<f32>> {
        Ok(ctx.float_const(name, req(n, k, name)?, what)?.into_vec())
    };
    Ok(Op::BatchNorm(BatchNorm {
        scale: param(1, "scale")?,
        bias: param(2, "bias")?,
        mean: param(3, "mean")?,
        var: param(4, "variance")?,
        epsilon: a.float("epsilon", 1e-5)?,
    }))
}

fn pool(ctx: &mut Ctx, n: &NodeProto, name: &str, a: &Attrs) -> Result<Op> {
    if !a.has("kernel_shape") {
        return Err(Error::node(
            name,
            format!("{} needs the 'kernel_shape' attribute", n.op_type()),
        ));
    }
    let kernel = a.pair("kernel_shape", [1, 1], 1)?;
    let stride = a.pair("strides", [1, 1], 1)?;
    if a.pair("dilations", [1, 1], 1)? != [1, 1] {
        return Err(Error::node(name, "dilated pooling is not supported"));
    }
    let pads = padding(ctx, name, a, kernel, stride)?;
    let pool = Pool {
        kernel,
        stride,
        pads,
        ceil_mode: a.flag("ceil_mode", false)?,
        count_include_pad: false,
    };
    Ok(if n.op_type() == "MaxPool" {
        Op::MaxPool(pool)
    } else {
        Op::AveragePool(Pool {
            count_include_pad: a.flag("count_include_pad", false)?,
            ..pool
        })
    })
}

/// `[rows, cols]` → `[cols, rows]`.
fn transpose(t: &Tensor) -> Tensor {
    let (r, c) = (t.shape()[0], t.shape()[1]);
    let d = t.data();
    let data = (0..c)
        .flat_map(|j| (0..r).map(move |i| d[i * c + j]))
        .collect();
    Tensor::from_vec(&[c, r], data).unwrap_or_else(|| t.clone())
}

/// Gemm: `y = alpha · A · op(B) + beta · C` with a constant B and C, normalised to the IR's
/// `y = x · Wᵀ + b` with `W = alpha · op(B)ᵀ` and `b = beta · C`.
fn gemm(ctx: &Ctx, n: &NodeProto, name: &str, a: &Attrs) -> Result<Op> {
    if a.flag("transA", false)? {
        return Err(Error::node(
            name,
            "Gemm with transA=1 is not supported (the IR has no transpose of a run-time value)",
        ));
    }
    let b = ctx.float_const(name, req(n, 1, name)?, "B (weight)")?;
    if b.shape().len() != 2 {
        return Err(Error::node(
            name,
            format!("B must be 2-D, got {:?}", b.shape()),
        ));
    }
    let mut weight = if a.flag("transB", false)? {
        b
    } else {
        transpose(&b)
    };
    let alpha = a.float("alpha", 1.0)?;
    if alpha != 1.0 {
        weight.data_mut().iter_mut().for_each(|v| *v *= alpha);
    }
    let out = weight.shape()[0];
    let beta = a.float("beta", 1.0)?;
    let bias = match opt(n, 2) {
        Some(c) if beta != 0.0 => {
            let c = ctx.float_const(name, c, "C (bias)")?;
            let mut v = match c.shape() {
                _ if c.len() == 1 => vec![c.data()[0]; out],
                [m] | [1, m] if *m == out => c.into_vec(),
                s => return Err(Error::node(name, format!("C of shape {s:?} is not supported (it must broadcast per output feature, [{out}] or [1, {out}])"))),
            };
            if beta != 1.0 {
                v.iter_mut().for_each(|x| *x *= beta);
            }
            Tensor::from_vec(&[out], v)
        }
        _ => None,
    };
    Ok(Op::Gemm(Gemm {
        weight,
        bias,
        activation: Activation::None,
    }))
}

/// Reshape's target: a constant INT64 input (opset 5+) or the `shape` attribute (older).
fn reshape_target(ctx: &Ctx, n: &NodeProto, name: &str, a: &Attrs) -> Result<Vec<i64>> {
    let shape = if ctx.opset >= 5 {
        ctx.int_const(name, req(n, 1, name)?, "shape")?
    } else {
        a.ints("shape")?
            .ok_or_else(|| Error::node(name, "Reshape needs the 'shape' attribute"))?
            .to_vec()
    };
    if a.flag("allowzero", false)? && shape.contains(&0) {
        return Err(Error::node(
            name,
            "Reshape with allowzero=1 and a 0 in the shape is not supported",
        ));
    }
    if shape.iter().filter(|&&d| d == -1).count() > 1 || shape.iter().any(|&d| d < -1) {
        return Err(Error::node(
            name,
            format!("invalid reshape target {shape:?}"),
        ));
    }
    Ok(shape)
}

/// Pad (constant mode) of H and W of an NCHW tensor: pads and value as attributes before
/// opset 11, as constant inputs from 11 on (with the optional `axes` of opset 18).
fn pad(ctx: &Ctx, n: &NodeProto, name: &str, a: &Attrs) -> Result<Pad> {
    let mode = a.string("mode")?.unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(Error::node(
            name,
            format!("Pad mode '{mode}' is not supported (only 'constant')"),
        ));
    }
    let (pads, value, axes) = if ctx.opset < 11 {
        let pads = a
            .ints("pads")?
            .ok_or_else(|| Error::node(name, "Pad needs the 'pads' attribute"))?
            .to_vec();
        (pads, a.float("value", 0.0)?, None)
    } else {
        let pads = ctx.int_const(name, req(n, 1, name)?, "pads")?;
        let value = opt(n, 2).map_or(Ok(0.0), |v| ctx.float_scalar(name, v, "constant_value"))?;
        let axes = opt(n, 3)
            .map(|v| ctx.int_const(name, v, "axes"))
            .transpose()?;
        (pads, value, axes)
    };
    const RANK: i64 = 4;
    let axes: Vec<i64> = axes.unwrap_or_else(|| (0..RANK).collect());
    if pads.len() != 2 * axes.len() {
        return Err(Error::node(name, format!("pads {pads:?} must have two entries per padded axis ({} axes); only 4-D NCHW inputs are supported", axes.len())));
    }
    let mut full = [0i64; 8];
    for (i, &ax) in axes.iter().enumerate() {
        let ax = if ax < 0 { ax + RANK } else { ax };
        if !(0..RANK).contains(&ax) {
            return Err(Error::node(
                name,
                format!("axis {ax} out of range for a 4-D input"),
            ));
        }
        full[ax as usize] = pads[i];
        full[(ax + RANK) as usize] = pads[i + axes.len()];
    }
    if full.iter().any(|&p| !(0..=MAX_ATTR_SIZE).contains(&p)) {
        return Err(Error::node(name, format!("pads {pads:?} must be in [0, {MAX_ATTR_SIZE}] (negative pads crop, which is not supported)")));
    }
    if full[0] != 0 || full[1] != 0 || full[4] != 0 || full[5] != 0 {
        return Err(Error::node(
            name,
            format!("pads {pads:?} pad the batch or channel dimension; only H and W are supported"),
        ));
    }
    Ok(Pad {
        pads: [
            full[2] as usize,
            full[3] as usize,
            full[6] as usize,
            full[7] as usize,
        ],
        value,
    })
}
