//! The concurrent executor: runs a [`Plan`] with the CPU and the GPU working at once.
//!
//! Every value has its own buffer (no reuse between values: branches and split layers run
//! concurrently, so a buffer must never be shared by two live values). A stage is one
//! synchronisation: a whole layer runs on its processor on the calling thread; a split layer
//! hands the GPU's slice to the executor's GPU thread ([`Helper`], persistent, awake between
//! stages) while the CPU computes its slice on its pool, both writing the same shared output
//! tensor, and joins; a branch stage runs the CPU's branches here and the GPU's on the other
//! thread. Per-layer spans: one per processor per
//! layer (GPU spans from the GPU's calibrated timestamps when the backend gives them).
use super::helper::Helper;
use super::partition::{Plan, Stage};
use super::profile::DeviceIdentity;
use super::Mechanism;
use crate::backend::{Backend, Precision, Processor};
use crate::exec::trace::{monotonic_ns, LayerSpan, Trace};
use crate::exec::Executor;
use crate::graph::Graph;
use crate::quant::{QParams, QTensor, QuantizedModel, SharedQTensor, Value};
use crate::tensor::{SharedTensor, Slice, Tensor};
use crate::{Error, Result};
use std::collections::HashMap;

/// Anything that runs one inference and returns the outputs with the per-layer trace.
pub trait Runner {
    fn run(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Trace)>;
}

impl<R: Runner + ?Sized> Runner for Box<R> {
    fn run(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Trace)> {
        (**self).run(inputs)
    }
}

impl<B: Backend> Runner for Executor<B> {
    fn run(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Trace)> {
        Executor::run(self, inputs)
    }
}

struct Step<PC, PG> {
    node: String,
    kind: &'static str,
    inputs: Vec<usize>,
    out: usize,
    shape: Vec<usize>,
    cpu: Option<PC>,
    gpu: Option<PG>,
}

/// Executes a cooperative plan on a CPU backend `C` and a GPU backend `G`.
pub struct CoopExecutor<C: Backend, G: Backend> {
    cpu: C,
    gpu: G,
    graph: String,
    precision: Precision,
    plan: Plan,
    steps: Vec<Step<C::Prepared, G::Prepared>>,
    values: Vec<Value>,
    inputs: Vec<(String, Vec<usize>)>,
    outputs: Vec<usize>,
    /// Drives the GPU's side of split and branch stages.
    helper: Helper,
}

impl<C: Backend, G: Backend> std::fmt::Debug for CoopExecutor<C, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoopExecutor")
            .field("graph", &self.graph)
            .field("mechanism", &self.plan.mechanism)
            .field("precision", &self.precision)
            .field("stages", &self.plan.stages.len())
            .finish()
    }
}

enum OutView<'a> {
    F(SharedTensor<'a>),
    Q(SharedQTensor<'a>),
}

fn view(v: &mut Value) -> OutView<'_> {
    match v {
        Value::F32(t) => OutView::F(t.shared()),
        Value::Q8(q) => OutView::Q(q.shared()),
    }
}

/// Runs one slice of a prepared node on backend `b`, returning its span.
#[allow(clippy::too_many_arguments)]
fn exec_slice<B: Backend>(
    b: &B,
    role: Processor,
    prep: Option<&B::Prepared>,
    node: &str,
    kind: &str,
    precision: Precision,
    ins: &[&Value],
    out: &OutView<'_>,
    slice: &Slice,
) -> Result<LayerSpan> {
    let prep =
        prep.ok_or_else(|| Error::node(node, format!("internal: not prepared on the {role:?}")))?;
    let mixed = || Error::node(node, "internal: F32 and QUInt8 values mixed");
    let t0 = monotonic_ns();
    match out {
        OutView::F(o) => {
            let ins: Vec<&Tensor> = ins
                .iter()
                .map(|v| match v {
                    Value::F32(t) => Ok(t),
                    Value::Q8(_) => Err(mixed()),
                })
                .collect::<Result<_>>()?;
            b.run(prep, &ins, o, slice)?;
        }
        OutView::Q(o) => {
            let ins: Vec<&QTensor> = ins
                .iter()
                .map(|v| match v {
                    Value::Q8(t) => Ok(t),
                    Value::F32(_) => Err(mixed()),
                })
                .collect::<Result<_>>()?;
            b.run_quantized(prep, &ins, o, slice)?;
        }
    }
    let t1 = monotonic_ns();
    let (start_ns, end_ns) = b.last_span_ns().unwrap_or((t0, t1));
    Ok(LayerSpan {
        node: node.to_string(),
        kind: kind.to_string(),
        processor: role,
        precision,
        slice: slice.clone(),
        start_ns,
        end_ns,
        transfer_ns: b.last_transfer_ns(),
    })
}

fn placeholder() -> Value {
    Value::F32(Tensor::zeros(&[0]))
}

/// Runs whole nodes `list` in order on backend `b`; their outputs are in `owned` (value id,
/// value), other inputs are read from `store`.
#[allow(clippy::too_many_arguments)]
fn run_list<B: Backend, PC, PG>(
    b: &B,
    role: Processor,
    pick: impl Fn(&Step<PC, PG>) -> Option<&B::Prepared>,
    steps: &[Step<PC, PG>],
    list: &[usize],
    precision: Precision,
    store: &[Value],
    owned: &mut [(usize, Value)],
    spans: &mut Vec<LayerSpan>,
) -> Result<()> {
    for &i in list {
        let step = &steps[i];
        let k = owned
            .iter()
            .position(|(v, _)| *v == step.out)
            .ok_or_else(|| Error::node(&step.node, "internal: branch output not taken"))?;
        let mut out = std::mem::replace(&mut owned[k].1, placeholder());
        let result = {
            let ins: Vec<&Value> = step
                .inputs
                .iter()
                .map(|&v| {
                    owned
                        .iter()
                        .find(|(id, _)| *id == v)
                        .map(|(_, val)| val)
                        .unwrap_or(&store[v])
                })
                .collect();
            let o = view(&mut out);
            let s = Slice::whole(&step.shape);
            exec_slice(
                b,
                role,
                pick(step),
                &step.node,
                step.kind,
                precision,
                &ins,
                &o,
                &s,
            )
        };
        owned[k].1 = out;
        spans.push(result?);
    }
    Ok(())
}

impl<C: Backend, G: Backend> CoopExecutor<C, G> {
    /// Prepares `graph` (optimized; or `quant`'s graph at QUInt8) for `plan`: each node on the
    /// processor(s) the plan gives it. Refuses a plan made from another device's profile
    /// (`current` is this device) and a plan that does not cover every node once.
    pub fn new(
        graph: &Graph,
        quant: Option<&QuantizedModel>,
        cpu: C,
        gpu: G,
        plan: Plan,
        current: &DeviceIdentity,
    ) -> Result<CoopExecutor<C, G>> {
        plan.device.check(current)?;
        let graph = quant.map_or(graph, |m| &m.graph);
        if (plan.precision == Precision::Quint8) != quant.is_some() {
            return Err(Error::Other(
                "a QUInt8 plan runs a quantized model, and only a QUInt8 plan does".into(),
            ));
        }
        let shapes = graph.infer_shapes()?;
        let n = graph.nodes.len();
        // Which processors each node needs; every node exactly once.
        let mut need = vec![(false, false); n];
        let mut seen = vec![0usize; n];
        let bad = |i: usize| Error::Other(format!("plan names node {i}, the graph has {n}"));
        for s in &plan.stages {
            match s {
                Stage::Whole { node, processor } => {
                    let e = need.get_mut(*node).ok_or_else(|| bad(*node))?;
                    match processor {
                        Processor::Cpu => e.0 = true,
                        Processor::Gpu => e.1 = true,
                    }
                    seen[*node] += 1;
                }
                Stage::Split { node, cpu, gpu, .. } => {
                    let e = need.get_mut(*node).ok_or_else(|| bad(*node))?;
                    *e = (true, true);
                    seen[*node] += 1;
                    let nd = &graph.nodes[*node];
                    let shape = shapes
                        .get(&nd.output)
                        .ok_or_else(|| Error::node(&nd.name, "output shape unknown"))?;
                    crate::exec::check_cover(&nd.name, shape, &[cpu.clone(), gpu.clone()])?;
                }
                Stage::Branches { cpu, gpu, .. } => {
                    for &i in cpu {
                        need.get_mut(i).ok_or_else(|| bad(i))?.0 = true;
                        seen[i] += 1;
                    }
                    for &i in gpu {
                        need.get_mut(i).ok_or_else(|| bad(i))?.1 = true;
                        seen[i] += 1;
                    }
                }
            }
        }
        if let Some(i) = seen.iter().position(|&k| k != 1) {
            return Err(Error::node(
                &graph.nodes[i].name,
                format!("the plan runs this node {} times (must be once)", seen[i]),
            ));
        }
        let (cpu_prec, gpu_prec) = Mechanism::processor_precisions(plan.precision);
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut values = Vec::new();
        for (k, v) in graph.inputs.iter().enumerate() {
            ids.insert(v.name.as_str(), values.len());
            values.push(match quant {
                None => Value::F32(Tensor::zeros(&v.shape)),
                Some(m) => Value::Q8(QTensor::zeros(&v.shape, m.inputs[k])),
            });
        }
        let mut steps = Vec::with_capacity(n);
        for (i, nd) in graph.nodes.iter().enumerate() {
            let shape = shapes
                .get(&nd.output)
                .ok_or_else(|| Error::node(&nd.name, "output shape unknown"))?
                .clone();
            let ins: Vec<&[usize]> = nd
                .inputs
                .iter()
                .map(|v| {
                    shapes
                        .get(v)
                        .map(Vec::as_slice)
                        .ok_or_else(|| Error::node(&nd.name, format!("reads unknown '{v}'")))
                })
                .collect::<Result<_>>()?;
            let inputs = nd
                .inputs
                .iter()
                .map(|v| {
                    ids.get(v.as_str()).copied().ok_or_else(|| {
                        Error::node(&nd.name, format!("reads '{v}' before it is produced"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let (nc, ng) = need[i];
            let out_q: Option<QParams> = quant.map(|m| m.node(i).output);
            let cp = if nc {
                Some(match quant {
                    None => cpu.prepare(nd, &ins, &shape, cpu_prec)?,
                    Some(m) => cpu.prepare_quantized(nd, &m.node(i), &ins, &shape)?,
                })
            } else {
                None
            };
            let gp = if ng {
                Some(match quant {
                    None => gpu.prepare(nd, &ins, &shape, gpu_prec)?,
                    Some(m) => gpu.prepare_quantized(nd, &m.node(i), &ins, &shape)?,
                })
            } else {
                None
            };
            ids.insert(nd.output.as_str(), values.len());
            let out = values.len();
            values.push(match out_q {
                None => Value::F32(Tensor::zeros(&shape)),
                Some(q) => Value::Q8(QTensor::zeros(&shape, q)),
            });
            steps.push(Step {
                node: nd.name.clone(),
                kind: nd.op.kind(),
                inputs,
                out,
                shape,
                cpu: cp,
                gpu: gp,
            });
        }
        let outputs = graph
            .outputs
            .iter()
            .map(|o| {
                ids.get(o.as_str()).copied().ok_or_else(|| Error::Graph {
                    graph: graph.name.clone(),
                    msg: format!("output '{o}' is not produced"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CoopExecutor {
            cpu,
            gpu,
            graph: graph.name.clone(),
            precision: plan.precision,
            plan,
            steps,
            values,
            inputs: graph
                .inputs
                .iter()
                .map(|v| (v.name.clone(), v.shape.clone()))
                .collect(),
            outputs,
            helper: Helper::new("ulayer-gpu")?,
        })
    }

    /// The plan being executed.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Runs one inference.
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Trace)> {
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
        for (k, ((name, shape), t)) in self.inputs.iter().zip(inputs).enumerate() {
            if t.shape() != shape.as_slice() {
                return Err(Error::InputShape {
                    name: name.clone(),
                    expected: shape.clone(),
                    got: t.shape().to_vec(),
                });
            }
            match &mut self.values[k] {
                Value::F32(v) => v.data_mut().copy_from_slice(t.data()),
                Value::Q8(q) => {
                    let qp = q.qparams();
                    crate::quant::quantize_into(t.data(), qp, q.data_mut());
                }
            }
        }
        let CoopExecutor {
            cpu,
            gpu,
            plan,
            steps,
            values,
            precision,
            helper,
            ..
        } = self;
        let (cpu, gpu) = (&*cpu, &*gpu);
        let (cpu_prec, gpu_prec) = Mechanism::processor_precisions(*precision);
        let stages = &plan.stages;
        let steps = &*steps;
        let trace = cpu.install(|| -> Result<Trace> {
            let mut trace = Trace {
                start_ns: monotonic_ns(),
                end_ns: 0,
                layers: Vec::with_capacity(steps.len() + 8),
            };
            for stage in stages {
                match stage {
                    Stage::Whole { node, processor } => {
                        let step = &steps[*node];
                        let mut out = std::mem::replace(&mut values[step.out], placeholder());
                        let r = {
                            let ins: Vec<&Value> =
                                step.inputs.iter().map(|&v| &values[v]).collect();
                            let o = view(&mut out);
                            let s = Slice::whole(&step.shape);
                            match processor {
                                Processor::Cpu => exec_slice(
                                    cpu,
                                    Processor::Cpu,
                                    step.cpu.as_ref(),
                                    &step.node,
                                    step.kind,
                                    cpu_prec,
                                    &ins,
                                    &o,
                                    &s,
                                ),
                                Processor::Gpu => exec_slice(
                                    gpu,
                                    Processor::Gpu,
                                    step.gpu.as_ref(),
                                    &step.node,
                                    step.kind,
                                    gpu_prec,
                                    &ins,
                                    &o,
                                    &s,
                                ),
                            }
                        };
                        values[step.out] = out;
                        trace.layers.push(r?);
                    }
                    Stage::Split {
                        node,
                        cpu: cs,
                        gpu: gs,
                        ..
                    } => {
                        let step = &steps[*node];
                        let mut out = std::mem::replace(&mut values[step.out], placeholder());
                        let (rc, rg) = {
                            let ins: Vec<&Value> =
                                step.inputs.iter().map(|&v| &values[v]).collect();
                            let o = view(&mut out);
                            let (ins, o) = (&ins, &o);
                            let (rg, rc) = helper.join(
                                &step.node,
                                move || {
                                    exec_slice(
                                        gpu,
                                        Processor::Gpu,
                                        step.gpu.as_ref(),
                                        &step.node,
                                        step.kind,
                                        gpu_prec,
                                        ins,
                                        o,
                                        gs,
                                    )
                                },
                                || {
                                    exec_slice(
                                        cpu,
                                        Processor::Cpu,
                                        step.cpu.as_ref(),
                                        &step.node,
                                        step.kind,
                                        cpu_prec,
                                        ins,
                                        o,
                                        cs,
                                    )
                                },
                            );
                            (rc, rg.and_then(|r| r))
                        };
                        values[step.out] = out;
                        trace.layers.push(rc?);
                        trace.layers.push(rg?);
                    }
                    Stage::Branches {
                        cpu: cl, gpu: gl, ..
                    } => {
                        let take =
                            |list: &[usize], values: &mut Vec<Value>| -> Vec<(usize, Value)> {
                                list.iter()
                                    .map(|&i| {
                                        let o = steps[i].out;
                                        (o, std::mem::replace(&mut values[o], placeholder()))
                                    })
                                    .collect()
                            };
                        let mut oc = take(cl, values);
                        let mut og = take(gl, values);
                        let (rc, rg, sc, sg) = {
                            let store: &[Value] = values;
                            let og = &mut og;
                            let ((rg, sg), (rc, sc)) = match helper.join(
                                "the GPU's branches",
                                move || {
                                    let mut spans = Vec::new();
                                    let r = run_list(
                                        gpu,
                                        Processor::Gpu,
                                        |st| st.gpu.as_ref(),
                                        steps,
                                        gl,
                                        gpu_prec,
                                        store,
                                        og,
                                        &mut spans,
                                    );
                                    (r, spans)
                                },
                                || {
                                    let mut sc = Vec::new();
                                    let rc = run_list(
                                        cpu,
                                        Processor::Cpu,
                                        |st| st.cpu.as_ref(),
                                        steps,
                                        cl,
                                        cpu_prec,
                                        store,
                                        &mut oc,
                                        &mut sc,
                                    );
                                    (rc, sc)
                                },
                            ) {
                                (Ok(g), c) => (g, c),
                                (Err(e), c) => ((Err(e), Vec::new()), c),
                            };
                            (rc, rg, sc, sg)
                        };
                        for (id, v) in oc.into_iter().chain(og) {
                            values[id] = v;
                        }
                        rc?;
                        rg?;
                        trace.layers.extend(sc);
                        trace.layers.extend(sg);
                    }
                }
            }
            trace.end_ns = monotonic_ns();
            Ok(trace)
        })?;
        let outs = self
            .outputs
            .iter()
            .map(|&k| self.values[k].to_f32())
            .collect();
        Ok((outs, trace))
    }
}

impl<C: Backend, G: Backend> Runner for CoopExecutor<C, G> {
    fn run(&mut self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Trace)> {
        CoopExecutor::run(self, inputs)
    }
}
