//! The partitioner: from predicted latencies to an execution plan.
//!
//! For each layer it compares, with the predictor and the profile's synchronisation cost:
//! the whole layer on the CPU, the whole layer on the GPU, and (μLayer) every output-channel
//! split on the packing grid and every output-row split, a split costing
//! `max(t_cpu, t_gpu) + contention · min(t_cpu, t_gpu) + fork/join`. The cheapest wins; a
//! split must beat both processors alone, so a layer where splitting loses is not split.
//! With branch distribution, each multi-branch module (branches from one value to one
//! Concat) is also tried as whole branches per processor (every assignment), and kept when
//! predicted faster than its layers planned one by one.
use super::mechanism::Mechanism;
use super::predict::{self, Predictor, Which};
use super::profile::{DeviceIdentity, LayerDesc, Profile, SyncCost};
use crate::backend::{Precision, Processor};
use crate::graph::Graph;
use crate::ops::Op;
use crate::tensor::Slice;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Along which dimension a layer is split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitDim {
    Channels,
    Rows,
}

/// One synchronised step of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "lowercase")]
pub enum Stage {
    /// Node `node` whole on one processor.
    Whole { node: usize, processor: Processor },
    /// Node `node` split: the CPU computes `cpu`, the GPU `gpu`, at the same time.
    Split {
        node: usize,
        dim: SplitDim,
        cpu: Slice,
        gpu: Slice,
    },
    /// A multi-branch module: the CPU runs the nodes `cpu` (in order) while the GPU runs the
    /// nodes `gpu`.
    Branches {
        module: String,
        cpu: Vec<usize>,
        gpu: Vec<usize>,
    },
}

/// Why a layer went where it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerChoice {
    pub node: usize,
    pub name: String,
    pub kind: String,
    pub variant: String,
    /// Predicted ms whole on the CPU, whole on the GPU.
    pub cpu_ms: f64,
    pub gpu_ms: f64,
    /// The best split and its predicted ms (sync and contention included), if sliceable.
    pub split: Option<String>,
    pub split_ms: Option<f64>,
    /// What was chosen ("cpu", "gpu", "split channels 0..56 | 56..128", "branch cpu").
    pub chosen: String,
    pub predicted_ms: f64,
    /// Keeps the previous layer's channel split and depends on it channel by channel: could
    /// share its synchronisation (modelled, not executed).
    pub shares_sync: bool,
}

/// A multi-branch module's decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModuleChoice {
    pub module: String,
    /// The nodes of each branch.
    pub branches: Vec<Vec<String>>,
    /// The best whole-branch assignment and its predicted ms.
    pub assignment: Vec<Processor>,
    pub branch_ms: f64,
    /// The module's layers planned one by one, predicted ms.
    pub per_layer_ms: f64,
    /// True when the branch assignment was kept.
    pub branches_kept: bool,
}

/// An execution plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub model: String,
    pub mechanism: Mechanism,
    pub precision: Precision,
    pub predictor: Which,
    /// The device of the profile it was planned from.
    pub device: DeviceIdentity,
    pub stages: Vec<Stage>,
    pub layers: Vec<LayerChoice>,
    pub modules: Vec<ModuleChoice>,
    /// Predicted latency, ms.
    pub predicted_ms: f64,
    /// Predicted saving if layers marked `shares_sync` shared their synchronisation, ms.
    pub shared_sync_saving_ms: f64,
}

/// How to plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    pub mechanism: Mechanism,
    pub precision: Precision,
    pub predictor: Which,
    /// Consider output-row splits as well as channel splits.
    pub rows: bool,
}

/// Predicted costs of one processor pair.
struct Costs<'a> {
    pred: &'a dyn Predictor,
    sync: &'a SyncCost,
    cpu_prec: Precision,
    gpu_prec: Precision,
}

impl Costs<'_> {
    /// Predicted ns of a slice on a processor, falling back through precisions the profile
    /// has (GPU QUInt8 → F16 → F32: F16 arithmetic over 8-bit storage; CPU QUInt8 → F32).
    fn t(&self, p: Processor, d: &LayerDesc, c: usize, h: usize) -> f64 {
        if c == 0 || h == 0 {
            return 0.0;
        }
        let chain: &[Precision] = match (p, self.cpu_prec, self.gpu_prec) {
            (Processor::Cpu, Precision::Quint8, _) => &[Precision::Quint8, Precision::F32],
            (Processor::Cpu, _, _) => &[Precision::F32],
            (Processor::Gpu, _, Precision::Quint8) => {
                &[Precision::Quint8, Precision::F16, Precision::F32]
            }
            (Processor::Gpu, _, Precision::F16) => &[Precision::F16, Precision::F32],
            (Processor::Gpu, _, _) => &[Precision::F32],
        };
        chain
            .iter()
            .find_map(|&q| self.pred.predict(d, p, q, c, h))
            // Nothing profiled for this processor: never choose it.
            .unwrap_or(1e15)
    }

    fn both(&self, tc: f64, tg: f64) -> f64 {
        tc.max(tg) + self.sync.contention * tc.min(tg) + self.sync.fork_join_ns
    }
}

/// A module of parallel branches: chains of single-input nodes from one value to one Concat.
#[derive(Clone, Debug)]
struct Module {
    name: String,
    branches: Vec<Vec<usize>>,
}

fn find_modules(g: &Graph) -> Vec<Module> {
    let readers = g.readers();
    let producer: HashMap<&str, usize> = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.output.as_str(), i))
        .collect();
    let mut out = Vec::new();
    for n in &g.nodes {
        if !matches!(n.op, Op::Concat { .. }) || n.inputs.len() < 2 {
            continue;
        }
        let mut fork: Option<&str> = None;
        let mut branches = Vec::new();
        let mut ok = true;
        for v in &n.inputs {
            let mut cur = v.as_str();
            let mut chain = Vec::new();
            loop {
                let (Some(&p), Some(1)) = (producer.get(cur), readers.get(cur).copied()) else {
                    ok = false;
                    break;
                };
                chain.push(p);
                let node = &g.nodes[p];
                if node.inputs.len() != 1 || chain.len() > 8 {
                    ok = false;
                    break;
                }
                let inp = node.inputs[0].as_str();
                if readers.get(inp).copied().unwrap_or(0) > 1 {
                    if fork.is_some_and(|f| f != inp) {
                        ok = false;
                    }
                    fork = Some(inp);
                    break;
                }
                cur = inp;
            }
            if !ok {
                break;
            }
            chain.reverse();
            branches.push(chain);
        }
        if ok && fork.is_some() {
            out.push(Module {
                name: n.name.clone(),
                branches,
            });
        }
    }
    out
}

fn ms(ns: f64) -> f64 {
    ns / 1e6
}

/// Plans `graph` (optimized) from `profile` for `opts`. Deterministic for a given profile.
/// Refuses a profile of another device than `current`.
pub fn plan(
    graph: &Graph,
    profile: &Profile,
    current: &DeviceIdentity,
    opts: &PlanOptions,
) -> Result<Plan> {
    profile.identity.check(current)?;
    let pred = predict::fit(opts.predictor, &profile.measurements, profile.cpu_threads);
    plan_with(graph, profile, pred.as_ref(), opts)
}

/// [`plan`] with a given predictor (no device check).
pub fn plan_with(
    graph: &Graph,
    profile: &Profile,
    pred: &dyn Predictor,
    opts: &PlanOptions,
) -> Result<Plan> {
    let (cpu_prec, gpu_prec) = Mechanism::processor_precisions(opts.precision);
    let costs = Costs {
        pred,
        sync: &profile.sync,
        cpu_prec,
        gpu_prec,
    };
    let shapes = graph.infer_shapes()?;
    let mut descs = Vec::with_capacity(graph.nodes.len());
    for n in &graph.nodes {
        let ins = n
            .inputs
            .iter()
            .map(|v| {
                shapes
                    .get(v)
                    .map(Vec::as_slice)
                    .ok_or_else(|| Error::node(&n.name, format!("unknown input '{v}'")))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = shapes
            .get(&n.output)
            .ok_or_else(|| Error::node(&n.name, "output shape unknown"))?;
        descs.push(LayerDesc::of(n, &ins, out));
    }
    let mech = opts.mechanism;
    let mut stages: Vec<Option<Stage>> = Vec::new();
    let mut layers = Vec::new();
    let mut stage_ns = Vec::new();
    for (i, (n, d)) in graph.nodes.iter().zip(&descs).enumerate() {
        let tc = costs.t(Processor::Cpu, d, d.c, d.h);
        let tg = costs.t(Processor::Gpu, d, d.c, d.h);
        let mut best_split: Option<(f64, Stage, String)> = None;
        if matches!(mech, Mechanism::Ulayer | Mechanism::UlayerBranch) && d.sliceable {
            let step = if d.c >= 32 { 8 } else { 4 };
            let mut p = step;
            while p < d.c {
                let t = costs.both(
                    costs.t(Processor::Cpu, d, p, d.h),
                    costs.t(Processor::Gpu, d, d.c - p, d.h),
                );
                if best_split.as_ref().is_none_or(|(b, _, _)| t < *b) {
                    best_split = Some((
                        t,
                        Stage::Split {
                            node: i,
                            dim: SplitDim::Channels,
                            cpu: Slice {
                                channels: 0..p,
                                rows: 0..d.h,
                            },
                            gpu: Slice {
                                channels: p..d.c,
                                rows: 0..d.h,
                            },
                        },
                        format!("channels cpu 0..{p} | gpu {p}..{}", d.c),
                    ));
                }
                p += step;
            }
            if opts.rows && d.h >= 2 && d.outer * d.inner > 0 {
                for r in 1..d.h {
                    let t = costs.both(
                        costs.t(Processor::Cpu, d, d.c, r),
                        costs.t(Processor::Gpu, d, d.c, d.h - r),
                    );
                    if best_split.as_ref().is_none_or(|(b, _, _)| t < *b) {
                        best_split = Some((
                            t,
                            Stage::Split {
                                node: i,
                                dim: SplitDim::Rows,
                                cpu: Slice {
                                    channels: 0..d.c,
                                    rows: 0..r,
                                },
                                gpu: Slice {
                                    channels: 0..d.c,
                                    rows: r..d.h,
                                },
                            },
                            format!("rows cpu 0..{r} | gpu {r}..{}", d.h),
                        ));
                    }
                }
            }
        }
        let (stage, t, chosen) = match mech {
            Mechanism::Cpu => (whole(i, Processor::Cpu), tc, "cpu".to_string()),
            Mechanism::Gpu => (whole(i, Processor::Gpu), tg, "gpu".to_string()),
            _ => {
                let (mut s, mut t, mut c) = if tg < tc {
                    (whole(i, Processor::Gpu), tg, "gpu".to_string())
                } else {
                    (whole(i, Processor::Cpu), tc, "cpu".to_string())
                };
                if let Some((ts, st, what)) = &best_split {
                    if *ts < t {
                        (s, t, c) = (st.clone(), *ts, format!("split {what}"));
                    }
                }
                (s, t, c)
            }
        };
        layers.push(LayerChoice {
            node: i,
            name: n.name.clone(),
            kind: d.kind.clone(),
            variant: d.variant.clone(),
            cpu_ms: ms(tc),
            gpu_ms: ms(tg),
            split: best_split.as_ref().map(|(_, _, w)| w.clone()),
            split_ms: best_split.as_ref().map(|(t, _, _)| ms(*t)),
            chosen,
            predicted_ms: ms(t),
            shares_sync: false,
        });
        stages.push(Some(stage));
        stage_ns.push(t);
    }
    // Branch distribution.
    let mut modules = Vec::new();
    if mech == Mechanism::UlayerBranch {
        for m in find_modules(graph) {
            let b = m.branches.len();
            if b > 12 {
                continue;
            }
            let per_layer: f64 = m.branches.iter().flatten().map(|&i| stage_ns[i]).sum();
            let cost = |k: usize, p: Processor| -> f64 {
                m.branches[k]
                    .iter()
                    .map(|&i| costs.t(p, &descs[i], descs[i].c, descs[i].h))
                    .sum()
            };
            let bc: Vec<f64> = (0..b).map(|k| cost(k, Processor::Cpu)).collect();
            let bg: Vec<f64> = (0..b).map(|k| cost(k, Processor::Gpu)).collect();
            let mut best: Option<(f64, usize)> = None;
            for mask in 0..(1usize << b) {
                let (mut c, mut g) = (0.0, 0.0);
                for k in 0..b {
                    if mask >> k & 1 == 1 {
                        g += bg[k];
                    } else {
                        c += bc[k];
                    }
                }
                let t = if c == 0.0 || g == 0.0 {
                    c + g
                } else {
                    costs.both(c, g)
                };
                if best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, mask));
                }
            }
            let Some((bt, mask)) = best else { continue };
            let assignment: Vec<Processor> = (0..b)
                .map(|k| {
                    if mask >> k & 1 == 1 {
                        Processor::Gpu
                    } else {
                        Processor::Cpu
                    }
                })
                .collect();
            let kept = bt < per_layer;
            if kept {
                let mut cpu = Vec::new();
                let mut gpu = Vec::new();
                for (k, br) in m.branches.iter().enumerate() {
                    let (list, name) = match assignment[k] {
                        Processor::Cpu => (&mut cpu, "branch cpu"),
                        Processor::Gpu => (&mut gpu, "branch gpu"),
                    };
                    list.extend(br.iter().copied());
                    for &i in br {
                        layers[i].chosen = format!("{name} ({})", m.name);
                        layers[i].predicted_ms =
                            ms(costs.t(assignment[k], &descs[i], descs[i].c, descs[i].h));
                        stage_ns[i] = 0.0;
                    }
                }
                cpu.sort_unstable();
                gpu.sort_unstable();
                let first = m.branches.iter().flatten().copied().min().unwrap_or(0);
                for &i in m.branches.iter().flatten() {
                    stages[i] = None;
                }
                stage_ns[first] = bt;
                stages[first] = Some(Stage::Branches {
                    module: m.name.clone(),
                    cpu,
                    gpu,
                });
            }
            modules.push(ModuleChoice {
                module: m.name.clone(),
                branches: m
                    .branches
                    .iter()
                    .map(|br| br.iter().map(|&i| graph.nodes[i].name.clone()).collect())
                    .collect(),
                assignment,
                branch_ms: ms(bt),
                per_layer_ms: ms(per_layer),
                branches_kept: kept,
            });
        }
    }
    // Shared synchronisation (modelled): a channel-local layer reading only the previous
    // layer's output, split at the same channel.
    let mut saving = 0.0;
    for i in 1..graph.nodes.len() {
        let (
            Some(Stage::Split {
                cpu: a,
                dim: SplitDim::Channels,
                ..
            }),
            Some(Stage::Split {
                cpu: b,
                dim: SplitDim::Channels,
                ..
            }),
        ) = (&stages[i - 1], &stages[i])
        else {
            continue;
        };
        let n = &graph.nodes[i];
        let local = matches!(
            n.op,
            Op::Activation(_)
                | Op::BatchNorm(_)
                | Op::MaxPool(_)
                | Op::AveragePool(_)
                | Op::GlobalAveragePool
        ) || matches!(&n.op, Op::Conv2d(c) if c.is_depthwise());
        if local && n.inputs == [graph.nodes[i - 1].output.clone()] && a.channels == b.channels {
            layers[i].shares_sync = true;
            saving += profile.sync.fork_join_ns;
        }
    }
    let predicted: f64 = stage_ns.iter().sum();
    Ok(Plan {
        model: graph.name.clone(),
        mechanism: mech,
        precision: opts.precision,
        predictor: opts.predictor,
        device: profile.identity.clone(),
        stages: stages.into_iter().flatten().collect(),
        layers,
        modules,
        predicted_ms: ms(predicted),
        shared_sync_saving_ms: ms(saving),
    })
}

fn whole(node: usize, processor: Processor) -> Stage {
    Stage::Whole { node, processor }
}

impl Plan {
    /// Per layer: predicted ms on the CPU, on the GPU, the best split, and the choice.
    pub fn explain(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} · {} · {} · predictor {:?} · predicted {:.3} ms",
            self.model, self.mechanism, self.precision, self.predictor, self.predicted_ms
        );
        let _ = writeln!(s, "device: {}", self.device);
        let _ = writeln!(
            s,
            "{:<34} {:<16} {:>9} {:>9} {:>9}  {:<34} chosen",
            "layer", "kind", "cpu ms", "gpu ms", "split ms", "best split"
        );
        for l in &self.layers {
            let _ = writeln!(
                s,
                "{:<34} {:<16} {:>9.3} {:>9.3} {:>9}  {:<34} {}{}",
                l.name,
                l.kind,
                l.cpu_ms,
                l.gpu_ms,
                l.split_ms.map_or("-".into(), |t| format!("{t:.3}")),
                l.split.clone().unwrap_or_else(|| "-".into()),
                l.chosen,
                if l.shares_sync {
                    " (could share sync with previous)"
                } else {
                    ""
                }
            );
        }
        for m in &self.modules {
            let _ = writeln!(
                s,
                "module {}: branches {:?} → {:?}: {:.3} ms vs per-layer {:.3} ms → {}",
                m.module,
                m.branches,
                m.assignment,
                m.branch_ms,
                m.per_layer_ms,
                if m.branches_kept {
                    "branches"
                } else {
                    "per-layer"
                }
            );
        }
        if self.shared_sync_saving_ms > 0.0 {
            let _ = writeln!(
                s,
                "shared synchronisation (modelled, not executed) would save {:.3} ms",
                self.shared_sync_saving_ms
            );
        }
        s
    }

    /// Counts of stages by type: (whole cpu, whole gpu, split, branches).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for s in &self.stages {
            match s {
                Stage::Whole {
                    processor: Processor::Cpu,
                    ..
                } => c.0 += 1,
                Stage::Whole { .. } => c.1 += 1,
                Stage::Split { .. } => c.2 += 1,
                Stage::Branches { .. } => c.3 += 1,
            }
        }
        c
    }
}
