//! Executors and the per-layer trace.
//!
//! [`Executor`] runs a graph on one backend (single processor): it prepares every node once,
//! preallocates the value buffers (a dead value's buffer is reused for a later value of any
//! size: see `pick_buffer`), and records one [`LayerSpan`] per layer.
//! [`Executor::run_sliced`] computes each layer as a union of disjoint slices, the primitive
//! the cooperative executor builds on.
//!
//! [`Executor::new_quantized`] runs a [`QuantizedModel`] instead: every buffer then holds a
//! QUInt8 value ([`Value::Q8`]), graph inputs are quantized on entry (inside the traced
//! inference) and graph outputs dequantized on exit (see [`crate::quant`]).
pub mod trace;

use crate::backend::{Backend, Precision};
use crate::graph::Graph;
use crate::quant::{QParams, QTensor, QuantizedModel, Value};
use crate::tensor::{Slice, Tensor};
use crate::{Error, Result};
use std::collections::HashMap;
use trace::{monotonic_ns, LayerSpan, Trace};

/// The buffer for a value of `len` elements: the smallest dead buffer that holds it, else the
/// largest dead one (its capacity grown to `len`), else a new one. Reusing across sizes
/// keeps the network's working set small, so a layer writes into memory that is still in
/// cache: on EfficientNet-Lite0 the same-size-only rule left 43 buffers (6.8 MB of QUInt8
/// activations) where at most 2.4 MB are live at once.
fn pick_buffer(caps: &mut Vec<usize>, free: &mut Vec<usize>, len: usize) -> usize {
    let fits = free
        .iter()
        .enumerate()
        .filter(|&(_, &s)| caps[s] >= len)
        .min_by_key(|&(_, &s)| caps[s]);
    let pick = fits
        .or_else(|| free.iter().enumerate().max_by_key(|&(_, &s)| caps[s]))
        .map(|(k, _)| k);
    match pick {
        Some(k) => {
            let s = free.swap_remove(k);
            caps[s] = caps[s].max(len);
            s
        }
        None => {
            caps.push(len);
            caps.len() - 1
        }
    }
}

/// Where a step reads a value from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The `i`-th graph input, as passed to `run`.
    Input(usize),
    /// Buffer slot `i`.
    Slot(usize),
}

/// One prepared node.
#[derive(Debug)]
pub(crate) struct Step<P> {
    pub(crate) node: String,
    pub(crate) kind: &'static str,
    pub(crate) prepared: P,
    pub(crate) inputs: Vec<Source>,
    /// The buffer slot it writes.
    pub(crate) slot: usize,
    pub(crate) shape: Vec<usize>,
    /// The output's quantization (quantized execution).
    out_q: Option<QParams>,
}

/// A single-processor executor of one graph on backend `B`.
#[derive(Debug)]
pub struct Executor<B: Backend> {
    backend: B,
    precision: Precision,
    graph: String,
    inputs: Vec<(String, Vec<usize>)>,
    steps: Vec<Step<B::Prepared>>,
    slots: Vec<Value>,
    /// Each buffer's capacity in elements (the largest value it holds).
    caps: Vec<usize>,
    /// The graph inputs, quantized (quantized execution only).
    qinputs: Vec<QTensor>,
    outputs: Vec<Source>,
}

impl<B: Backend> Executor<B> {
    /// Validates `graph`, prepares every node on `backend` at `precision` and allocates the
    /// buffers. Errors name the node at fault.
    pub fn new(graph: &Graph, backend: B, precision: Precision) -> Result<Executor<B>> {
        Self::build(graph, backend, precision, None)
    }

    /// Prepares every node of a quantized model on `backend` for QUInt8 storage
    /// ([`Backend::prepare_quantized`]) and allocates QUInt8 buffers. Errors name the node at
    /// fault.
    pub fn new_quantized(model: &QuantizedModel, backend: B) -> Result<Executor<B>> {
        Self::build(&model.graph, backend, Precision::Quint8, Some(model))
    }

    fn build(
        graph: &Graph,
        backend: B,
        precision: Precision,
        quant: Option<&QuantizedModel>,
    ) -> Result<Executor<B>> {
        let shapes = graph.infer_shapes()?;
        let mut where_: HashMap<&str, Source> = HashMap::new();
        for (i, v) in graph.inputs.iter().enumerate() {
            where_.insert(v.name.as_str(), Source::Input(i));
        }
        // Last step reading each value (graph outputs live to the end).
        let mut last_use: HashMap<&str, usize> = HashMap::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            for v in &n.inputs {
                last_use.insert(v.as_str(), i);
            }
        }
        for o in &graph.outputs {
            last_use.insert(o.as_str(), usize::MAX);
        }
        // Each buffer's capacity (elements): the largest value it holds.
        let mut caps: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for (i, n) in graph.nodes.iter().enumerate() {
            let shape = shapes
                .get(&n.output)
                .ok_or_else(|| Error::node(&n.name, "output shape unknown"))?
                .clone();
            let ins: Vec<&[usize]> =
                n.inputs
                    .iter()
                    .map(|v| {
                        shapes.get(v).map(Vec::as_slice).ok_or_else(|| {
                            Error::node(&n.name, format!("reads unknown value '{v}'"))
                        })
                    })
                    .collect::<Result<_>>()?;
            let (prepared, out_q) = match quant {
                None => (backend.prepare(n, &ins, &shape, precision)?, None),
                Some(m) => {
                    let q = m.node(i);
                    (
                        backend.prepare_quantized(n, &q, &ins, &shape)?,
                        Some(q.output),
                    )
                }
            };
            let inputs = n
                .inputs
                .iter()
                .map(|v| {
                    where_.get(v.as_str()).copied().ok_or_else(|| {
                        Error::node(&n.name, format!("reads '{v}' before it is produced"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let slot = pick_buffer(&mut caps, &mut free, shape.iter().product());
            where_.insert(n.output.as_str(), Source::Slot(slot));
            // Buffers whose value this step read for the last time become free after it.
            for v in &n.inputs {
                if let (Some(&Source::Slot(s)), Some(&lu)) =
                    (where_.get(v.as_str()), last_use.get(v.as_str()))
                {
                    if lu == i && !free.contains(&s) {
                        free.push(s);
                    }
                }
            }
            // A value nobody reads frees its buffer at once (after this step writes it).
            if !last_use.contains_key(n.output.as_str()) {
                free.push(slot);
            }
            steps.push(Step {
                node: n.name.clone(),
                kind: n.op.kind(),
                prepared,
                inputs,
                slot,
                shape,
                out_q,
            });
        }
        let slots = caps
            .iter()
            .map(|&cap| match quant {
                None => Value::F32(Tensor::zeros(&[cap])),
                // Every step sets its output's parameters before writing.
                Some(_) => Value::Q8(QTensor::zeros(
                    &[cap],
                    QParams {
                        scale: 1.0,
                        zero_point: 0,
                    },
                )),
            })
            .collect();
        let outputs = graph
            .outputs
            .iter()
            .map(|o| {
                where_.get(o.as_str()).copied().ok_or_else(|| Error::Graph {
                    graph: graph.name.clone(),
                    msg: format!("output '{o}' is not produced"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Executor {
            backend,
            precision,
            graph: graph.name.clone(),
            inputs: graph
                .inputs
                .iter()
                .map(|v| (v.name.clone(), v.shape.clone()))
                .collect(),
            steps,
            slots,
            caps,
            qinputs: match quant {
                None => Vec::new(),
                Some(m) => graph
                    .inputs
                    .iter()
                    .zip(&m.inputs)
                    .map(|(v, &q)| QTensor::zeros(&v.shape, q))
                    .collect(),
            },
            outputs,
        })
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Number of layers (prepared nodes).
    pub fn layers(&self) -> usize {
        self.steps.len()
    }

    /// Output shape of layer `i`.
    pub fn layer_shape(&self, i: usize) -> Option<&[usize]> {
        self.steps.get(i).map(|s| s.shape.as_slice())
    }

    /// Number of value buffers allocated (after reuse).
    pub fn buffers(&self) -> usize {
        self.slots.len()
    }

    /// The prepared layers in execution order, for runners that record the whole network at
    /// once (the GPU's [`crate::backend::vulkan::GpuNetwork`]).
    pub(crate) fn steps(&self) -> &[Step<B::Prepared>] {
        &self.steps
    }

    /// Capacity in elements of each buffer slot (the largest value it holds).
    pub(crate) fn slot_lens(&self) -> Vec<usize> {
        self.caps.clone()
    }

    /// The shape of each graph input.
    pub(crate) fn input_shapes(&self) -> Vec<Vec<usize>> {
        self.inputs.iter().map(|(_, s)| s.clone()).collect()
    }

    /// Where each graph output is read from.
    pub(crate) fn output_sources(&self) -> &[Source] {
        &self.outputs
    }

    /// The precision it was prepared at.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs one inference; returns the graph outputs and the per-layer trace (whole slices).
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Trace)> {
        self.run_sliced(inputs, |_, shape| vec![Slice::whole(shape)])
    }

    /// Runs one inference computing layer `i` (of output shape `shape`) as the union of the
    /// slices `plan(i, shape)` returns, one after the other, each recorded as its own span.
    /// The slices must be disjoint and cover the output (checked); non-sliceable layers
    /// accept only the whole output.
    pub fn run_sliced(
        &mut self,
        inputs: &[Tensor],
        plan: impl Fn(usize, &[usize]) -> Vec<Slice> + Sync,
    ) -> Result<(Vec<Tensor>, Trace)> {
        self.check_inputs(inputs)?;
        let Executor {
            backend,
            precision,
            steps,
            slots,
            qinputs,
            outputs,
            ..
        } = self;
        let (backend, precision) = (&*backend, *precision);
        let trace = backend.install(|| -> Result<Trace> {
            let mut trace = Trace {
                start_ns: monotonic_ns(),
                end_ns: 0,
                layers: Vec::with_capacity(steps.len()),
            };
            for (q, t) in qinputs.iter_mut().zip(inputs) {
                let qp = q.qparams();
                crate::quant::quantize_into(t.data(), qp, q.data_mut());
            }
            let qinputs = &*qinputs;
            for (i, step) in steps.iter().enumerate() {
                let slices = plan(i, &step.shape);
                check_cover(&step.node, &step.shape, &slices)?;
                // Take the output buffer out so that inputs can be borrowed from the others.
                // A reused buffer may hold a value of another shape: refitting it stays
                // within the capacity allocated for it (`pick_buffer`).
                let mut out =
                    std::mem::replace(&mut slots[step.slot], Value::F32(Tensor::zeros(&[0])));
                if out.shape() != step.shape.as_slice() {
                    out.refit(&step.shape);
                }
                let mixed = || Error::node(&step.node, "internal: F32 and QUInt8 values mixed");
                let result = (|| {
                    let t = match &mut out {
                        Value::F32(t) => t,
                        Value::Q8(q) => {
                            if let Some(oq) = step.out_q {
                                q.set_qparams(oq);
                            }
                            let ins: Vec<&QTensor> = step
                                .inputs
                                .iter()
                                .map(|s| match *s {
                                    Source::Input(k) => qinputs.get(k).ok_or_else(mixed),
                                    Source::Slot(k) => match &slots[k] {
                                        Value::Q8(v) => Ok(v),
                                        Value::F32(_) => Err(mixed()),
                                    },
                                })
                                .collect::<Result<_>>()?;
                            let shared = q.shared();
                            for slice in slices {
                                let start_ns = monotonic_ns();
                                backend.run_quantized(&step.prepared, &ins, &shared, &slice)?;
                                let end_ns = monotonic_ns();
                                let (start_ns, end_ns) =
                                    backend.last_span_ns().unwrap_or((start_ns, end_ns));
                                trace.layers.push(LayerSpan {
                                    node: step.node.clone(),
                                    kind: step.kind.to_string(),
                                    processor: backend.processor(),
                                    precision,
                                    slice,
                                    start_ns,
                                    end_ns,
                                    transfer_ns: backend.last_transfer_ns(),
                                });
                            }
                            return Ok(());
                        }
                    };
                    let ins: Vec<&Tensor> = step
                        .inputs
                        .iter()
                        .map(|s| match *s {
                            Source::Input(k) => Ok(&inputs[k]),
                            Source::Slot(k) => match &slots[k] {
                                Value::F32(v) => Ok(v),
                                Value::Q8(_) => Err(mixed()),
                            },
                        })
                        .collect::<Result<_>>()?;
                    let shared = t.shared();
                    for slice in slices {
                        let start_ns = monotonic_ns();
                        backend.run(&step.prepared, &ins, &shared, &slice)?;
                        let end_ns = monotonic_ns();
                        let (start_ns, end_ns) =
                            backend.last_span_ns().unwrap_or((start_ns, end_ns));
                        trace.layers.push(LayerSpan {
                            node: step.node.clone(),
                            kind: step.kind.to_string(),
                            processor: backend.processor(),
                            precision,
                            slice,
                            start_ns,
                            end_ns,
                            transfer_ns: backend.last_transfer_ns(),
                        });
                    }
                    Ok::<(), Error>(())
                })();
                slots[step.slot] = out;
                result?;
            }
            trace.end_ns = monotonic_ns();
            Ok(trace)
        })?;
        let outs = outputs
            .iter()
            .map(|s| match *s {
                Source::Input(k) => inputs[k].clone(),
                Source::Slot(k) => slots[k].to_f32(),
            })
            .collect();
        Ok((outs, trace))
    }

    /// Checks the count and shapes of the graph inputs; the error names the input.
    pub(crate) fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Graph {
                graph: self.graph.clone(),
                msg: format!(
                    "expects {} input(s), got {}",
                    self.inputs.len(),
                    inputs.len()
                ),
            });
        }
        for ((name, shape), t) in self.inputs.iter().zip(inputs) {
            if t.shape() != shape.as_slice() {
                return Err(Error::InputShape {
                    name: name.clone(),
                    expected: shape.clone(),
                    got: t.shape().to_vec(),
                });
            }
        }
        Ok(())
    }
}

/// Checks that `slices` are disjoint and cover an output of `shape`.
pub fn check_cover(node: &str, shape: &[usize], slices: &[Slice]) -> Result<()> {
    let (c, h) = crate::tensor::channels_rows(shape);
    if let [s] = slices {
        if s.channels == (0..c) && s.rows == (0..h) {
            return Ok(());
        }
    }
    let mut seen = vec![false; c * h];
    for s in slices {
        if s.channels.end > c || s.rows.end > h {
            return Err(Error::node(
                node,
                format!("slice {s:?} outside output {shape:?}"),
            ));
        }
        for ch in s.channels.clone() {
            for r in s.rows.clone() {
                if std::mem::replace(&mut seen[ch * h + r], true) {
                    return Err(Error::node(
                        node,
                        format!("slices overlap at channel {ch}, row {r}"),
                    ));
                }
            }
        }
    }
    if seen.iter().any(|v| !v) {
        return Err(Error::node(node, "slices do not cover the whole output"));
    }
    Ok(())
}

/// Runs `graph` once on the CPU at F32 with `threads` threads (the graph as given: call
/// [`Graph::optimized`] first to fold BatchNorm and fuse activations).
pub fn run_graph_f32(graph: &Graph, input: &Tensor, threads: usize) -> Result<Vec<Tensor>> {
    let backend = crate::backend::cpu::CpuBackend::new(threads)?;
    let mut exec = Executor::new(graph, backend, Precision::F32)?;
    Ok(exec.run(std::slice::from_ref(input))?.0)
}

#[cfg(test)]
mod tests;
