//! The processor-backend trait. The executor and (later) the partitioner talk to processors
//! only through it; they know nothing about SIMD or Vulkan.
use crate::graph::Node;
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::Result;

pub mod cpu;
pub mod vulkan;

/// A processor of the SoC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Processor {
    Cpu,
    Gpu,
}

/// The arithmetic a layer runs in (storage follows the precision, except processor-friendly
/// quantization where QUInt8 storage meets F16 GPU arithmetic).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
    Quint8,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Quint8 => "quint8",
        })
    }
}

/// One processor's implementation of every op. Preparing (packing weights, building
/// pipelines) is separate from running, which computes one slice of one layer.
pub trait Backend: Send + Sync {
    /// What `prepare` produces for one node: packed weights, pipelines, scratch sizes.
    type Prepared: Send + Sync;

    /// Which processor this backend drives.
    fn processor(&self) -> Processor;

    /// Turns a node into a prepared kernel for these shapes and precision.
    fn prepare(
        &self,
        node: &Node,
        input_shapes: &[&[usize]],
        output_shape: &[usize],
        precision: Precision,
    ) -> Result<Self::Prepared>;

    /// Computes output channels `slice.channels` and rows `slice.rows` of the node into
    /// `out`, writing nothing outside the slice.
    fn run(
        &self,
        prepared: &Self::Prepared,
        inputs: &[&Tensor],
        out: &SharedTensor<'_>,
        slice: &Slice,
    ) -> Result<()>;

    /// Runs `f` (a sequence of `run` calls, e.g. a whole inference) in the backend's execution
    /// context, so that each `run` avoids a hand-off to its workers (the CPU backend runs `f`
    /// on its thread pool). The default calls `f` directly.
    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }

    /// Prepares node `node` of a quantized model for QUInt8 storage: `q` gives the
    /// quantization of its inputs and output and its 8-bit weights (see [`crate::quant`]).
    /// The default: this backend has no QUInt8 kernels.
    fn prepare_quantized(
        &self,
        node: &Node,
        q: &crate::quant::QuantNode<'_>,
        input_shapes: &[&[usize]],
        output_shape: &[usize],
    ) -> Result<Self::Prepared> {
        let _ = (q, input_shapes, output_shape);
        Err(crate::Error::node(
            &node.name,
            format!("the {:?} backend has no QUInt8 kernels", self.processor()),
        ))
    }

    /// Computes output channels `slice.channels` and rows `slice.rows` of a node prepared by
    /// [`Backend::prepare_quantized`] from QUInt8 inputs into the QUInt8 `out`, writing
    /// nothing outside the slice.
    fn run_quantized(
        &self,
        prepared: &Self::Prepared,
        inputs: &[&crate::quant::QTensor],
        out: &crate::quant::SharedQTensor<'_>,
        slice: &Slice,
    ) -> Result<()> {
        let _ = (prepared, inputs, out, slice);
        Err(crate::Error::Other(format!(
            "the {:?} backend has no QUInt8 kernels",
            self.processor()
        )))
    }

    /// When the last `run` on this thread did its work, on the processor's own clock converted
    /// to `CLOCK_MONOTONIC` ns (the GPU's calibrated timestamps); `None` (the default) lets the
    /// caller use its own clock around the call.
    fn last_span_ns(&self) -> Option<(u64, u64)> {
        None
    }

    /// Nanoseconds the last `run` on this thread spent moving tensors between host and
    /// processor memory outside its span (the GPU's staging copies where memory is not
    /// shared); 0 (the default) where the processor works on the tensors in place.
    fn last_transfer_ns(&self) -> u64 {
        0
    }
}

/// Checks that a prepared node is run on tensors of the shapes it was prepared for; the
/// error names the node. Shared by every backend's `run`.
pub(crate) fn check_run_shapes(
    node: &str,
    inputs: &[&Tensor],
    prepared_inputs: &[Vec<usize>],
    out: &SharedTensor<'_>,
    prepared_output: &[usize],
) -> crate::Result<()> {
    if inputs.len() != prepared_inputs.len()
        || inputs
            .iter()
            .zip(prepared_inputs)
            .any(|(t, s)| t.shape() != s.as_slice())
    {
        let got: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        return Err(crate::Error::node(
            node,
            format!("inputs of shapes {got:?}, prepared for {prepared_inputs:?}"),
        ));
    }
    if out.shape() != prepared_output {
        return Err(crate::Error::node(
            node,
            format!(
                "output tensor of shape {:?}, prepared for {prepared_output:?}",
                out.shape()
            ),
        ));
    }
    Ok(())
}

/// Checks the arguments of [`Backend::prepare_quantized`]: the output shape the op produces
/// and one input quantization per input; the error names the node. Shared by every backend.
pub(crate) fn check_quantized_prepare(
    node: &Node,
    q: &crate::quant::QuantNode<'_>,
    input_shapes: &[&[usize]],
    output_shape: &[usize],
) -> crate::Result<()> {
    let name = node.name.as_str();
    let expected = node.op.output_shape(name, input_shapes)?;
    if expected != output_shape {
        return Err(crate::Error::node(
            name,
            format!("output shape {output_shape:?} given, the op produces {expected:?}"),
        ));
    }
    if q.inputs.len() != input_shapes.len() {
        return Err(crate::Error::node(
            name,
            format!(
                "{} input quantization(s) for {} inputs",
                q.inputs.len(),
                input_shapes.len()
            ),
        ));
    }
    Ok(())
}
