//! The quantized model: a graph plus the quantization of every value and the 8-bit weights
//! of every convolution and fully connected layer. Every backend reads this one
//! representation (the CPU computes on it in integers; the GPU dequantizes it to F16).
use super::calibrate::Ranges;
use super::QParams;
use crate::graph::Graph;
use crate::ops::Op;
use crate::{Error, Result};
use std::collections::HashMap;

/// Largest magnitude of a quantized bias (`±2^29`): with `K·255·127 < 2^30` the biased
/// accumulator of any product fits in 31 bits.
pub const BIAS_LIMIT: i32 = 1 << 29;

/// Largest reduction length (`K`) of a quantized product: `K·255·127 < 2^30`.
pub const MAX_K: usize = ((1usize << 30) - 1) / (255 * 127);

/// Per-output-channel symmetric 8-bit weights of a convolution or fully connected layer.
#[derive(Clone, Debug, PartialEq)]
pub struct QWeights {
    /// Codes in `-127..=127`, in the layout of the F32 weight tensor (`[out, in/groups, kh,
    /// kw]` or `[out, in]`): `w ≈ scales[out] · data`.
    pub data: Vec<i8>,
    /// The F32 weight tensor's shape.
    pub shape: Vec<usize>,
    /// One scale per output channel: `max |w| / 127` (1 for an all-zero channel).
    pub scales: Vec<f32>,
    /// One bias per output channel in units of `s_x · scales[out]` (`s_x` the input's scale),
    /// clamped to `±`[`BIAS_LIMIT`]; zeros when the layer has no bias.
    pub bias: Vec<i32>,
}

impl QWeights {
    /// Quantizes `w` (output channels on dimension 0) and `bias` for an input of scale `s_x`.
    pub fn quantize(w: &crate::Tensor, bias: Option<&crate::Tensor>, s_x: f32) -> QWeights {
        Self::quantize_corrected(w, bias, s_x, None)
    }

    /// As [`QWeights::quantize`], with **bias correction** when the mean of each input
    /// channel is known (`input_mean`, `groups` groups of input channels): the rounding of the
    /// weights shifts each output's mean by `Σ (ŵ − w)·E[x]` (`ŵ` the dequantized weight),
    /// which is subtracted from the bias (Nagel et al., "Data-Free Quantization", 2019, with
    /// the input means measured during calibration).
    pub fn quantize_corrected(
        w: &crate::Tensor,
        bias: Option<&crate::Tensor>,
        s_x: f32,
        input_mean: Option<(&[f32], usize)>,
    ) -> QWeights {
        let m = w.shape()[0];
        let per = w.len() / m.max(1);
        let mut data = Vec::with_capacity(w.len());
        let mut scales = Vec::with_capacity(m);
        for row in w.data().chunks(per.max(1)).take(m) {
            let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            let s = if amax > 0.0 && amax.is_finite() {
                amax / 127.0
            } else {
                1.0
            };
            scales.push(s);
            data.extend(
                row.iter()
                    .map(|&v| (v / s).round_ties_even().clamp(-127.0, 127.0) as i8),
            );
        }
        // Output channel c's shift of the mean from the rounding of its weights.
        let correction = |c: usize| -> f64 {
            let Some((mean, groups)) = input_mean else {
                return 0.0;
            };
            let cin = mean.len();
            let cin_g = cin / groups.max(1);
            let shape = w.shape();
            let taps: usize = shape[2..].iter().product::<usize>().max(1);
            if shape.len() < 2 || shape[1] != cin_g || cin_g == 0 {
                return 0.0;
            }
            let g = c / (m / groups.max(1)).max(1);
            let row = &w.data()[c * per..(c + 1) * per];
            let q = &data[c * per..(c + 1) * per];
            let s = f64::from(scales[c]);
            (0..per)
                .map(|k| {
                    let ic = g * cin_g + k / taps;
                    (s * f64::from(q[k]) - f64::from(row[k])) * f64::from(mean[ic])
                })
                .sum()
        };
        let bias = (0..m)
            .map(|c| {
                let b = f64::from(bias.map_or(0.0, |b| b.data()[c])) - correction(c);
                let q = (b / (f64::from(s_x) * f64::from(scales[c]))).round();
                q.clamp(f64::from(-BIAS_LIMIT), f64::from(BIAS_LIMIT)) as i32
            })
            .collect();
        QWeights {
            data,
            shape: w.shape().to_vec(),
            scales,
            bias,
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.scales.len()
    }

    /// The real weights these codes stand for (`scales[out] · code`), F32 tensor layout.
    pub fn dequantized(&self) -> crate::Tensor {
        let per = self.data.len() / self.scales.len().max(1);
        let d = self
            .data
            .iter()
            .enumerate()
            .map(|(i, &q)| self.scales[i / per.max(1)] * f32::from(q))
            .collect();
        crate::Tensor::from_vec(&self.shape, d).expect("same element count")
    }
}

/// The quantization of one node: its output, and its weights if it has any.
#[derive(Clone, Debug, PartialEq)]
pub struct QNode {
    /// The quantization of the value the node writes.
    pub output: QParams,
    /// 8-bit weights (convolution, fully connected).
    pub weights: Option<QWeights>,
}

/// What a backend needs to prepare one node of a quantized model.
#[derive(Clone, Copy, Debug)]
pub struct QuantNode<'a> {
    /// The quantization of each input, in the node's input order.
    pub inputs: &'a [QParams],
    /// The quantization of the output.
    pub output: QParams,
    /// 8-bit weights, for convolutions and fully connected layers.
    pub weights: Option<&'a QWeights>,
}

/// A graph quantized for QUInt8 execution.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedModel {
    /// The (optimized) F32 graph: structure, and F32 weights for the ops that run as float
    /// islands (see `backend::cpu::q8`).
    pub graph: Graph,
    /// The quantization of each graph input (inputs are quantized on entry).
    pub inputs: Vec<QParams>,
    /// One entry per node of `graph`, in order.
    pub nodes: Vec<QNode>,
    /// The quantization of every value by name (inputs and node outputs).
    pub values: HashMap<String, QParams>,
    /// The calibration it came from (method, number of samples).
    pub calibration: (super::CalibrationMethod, usize),
    /// Each node's inputs' quantization, in node order (kept to hand out [`QuantNode`]s).
    node_inputs: Vec<Vec<QParams>>,
}

/// True for ops whose output is a rearrangement or a selection of their (first) input's codes:
/// they keep the input's quantization, so they run without arithmetic.
pub fn keeps_input_quantization(op: &Op) -> bool {
    matches!(
        op,
        Op::MaxPool(_)
            | Op::Flatten { .. }
            | Op::Reshape { .. }
            | Op::Dropout
            | Op::Pad(_)
            | Op::Activation(_)
    )
}

impl QuantizedModel {
    /// Quantizes `graph` (optimized, and calibrated as it is) with the ranges of `ranges`:
    /// asymmetric QUInt8 for every value, per-output-channel symmetric 8-bit weights, 32-bit
    /// biases. Ops that only move codes around ([`keeps_input_quantization`]) keep their
    /// input's quantization. Errors name the node whose range is missing.
    pub fn new(graph: &Graph, ranges: &Ranges) -> Result<QuantizedModel> {
        graph.infer_shapes()?;
        let range_of = |name: &str, node: &str| {
            ranges.ranges.get(name).copied().ok_or_else(|| {
                Error::node(
                    node,
                    format!("no calibrated range for '{name}' (calibrate this graph)"),
                )
            })
        };
        let mut values: HashMap<String, QParams> = HashMap::new();
        let mut inputs = Vec::new();
        for i in &graph.inputs {
            let (lo, hi) = range_of(&i.name, &i.name)?;
            let q = QParams::from_range(lo, hi);
            values.insert(i.name.clone(), q);
            inputs.push(q);
        }
        let mut nodes = Vec::with_capacity(graph.nodes.len());
        let mut node_inputs = Vec::with_capacity(graph.nodes.len());
        for n in &graph.nodes {
            let ins: Vec<QParams> = n
                .inputs
                .iter()
                .map(|v| {
                    values.get(v).copied().ok_or_else(|| {
                        Error::node(&n.name, format!("reads '{v}' before it is quantized"))
                    })
                })
                .collect::<Result<_>>()?;
            let output = match ins.first() {
                Some(&q) if keeps_input_quantization(&n.op) => q,
                _ => {
                    let (lo, hi) = range_of(&n.output, &n.name)?;
                    QParams::from_range(lo, hi)
                }
            };
            let check_k = |k: usize| {
                if k > MAX_K {
                    Err(Error::node(
                        &n.name,
                        format!("reduction length {k} exceeds the 8-bit limit {MAX_K}"),
                    ))
                } else {
                    Ok(())
                }
            };
            let weights = match &n.op {
                Op::Conv2d(c) => {
                    let ws = c.weight.shape();
                    check_k(ws[1] * ws[2] * ws[3])?;
                    let mean = ranges
                        .means
                        .get(&n.inputs[0])
                        .map(|m| (m.as_slice(), c.groups));
                    Some(QWeights::quantize_corrected(
                        &c.weight,
                        c.bias.as_ref(),
                        ins[0].scale,
                        mean,
                    ))
                }
                Op::Gemm(g) => {
                    check_k(g.weight.shape()[1])?;
                    // The input's last dimension is the reduction; its channel means are
                    // those of a 2-D value (the only rank the zoo feeds a Gemm).
                    let mean = ranges
                        .means
                        .get(&n.inputs[0])
                        .filter(|m| m.len() == g.weight.shape()[1])
                        .map(|m| (m.as_slice(), 1));
                    Some(QWeights::quantize_corrected(
                        &g.weight,
                        g.bias.as_ref(),
                        ins[0].scale,
                        mean,
                    ))
                }
                _ => None,
            };
            values.insert(n.output.clone(), output);
            nodes.push(QNode { output, weights });
            node_inputs.push(ins);
        }
        Ok(QuantizedModel {
            graph: graph.clone(),
            inputs,
            nodes,
            values,
            calibration: (ranges.method, ranges.samples),
            node_inputs,
        })
    }

    /// What a backend needs to prepare node `i`.
    pub fn node(&self, i: usize) -> QuantNode<'_> {
        QuantNode {
            inputs: &self.node_inputs[i],
            output: self.nodes[i].output,
            weights: self.nodes[i].weights.as_ref(),
        }
    }

    /// The quantization of each graph output, in order.
    pub fn outputs(&self) -> Vec<QParams> {
        self.graph
            .outputs
            .iter()
            .map(|o| self.values[o.as_str()])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    #[test]
    fn weights_are_per_channel_symmetric() {
        let w = Tensor::from_vec(&[2, 3], vec![0.5, -1.0, 0.25, 0.0, 0.0, 0.0]).expect("6");
        let b = Tensor::from_vec(&[2], vec![0.1, -0.3]).expect("2");
        let q = QWeights::quantize(&w, Some(&b), 0.02);
        assert_eq!(q.data, vec![64, -127, 32, 0, 0, 0]);
        assert!((q.scales[0] - 1.0 / 127.0).abs() < 1e-9);
        assert_eq!(q.scales[1], 1.0);
        // 0.1 / (0.02 / 127) = 635; −0.3 / 0.02 = −15.
        assert_eq!(q.bias, vec![635, -15]);
        let back = q.dequantized();
        assert!((back.data()[1] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn biases_are_clamped() {
        let w = Tensor::from_vec(&[1, 1], vec![1e-12]).expect("1");
        let b = Tensor::from_vec(&[1], vec![1.0]).expect("1");
        let q = QWeights::quantize(&w, Some(&b), 1e-3);
        assert_eq!(q.bias, vec![BIAS_LIMIT]);
    }
}
