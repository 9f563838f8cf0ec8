//! Energy attribution on synthetic traces whose true energy is known exactly.
use super::*;
use crate::align::align;
use crate::align::tests::{layer_w, Synth, IDLE_W};

/// The true clock of a synthetic job as a map (isolates attribution from alignment).
fn true_map(s: &Synth) -> ClockMap {
    ClockMap {
        a: s.a,
        b: s.b,
        residual_rms_samples: 0.0,
        residual_max_samples: 0.0,
        edges: 12,
        rejected: Vec::new(),
        correlation: [1.0; 2],
        contrast_w: [0.9; 2],
        mapping_error_samples: 0.0,
        burst_widening_samples: 0.0,
        fit: Vec::new(),
    }
}

const LAYERS_US: [u64; 5] = [3000, 800, 5000, 120, 2000];

#[test]
fn per_inference_energy_matches_the_truth() {
    let s = Synth::new(200, &LAYERS_US, 30, 37.0, 80.0);
    let samples = s.samples(0.02, 11, |_| false);
    let map = align(&samples, &s.report).unwrap();
    let e = attribute(&samples, &map, &s.report).unwrap();
    assert!((e.idle.power_w - IDLE_W).abs() < 0.005, "{:?}", e.idle);
    assert_eq!(e.stats.runs, 200);
    let (mut worst, mut sum_err) = (0.0f64, 0.0);
    for (r, t) in e.runs.iter().zip(&s.report.bench.traces) {
        let truth = s.seen_energy(t.start_ns, t.end_ns);
        worst = worst.max((r.energy_j - truth).abs() / truth);
        sum_err += (r.energy_j - truth) / truth;
        let above = truth - IDLE_W * (t.end_ns - t.start_ns) as f64 * 1e-9;
        assert!((r.energy_above_idle_j - above).abs() < 0.05 * above);
    }
    // One run samples its 5 layers' edges at one phase (±half a sample each); the mean over
    // runs at every phase is unbiased.
    assert!(
        worst < 0.02,
        "worst per-inference error {:.3}%",
        worst * 100.0
    );
    let mean_err = sum_err / e.runs.len() as f64;
    assert!(
        mean_err.abs() < 0.002,
        "mean per-inference error {:.3}%",
        mean_err * 100.0
    );
    let lat = &e.stats.latency_ms;
    assert!((lat.mean - 11.07).abs() < 0.001, "{lat:?}");
    assert!(e.method.contains("phase aggregation"), "{}", e.method);
}

#[test]
fn short_layers_are_phase_aggregated_and_match_the_truth() {
    let s = Synth::new(200, &LAYERS_US, 30, 37.0, 80.0);
    let samples = s.samples(0.02, 12, |_| false);
    let e = attribute(&samples, &true_map(&s), &s.report).unwrap();
    let want = [
        LayerMethod::Direct,
        LayerMethod::PhaseAggregated,
        LayerMethod::Direct,
        LayerMethod::PhaseAggregated,
        LayerMethod::Direct,
    ];
    assert_eq!(e.layers.len(), 5);
    for (k, (l, m)) in e.layers.iter().zip(want).enumerate() {
        assert_eq!(l.method, m, "{l:?}");
        // What the samples see: the blurred power over each run's window of the layer.
        let truth = s
            .report
            .bench
            .traces
            .iter()
            .map(|t| s.seen_energy(t.layers[k].start_ns, t.layers[k].end_ns))
            .sum::<f64>()
            / 200.0;
        let step = layer_w(k) * LAYERS_US[k] as f64 * 1e-6;
        let err = (l.energy_j - truth).abs() / truth;
        // The 120 µs layer is 0.6 samples wide: one run alone could not place it at all.
        assert!(
            err < 0.03,
            "layer {k}: {} J vs {truth} J ({:.2}%)",
            l.energy_j,
            err * 100.0
        );
        assert!(
            (l.energy_above_idle_j - (truth - IDLE_W * LAYERS_US[k] as f64 * 1e-6)).abs()
                < 0.1 * truth
        );
        // And the blur moves the short layer's energy only by the neighbours' share.
        assert!(
            (l.energy_j - step).abs() < 0.15 * step,
            "layer {k}: {} vs step {step}",
            l.energy_j
        );
        assert_eq!(l.runs, 200);
    }
    // The 30 µs gaps between layers are idle: what is left over is small and positive.
    assert!(e.between_layers_j > 0.0 && e.between_layers_j < 0.02 * e.stats.energy_j.mean);
}

#[test]
fn few_runs_fall_back_to_proportional_and_say_so() {
    let s = Synth::new(4, &LAYERS_US, 30, 0.0, 0.0);
    let samples = s.samples(0.0, 13, |_| false);
    let e = attribute(&samples, &true_map(&s), &s.report).unwrap();
    // 0.8 ms (4 samples) × 4 runs and 0.12 ms × 4 runs: under 20 pooled samples each.
    assert_eq!(
        e.layers[1].method,
        LayerMethod::Proportional,
        "{:?}",
        e.layers[1]
    );
    assert_eq!(
        e.layers[3].method,
        LayerMethod::Proportional,
        "{:?}",
        e.layers[3]
    );
    assert!(e.method.contains("2 proportionally"), "{}", e.method);
}

#[test]
fn runs_in_a_gap_are_excluded_and_gaps_elsewhere_are_bridged() {
    let s = Synth::new(50, &LAYERS_US, 30, 10.0, -50.0);
    let t = &s.report.bench.traces;
    let x = |ns: u64| s.a + s.b * ns as f64;
    // Run 10 loses half its samples; run 20 loses 2 samples (bridged).
    let (a0, a1) = (
        x(t[10].start_ns),
        (x(t[10].start_ns) + x(t[10].end_ns)) / 2.0,
    );
    let b0 = x(t[20].start_ns) + 10.0;
    let samples = s.samples(0.0, 14, |i| {
        let i = i as f64;
        (i >= a0 && i < a1) || (i >= b0 && i < b0 + 2.0)
    });
    let e = attribute(&samples, &true_map(&s), &s.report).unwrap();
    assert!(
        !e.runs[10].used && e.runs[10].coverage < 0.6,
        "{:?}",
        e.runs[10]
    );
    assert!(e.runs[20].used && e.runs[20].coverage > 0.95);
    let truth = s.energy(t[20].start_ns, t[20].end_ns);
    assert!((e.runs[20].energy_j - truth).abs() < 0.02 * truth);
    assert_eq!((e.stats.runs, e.stats.runs_excluded), (49, 1));
}

#[test]
fn split_layers_list_both_processors() {
    let mut s = Synth::new(20, &LAYERS_US, 30, 0.0, 0.0);
    for t in &mut s.report.bench.traces {
        let mut gpu = t.layers[0].clone();
        gpu.processor = Processor::Gpu;
        gpu.end_ns -= 500_000;
        t.layers.insert(1, gpu);
    }
    let samples = s.samples(0.0, 15, |_| false);
    let e = attribute(&samples, &true_map(&s), &s.report).unwrap();
    assert_eq!(e.layers.len(), 5);
    assert_eq!(e.layers[0].processors, vec![Processor::Cpu, Processor::Gpu]);
    assert!((e.layers[0].mean_duration_ms - 3.0).abs() < 1e-9);
}

#[test]
fn clear_errors_on_unusable_input() {
    let s = Synth::new(5, &LAYERS_US, 30, 0.0, 0.0);
    let samples = s.samples(0.0, 16, |_| false);
    let map = true_map(&s);
    let mut no_traces = s.report.clone();
    no_traces.bench.traces.clear();
    assert_eq!(
        attribute(&samples, &map, &no_traces).unwrap_err(),
        EnergyError::NoTraces
    );
    assert!(matches!(
        attribute(&[], &map, &s.report),
        Err(EnergyError::Trace(AlignError::EmptyTrace))
    ));
    let bad = ClockMap {
        b: f64::NAN,
        ..map.clone()
    };
    assert!(matches!(
        attribute(&samples, &bad, &s.report),
        Err(EnergyError::BadClockMap(_))
    ));
    // A map that puts the job an hour away from the trace.
    let far = ClockMap {
        a: map.a + 3600.0 * 5000.0,
        ..map.clone()
    };
    let e = attribute(&samples, &far, &s.report).unwrap_err();
    assert!(matches!(e, EnergyError::IdleNotCovered { .. }), "{e}");
}

#[test]
fn summary_is_nearest_rank_and_serialises() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    let s = Summary::of(&v).unwrap();
    assert_eq!((s.p50, s.p90, s.p99, s.n), (50.0, 90.0, 99.0, 100));
    assert!((s.mean - 50.5).abs() < 1e-12);
    assert!(Summary::of(&[f64::NAN]).is_none());
    let syn = Synth::new(30, &LAYERS_US, 30, 0.0, 0.0);
    let e = attribute(
        &syn.samples(0.0, 1, |_| false),
        &true_map(&syn),
        &syn.report,
    )
    .unwrap();
    let json = serde_json::to_string(&e).unwrap();
    let back: JobEnergy = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (back.stats.runs, back.layers.len()),
        (e.stats.runs, e.layers.len())
    );
}
