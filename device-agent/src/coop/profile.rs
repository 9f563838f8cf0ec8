//! The profiler: layer descriptions, device identity, measurements and the device profile.
use super::helper::Helper;
use crate::backend::{Backend, Precision, Processor};
use crate::exec::trace::monotonic_ns;
use crate::graph::Node;
use crate::ops::{Activation, Conv2d, Gemm, Op, Pool};
use crate::quant::{QParams, QTensor, QWeights, QuantNode};
use crate::tensor::{Slice, Tensor};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Version of the profile file format.
pub const PROFILE_VERSION: u32 = 1;

/// What the predictors know of one layer: its op, kernel variant and geometry. A slice of
/// `c` output channels and `h` output rows is described by the same record with `c`, `h`
/// passed alongside.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDesc {
    /// Op kind ([`Op::kind`]): the paper's "layer type".
    pub kind: String,
    /// The kernel variant (ours): e.g. `conv3s1`, `conv3s2`, `pw`, `dw3s1`, `gemm`,
    /// `max3s2`, `gap`; element-wise ops use their kind.
    pub variant: String,
    /// The output seen as `[outer, C, H, inner]`.
    pub outer: usize,
    pub c: usize,
    pub h: usize,
    pub inner: usize,
    /// Elements of all inputs.
    pub in_elems: usize,
    /// Multiply-accumulates (or window reads) per output element.
    pub k_red: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Weight elements of the whole layer.
    pub weight_elems: usize,
    /// Computable by slices ([`Op::sliceable`]).
    pub sliceable: bool,
}

impl LayerDesc {
    /// Describes `node` with inputs of `ins` shapes producing `out`.
    pub fn of(node: &Node, ins: &[&[usize]], out: &[usize]) -> LayerDesc {
        let v = view4(out);
        let in_elems = ins.iter().map(|s| s.iter().product::<usize>()).sum();
        let (mut k_red, mut kernel, mut stride, mut weight_elems) = (1, [1, 1], [1, 1], 0);
        let variant = match &node.op {
            Op::Conv2d(c) => {
                let w = c.weight.shape();
                k_red = w[1] * w[2] * w[3];
                kernel = c.kernel();
                stride = c.stride;
                weight_elems = c.weight.len();
                if c.is_depthwise() {
                    format!("dw{}s{}", kernel[0], stride[0])
                } else if c.is_pointwise() {
                    "pw".into()
                } else {
                    format!("conv{}s{}", kernel[0], stride[0])
                }
            }
            Op::Gemm(g) => {
                k_red = g.weight.shape()[1];
                weight_elems = g.weight.len();
                "gemm".into()
            }
            Op::MaxPool(p) | Op::AveragePool(p) => {
                k_red = p.kernel[0] * p.kernel[1];
                kernel = p.kernel;
                stride = p.stride;
                let m = if matches!(node.op, Op::MaxPool(_)) {
                    "max"
                } else {
                    "avg"
                };
                format!("{m}{}s{}", p.kernel[0], p.stride[0])
            }
            Op::GlobalAveragePool => {
                k_red = ins
                    .first()
                    .map_or(1, |s| s.get(2..).map_or(1, |d| d.iter().product()));
                "gap".into()
            }
            Op::Lrn(l) => {
                k_red = l.size;
                "lrn".into()
            }
            op => op.kind().to_lowercase(),
        };
        LayerDesc {
            kind: node.op.kind().to_string(),
            variant,
            outer: v[0],
            c: v[1],
            h: v[2],
            inner: v[3],
            in_elems,
            k_red: k_red.max(1),
            kernel,
            stride,
            weight_elems,
            sliceable: node.op.sliceable(),
        }
    }

    /// Output elements of a slice of `c` channels and `h` rows.
    pub fn out_elems(&self, c: usize, h: usize) -> f64 {
        (self.outer * c * h * self.inner) as f64
    }

    /// Multiply-accumulates (or window reads) of a slice.
    pub fn macs(&self, c: usize, h: usize) -> f64 {
        self.out_elems(c, h) * self.k_red as f64
    }

    /// A stable key of the layer's geometry (for de-duplication and held-out splits).
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}x{}x{}x{}/in{}/k{}/w{}",
            self.kind,
            self.variant,
            self.outer,
            self.c,
            self.h,
            self.inner,
            self.in_elems,
            self.k_red,
            self.weight_elems
        )
    }
}

/// Which device a profile was measured on. Two profiles are interchangeable only when every
/// field is equal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Logical cores.
    pub cpu_cores: usize,
    /// The CPU backend's instruction set.
    pub cpu_isa: String,
    /// Vulkan device name.
    pub gpu_name: String,
    /// Vulkan driver name and version.
    pub gpu_driver: String,
}

impl std::fmt::Display for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU '{}' ({} cores, {}), GPU '{}' (driver {})",
            self.cpu_model, self.cpu_cores, self.cpu_isa, self.gpu_name, self.gpu_driver
        )
    }
}

impl DeviceIdentity {
    /// This machine's CPU with the given GPU name and driver.
    pub fn current(gpu_name: &str, gpu_driver: &str) -> DeviceIdentity {
        DeviceIdentity {
            cpu_model: cpu_model(),
            cpu_cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_isa: crate::backend::cpu::isa_name().to_string(),
            gpu_name: gpu_name.to_string(),
            gpu_driver: gpu_driver.to_string(),
        }
    }

    /// Errors unless `self` (a profile's device) is `current`, naming both.
    pub fn check(&self, current: &DeviceIdentity) -> Result<()> {
        if self == current {
            Ok(())
        } else {
            Err(Error::Other(format!(
                "the profile was measured on another device: profile: {self}; this device: \
                 {current} (run `ulayer-agent profile` here)"
            )))
        }
    }

    /// A short file-name-safe key of the identity.
    pub fn file_key(&self) -> String {
        let h = format!("{self}")
            .bytes()
            .fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
            });
        format!("{:016x}", h)
    }
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    for key in ["model name", "Hardware", "Processor", "CPU part"] {
        if let Some(v) = info
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
        {
            if !v.is_empty() {
                return v;
            }
        }
    }
    std::env::consts::ARCH.to_string()
}

/// One timed slice of one layer on one processor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Where the layer comes from (`model/node` or `grid/...`).
    pub source: String,
    pub layer: LayerDesc,
    pub processor: Processor,
    pub precision: Precision,
    /// Output channels and rows computed.
    pub c: usize,
    pub h: usize,
    /// The slice's time, ns: its rounds' [`Aggregate`] (the profile's `aggregate`).
    pub ns: f64,
    /// The time of each round, ns (profiles made before these were kept have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds_ns: Vec<f64>,
}

/// How a slice's rounds make its time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// The median round.
    #[default]
    Median,
    /// The fastest round. Interference on a shared machine only ever slows a run down, so
    /// the minimum is the estimate that repeats best (Chen and Revels, "Robust benchmarking
    /// in noisy environments", 2016).
    Min,
}

impl Aggregate {
    /// What it keeps, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Aggregate::Median => "median round",
            Aggregate::Min => "fastest round",
        }
    }

    /// The aggregate of `v` (0 when empty).
    pub fn of(self, v: &[f64]) -> f64 {
        match self {
            Aggregate::Median => median(&mut v.to_vec()),
            Aggregate::Min => v.iter().copied().reduce(f64::min).unwrap_or(0.0),
        }
    }
}

/// One layer split between the processors and run concurrently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoopMeasurement {
    pub source: String,
    pub precision: Precision,
    /// Time of the CPU's part alone, the GPU's part alone, and both at once (wall), ns.
    pub cpu_ns: f64,
    pub gpu_ns: f64,
    pub both_ns: f64,
}

/// The cost of synchronising the processors at a layer boundary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncCost {
    /// Handing work to the GPU thread and joining it, ns (no GPU work).
    pub fork_join_ns: f64,
    /// One GPU run of a tiny layer: submission, dispatch, fence wait, ns.
    pub gpu_dispatch_ns: f64,
    /// GPU run time per byte moved (inputs up, slice down: copies, flushes), ns.
    pub gpu_ns_per_byte: f64,
    /// How much the processors slow each other when both run: a split layer takes
    /// `max(t_cpu, t_gpu) + contention · min(t_cpu, t_gpu) + fork_join_ns` (0: independent,
    /// 1: fully serialised). Median over the measured splits.
    pub contention: f64,
}

/// A device profile: what the predictors are fitted on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub version: u32,
    pub identity: DeviceIdentity,
    /// Made by `--quick` (fewer layers and repetitions).
    pub quick: bool,
    /// CPU threads used.
    pub cpu_threads: usize,
    pub sync: SyncCost,
    /// How each measurement's rounds were made one time.
    #[serde(default)]
    pub aggregate: Aggregate,
    pub measurements: Vec<Measurement>,
    pub coop: Vec<CoopMeasurement>,
    /// What could not be measured and why.
    pub notes: Vec<String>,
    /// Wall time of the profiling run, s.
    pub seconds: f64,
}

impl Profile {
    /// Reads a profile file.
    pub fn load(path: &std::path::Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path).map_err(|cause| Error::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        let p: Profile = serde_json::from_str(&text).map_err(|e| Error::Decode {
            path: path.to_path_buf(),
            msg: format!("not a device profile: {e}"),
        })?;
        if p.version != PROFILE_VERSION {
            return Err(Error::Decode {
                path: path.to_path_buf(),
                msg: format!(
                    "profile version {} (this agent reads {PROFILE_VERSION}): profile again",
                    p.version
                ),
            });
        }
        Ok(p)
    }

    /// Re-makes every measurement's time from its rounds with `aggregate`; an error when the
    /// profile did not keep its rounds.
    pub fn reaggregate(&mut self, aggregate: Aggregate) -> Result<()> {
        if let Some(m) = self.measurements.iter().find(|m| m.rounds_ns.is_empty()) {
            return Err(Error::Other(format!(
                "the profile kept no rounds (first: {} on {:?} {}), so its times cannot be \
                 re-made as the {}: profile again with this agent",
                m.source,
                m.processor,
                m.precision,
                aggregate.describe()
            )));
        }
        for m in &mut self.measurements {
            m.ns = aggregate.of(&m.rounds_ns);
        }
        self.aggregate = aggregate;
        Ok(())
    }

    /// Writes the profile as JSON.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|cause| Error::Io {
                path: dir.to_path_buf(),
                cause,
            })?;
        }
        let text = serde_json::to_string(self).map_err(|e| Error::Other(e.to_string()))?;
        std::fs::write(path, text).map_err(|cause| Error::Io {
            path: path.to_path_buf(),
            cause,
        })
    }
}

/// What the profiler measures.
#[derive(Clone, Debug)]
pub struct ProfileOptions {
    /// Fewer layers, fractions and repetitions (well under a minute on two cores).
    pub quick: bool,
    /// Zoo networks whose layers are measured (seeded weights).
    pub models: Vec<String>,
    /// Timed repetitions per slice on the GPU (median kept).
    pub reps: usize,
    /// Timed repetitions per slice on the CPU (cheap: small layers take microseconds).
    pub cpu_reps: usize,
    /// Rounds over all layers: every slice is timed once per round (its median over `reps`
    /// back-to-back runs) and keeps the [`Aggregate`] of its rounds. Back-to-back runs share
    /// the machine's state of that moment; rounds spread each slice over the whole profile,
    /// so one slow spell of a shared host spoils one round, not the slice.
    pub rounds: usize,
    /// How a slice's rounds make its time.
    pub aggregate: Aggregate,
    /// Layers with more multiply-accumulates are skipped.
    pub max_macs: u64,
    /// (processor, precision) pairs to measure.
    pub targets: Vec<(Processor, Precision)>,
}

impl ProfileOptions {
    /// The full profile: every zoo network, every precision.
    pub fn full() -> ProfileOptions {
        ProfileOptions {
            quick: false,
            models: crate::zoo::list()
                .iter()
                .map(|e| e.name.to_string())
                .collect(),
            reps: 3,
            cpu_reps: 5,
            rounds: 5,
            aggregate: Aggregate::default(),
            max_macs: u64::MAX,
            targets: vec![
                (Processor::Cpu, Precision::F32),
                (Processor::Cpu, Precision::Quint8),
                (Processor::Gpu, Precision::F32),
                (Processor::Gpu, Precision::F16),
                (Processor::Gpu, Precision::Quint8),
            ],
        }
    }

    /// The quick profile (well under a minute on two cores with lavapipe): SqueezeNet's
    /// smaller layers and a small grid, CPU F32 and QUInt8 and GPU F32, one repetition. The
    /// partitioner predicts the GPU's F16 and QUInt8 from its F32 models when a profile
    /// lacks them.
    pub fn quick() -> ProfileOptions {
        ProfileOptions {
            quick: true,
            models: vec!["squeezenet1.1".into()],
            reps: 1,
            cpu_reps: 5,
            rounds: 1,
            aggregate: Aggregate::default(),
            max_macs: 15_000_000,
            targets: vec![
                (Processor::Cpu, Precision::F32),
                (Processor::Cpu, Precision::Quint8),
                (Processor::Gpu, Precision::F32),
            ],
        }
    }
}

/// A layer to measure: a node with its shapes.
struct ProbeLayer {
    source: String,
    node: Node,
    ins: Vec<Vec<usize>>,
    out: Vec<usize>,
    desc: LayerDesc,
}

fn conv_node(
    name: &str,
    cin: usize,
    cout: usize,
    k: usize,
    s: usize,
    dw: bool,
    rng: &mut u64,
) -> Node {
    let per = if dw { 1 } else { cin };
    let w = rand_tensor(&[cout, per, k, k], rng, (2.0 / (per * k * k) as f32).sqrt());
    let b = rand_tensor(&[cout], rng, 0.1);
    Node {
        name: name.into(),
        op: Op::Conv2d(Conv2d {
            weight: w,
            bias: Some(b),
            stride: [s, s],
            dilation: [1, 1],
            pads: [k / 2; 4],
            groups: if dw { cin } else { 1 },
            activation: Activation::Relu,
        }),
        inputs: vec!["x".into()],
        output: "y".into(),
    }
}

fn rand_tensor(shape: &[usize], state: &mut u64, bound: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = *state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let u = ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * u - 1.0) * bound
        })
        .collect();
    Tensor::from_vec(shape, data).expect("sized from the shape")
}

/// The synthetic grid of layer shapes.
fn grid(quick: bool) -> Vec<(String, Node, Vec<usize>)> {
    let mut rng = 0x5EED_u64;
    let mut out = Vec::new();
    let (hws, chans): (&[usize], &[(usize, usize)]) = if quick {
        (&[14], &[(32, 24), (64, 64)])
    } else {
        (
            &[7, 14, 28, 56],
            &[
                (16, 24),
                (32, 40),
                (64, 64),
                (96, 128),
                (128, 200),
                (256, 256),
            ],
        )
    };
    for &hw in hws {
        for &(cin, cout) in chans {
            for (k, s, dw) in [
                (1, 1, false),
                (3, 1, false),
                (3, 2, false),
                (3, 1, true),
                (3, 2, true),
                (5, 1, true),
            ] {
                if !quick && cin * cout * hw * hw * k * k > 400_000_000 {
                    continue;
                }
                let cout = if dw { cin } else { cout };
                let name = format!(
                    "grid/conv{k}s{s}{}_{cin}x{cout}_{hw}",
                    if dw { "dw" } else { "" }
                );
                out.push((
                    name.clone(),
                    conv_node(&name, cin, cout, k, s, dw, &mut rng),
                    vec![1, cin, hw, hw],
                ));
            }
            let pool = Pool {
                kernel: [3, 3],
                stride: [2, 2],
                pads: [0; 4],
                ceil_mode: true,
                count_include_pad: false,
            };
            out.push((
                format!("grid/max3s2_{cin}_{hw}"),
                Node {
                    name: format!("grid/max3s2_{cin}_{hw}"),
                    op: Op::MaxPool(pool),
                    inputs: vec!["x".into()],
                    output: "y".into(),
                },
                vec![1, cin, hw, hw],
            ));
        }
    }
    for &(k, n) in if quick {
        &[(256usize, 128usize), (1024, 256)][..]
    } else {
        &[
            (256, 128),
            (1024, 256),
            (1024, 1000),
            (4096, 1024),
            (9216, 512),
        ][..]
    } {
        let name = format!("grid/gemm_{k}x{n}");
        out.push((
            name.clone(),
            Node {
                name,
                op: Op::Gemm(Gemm {
                    weight: rand_tensor(&[n, k], &mut rng, (1.0 / k as f32).sqrt()),
                    bias: Some(rand_tensor(&[n], &mut rng, 0.1)),
                    activation: Activation::Relu,
                }),
                inputs: vec!["x".into()],
                output: "y".into(),
            },
            vec![1, k],
        ));
    }
    out
}

/// Collects the distinct layers of the zoo networks and the grid.
fn probe_layers(opts: &ProfileOptions) -> Result<Vec<ProbeLayer>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut layers = Vec::new();
    let mut push = |source: String, node: Node, ins: Vec<Vec<usize>>| -> Result<()> {
        let in_refs: Vec<&[usize]> = ins.iter().map(Vec::as_slice).collect();
        let out = node.op.output_shape(&node.name, &in_refs)?;
        let desc = LayerDesc::of(&node, &in_refs, &out);
        if matches!(node.op, Op::Constant(_))
            || desc.macs(desc.c, desc.h) > opts.max_macs as f64
            || !seen.insert(desc.key())
        {
            return Ok(());
        }
        layers.push(ProbeLayer {
            source,
            node,
            ins,
            out,
            desc,
        });
        Ok(())
    };
    for m in &opts.models {
        let g = crate::zoo::build_seeded(m, crate::zoo::DEFAULT_SEED)?.optimized()?;
        let shapes = g.infer_shapes()?;
        for n in &g.nodes {
            let ins = n
                .inputs
                .iter()
                .map(|v| {
                    shapes
                        .get(v)
                        .cloned()
                        .ok_or_else(|| Error::node(&n.name, format!("unknown input '{v}'")))
                })
                .collect::<Result<Vec<_>>>()?;
            push(format!("{m}/{}", n.name), n.clone(), ins)?;
        }
    }
    for (name, node, shape) in grid(opts.quick) {
        push(name, node, vec![shape])?;
    }
    Ok(layers)
}

/// Rounds a channel split point to the packing grid (multiples of 8, or 4 below 32
/// channels), inside `1..c`; `None` when no such point exists.
pub fn grid_point(c: usize, frac: f64) -> Option<usize> {
    let step = if c >= 32 { 8 } else { 4 };
    let p = ((c as f64 * frac / step as f64).round() as usize) * step;
    (p > 0 && p < c).then_some(p)
}

/// A prepared layer on one backend with its inputs and output buffers.
enum Bound<P> {
    F32 {
        prep: P,
        ins: Vec<Tensor>,
        out: Tensor,
    },
    Q8 {
        prep: P,
        ins: Vec<QTensor>,
        out: QTensor,
    },
}

fn qparams_for(t: &Tensor) -> QParams {
    let (lo, hi) = t
        .data()
        .iter()
        .fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
    QParams::from_range(lo, hi.max(lo + 1e-3))
}

fn bind<B: Backend>(b: &B, l: &ProbeLayer, precision: Precision) -> Result<Bound<B::Prepared>> {
    let mut rng = 0xC0FFEE_u64 ^ l.desc.key().len() as u64;
    let ins: Vec<Tensor> = l
        .ins
        .iter()
        .map(|s| rand_tensor(s, &mut rng, 1.5))
        .collect();
    let in_refs: Vec<&[usize]> = l.ins.iter().map(Vec::as_slice).collect();
    if precision == Precision::Quint8 {
        let qin: Vec<QParams> = ins.iter().map(qparams_for).collect();
        let out_q = QParams::from_range(-4.0, 8.0);
        let weights = match &l.node.op {
            Op::Conv2d(c) => Some(QWeights::quantize(&c.weight, c.bias.as_ref(), qin[0].scale)),
            Op::Gemm(g) => Some(QWeights::quantize(&g.weight, g.bias.as_ref(), qin[0].scale)),
            _ => None,
        };
        let keep = crate::quant::model::keeps_input_quantization(&l.node.op);
        let out_q = if keep { qin[0] } else { out_q };
        let q = QuantNode {
            inputs: &qin,
            output: out_q,
            weights: weights.as_ref(),
        };
        let prep = b.prepare_quantized(&l.node, &q, &in_refs, &l.out)?;
        Ok(Bound::Q8 {
            prep,
            ins: ins
                .iter()
                .zip(&qin)
                .map(|(t, &q)| QTensor::quantize(t, q))
                .collect(),
            out: QTensor::zeros(&l.out, out_q),
        })
    } else {
        let prep = b.prepare(&l.node, &in_refs, &l.out, precision)?;
        Ok(Bound::F32 {
            prep,
            ins,
            out: Tensor::zeros(&l.out),
        })
    }
}

/// Runs one slice of a bound layer; returns its time in ns (the backend's own span when it
/// has one, e.g. GPU timestamps; else the wall time around the call).
fn run_bound<B: Backend>(b: &B, bound: &mut Bound<B::Prepared>, slice: &Slice) -> Result<f64> {
    let t0 = monotonic_ns();
    match bound {
        Bound::F32 { prep, ins, out } => {
            let refs: Vec<&Tensor> = ins.iter().collect();
            b.run(prep, &refs, &out.shared(), slice)?
        }
        Bound::Q8 { prep, ins, out } => {
            let refs: Vec<&QTensor> = ins.iter().collect();
            b.run_quantized(prep, &refs, &out.shared(), slice)?
        }
    }
    let t1 = monotonic_ns();
    // Wall time: what the partitioner pays (the GPU's span misses submission and copies).
    Ok((t1 - t0) as f64)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_slice<B: Backend>(
    b: &B,
    bound: &mut Bound<B::Prepared>,
    slice: &Slice,
    reps: usize,
) -> Result<f64> {
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        t.push(run_bound(b, bound, slice)?);
    }
    Ok(median(&mut t))
}

/// The slices measured for a layer: the whole, channel fractions on the packing grid, and
/// half the rows.
fn probe_slices(d: &LayerDesc, quick: bool) -> Vec<(usize, usize)> {
    let mut v = vec![(d.c, d.h)];
    if !d.sliceable {
        return v;
    }
    let fracs: &[f64] = if quick { &[0.5] } else { &[0.25, 0.5, 0.75] };
    for &f in fracs {
        if let Some(p) = grid_point(d.c, f) {
            if !v.contains(&(p, d.h)) {
                v.push((p, d.h));
            }
        }
    }
    if d.h >= 4 {
        v.push((d.c, d.h / 2));
    }
    v
}

/// Measures a device: every probe layer on every (processor, precision) of `opts`, the
/// synchronisation cost and the contention of concurrent splits. `progress` gets a line per
/// step. Backends that lack a precision (e.g. no QUInt8 GPU kernels) are noted and skipped.
pub fn run_profile<C: Backend, G: Backend>(
    cpu: &C,
    gpu: &G,
    identity: DeviceIdentity,
    cpu_threads: usize,
    opts: &ProfileOptions,
    mut progress: impl FnMut(&str),
) -> Result<Profile> {
    let t_start = std::time::Instant::now();
    let layers = probe_layers(opts)?;
    progress(&format!("{} distinct layers", layers.len()));
    let mut measurements = Vec::new();
    let mut notes = Vec::new();
    let mut coop = Vec::new();
    // Rounds are the outer loop, so each slice's rounds spread over the whole profile.
    let rounds = opts.rounds.max(1);
    // Per target and layer: its slices' times of every round so far; `None` once one failed.
    type Times = Option<Vec<(usize, usize, Vec<f64>)>>;
    let mut times: Vec<Vec<Times>> = vec![vec![Some(Vec::new()); layers.len()]; opts.targets.len()];
    let mut first_err: Vec<Option<String>> = vec![None; opts.targets.len()];
    for round in 0..rounds {
        for (t, &(processor, precision)) in opts.targets.iter().enumerate() {
            for (l, acc) in layers.iter().zip(times[t].iter_mut()) {
                let Some(slices) = acc.as_mut() else {
                    continue;
                };
                let r = match processor {
                    Processor::Cpu => {
                        cpu.install(|| measure_layer(cpu, l, precision, opts.quick, opts.cpu_reps))
                    }
                    Processor::Gpu => measure_layer(gpu, l, precision, opts.quick, opts.reps),
                };
                match r {
                    Ok(ms) if round == 0 => {
                        *slices = ms.into_iter().map(|(c, h, ns)| (c, h, vec![ns])).collect();
                    }
                    Ok(ms) => {
                        for ((_, _, v), (_, _, ns)) in slices.iter_mut().zip(ms) {
                            v.push(ns);
                        }
                    }
                    Err(e) => {
                        first_err[t].get_or_insert_with(|| format!("{}: {e}", l.source));
                        *acc = None;
                    }
                }
            }
            progress(&format!(
                "{processor:?} {precision}: round {}/{rounds} ({:.1} s)",
                round + 1,
                t_start.elapsed().as_secs_f64()
            ));
        }
    }
    for ((&(processor, precision), per_layer), err) in opts.targets.iter().zip(times).zip(first_err)
    {
        let failed = per_layer.iter().filter(|t| t.is_none()).count();
        for (l, acc) in layers.iter().zip(per_layer) {
            for (c, h, v) in acc.unwrap_or_default() {
                measurements.push(Measurement {
                    source: l.source.clone(),
                    layer: l.desc.clone(),
                    processor,
                    precision,
                    c,
                    h,
                    ns: opts.aggregate.of(&v),
                    rounds_ns: v,
                });
            }
        }
        if failed > 0 {
            notes.push(format!(
                "{processor:?} {precision}: {failed} of {} layers not measured (first: {})",
                layers.len(),
                err.unwrap_or_default()
            ));
        }
    }
    // Synchronisation: a hand-off to the GPU thread and back (as the executor's split and
    // branch stages do, through the same kind of helper), and tiny / large GPU runs.
    let mut helper = Helper::new("ulayer-gpu")?;
    let mut fj = Vec::new();
    for _ in 0..51 {
        let t0 = monotonic_ns();
        let (there, here) = helper.join(
            "fork/join probe",
            || std::hint::black_box(0),
            || std::hint::black_box(0),
        );
        there?;
        std::hint::black_box(here);
        fj.push((monotonic_ns() - t0) as f64);
    }
    let fork_join_ns = median(&mut fj);
    let copy_probe = |elems: usize| -> Result<f64> {
        let node = Node {
            name: "sync/relu".into(),
            op: Op::Activation(Activation::Relu),
            inputs: vec!["x".into()],
            output: "y".into(),
        };
        let l = ProbeLayer {
            source: "sync".into(),
            desc: LayerDesc::of(&node, &[&[1, elems, 1, 1]], &[1, elems, 1, 1]),
            node,
            ins: vec![vec![1, elems, 1, 1]],
            out: vec![1, elems, 1, 1],
        };
        let mut b = bind(gpu, &l, Precision::F32)?;
        let s = Slice::whole(&l.out);
        run_bound(gpu, &mut b, &s)?;
        time_slice(gpu, &mut b, &s, 15)
    };
    let (small, big_elems) = (8usize, 1usize << 20);
    let (gpu_dispatch_ns, gpu_ns_per_byte) = match (copy_probe(small), copy_probe(big_elems)) {
        (Ok(a), Ok(b)) => (a, ((b - a) / (8.0 * big_elems as f64)).max(0.0)),
        (Err(e), _) | (_, Err(e)) => {
            notes.push(format!("GPU sync probe failed: {e}"));
            (0.0, 0.0)
        }
    };
    // Contention: split layers run concurrently against their parts alone.
    let n_coop = if opts.quick { 4 } else { 24 };
    let candidates: Vec<&ProbeLayer> = layers
        .iter()
        .filter(|l| l.desc.sliceable && l.desc.c >= 16 && l.desc.macs(l.desc.c, l.desc.h) > 1e6)
        .collect();
    let stride = (candidates.len() / n_coop).max(1);
    for l in candidates.iter().step_by(stride).take(n_coop) {
        match measure_coop(cpu, gpu, &mut helper, l, opts.reps.max(2)) {
            Ok(m) => coop.push(m),
            Err(e) => notes.push(format!("{}: concurrent split not measured: {e}", l.source)),
        }
    }
    let mut alphas: Vec<f64> = coop
        .iter()
        .map(|m| {
            let (mx, mn) = (m.cpu_ns.max(m.gpu_ns), m.cpu_ns.min(m.gpu_ns).max(1.0));
            ((m.both_ns - mx - fork_join_ns) / mn).clamp(0.0, 1.5)
        })
        .collect();
    let contention = if alphas.is_empty() {
        1.0
    } else {
        median(&mut alphas)
    };
    progress(&format!(
        "sync: fork/join {:.0} µs, GPU dispatch {:.0} µs, {:.3} ns/byte, contention {:.2}",
        fork_join_ns / 1e3,
        gpu_dispatch_ns / 1e3,
        gpu_ns_per_byte,
        contention
    ));
    Ok(Profile {
        version: PROFILE_VERSION,
        identity,
        quick: opts.quick,
        cpu_threads,
        sync: SyncCost {
            fork_join_ns,
            gpu_dispatch_ns,
            gpu_ns_per_byte,
            contention,
        },
        aggregate: opts.aggregate,
        measurements,
        coop,
        notes,
        seconds: t_start.elapsed().as_secs_f64(),
    })
}

fn measure_layer<B: Backend>(
    b: &B,
    l: &ProbeLayer,
    precision: Precision,
    quick: bool,
    reps: usize,
) -> Result<Vec<(usize, usize, f64)>> {
    let mut bound = bind(b, l, precision)?;
    let whole = Slice::whole(&l.out);
    run_bound(b, &mut bound, &whole)?; // warm-up (pipelines, caches, page faults)
    probe_slices(&l.desc, quick)
        .into_iter()
        .map(|(c, h)| {
            let s = Slice {
                channels: 0..c,
                rows: 0..h,
            };
            Ok((c, h, time_slice(b, &mut bound, &s, reps)?))
        })
        .collect()
}

fn measure_coop<C: Backend, G: Backend>(
    cpu: &C,
    gpu: &G,
    helper: &mut Helper,
    l: &ProbeLayer,
    reps: usize,
) -> Result<CoopMeasurement> {
    let Some(p) = grid_point(l.desc.c, 0.5) else {
        return Err(Error::node(&l.node.name, "too few channels to split"));
    };
    let mut bc = bind(cpu, l, Precision::F32)?;
    let mut bg = bind(gpu, l, Precision::F32)?;
    let cs = Slice {
        channels: 0..p,
        rows: 0..l.desc.h,
    };
    let gs = Slice {
        channels: p..l.desc.c,
        rows: 0..l.desc.h,
    };
    run_bound(gpu, &mut bg, &gs)?;
    let cpu_ns = cpu.install(|| time_slice(cpu, &mut bc, &cs, reps))?;
    let gpu_ns = time_slice(gpu, &mut bg, &gs, reps)?;
    // Both at once into one output.
    let (Bound::F32 { prep: pc, ins, out }, Bound::F32 { prep: pg, .. }) = (&mut bc, &bg) else {
        return Err(Error::node(&l.node.name, "internal: F32 binding expected"));
    };
    let refs: Vec<&Tensor> = ins.iter().collect();
    let shared = out.shared();
    let mut both = Vec::new();
    for _ in 0..reps {
        let t0 = monotonic_ns();
        let (rg, rc) = cpu.install(|| {
            helper.join(
                &l.node.name,
                || gpu.run(pg, &refs, &shared, &gs),
                || cpu.run(pc, &refs, &shared, &cs),
            )
        });
        rc?;
        rg??;
        both.push((monotonic_ns() - t0) as f64);
    }
    Ok(CoopMeasurement {
        source: l.source.clone(),
        precision: Precision::F32,
        cpu_ns,
        gpu_ns,
        both_ns: median(&mut both),
    })
}

/// An output shape seen as `[outer, C, H, inner]` (the slice primitive's view).
pub fn view4(shape: &[usize]) -> [usize; 4] {
    match shape.len() {
        0 => [1, 1, 1, 1],
        1 => [1, shape[0], 1, 1],
        2 => [shape[0], shape[1], 1, 1],
        3 => [shape[0], shape[1], shape[2], 1],
        _ => [shape[0], shape[1], shape[2], shape[3..].iter().product()],
    }
}

/// A seeded random tensor (tests).
#[cfg(test)]
pub(crate) fn tests_rand(shape: &[usize], state: &mut u64) -> Tensor {
    rand_tensor(shape, state, 1.0)
}

/// A seeded 3×3 convolution node (tests).
#[cfg(test)]
pub(crate) fn tests_conv(cin: usize, cout: usize, hw: usize, state: &mut u64) -> Node {
    let _ = hw;
    conv_node("t", cin, cout, 3, 1, false, state)
}

/// The description of [`tests_conv`] on a `cin × hw × hw` input (tests).
#[cfg(test)]
pub(crate) fn tests_conv_desc(cin: usize, cout: usize, hw: usize) -> LayerDesc {
    let n = tests_conv(cin, cout, hw, &mut 1u64);
    let out =
        n.op.output_shape("t", &[&[1, cin, hw, hw]])
            .expect("a 3×3 convolution's shape");
    LayerDesc::of(&n, &[&[1, cin, hw, hw]], &out)
}
