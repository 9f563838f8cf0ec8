//! Unit tests of the cooperative module that need no GPU: the partitioner on synthetic
//! predictors and profiles, the predictors on synthetic measurements, and the executor with
//! a second CPU backend standing in for the GPU (same kernels, so results must be exact).
use super::partition::{plan_with, SplitDim};
use super::predict::{self, Predictor, Which};
use super::profile::{DeviceIdentity, LayerDesc, Measurement, Profile, SyncCost, PROFILE_VERSION};
use super::*;
use crate::backend::cpu::CpuBackend;
use crate::backend::{Precision, Processor};
use crate::exec::Executor;
use crate::tensor::Tensor;

fn identity(gpu: &str) -> DeviceIdentity {
    DeviceIdentity {
        cpu_model: "test cpu".into(),
        cpu_cores: 2,
        cpu_isa: "portable".into(),
        gpu_name: gpu.into(),
        gpu_driver: "1.0".into(),
    }
}

/// An empty profile of a test device (also used by the agent's tests).
pub(crate) fn profile(sync_ns: f64, contention: f64) -> Profile {
    Profile {
        version: PROFILE_VERSION,
        identity: identity("test gpu"),
        quick: true,
        cpu_threads: 2,
        sync: SyncCost {
            fork_join_ns: sync_ns,
            gpu_dispatch_ns: 0.0,
            gpu_ns_per_byte: 0.0,
            contention,
        },
        aggregate: Default::default(),
        measurements: Vec::new(),
        coop: Vec::new(),
        notes: Vec::new(),
        seconds: 0.0,
    }
}

/// Time proportional to MACs (plus one), the GPU `gpu_factor` times slower.
#[derive(Debug)]
struct Linear {
    gpu_factor: f64,
}

impl Predictor for Linear {
    fn predict(
        &self,
        d: &LayerDesc,
        p: Processor,
        _q: Precision,
        c: usize,
        h: usize,
    ) -> Option<f64> {
        let t = 1000.0 + d.macs(c, h) + d.out_elems(c, h);
        Some(match p {
            Processor::Cpu => t,
            Processor::Gpu => t * self.gpu_factor,
        })
    }
    fn name(&self) -> &'static str {
        "linear"
    }
}

fn graph(name: &str) -> crate::Graph {
    crate::zoo::build_seeded(name, 3)
        .expect("zoo")
        .optimized()
        .expect("optimized")
}

fn opts(mechanism: Mechanism) -> PlanOptions {
    PlanOptions {
        mechanism,
        precision: Precision::F32,
        predictor: Which::Kernel,
        rows: true,
    }
}

#[test]
fn a_losing_split_is_not_taken() {
    let g = graph("squeezenet1.1");
    // GPU 10⁴× slower: every layer whole on the CPU.
    let p = plan_with(
        &g,
        &profile(1e3, 0.0),
        &Linear { gpu_factor: 1e4 },
        &opts(Mechanism::Ulayer),
    )
    .unwrap();
    assert_eq!(p.counts(), (g.nodes.len(), 0, 0, 0));
    // Equal processors but a synchronisation dearer than any layer: nothing split.
    let p = plan_with(
        &g,
        &profile(1e12, 0.0),
        &Linear { gpu_factor: 1.0 },
        &opts(Mechanism::Ulayer),
    )
    .unwrap();
    assert_eq!(p.counts().2, 0, "{}", p.explain());
    // Fully serialised processors (contention 1): splitting never pays.
    let p = plan_with(
        &g,
        &profile(10.0, 1.0),
        &Linear { gpu_factor: 1.0 },
        &opts(Mechanism::Ulayer),
    )
    .unwrap();
    assert_eq!(p.counts().2, 0, "{}", p.explain());
    // Equal processors, cheap sync, no contention: the big layers split near the middle.
    let p = plan_with(
        &g,
        &profile(10.0, 0.0),
        &Linear { gpu_factor: 1.0 },
        &opts(Mechanism::Ulayer),
    )
    .unwrap();
    assert!(p.counts().2 > 10, "{}", p.explain());
    for l in &p.layers {
        if let Some(split) = &l.split_ms {
            if l.chosen.starts_with("split") {
                assert!(
                    *split < l.cpu_ms.min(l.gpu_ms),
                    "{}: split chosen but not faster",
                    l.name
                );
            }
        }
    }
}

#[test]
fn split_slices_tile_the_output_on_the_packing_grid() {
    let g = graph("mobilenet-v1");
    let shapes = g.infer_shapes().unwrap();
    let p = plan_with(
        &g,
        &profile(10.0, 0.0),
        &Linear { gpu_factor: 1.3 },
        &opts(Mechanism::Ulayer),
    )
    .unwrap();
    let mut splits = 0;
    for s in &p.stages {
        if let Stage::Split {
            node,
            dim,
            cpu,
            gpu,
        } = s
        {
            let n = &g.nodes[*node];
            crate::exec::check_cover(&n.name, &shapes[&n.output], &[cpu.clone(), gpu.clone()])
                .unwrap();
            if *dim == SplitDim::Channels {
                assert!(
                    cpu.channels.end % 4 == 0,
                    "{}: split at {}",
                    n.name,
                    cpu.channels.end
                );
            }
            splits += 1;
        }
    }
    assert!(splits > 0);
}

#[test]
fn plans_are_deterministic() {
    let g = graph("googlenet");
    let pr = profile(50e3, 0.2);
    let a = plan_with(
        &g,
        &pr,
        &Linear { gpu_factor: 1.5 },
        &opts(Mechanism::UlayerBranch),
    )
    .unwrap();
    let b = plan_with(
        &g,
        &pr,
        &Linear { gpu_factor: 1.5 },
        &opts(Mechanism::UlayerBranch),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    // Round trip through JSON.
    let back: Plan = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
    assert_eq!(back.stages, a.stages);
}

#[test]
fn inception_and_fire_modules_are_found_and_distributed() {
    let g = graph("googlenet");
    // Large sync: per-layer splitting loses, whole branches on both processors win.
    let p = plan_with(
        &g,
        &profile(2e6, 0.0),
        &Linear { gpu_factor: 1.0 },
        &opts(Mechanism::UlayerBranch),
    )
    .unwrap();
    assert_eq!(p.modules.len(), 9, "nine Inception modules");
    assert!(p.modules.iter().all(|m| m.branches.len() == 4));
    assert!(p.counts().3 > 0, "{}", p.explain());
    let g = graph("squeezenet1.1");
    let p = plan_with(
        &g,
        &profile(2e6, 0.0),
        &Linear { gpu_factor: 1.0 },
        &opts(Mechanism::UlayerBranch),
    )
    .unwrap();
    assert_eq!(p.modules.len(), 8, "eight Fire modules");
}

#[test]
fn another_devices_profile_is_refused() {
    let g = graph("squeezenet1.1");
    let pr = profile(10.0, 0.0);
    let e = plan(&g, &pr, &identity("other gpu"), &opts(Mechanism::Ulayer))
        .unwrap_err()
        .to_string();
    assert!(e.contains("test gpu") && e.contains("other gpu"), "{e}");
}

/// Runs `g` with both "processors" on the CPU backend (identical kernels): every plan must
/// give exactly the single-processor result, whatever it splits.
#[test]
fn executor_matches_single_processor_exactly() {
    for (name, mech) in [
        ("squeezenet1.1", Mechanism::Ulayer),
        ("squeezenet1.1", Mechanism::UlayerBranch),
        ("googlenet", Mechanism::UlayerBranch),
    ] {
        let g = graph(name);
        let mut rng = 11u64;
        let x = super::profile::tests_rand(&g.inputs[0].shape, &mut rng);
        let mut single = Executor::new(&g, CpuBackend::new(1).unwrap(), Precision::F32).unwrap();
        let want = single.run(std::slice::from_ref(&x)).unwrap().0;
        let mut pr = profile(10.0, 0.0);
        pr.identity = identity("test gpu");
        let sync = if mech == Mechanism::UlayerBranch {
            2e6
        } else {
            10.0
        };
        pr.sync.fork_join_ns = sync;
        let plan = plan_with(&g, &pr, &Linear { gpu_factor: 1.2 }, &opts(mech)).unwrap();
        let (_, _, s, b) = plan.counts();
        assert!(s + b > 0, "{name}: nothing cooperative in the plan");
        let mut ex = CoopExecutor::new(
            &g,
            None,
            CpuBackend::new(1).unwrap(),
            CpuBackend::new(1).unwrap(),
            plan,
            &identity("test gpu"),
        )
        .unwrap();
        let (got, trace) = ex.run(std::slice::from_ref(&x)).unwrap();
        assert_eq!(got, want, "{name} {mech}");
        // Both processors' spans for split layers.
        let gpu_spans = trace
            .layers
            .iter()
            .filter(|s| s.processor == Processor::Gpu)
            .count();
        assert!(gpu_spans > 0);
    }
}

#[test]
fn executor_runs_quantized_plans() {
    let g = graph("squeezenet1.1");
    let mut rng = 5u64;
    let x = super::profile::tests_rand(&g.inputs[0].shape, &mut rng);
    let q = crate::quant::quantize(
        &g,
        &[vec![x.clone()]],
        crate::quant::CalibrationMethod::default(),
        1,
    )
    .unwrap();
    let mut single = Executor::new_quantized(&q, CpuBackend::new(1).unwrap()).unwrap();
    let want = single.run(std::slice::from_ref(&x)).unwrap().0;
    let mut o = opts(Mechanism::Ulayer);
    o.precision = Precision::Quint8;
    let plan = plan_with(&g, &profile(10.0, 0.0), &Linear { gpu_factor: 1.0 }, &o).unwrap();
    let mut ex = CoopExecutor::new(
        &g,
        Some(&q),
        CpuBackend::new(1).unwrap(),
        CpuBackend::new(1).unwrap(),
        plan,
        &identity("test gpu"),
    )
    .unwrap();
    let got = ex.run(std::slice::from_ref(&x)).unwrap().0;
    assert_eq!(got, want);
}

#[test]
fn kernel_predictor_learns_stepped_latency() {
    // Synthetic "device": time = 5 µs + 1 ns per padded MAC in tiles of 8 channels × 16
    // positions over 2 workers, which a FLOPs-linear model cannot follow.
    let node = super::profile::tests_conv_desc;
    let truth = |d: &LayerDesc, c: usize, h: usize| {
        let tiles = c.div_ceil(8) * (h * d.inner).div_ceil(16);
        5000.0 + (tiles.div_ceil(2) * 8 * 16 * d.k_red) as f64
    };
    let mut ms = Vec::new();
    for cin in [3, 16, 24, 40] {
        for cout in [4, 12, 20, 36, 60] {
            for hw in [5, 7, 13, 17] {
                let d = node(cin, cout, hw);
                for c in [1, cout / 2, cout].into_iter().filter(|&c| c > 0) {
                    ms.push(Measurement {
                        source: "synthetic".into(),
                        ns: truth(&d, c, d.h),
                        layer: d.clone(),
                        processor: Processor::Cpu,
                        precision: Precision::F32,
                        c,
                        h: d.h,
                        rounds_ns: Vec::new(),
                    });
                }
            }
        }
    }
    let mut pr = profile(0.0, 0.0);
    pr.measurements = ms;
    let acc = predict::evaluate(&pr);
    let get = |p: &str| {
        acc.iter()
            .find(|a| a.predictor == p && a.target == "all")
            .unwrap()
            .clone()
    };
    let (paper, ours) = (get("paper"), get("kernel-aware"));
    eprintln!(
        "synthetic: paper ±10% {:.2}, ours ±10% {:.2}",
        paper.within_10, ours.within_10
    );
    assert!(ours.within_10 >= 0.9, "{ours:?}");
    assert!(ours.within_10 > paper.within_10);
    let _ = Tensor::zeros(&[1]);
}

/// A profile of 40 layers (8 → 1..=40 channels at 7²), each measured whole and as one
/// channel, on the CPU in 8-bit.
fn forty_layers() -> Profile {
    let node = super::profile::tests_conv_desc;
    let mut ms = Vec::new();
    for cout in 1..=40 {
        let d = node(8, cout, 7);
        for c in [1, cout] {
            ms.push(Measurement {
                source: format!("layer{cout}"),
                ns: 1000.0 * cout as f64 + c as f64,
                layer: d.clone(),
                processor: Processor::Cpu,
                precision: Precision::Quint8,
                c,
                h: d.h,
                rounds_ns: Vec::new(),
            });
        }
    }
    let mut pr = profile(0.0, 0.0);
    pr.measurements = ms;
    pr
}

#[test]
fn repeatability_scores_a_second_profile_as_a_predictor() {
    let first = forty_layers();
    let held = first
        .measurements
        .iter()
        .filter(|m| predict::held_out(m))
        .count();
    assert!(held > 0 && held < first.measurements.len());
    let all = |acc: &[predict::Accuracy]| {
        acc.iter()
            .find(|a| a.target == "all")
            .cloned()
            .expect("an 'all' row")
    };
    // The same measurements again: every held-out one repeats exactly.
    let same = all(&predict::repeatability(&first, &first.clone()));
    assert_eq!(
        (same.predictor.as_str(), same.measurements),
        ("repeat", held)
    );
    assert_eq!((same.within_10, same.within_20), (1.0, 1.0));
    // Every time 15% slower: outside ±10%, inside ±20%.
    let mut slower = first.clone();
    slower.measurements.iter_mut().for_each(|m| m.ns *= 1.15);
    let s = all(&predict::repeatability(&first, &slower));
    assert_eq!((s.within_10, s.within_20), (0.0, 1.0));
    assert!((s.median_error - 0.15).abs() < 1e-9, "{s:?}");
    // A slice the second profile lacks is a miss, not skipped.
    let mut fewer = first.clone();
    fewer
        .measurements
        .retain(|m| !(predict::held_out(m) && m.c == 1));
    let f = all(&predict::repeatability(&first, &fewer));
    assert_eq!(f.measurements, held);
    assert!(f.within_20 < 1.0 && f.within_20 > 0.0, "{f:?}");
}

#[test]
fn a_variant_breakdown_scores_each_kernel_on_its_own_slices() {
    let node = super::profile::tests_conv_desc;
    let mut ms = Vec::new();
    for cout in 1..=40 {
        // Two variants of the same processor and precision.
        for (variant, k) in [("conv3s1", 1000.0), ("pw", 10.0)] {
            let mut d = node(8, cout, 7);
            d.variant = variant.into();
            ms.push(Measurement {
                source: format!("{variant}{cout}"),
                ns: k * cout as f64,
                layer: d,
                processor: Processor::Cpu,
                precision: Precision::Quint8,
                c: cout,
                h: 7,
                rounds_ns: Vec::new(),
            });
        }
    }
    let mut first = profile(0.0, 0.0);
    first.measurements = ms;
    // The second profile: the 3×3 layers 50% slower, the 1×1 layers the same.
    let mut second = first.clone();
    for m in &mut second.measurements {
        if m.layer.variant == "conv3s1" {
            m.ns *= 1.5;
        }
    }
    let acc = predict::repeatability_by(&first, &second, predict::Breakdown::Variant);
    let row = |t: &str| {
        acc.iter()
            .find(|a| a.target == t)
            .unwrap_or_else(|| panic!("no row {t:?} in {acc:?}"))
            .clone()
    };
    let targets: Vec<&str> = acc.iter().map(|a| a.target.as_str()).collect();
    assert_eq!(
        targets,
        ["all", "cpu quint8", "cpu quint8 conv3s1", "cpu quint8 pw"]
    );
    let (conv, pw, both) = (
        row("cpu quint8 conv3s1"),
        row("cpu quint8 pw"),
        row("cpu quint8"),
    );
    assert_eq!(conv.measurements + pw.measurements, both.measurements);
    assert!(conv.measurements > 0 && pw.measurements > 0);
    assert_eq!((conv.within_20, pw.within_10), (0.0, 1.0));
    // Without the breakdown, only the per-target rows.
    let plain = predict::repeatability(&first, &second);
    assert_eq!(plain.len(), 2);
}

#[test]
fn residuals_are_the_held_out_measurements_with_every_predictors_time() {
    let pr = forty_layers();
    let rows = predict::residuals(&pr);
    let held: Vec<&Measurement> = pr
        .measurements
        .iter()
        .filter(|m| predict::held_out(m))
        .collect();
    assert_eq!(rows.len(), held.len());
    for (r, m) in rows.iter().zip(&held) {
        assert_eq!((&r.source, r.c, r.h), (&m.source, m.c, m.h));
        assert_eq!(r.measured_ns, m.ns);
        let names: Vec<&str> = r.predicted_ns.keys().copied().collect();
        assert_eq!(names, ["boosted", "kernel-aware", "paper"]);
        assert!(r.predicted_ns.values().all(|p| p.is_some_and(|t| t > 0.0)));
    }
    // The shares `evaluate` reports are those of these rows.
    let acc = predict::evaluate(&pr);
    for name in ["paper", "kernel-aware", "boosted"] {
        let within = rows
            .iter()
            .filter(|r| {
                let t = r.predicted_ns[name].unwrap_or(f64::INFINITY);
                (t - r.measured_ns).abs() / r.measured_ns <= 0.10
            })
            .count() as f64
            / rows.len() as f64;
        let a = acc
            .iter()
            .find(|a| a.predictor == name && a.target == "all")
            .expect("an 'all' row");
        assert!(
            (a.within_10 - within).abs() < 1e-12,
            "{name}: {a:?} vs {within}"
        );
    }
}

#[test]
fn predictor_names_match_what_they_fit() {
    let d = super::profile::tests_conv_desc(4, 8, 5);
    let ms: Vec<Measurement> = (1..=8)
        .map(|c| Measurement {
            source: "synthetic".into(),
            ns: 1000.0 * c as f64,
            layer: d.clone(),
            processor: Processor::Cpu,
            precision: Precision::F32,
            c,
            h: d.h,
            rounds_ns: Vec::new(),
        })
        .collect();
    for w in [Which::Paper, Which::Kernel, Which::Boosted] {
        assert_eq!(predict::fit(w, &ms, 2).name(), w.name());
    }
}

#[test]
fn mechanism_names_and_precisions() {
    for m in Mechanism::ALL {
        assert_eq!(Mechanism::parse(m.name()).unwrap(), m);
    }
    let e = Mechanism::parse("both").unwrap_err().to_string();
    assert!(
        e.contains("ulayer+branch") && e.contains("layer-to-processor"),
        "{e}"
    );
    let e = Mechanism::parse_with("cpu", Precision::F16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cpu (f32|quint8)"), "{e}");
    assert!(Mechanism::parse_with("ulayer", Precision::Quint8).is_ok());
}

/// A saved profile reads back bit for bit: a plan must be the same from the profile in memory
/// and from its file. 1.3735551834106445 (a GPU ns/byte measured under lavapipe) read back
/// one ULP off before serde_json's `float_roundtrip` was enabled.
#[test]
fn profile_file_reads_back_every_float_exactly() {
    let mut p = profile(972.0, 1.5);
    p.sync.gpu_ns_per_byte = 1.373_555_183_410_644_5;
    p.seconds = 0.653_624_579;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.json");
    p.save(&path).unwrap();
    let back = Profile::load(&path).unwrap();
    assert_eq!(
        back.sync.gpu_ns_per_byte.to_bits(),
        p.sync.gpu_ns_per_byte.to_bits()
    );
    assert_eq!(back, p);
}

/// A profile keeps every slice's rounds, so its times can be re-made as the fastest round;
/// a profile without rounds says so and names the first slice without them.
#[test]
fn profile_times_are_re_made_from_the_kept_rounds() {
    use super::profile::Aggregate;
    assert_eq!(Aggregate::Median.of(&[30.0, 10.0, 20.0]), 20.0);
    assert_eq!(Aggregate::Min.of(&[30.0, 10.0, 20.0]), 10.0);
    assert_eq!(Aggregate::Min.of(&[]), 0.0);
    let d = super::profile::tests_conv_desc(4, 8, 5);
    let slice = |source: &str, rounds_ns: Vec<f64>| Measurement {
        source: source.into(),
        ns: Aggregate::Median.of(&rounds_ns),
        layer: d.clone(),
        processor: Processor::Cpu,
        precision: Precision::F32,
        c: d.c,
        h: d.h,
        rounds_ns,
    };
    let mut p = profile(0.0, 0.0);
    p.measurements = vec![
        slice("a", vec![120.0, 100.0, 300.0]),
        slice("b", vec![50.0, 40.0, 45.0]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    p.save(&path).unwrap();
    let mut back = Profile::load(&path).unwrap();
    assert_eq!(back, p, "the rounds are saved");
    back.reaggregate(Aggregate::Min).unwrap();
    let ns: Vec<f64> = back.measurements.iter().map(|m| m.ns).collect();
    assert_eq!(ns, [100.0, 40.0]);
    assert_eq!(back.aggregate, Aggregate::Min);
    back.reaggregate(Aggregate::Median).unwrap();
    assert_eq!(back.measurements, p.measurements);

    p.measurements[1].rounds_ns.clear();
    let err = p.reaggregate(Aggregate::Min).unwrap_err().to_string();
    assert!(
        err.contains("kept no rounds") && err.contains("first: b"),
        "{err}"
    );
}

#[test]
fn engine_span_is_the_cpu_engines_own_estimate() {
    // alexnet/conv3's shape: 3×3, 192 → 384 at 13×13.
    let d = LayerDesc {
        kind: "Conv".into(),
        variant: "conv3s1".into(),
        outer: 1,
        c: 384,
        h: 13,
        inner: 13,
        in_elems: 192 * 13 * 13,
        k_red: 192 * 9,
        kernel: [3, 3],
        stride: [1, 1],
        weight_elems: 384 * 192 * 9,
        sliceable: true,
    };
    let span = |d: &LayerDesc, p, q, c, t| predict::engine_span(d, p, q, (c, 13), t);
    let (cpu, q8, f32) = (Processor::Cpu, Precision::Quint8, Precision::F32);
    // None for the GPU, nor for a layer that is not a matrix product.
    assert_eq!(span(&d, Processor::Gpu, q8, 384, 2), 0.0);
    let dw = LayerDesc {
        variant: "dw3s1".into(),
        ..d.clone()
    };
    assert_eq!(span(&dw, cpu, f32, 384, 2), 0.0);
    // An 8-bit channel slice packs every column: a quarter of the channels costs more than a
    // quarter of the layer, and less than all of it. The F32 engine charges no packing.
    let (whole, quarter) = (span(&d, cpu, q8, 384, 1), span(&d, cpu, q8, 96, 1));
    assert!(
        quarter > whole / 4.0 && quarter < whole,
        "{quarter} of {whole}"
    );
    let (whole, quarter) = (span(&d, cpu, f32, 384, 1), span(&d, cpu, f32, 96, 1));
    assert!(quarter <= whole / 4.0 * 1.1, "{quarter} of {whole}");
    // Two workers share the work; two images take twice as long.
    assert!(span(&d, cpu, q8, 384, 2) < span(&d, cpu, q8, 384, 1));
    let two = LayerDesc {
        outer: 2,
        ..d.clone()
    };
    assert_eq!(span(&two, cpu, q8, 384, 2), 2.0 * span(&d, cpu, q8, 384, 2));
}
