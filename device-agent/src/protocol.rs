//! # The agent protocol
//!
//! The host (`ulab`) drives the on-device agent (`ulayer-agent serve`) with one JSON object
//! per line on the agent's stdin; the agent answers each request with one JSON object per
//! line on stdout, carrying the request's `id`. Log output goes to stderr only.
//!
//! Every message carries `"v": PROTOCOL_VERSION`. The agent answers a request of another
//! version with an `error` whose message names both versions, and the host refuses to run a
//! campaign against an agent whose `hello` reports another version.
//!
//! Requests (`"cmd"` selects the variant):
//! ```json
//! {"v":1,"id":1,"cmd":"hello"}
//! {"v":1,"id":2,"cmd":"models"}
//! {"v":1,"id":3,"cmd":"classify","model":"efficientnet-lite0","images":["/data/chelsea.png"],"top":5}
//! {"v":1,"id":4,"cmd":"bench","model":"mobilenet-v1","iterations":50,"warmup":5}
//! {"v":1,"id":5,"cmd":"job","bench":{"model":"mobilenet-v1","iterations":50,"traces":true}}
//! {"v":1,"id":6,"cmd":"shutdown"}
//! ```
//! Responses (`"kind"` selects the variant): `hello`, `models`, `classified`, `bench`, `job`,
//! `error`, `bye` — see [`Response`].
//!
//! ## Measured jobs and sync pulses
//! A `job` runs autonomously on the device while the host's monitor records (USB
//! passthrough off): an idle window for the baseline, then the opening [`SyncPattern`] (bursts
//! of full load on every core separated by idle gaps), the warm-up and measured runs of the
//! `bench` configuration, and the same pattern again. The agent answers only when all of it is
//! done, with the `CLOCK_MONOTONIC` interval of every burst so that the host can find them in
//! the power trace and map device time to sample index.
use crate::backend::Precision;
use crate::exec::trace::Trace;
use crate::graph::WeightsOrigin;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request line: version, id and command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// Protocol version of the sender.
    pub v: u32,
    /// Chosen by the host; echoed in the response.
    pub id: u64,
    #[serde(flatten)]
    pub request: Request,
}

/// A response line: version, the id of the request it answers, and the body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub v: u32,
    pub id: u64,
    #[serde(flatten)]
    pub response: Response,
}

/// What the host asks of the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Identify the agent: version, device, protocol.
    Hello,
    /// List the model zoo.
    Models,
    /// Classify images.
    Classify(ClassifyRequest),
    /// Time inference.
    Bench(BenchRequest),
    /// A measured job: idle baseline, sync pulses, a timed configuration, sync pulses.
    Job(JobRequest),
    /// End the session.
    Shutdown,
}

/// Classify images with a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifyRequest {
    /// A zoo name (`ulayer-agent models`) or a path to an `.onnx` file on the device.
    pub model: String,
    /// Image paths on the device.
    pub images: Vec<String>,
    /// How many classes to return per image.
    #[serde(default = "default_top")]
    pub top: usize,
    #[serde(default = "default_precision")]
    pub precision: Precision,
    /// CPU threads (0 = all cores).
    #[serde(default)]
    pub threads: usize,
    /// Where the layers run: `cpu` (default), `gpu`, `layer-to-processor`, `ulayer`,
    /// `ulayer+branch` (see `ulayer::coop`).
    #[serde(default = "default_mechanism")]
    pub mechanism: String,
}

/// Time a model on a fixed input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRequest {
    pub model: String,
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    #[serde(default = "default_warmup")]
    pub warmup: usize,
    #[serde(default = "default_precision")]
    pub precision: Precision,
    /// CPU threads (0 = all cores).
    #[serde(default)]
    pub threads: usize,
    /// Include every run's full per-layer trace in the answer.
    #[serde(default)]
    pub traces: bool,
    /// Where the layers run: "cpu" (default), "gpu" (the Vulkan backend), or cooperatively
    /// "layer-to-processor", "ulayer", "ulayer+branch" (see `ulayer::coop`).
    #[serde(default = "default_mechanism")]
    pub mechanism: String,
    /// Keep timing until the measured runs have lasted at least this long, ms (more runs
    /// than `iterations` if needed; 0 = exactly `iterations`).
    #[serde(default)]
    pub min_duration_ms: u32,
    /// `ulayer` and `ulayer+branch`: before timing, measure the plan against the whole
    /// network on the CPU alone and on the GPU alone (same precisions, same executor) and
    /// run the fastest, so that a plan the predictor got wrong never costs more than the
    /// best single processor. Off: always the plan (to study the plan itself).
    #[serde(default = "default_true")]
    pub measured_fallback: bool,
    /// Cooperative mechanisms: the latency predictor the plan is made from.
    #[serde(default)]
    pub predictor: crate::coop::predict::Which,
}

fn default_true() -> bool {
    true
}

fn default_mechanism() -> String {
    "cpu".into()
}

fn default_top() -> usize {
    5
}
fn default_precision() -> Precision {
    Precision::F32
}
fn default_iterations() -> usize {
    50
}
fn default_warmup() -> usize {
    5
}

/// The sync-pulse signature: bursts of full load on every core, `gap_ms` of idle between
/// them. Unequal burst lengths make the pattern distinctive under a matched filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncPattern {
    /// Length of each burst, ms, in order.
    pub bursts_ms: Vec<u32>,
    /// Idle between bursts (and after the last one), ms.
    pub gap_ms: u32,
}

impl Default for SyncPattern {
    fn default() -> Self {
        // Eight bursts of distinct lengths: 16 edges per pattern, so that the clock fit
        // averages over enough edges to place the map within a sample.
        SyncPattern {
            bursts_ms: vec![120, 40, 80, 60, 100, 50, 90, 70],
            gap_ms: 60,
        }
    }
}

/// A measured job (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    /// The configuration to time (set `traces` to get every run's per-layer trace).
    pub bench: BenchRequest,
    /// Idle time before the opening pulses, for the baseline, ms.
    #[serde(default = "default_idle_ms")]
    pub idle_ms: u32,
    #[serde(default)]
    pub pattern: SyncPattern,
}

fn default_idle_ms() -> u32 {
    500
}

/// A `CLOCK_MONOTONIC` interval on the device, ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// What a job did and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// The idle baseline window.
    pub idle: Interval,
    /// The pattern that was emitted.
    pub pattern: SyncPattern,
    /// Each burst of the opening pattern, in order.
    pub pulses_before: Vec<Interval>,
    /// Each burst of the closing pattern, in order.
    pub pulses_after: Vec<Interval>,
    /// The timed configuration (with traces when asked for).
    pub bench: BenchReport,
    /// The whole job.
    pub job: Interval,
}

/// What the agent answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Hello(AgentInfo),
    Models {
        models: Vec<ModelInfo>,
    },
    Classified {
        results: Vec<Classification>,
    },
    Bench(BenchReport),
    Job(JobReport),
    /// The request failed; nothing else happened.
    Error {
        message: String,
    },
    Bye,
}

/// Who the agent is and what it runs on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub agent_version: String,
    pub protocol: u32,
    /// `uname -m` style architecture.
    pub arch: String,
    /// Logical CPU cores.
    pub cpus: usize,
    /// The CPU SIMD level the kernels chose (e.g. "avx512", "avx2", "neon", "scalar").
    pub cpu_isa: String,
}

/// One entry of the model zoo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub description: String,
    pub parameters: usize,
    pub macs: u64,
    /// Real (pretrained) or seeded (latency and energy only) weights.
    pub weights: WeightsOrigin,
    pub input_shape: Vec<usize>,
}

/// The top classes for one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub image: String,
    /// `(class index, class name, probability)`, best first.
    pub top: Vec<ClassScore>,
    /// Latency of the inference, ms.
    pub latency_ms: f64,
}

/// One class and its probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    pub index: usize,
    pub name: String,
    pub probability: f32,
}

/// Latency statistics over the measured runs, milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub runs: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub std_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    /// Statistics of durations in nanoseconds (nearest-rank percentiles, sample std).
    /// `None` for an empty set.
    pub fn from_ns(samples: &[u64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = samples.iter().map(|&n| n as f64 / 1e6).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let pct = |p: f64| ms[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
        let mean = ms.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            ms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(LatencyStats {
            runs: n,
            p50_ms: pct(50.0),
            p90_ms: pct(90.0),
            p99_ms: pct(99.0),
            mean_ms: mean,
            std_ms: var.sqrt(),
            min_ms: ms[0],
            max_ms: ms[n - 1],
        })
    }
}

/// Per-layer timing summary over the measured runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerTiming {
    pub node: String,
    pub kind: String,
    pub macs: u64,
    pub p50_ms: f64,
    pub mean_ms: f64,
    /// Median time of the layer's host↔device transfers (the GPU's staging copies), outside
    /// `p50_ms`; 0 when the processor works in place (CPU, zero-copy GPU memory).
    #[serde(default)]
    pub transfer_p50_ms: f64,
}

/// The answer to a bench request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub model: String,
    pub mechanism: String,
    pub precision: Precision,
    pub threads: usize,
    pub warmup: usize,
    pub latency: LatencyStats,
    pub layers: Vec<LayerTiming>,
    /// Every measured run's total duration, ns.
    pub runs_ns: Vec<u64>,
    /// Full traces, when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traces: Vec<Trace>,
    /// Cooperative mechanisms: how well the latency predictors fitted from the device
    /// profile that the plan came from predict that profile's held-out measurements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predictor: Vec<PredictorAccuracy>,
    /// Cooperative mechanisms: what ran — the plan, or the single processor the measured
    /// fallback chose instead — with the measured candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executed: Option<String>,
}

/// A latency predictor's accuracy on the held-out measurements of a device profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictorAccuracy {
    pub predictor: String,
    /// Processor and precision scored (`all` for every one).
    pub target: String,
    pub measurements: usize,
    /// Share within ±10 % and ±20 % of the measured time.
    pub within_10: f64,
    pub within_20: f64,
    /// Median |predicted − measured| / measured.
    pub median_error: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_with_defaults() {
        let line = r#"{"v":1,"id":4,"cmd":"bench","model":"mobilenet-v1"}"#;
        let r: RequestEnvelope = serde_json::from_str(line).expect("valid request");
        match &r.request {
            Request::Bench(b) => {
                assert_eq!(b.iterations, 50);
                assert_eq!(b.precision, Precision::F32);
            }
            other => panic!("wrong variant {other:?}"),
        }
        let back = serde_json::to_string(&r).expect("serialises");
        assert_eq!(
            serde_json::from_str::<RequestEnvelope>(&back).expect("parses"),
            r
        );
    }

    #[test]
    fn unknown_command_is_an_error() {
        assert!(
            serde_json::from_str::<RequestEnvelope>(r#"{"v":1,"id":1,"cmd":"explode"}"#).is_err()
        );
    }

    #[test]
    fn stats_percentiles_are_nearest_rank() {
        let ns: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        let s = LatencyStats::from_ns(&ns).expect("non-empty");
        assert_eq!((s.p50_ms, s.p90_ms, s.p99_ms), (50.0, 90.0, 99.0));
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
        assert!(LatencyStats::from_ns(&[]).is_none());
    }
}
