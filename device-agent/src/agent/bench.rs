//! Timing inference: warm-up, measured runs, latency statistics and per-layer times.
use super::{load_model, resolve_threads};
use crate::protocol::{BenchReport, BenchRequest, LatencyStats, LayerTiming};
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::path::Path;

/// A deterministic input for timing (values in the normalised range of real images).
pub(crate) fn bench_input(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| (((i * 7919) % 255) as f32 - 127.0) / 128.0)
        .collect();
    Tensor::from_vec(shape, data).expect("length computed from the shape")
}

/// Runs `req.warmup` unmeasured and `req.iterations` measured inferences. `progress` is called
/// after each measured run with (done, total).
pub fn bench(
    req: &BenchRequest,
    data_dir: &Path,
    progress: impl FnMut(usize, usize),
) -> Result<BenchReport> {
    if req.iterations == 0 {
        return Err(Error::Other("iterations must be at least 1".into()));
    }
    // Unknown mechanisms and precisions they do not run: an error listing the valid ones.
    crate::coop::Mechanism::parse_with(&req.mechanism, req.precision)?;
    let model = load_model(&req.model, data_dir)?;
    let threads = resolve_threads(req.threads);
    let stats = model.graph.stats()?;
    match req.mechanism.as_str() {
        "cpu" => {
            let exec = super::quant::cpu_executor(&model, req.precision, threads, data_dir)?;
            timed(req, &model, &stats, threads, exec, progress)
        }
        "gpu" => {
            let gpu = crate::backend::vulkan::VulkanBackend::new()?;
            tracing::info!(device = %gpu.info().name, memory = gpu.memory_description(), "bench on the GPU");
            // The same calibration as the CPU's QUInt8 path (every bundled photo).
            let q = match req.precision {
                crate::backend::Precision::Quint8 => Some(super::quant::quantize_model(
                    &model,
                    crate::quant::CalibrationMethod::default(),
                    threads,
                    data_dir,
                    |_| true,
                )?),
                _ => None,
            };
            let exec = super::coop::gpu_network(&model, q.as_ref(), gpu, req.precision)?;
            timed(req, &model, &stats, threads, exec, progress)
        }
        // The cooperative mechanisms (see `agent::coop`), and the error listing every valid
        // mechanism and precision.
        other => {
            let p = super::coop::prepare(
                &model,
                other,
                req.precision,
                threads,
                data_dir,
                None,
                super::coop::Choice {
                    measured_fallback: req.measured_fallback,
                    predictor: req.predictor,
                },
            )?;
            let mut report = timed(req, &model, &stats, threads, p.runner, progress)?;
            report.predictor = p.predictor;
            report.executed = p.executed;
            Ok(report)
        }
    }
}

/// The measured part of [`bench`], on any backend.
fn timed(
    req: &BenchRequest,
    model: &super::LoadedModel,
    stats: &crate::graph::GraphStats,
    threads: usize,
    mut exec: impl crate::coop::Runner,
    mut progress: impl FnMut(usize, usize),
) -> Result<BenchReport> {
    let input = bench_input(&model.input.shape);
    for _ in 0..req.warmup {
        exec.run(std::slice::from_ref(&input))?;
    }
    let mut runs_ns = Vec::with_capacity(req.iterations);
    let mut per_layer: Vec<Vec<u64>> = vec![Vec::with_capacity(req.iterations); stats.layers.len()];
    let mut transfers: Vec<Vec<u64>> = vec![Vec::with_capacity(req.iterations); stats.layers.len()];
    let mut traces = Vec::new();
    let layer_index: std::collections::HashMap<&str, usize> = stats
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    let min_ns = u64::from(req.min_duration_ms) * 1_000_000;
    let mut i = 0;
    while i < req.iterations || runs_ns.iter().sum::<u64>() < min_ns {
        let (_, trace) = exec.run(std::slice::from_ref(&input))?;
        runs_ns.push(trace.end_ns - trace.start_ns);
        // A layer split across processors has one span per processor: its time is from the
        // first start to the last end.
        let mut spans: Vec<Option<(u64, u64, u64)>> = vec![None; stats.layers.len()];
        for span in &trace.layers {
            if let Some(&k) = layer_index.get(span.node.as_str()) {
                let e = spans[k].get_or_insert((span.start_ns, span.end_ns, 0));
                e.0 = e.0.min(span.start_ns);
                e.1 = e.1.max(span.end_ns);
                e.2 = e.2.max(span.transfer_ns);
            }
        }
        for ((slot, tr), span) in per_layer.iter_mut().zip(&mut transfers).zip(&spans) {
            if let Some((s, e, t)) = span {
                slot.push(e.saturating_sub(*s));
                tr.push(*t);
            }
        }
        if req.traces {
            traces.push(trace);
        }
        i += 1;
        progress(i, req.iterations.max(i));
    }
    let latency = LatencyStats::from_ns(&runs_ns).ok_or_else(|| Error::Other("no runs".into()))?;
    let layers = stats
        .layers
        .iter()
        .zip(per_layer.iter().zip(&transfers))
        .map(|(l, (ns, tr))| {
            let s = LatencyStats::from_ns(ns);
            let t = LatencyStats::from_ns(tr);
            LayerTiming {
                node: l.name.clone(),
                kind: l.kind.clone(),
                macs: l.macs,
                p50_ms: s.as_ref().map_or(0.0, |s| s.p50_ms),
                mean_ms: s.as_ref().map_or(0.0, |s| s.mean_ms),
                transfer_p50_ms: t.as_ref().map_or(0.0, |t| t.p50_ms),
            }
        })
        .collect();
    Ok(BenchReport {
        model: req.model.clone(),
        mechanism: req.mechanism.clone(),
        precision: req.precision,
        threads,
        warmup: req.warmup,
        latency,
        layers,
        runs_ns,
        traces,
        predictor: Vec::new(),
        executed: None,
    })
}
