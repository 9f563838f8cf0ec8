//! Energy attribution (DESIGN.md §3): per inference and per layer, gross and above the idle
//! baseline measured before the job, with the method used stated in the result.
//!
//! **Integration** (rectangle rule with partial weights): each sample stands for the power
//! over the sample period centred on it; a window `[x0, x1)` of fractional sample indices
//! (device times mapped through the [`ClockMap`]) takes each sample with the share of its
//! period inside the window. Energy = the weighted mean power × the window's device duration,
//! so a missing sample (a gap in the trace) is bridged by its neighbours instead of counting
//! as zero; the share of the window really covered is reported as `coverage`.
//!
//! **Per layer**: a layer window of at least [`DIRECT_MIN_SAMPLES`] samples is integrated run
//! by run and averaged (*direct*). A shorter one cannot be resolved by one run: it is
//! attributed by *phase aggregation* — every run's window of the layer is folded onto the
//! sample grid (runs start at every phase of it), the samples of all runs falling inside the
//! layer's windows are pooled, and their mean power × the layer's mean duration is its
//! energy. When even all runs together put fewer than [`PHASE_MIN_HITS`] samples in the
//! layer, it gets its time share of the inference's energy (*proportional*).
use crate::align::{AlignError, ClockMap, Dense};
use monsoon::Sample;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use ulayer::backend::{Precision, Processor};
use ulayer::protocol::{Interval, JobReport};

/// Layer windows at least this many samples long are integrated run by run.
pub const DIRECT_MIN_SAMPLES: f64 = 5.0;
/// Fewest pooled sample hits for phase aggregation; below, a layer is proportional.
pub const PHASE_MIN_HITS: usize = 20;
/// Share of the idle window trimmed at each end (the load before it and the first burst
/// after it blur into its edges).
pub const IDLE_TRIM: f64 = 0.1;
/// Runs whose window is covered by samples less than this are left out of the statistics.
pub const MIN_COVERAGE: f64 = 0.9;

/// Why energy could not be attributed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnergyError {
    #[error("power trace: {0}")]
    Trace(#[from] AlignError),
    #[error("clock map unusable: {0}")]
    BadClockMap(String),
    #[error("the job report has no per-run traces (run the bench with traces on): per-inference windows are unknown")]
    NoTraces,
    #[error(
        "idle window (samples {from:.1}..{to:.1}) has {samples} samples in the trace (needs ≥ 10)"
    )]
    IdleNotCovered { from: f64, to: f64, samples: usize },
    #[error("none of the {runs} runs is covered by the trace to {min_coverage} (best coverage {best:.3})")]
    NoRunCovered {
        runs: usize,
        min_coverage: f64,
        best: f64,
    },
}

/// Nearest-rank percentiles, mean and sample standard deviation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// Statistics of the finite values; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let pct = |p: f64| v[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Summary {
            n,
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            mean,
            std: var.sqrt(),
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// The idle baseline before the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleBaseline {
    /// Mean power over the trimmed idle window, W.
    pub power_w: f64,
    /// Standard deviation of the samples, W.
    pub std_w: f64,
    /// Samples averaged.
    pub samples: usize,
    /// The trimmed window, fractional sample indices.
    pub from_sample: f64,
    pub to_sample: f64,
}

/// One measured inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnergy {
    /// Index among the measured runs.
    pub run: usize,
    pub start_ns: u64,
    pub end_ns: u64,
    pub latency_ms: f64,
    /// The window in fractional sample indices.
    pub start_sample: f64,
    pub end_sample: f64,
    pub energy_j: f64,
    /// `energy_j − idle power × latency`.
    pub energy_above_idle_j: f64,
    pub avg_power_w: f64,
    /// Share of the window covered by samples (1 unless the trace has a gap there).
    pub coverage: f64,
    /// Whether the run counts in the statistics (coverage ≥ [`MIN_COVERAGE`]).
    pub used: bool,
}

/// How a layer's energy was attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerMethod {
    /// Integrated run by run (window ≥ [`DIRECT_MIN_SAMPLES`]).
    Direct,
    /// Samples of all runs' windows pooled (window shorter than one could resolve).
    PhaseAggregated,
    /// Time share of the inference's energy (too few samples even pooled).
    Proportional,
}

/// One layer (node) over the measured runs; energies are means per inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerEnergy {
    pub node: String,
    pub kind: String,
    /// Processors that ran part of it (a split layer has two spans with one node name).
    pub processors: Vec<Processor>,
    pub precision: Precision,
    /// Runs in which it appeared (among the used runs).
    pub runs: usize,
    /// Mean extent from its first span's start to its last span's end, ms.
    pub mean_duration_ms: f64,
    pub energy_j: f64,
    pub energy_above_idle_j: f64,
    pub avg_power_w: f64,
    pub method: LayerMethod,
    /// Samples that fell in its windows, all runs together.
    pub samples: usize,
}

/// Statistics of one configuration over its used runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigStats {
    pub runs: usize,
    /// Runs left out for poor coverage by the trace.
    pub runs_excluded: usize,
    pub latency_ms: Summary,
    pub energy_j: Summary,
    pub energy_above_idle_j: Summary,
    pub avg_power_w: Summary,
}

/// Everything energy says about one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEnergy {
    /// How per-inference and per-layer energy were attributed, and why (for the results).
    pub method: String,
    pub idle: IdleBaseline,
    pub runs: Vec<RunEnergy>,
    pub layers: Vec<LayerEnergy>,
    /// Mean energy per inference outside every layer window (executor overhead), J.
    pub between_layers_j: f64,
    pub stats: ConfigStats,
}

/// A device-time window on the dense sample grid.
struct Window {
    x0: f64,
    x1: f64,
    seconds: f64,
}

impl Window {
    fn new(map: &ClockMap, first: u64, iv: Interval) -> Window {
        Window {
            x0: map.sample_at(iv.start_ns) - first as f64,
            x1: map.sample_at(iv.end_ns) - first as f64,
            seconds: iv.end_ns.saturating_sub(iv.start_ns) as f64 * 1e-9,
        }
    }
}

/// Rectangle rule with partial weights: `(mean power, covered share of the window, samples)`.
fn mean_power(d: &Dense, w: &Window) -> (f64, f64, usize) {
    let len = w.x1 - w.x0;
    if len.is_nan() || len <= 0.0 || !w.x0.is_finite() || !w.x1.is_finite() {
        return (f64::NAN, 0.0, 0);
    }
    let k0 = (w.x0 + 0.5).floor().max(0.0) as usize;
    let k1 = ((w.x1 + 0.5).ceil().max(0.0) as usize).min(d.p.len());
    let (mut sw, mut swp, mut n) = (0.0, 0.0, 0);
    for k in k0..k1 {
        let p = d.p[k];
        let c = k as f64;
        let weight = ((c + 0.5).min(w.x1) - (c - 0.5).max(w.x0)).max(0.0);
        if p.is_finite() && weight > 0.0 {
            sw += weight;
            swp += weight * p;
            n += 1;
        }
    }
    if sw > 0.0 {
        (swp / sw, sw / len, n)
    } else {
        (f64::NAN, 0.0, 0)
    }
}

/// A node's extent in one run: union of its spans.
struct NodeRun {
    start_ns: u64,
    end_ns: u64,
}

/// Per-node facts gathered over the runs.
struct NodeInfo {
    kind: String,
    precision: Precision,
    processors: Vec<Processor>,
    /// (run, extent)
    extents: Vec<(usize, NodeRun)>,
}

fn nodes(report: &JobReport, used: &[bool]) -> (Vec<String>, HashMap<String, NodeInfo>) {
    let mut order = Vec::new();
    let mut info: HashMap<String, NodeInfo> = HashMap::new();
    for (r, trace) in report.bench.traces.iter().enumerate() {
        if !used.get(r).copied().unwrap_or(false) {
            continue;
        }
        let mut this: HashMap<&str, NodeRun> = HashMap::new();
        for span in &trace.layers {
            let n = info.entry(span.node.clone()).or_insert_with(|| {
                order.push(span.node.clone());
                NodeInfo {
                    kind: span.kind.clone(),
                    precision: span.precision,
                    processors: Vec::new(),
                    extents: Vec::new(),
                }
            });
            if !n.processors.contains(&span.processor) {
                n.processors.push(span.processor);
            }
            let e = this.entry(span.node.as_str()).or_insert(NodeRun {
                start_ns: span.start_ns,
                end_ns: span.end_ns,
            });
            e.start_ns = e.start_ns.min(span.start_ns);
            e.end_ns = e.end_ns.max(span.end_ns);
        }
        for (node, ext) in this {
            if let Some(n) = info.get_mut(node) {
                n.extents.push((r, ext));
            }
        }
    }
    (order, info)
}

/// Attributes the job's energy: idle baseline, every measured inference, every layer.
pub fn attribute(
    samples: &[Sample],
    map: &ClockMap,
    report: &JobReport,
) -> Result<JobEnergy, EnergyError> {
    if !(map.b.is_finite() && map.b > 0.0 && map.a.is_finite()) {
        return Err(EnergyError::BadClockMap(format!(
            "a = {}, b = {} samples/ns",
            map.a, map.b
        )));
    }
    if report.bench.traces.is_empty() {
        return Err(EnergyError::NoTraces);
    }
    let d = Dense::new(samples)?;
    let per_sample_s = 1e-9 / map.b;

    // Idle baseline over the trimmed idle window.
    let iw = Window::new(map, d.first, report.idle);
    let trim = (iw.x1 - iw.x0) * IDLE_TRIM;
    let idle_w = Window {
        x0: iw.x0 + trim,
        x1: iw.x1 - trim,
        seconds: iw.seconds * (1.0 - 2.0 * IDLE_TRIM),
    };
    let (idle_p, _, idle_n) = mean_power(&d, &idle_w);
    if idle_n < 10 || !idle_p.is_finite() {
        return Err(EnergyError::IdleNotCovered {
            from: idle_w.x0 + d.first as f64,
            to: idle_w.x1 + d.first as f64,
            samples: idle_n,
        });
    }
    let idle_std = {
        let lo = (idle_w.x0.ceil().max(0.0)) as usize;
        let hi = (idle_w.x1.floor().max(0.0) as usize).min(d.p.len());
        let v: Vec<f64> = d.p[lo.min(hi)..hi]
            .iter()
            .copied()
            .filter(|p| p.is_finite())
            .collect();
        Summary::of(&v).map_or(0.0, |s| s.std)
    };
    let idle = IdleBaseline {
        power_w: idle_p,
        std_w: idle_std,
        samples: idle_n,
        from_sample: idle_w.x0 + d.first as f64,
        to_sample: idle_w.x1 + d.first as f64,
    };

    // Per inference.
    let runs: Vec<RunEnergy> = report
        .bench
        .traces
        .iter()
        .enumerate()
        .map(|(r, t)| {
            let iv = Interval {
                start_ns: t.start_ns,
                end_ns: t.end_ns,
            };
            let w = Window::new(map, d.first, iv);
            let (p, coverage, _) = mean_power(&d, &w);
            let energy = p * w.seconds;
            RunEnergy {
                run: r,
                start_ns: t.start_ns,
                end_ns: t.end_ns,
                latency_ms: w.seconds * 1e3,
                start_sample: w.x0 + d.first as f64,
                end_sample: w.x1 + d.first as f64,
                energy_j: energy,
                energy_above_idle_j: energy - idle_p * w.seconds,
                avg_power_w: p,
                coverage,
                used: coverage >= MIN_COVERAGE && energy.is_finite(),
            }
        })
        .collect();
    let used: Vec<bool> = runs.iter().map(|r| r.used).collect();
    let ok: Vec<&RunEnergy> = runs.iter().filter(|r| r.used).collect();
    let col = |f: fn(&RunEnergy) -> f64| -> Vec<f64> { ok.iter().map(|r| f(r)).collect() };
    let stats = match (
        Summary::of(&col(|r| r.latency_ms)),
        Summary::of(&col(|r| r.energy_j)),
        Summary::of(&col(|r| r.energy_above_idle_j)),
        Summary::of(&col(|r| r.avg_power_w)),
    ) {
        (Some(latency_ms), Some(energy_j), Some(energy_above_idle_j), Some(avg_power_w)) => {
            ConfigStats {
                runs: ok.len(),
                runs_excluded: runs.len() - ok.len(),
                latency_ms,
                energy_j,
                energy_above_idle_j,
                avg_power_w,
            }
        }
        _ => {
            return Err(EnergyError::NoRunCovered {
                runs: runs.len(),
                min_coverage: MIN_COVERAGE,
                best: runs.iter().map(|r| r.coverage).fold(0.0, f64::max),
            })
        }
    };
    let run_power = stats.avg_power_w.mean;

    // Per layer.
    let (order, info) = nodes(report, &used);
    let mut counts = [0usize; 3];
    let mut layers = Vec::with_capacity(order.len());
    for node in order {
        let Some(n) = info.get(&node) else { continue };
        if n.extents.is_empty() {
            continue;
        }
        let windows: Vec<Window> = n
            .extents
            .iter()
            .map(|(_, e)| {
                Window::new(
                    map,
                    d.first,
                    Interval {
                        start_ns: e.start_ns,
                        end_ns: e.end_ns,
                    },
                )
            })
            .collect();
        let mean_s = windows.iter().map(|w| w.seconds).sum::<f64>() / windows.len() as f64;
        let mean_samples = mean_s / per_sample_s;
        let (method, power, hits) = if mean_samples >= DIRECT_MIN_SAMPLES {
            // Run by run: mean of each run's energy, as a mean power over the mean duration.
            let (mut e, mut hits, mut runs) = (0.0, 0, 0);
            for w in &windows {
                let (p, _, k) = mean_power(&d, w);
                if p.is_finite() {
                    e += p * w.seconds;
                    hits += k;
                    runs += 1;
                }
            }
            let p = if runs > 0 && mean_s > 0.0 {
                e / runs as f64 / mean_s
            } else {
                run_power
            };
            (LayerMethod::Direct, p, hits)
        } else {
            // Fold: pool the samples whose instant lies inside any run's window of the layer.
            let (mut sum, mut hits) = (0.0, 0usize);
            for w in &windows {
                let k0 = w.x0.ceil().max(0.0) as usize;
                let k1 = (w.x1.ceil().max(0.0) as usize).min(d.p.len());
                for p in d.p[k0.min(k1)..k1].iter().filter(|p| p.is_finite()) {
                    sum += p;
                    hits += 1;
                }
            }
            if hits >= PHASE_MIN_HITS {
                (LayerMethod::PhaseAggregated, sum / hits as f64, hits)
            } else {
                (LayerMethod::Proportional, run_power, hits)
            }
        };
        counts[method as usize] += 1;
        let energy = power * mean_s;
        layers.push(LayerEnergy {
            node,
            kind: n.kind.clone(),
            processors: n.processors.clone(),
            precision: n.precision,
            runs: windows.len(),
            mean_duration_ms: mean_s * 1e3,
            energy_j: energy,
            energy_above_idle_j: energy - idle_p * mean_s,
            avg_power_w: power,
            method,
            samples: hits,
        });
    }
    let between_layers_j = stats.energy_j.mean - layers.iter().map(|l| l.energy_j).sum::<f64>();
    let method = format!(
        "per inference: V·I integrated over each run's window mapped through the clock fit \
         (rectangle rule, each sample standing for the {:.1} µs centred on it, partial weights \
         at the edges; {} of {} runs used, those under {:.0}% sample coverage left out); \
         idle baseline: mean over the idle window with {:.0}% trimmed at each end. \
         Per layer: {} layers ≥ {DIRECT_MIN_SAMPLES} samples integrated run by run (direct), \
         {} shorter by phase aggregation (samples of all {} runs falling in the layer's windows \
         pooled: mean power × mean duration), {} proportionally (time share of the inference's \
         power: fewer than {PHASE_MIN_HITS} samples even pooled)",
        per_sample_s * 1e6,
        stats.runs,
        runs.len(),
        MIN_COVERAGE * 100.0,
        IDLE_TRIM * 100.0,
        counts[LayerMethod::Direct as usize],
        counts[LayerMethod::PhaseAggregated as usize],
        stats.runs,
        counts[LayerMethod::Proportional as usize],
    );
    Ok(JobEnergy {
        method,
        idle,
        runs,
        layers,
        between_layers_j,
        stats,
    })
}

#[cfg(test)]
mod tests;
