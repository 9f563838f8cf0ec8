//! # Processor-friendly quantization (QUInt8)
//!
//! μLayer stores every tensor as 8-bit linear quantized values and lets each processor compute
//! in the arithmetic it is fastest at: the CPU in 8-bit integers with 32-bit accumulators, the
//! GPU in F16 after dequantizing on load. This module holds what every backend shares: the
//! storage types, the quantized model, calibration and the requantisation arithmetic.
//!
//! ## Storage between layers
//!
//! The executor carries a [`Value`] per buffer: `Value::F32(Tensor)` in F32 execution,
//! `Value::Q8(QTensor)` in quantized execution. A [`QTensor`] is
//!
//! - `data: Vec<u8>` — dense NCHW codes, exactly the layout of the F32 [`crate::Tensor`]
//!   (channel `c`, row `y`, column `x` of image `n` at `((n·C + c)·H + y)·W + x`), so the
//!   slice primitive ([`crate::Slice`]: a channel range × a row range) addresses the same
//!   elements in both;
//! - `scale: f32`, `zero_point: u8` ([`QParams`], one pair per tensor):
//!   `real = scale · (q − zero_point)`;
//! - `shape: Vec<usize>`.
//!
//! Workers write disjoint slices of one output through [`SharedQTensor`] (the QUInt8
//! counterpart of [`crate::SharedTensor`]). Graph inputs arrive as F32 and are quantized on
//! entry; graph outputs are dequantized on exit.
//!
//! ## The quantized model ([`QuantizedModel`])
//!
//! - **Activations**: asymmetric QUInt8 per tensor, from ranges calibrated on sample inputs
//!   ([`calibrate()`], [`CalibrationMethod`]: min/max — the default, chosen by measured
//!   accuracy — percentile or entropy). The range is widened to include 0, so real 0 is a
//!   code: zero padding and ReLU are exact. The agent calibrates on the centre crops of the
//!   bundled photos (`agent::quant`).
//! - **Weights**: per output channel, symmetric 8-bit (`−127..=127`, zero point 0),
//!   `scale = max|w| / 127` ([`QWeights`]).
//! - **Biases**: 32-bit, in units of `s_x · s_w[c]` (the product's accumulator unit), with
//!   bias correction: the mean shift that rounding the weights causes, measured with the
//!   calibration inputs' channel means, is subtracted ([`QWeights::quantize_corrected`]).
//! - Ops that only move codes (max pooling, flatten, reshape, dropout, pad, standalone
//!   ReLU/Clip) keep their input's quantization; all others have their own calibrated one.
//! - Fused ReLU/ReLU6 become clamps of the output codes: `[code(0), code(6)]`.
//!
//! ## What each processor does with it
//!
//! - **CPU** (`backend::cpu`, `ops/*/cpu_q8.rs`): `acc = bias + Σ w·(x − z_x)` in 32-bit
//!   integers, then `code = clamp(z_y + M·acc)` with `M = s_x·s_w/s_y` applied by
//!   [`Multiplier`] (fixed-point multiplier and shift, one rounding: see [`requant`]).
//! - **GPU** (`backend::vulkan`, shader precisions `q8`/`q8s`/`q8f`): dequantize on load —
//!   `x_f16 = s_x·(q − z_x)`, `w_f16 = s_w[c]·w_q`, `b_f16 = s_x·s_w[c]·b_q` — compute in F16
//!   (F32 accumulators in reductions; F32 where the device lacks shaderFloat16), and
//!   requantize on store with the output's [`QParams`] (round to nearest, ties up like the
//!   CPU's [`Multiplier`], after the fused activation's clamp). Codes agree with the CPU's to
//!   1 LSB on ≥ 99% of elements (`tests/vulkan_q8.rs`).
//!   Reading the same [`QuantizedModel`] and writing the same [`QTensor`] layout makes a
//!   layer split between CPU and GPU write one shared QUInt8 output.
//!
//! ## Numbers
//!
//! Every product fits: codes are at most 255 away from the zero point and weights at most 127,
//! so `K ≤ `[`model::MAX_K`]` = 33,155` keeps `|Σ w·(x − z_x)| < 2^30`, and biases are clamped to
//! `±2^29`: the biased accumulator never overflows 32 bits.
pub mod calibrate;
pub mod model;
pub mod reference;
pub mod requant;
mod tensor;

#[cfg(test)]
mod tests;

pub use calibrate::{calibrate, CalibrationMethod, Ranges};
pub use model::{QNode, QWeights, QuantNode, QuantizedModel};
pub use requant::{requant_table, AddRequant, ChannelRequant, Multiplier};
pub use tensor::{quantize_into, QParams, QTensor, SharedQTensor, Value};

use crate::ops::Activation;

/// The codes `[lo, hi]` a fused activation clamps an output quantized with `q` to.
pub fn activation_codes(act: Activation, q: QParams) -> (u8, u8) {
    let (lo, hi) = act.bounds();
    (q.code_of(lo), q.code_of(hi))
}

/// The code-to-code map from `from`'s quantization to `to`'s (identity when equal).
pub fn requant_table_of(from: QParams, to: QParams) -> [u8; 256] {
    requant_table(from, to, 0, 255)
}

/// Calibrates `graph` on `samples` with `method` and quantizes it: the one call from an F32
/// graph (optimized) to a model the executor runs at QUInt8.
pub fn quantize(
    graph: &crate::Graph,
    samples: &[Vec<crate::Tensor>],
    method: CalibrationMethod,
    threads: usize,
) -> crate::Result<QuantizedModel> {
    let ranges = calibrate(graph, samples, method, threads)?;
    QuantizedModel::new(graph, &ranges)
}
