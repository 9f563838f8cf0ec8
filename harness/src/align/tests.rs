//! Synthetic traces with a known clock (offset, drift), noise and holes, and the aligner's
//! tests on them. The generator is shared with the energy tests.
use super::*;
use ulayer::backend::{Precision, Processor};
use ulayer::exec::trace::{LayerSpan, Trace};
use ulayer::protocol::{LatencyStats, SyncPattern};

/// A deterministic normal noise source (xorshift + Box–Muller), no extra dependency.
pub(crate) struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed.max(1))
    }
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// A synthetic job: device timeline, true power as a function of device time, and the clock.
pub(crate) struct Synth {
    pub report: JobReport,
    /// Power segments on the device clock: `(start_ns, end_ns, watts)`, sorted, disjoint;
    /// the idle power elsewhere.
    pub segments: Vec<(u64, u64, f64)>,
    pub idle_w: f64,
    /// True clock: sample = a + b · device_ns.
    pub a: f64,
    pub b: f64,
}

pub(crate) const IDLE_W: f64 = 1.2;
pub(crate) const BURST_W: f64 = 2.1;
/// Width of the power's edges, ns (1.5 samples).
pub(crate) const BLUR_NS: f64 = 300_000.0;

/// Power of layer `k` (distinct per layer so that per-layer energy is checkable).
pub(crate) fn layer_w(k: usize) -> f64 {
    1.6 + 0.15 * (k % 5) as f64
}

impl Synth {
    /// A job of `runs` inferences of `layers_us` (layer durations, µs) each, with `gap_us`
    /// between consecutive layers, the clock offset by `offset_ms` and drifting `drift_ppm`.
    pub fn new(
        runs: usize,
        layers_us: &[u64],
        gap_us: u64,
        offset_ms: f64,
        drift_ppm: f64,
    ) -> Synth {
        let t0: u64 = 3_600_000_000_000; // an hour of device uptime
        let ms = 1_000_000u64;
        let pattern = SyncPattern::default();
        let mut segments = Vec::new();
        let mut t = t0 + 100 * ms;
        let idle = Interval {
            start_ns: t,
            end_ns: t + 500 * ms,
        };
        t = idle.end_ns;
        let emit = |t: &mut u64, segments: &mut Vec<(u64, u64, f64)>| {
            pattern
                .bursts_ms
                .iter()
                .map(|&b| {
                    let iv = Interval {
                        start_ns: *t,
                        end_ns: *t + u64::from(b) * ms,
                    };
                    segments.push((iv.start_ns, iv.end_ns, BURST_W));
                    *t = iv.end_ns + u64::from(pattern.gap_ms) * ms;
                    iv
                })
                .collect::<Vec<_>>()
        };
        let pulses_before = emit(&mut t, &mut segments);
        // Model reload and warm-up: busy.
        segments.push((t, t + 150 * ms, BURST_W));
        t += 150 * ms;
        let mut traces = Vec::new();
        // A non-integer number of samples per run, so that runs start at every phase.
        for _ in 0..runs {
            let start = t;
            let mut spans = Vec::new();
            for (k, &us) in layers_us.iter().enumerate() {
                let (s, e) = (t, t + us * 1000);
                segments.push((s, e, layer_w(k)));
                // Through serde, so that fields added to the trace later (with defaults)
                // do not break the generator.
                let span: LayerSpan = serde_json::from_value(serde_json::json!({
                    "node": format!("layer{k}"),
                    "kind": if k % 2 == 0 { "Conv2d" } else { "Relu" },
                    "processor": Processor::Cpu,
                    "precision": Precision::F32,
                    "slice": {"channels": {"start": 0, "end": 1}, "rows": {"start": 0, "end": 1}},
                    "start_ns": s,
                    "end_ns": e,
                }))
                .unwrap();
                spans.push(span);
                t = e + gap_us * 1000;
            }
            t += 37_000; // executor overhead between runs
            traces.push(Trace {
                start_ns: start,
                end_ns: t - 37_000,
                layers: spans,
            });
        }
        // The agent emits the closing pattern right after the last run.
        let pulses_after = emit(&mut t, &mut segments);
        let runs_ns: Vec<u64> = traces.iter().map(|r| r.end_ns - r.start_ns).collect();
        // Through serde as well (fields added later with defaults do not break it).
        let report: JobReport = serde_json::from_value(serde_json::json!({
            "idle": idle,
            "pattern": SyncPattern::default(),
            "pulses_before": pulses_before,
            "pulses_after": pulses_after,
            "bench": {
                "model": "synthetic",
                "mechanism": "cpu",
                "precision": Precision::F32,
                "threads": 1,
                "warmup": 0,
                "latency": LatencyStats::from_ns(&runs_ns),
                "layers": [],
                "runs_ns": runs_ns,
                "traces": traces,
            },
            "job": Interval {
                start_ns: t0,
                end_ns: t + 200 * ms,
            },
        }))
        .unwrap();
        // The monitor started 0.3 s before the job plus the offset; it runs drift_ppm fast.
        let b = NOMINAL_SAMPLES_PER_NS * (1.0 + drift_ppm * 1e-6);
        let a = -(t0 as f64 - 300.0 * ms as f64 - offset_ms * ms as f64) * b;
        Synth {
            report,
            segments,
            idle_w: IDLE_W,
            a,
            b,
        }
    }

    /// True power at device time `t`: the step power averaged over [`BLUR_NS`] around `t`,
    /// as a real supply's (and the simulator's 1 ms activity polls') finite edges.
    pub fn power(&self, t: f64) -> f64 {
        let h = BLUR_NS / 2.0;
        self.energy_f(t - h, t + h) / (BLUR_NS * 1e-9)
    }

    /// True energy (J) of the step power over device times `[s, e)`.
    pub fn energy(&self, s: u64, e: u64) -> f64 {
        self.energy_f(s as f64, e as f64)
    }

    /// Energy (J) of the blurred power (what the samples see) over `[s, e)`, integrated
    /// numerically in 1 µs steps.
    pub fn seen_energy(&self, s: u64, e: u64) -> f64 {
        let steps = ((e - s) / 1000).max(1);
        let dt = (e - s) as f64 / steps as f64;
        (0..steps)
            .map(|k| self.power(s as f64 + (k as f64 + 0.5) * dt))
            .sum::<f64>()
            * dt
            * 1e-9
    }

    fn energy_f(&self, s: f64, e: f64) -> f64 {
        let mut j = self.idle_w * (e - s) * 1e-9;
        let first = self.segments.partition_point(|seg| (seg.1 as f64) <= s);
        for &(a, b, w) in &self.segments[first..] {
            if a as f64 >= e {
                break;
            }
            let (lo, hi) = ((a as f64).max(s), (b as f64).min(e));
            if hi > lo {
                j += (w - self.idle_w) * (hi - lo) * 1e-9;
            }
        }
        j
    }

    /// Point samples of the power (as the simulator takes them) over the whole job with
    /// `noise_w` of normal noise; every sample for which `drop(index)` holds is missing.
    pub fn samples(&self, noise_w: f64, seed: u64, drop: impl Fn(u64) -> bool) -> Vec<Sample> {
        let mut rng = Noise::new(seed);
        let end = self.a + self.b * self.report.job.end_ns as f64;
        let volts = 4.0f32;
        (0..end.max(0.0) as u64)
            .filter(|&i| !drop(i))
            .map(|i| {
                let t = (i as f64 - self.a) / self.b;
                let p = self.power(t) + noise_w * rng.normal();
                Sample {
                    index: i,
                    main_current_a: (p / f64::from(volts)) as f32,
                    usb_current_a: 0.0,
                    aux_current_a: 0.0,
                    voltage_v: volts,
                }
            })
            .collect()
    }

    /// Largest mapping error (samples) of `map` against the true clock over the job.
    pub fn mapping_error(&self, map: &ClockMap) -> f64 {
        let j = &self.report.job;
        (0..=100)
            .map(|k| j.start_ns + (j.end_ns - j.start_ns) / 100 * k)
            .map(|t| (map.sample_at(t) - (self.a + self.b * t as f64)).abs())
            .fold(0.0, f64::max)
    }
}

fn synth() -> Synth {
    Synth::new(400, &[3000, 800, 5000, 120, 2000], 30, 37.0, 80.0)
}

#[test]
fn recovers_offset_and_drift_on_a_clean_trace() {
    let s = synth();
    let map = align(&s.samples(0.0, 1, |_| false), &s.report).unwrap();
    let err = s.mapping_error(&map);
    assert!(err <= 0.6, "mapping error {err} samples, {map:?}");
    assert!((map.drift_ppm() - 80.0).abs() < 20.0, "{}", map.drift_ppm());
    // The closing pattern's first rising edge follows the busy runs: not visible, left out.
    let bursts = s.report.pattern.bursts_ms.len();
    assert_eq!(map.edges, 2 * 2 * bursts - 1, "{map:?}");
    assert_eq!(map.rejected.len(), 1, "{map:?}");
    assert!(
        map.rejected[0].contains("closing burst 1 rising"),
        "{map:?}"
    );
}

#[test]
fn noise_holes_and_negative_drift() {
    for (drift, offset, seed) in [(-300.0, 5.0, 2u64), (450.0, 250.0, 3), (0.0, 0.0, 4)] {
        let s = Synth::new(400, &[3000, 800, 5000], 0, offset, drift);
        // 50 mW of noise against 0.9 W of contrast, and a 40-sample hole every ~7000.
        let samples = s.samples(0.05, seed, |i| i % 7001 < 40);
        let map = align(&samples, &s.report).unwrap();
        let err = s.mapping_error(&map);
        assert!(err <= 1.0, "drift {drift}: mapping error {err}, {map:?}");
        assert!(map.residual_max_samples <= 1.0);
        assert!((map.drift_ppm() - drift).abs() < 40.0, "{map:?}");
    }
}

#[test]
fn map_round_trips() {
    let s = synth();
    let map = align(&s.samples(0.01, 5, |_| false), &s.report).unwrap();
    let t = s.report.job.start_ns + 12_345_678_901;
    let back = map.device_ns_at(map.sample_at(t));
    assert!((back - t as f64).abs() < 1.0, "{back} vs {t}");
    let json = serde_json::to_string(&map).unwrap();
    let back: ClockMap = serde_json::from_str(&json).unwrap();
    assert!((back.b - map.b).abs() < 1e-15 && (back.a - map.a).abs() < 1e-6);
}

#[test]
fn refuses_traces_without_pulses_with_numbers() {
    let s = synth();
    // Flat idle power with noise: no pattern anywhere.
    let flat: Vec<Sample> = s
        .samples(0.0, 1, |_| false)
        .into_iter()
        .enumerate()
        .map(|(k, mut x)| {
            x.main_current_a = (1.2 + 0.02 * ((k * 7919 % 101) as f64 / 50.0 - 1.0)) as f32 / 4.0;
            x
        })
        .collect();
    let e = align(&flat, &s.report).unwrap_err();
    assert!(matches!(e, AlignError::PatternNotFound { .. }), "{e}");
    assert!(e.to_string().contains("correlation"), "{e}");
}

#[test]
fn refuses_empty_nan_and_bad_reports_without_panicking() {
    let s = synth();
    assert_eq!(align(&[], &s.report).unwrap_err(), AlignError::EmptyTrace);
    let nan: Vec<Sample> = s
        .samples(0.0, 1, |_| false)
        .into_iter()
        .map(|mut x| {
            x.voltage_v = f32::NAN;
            x
        })
        .collect();
    assert_eq!(align(&nan, &s.report).unwrap_err(), AlignError::EmptyTrace);
    // A few NaN samples and a corrupt huge index are survivable / refused clearly.
    let mut some_nan = s.samples(0.0, 1, |_| false);
    for x in some_nan.iter_mut().step_by(997) {
        x.main_current_a = f32::NAN;
    }
    assert!(align(&some_nan, &s.report).is_ok());
    let mut huge = s.samples(0.0, 1, |_| false);
    if let Some(x) = huge.last_mut() {
        x.index = u64::MAX / 2;
    }
    assert!(matches!(
        align(&huge, &s.report),
        Err(AlignError::TraceTooLong { .. })
    ));
    let mut bad = s.report.clone();
    bad.pulses_after.pop();
    assert!(matches!(
        align(&s.samples(0.0, 1, |_| false), &bad),
        Err(AlignError::BadReport(_))
    ));
    let mut bad = s.report.clone();
    bad.pulses_before[1].end_ns = bad.pulses_before[1].start_ns;
    assert!(matches!(
        align(&s.samples(0.0, 1, |_| false), &bad),
        Err(AlignError::BadReport(_))
    ));
    // Shuffled order does not matter.
    let mut rev = s.samples(0.0, 1, |_| false);
    rev.reverse();
    assert!(align(&rev, &s.report).is_ok());
}

#[test]
fn refuses_a_trace_missing_the_closing_pattern() {
    let s = synth();
    let cut = s.a + s.b * s.report.pulses_after[0].start_ns as f64;
    let samples: Vec<Sample> = s
        .samples(0.0, 1, |_| false)
        .into_iter()
        .filter(|x| (x.index as f64) < cut)
        .collect();
    let e = align(&samples, &s.report).unwrap_err();
    // The closing template matches the opening pattern (the same shape), but not at the
    // distance the device clock gives.
    assert!(
        matches!(
            e,
            AlignError::PatternNotFound {
                which: "closing",
                ..
            } | AlignError::PatternsNotPaired { .. }
        ),
        "{e}"
    );
}

#[test]
fn refuses_a_faint_pattern() {
    let s = synth();
    // Noise as large as the burst contrast.
    let e = align(&s.samples(1.5, 7, |_| false), &s.report).unwrap_err();
    assert!(
        matches!(
            e,
            AlignError::PatternNotFound { .. }
                | AlignError::LowContrast { .. }
                | AlignError::PatternsNotPaired { .. }
                | AlignError::TooFewEdges { .. }
                | AlignError::ResidualTooLarge { .. }
        ),
        "{e}"
    );
}

#[test]
fn refuses_a_report_whose_clock_disagrees_with_the_trace() {
    let s = synth();
    let samples = s.samples(0.0, 1, |_| false);
    // The device claims the closing pattern came 0.2 s later than it did: the patterns no
    // longer pair (2000 ppm of apparent drift).
    let mut bad = s.report.clone();
    for iv in bad.pulses_after.iter_mut() {
        iv.start_ns += 200_000_000;
        iv.end_ns += 200_000_000;
    }
    let e = align(&samples, &bad).unwrap_err();
    assert!(matches!(e, AlignError::PatternsNotPaired { .. }), "{e}");
    // One burst start recorded 2 ms late (the stamping thread waited for a core): that edge
    // is 10 samples off; it is dropped as an outlier, named, and the rest fit.
    let mut late = s.report.clone();
    late.pulses_after[1].start_ns += 2_000_000;
    match align(&samples, &late) {
        Err(e) => panic!("unexpected {e}"),
        Ok(map) => assert!(
            map.rejected.iter().any(|r| r.contains("off the fit")),
            "{map:?}"
        ),
    }
}
