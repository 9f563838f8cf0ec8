//! Timing inference: warm-up, measured runs, latency statistics and per-layer times.
use super::{load_model, resolve_threads};
use crate::exec::Executor;
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
            let exec = Executor::new(&model.graph, gpu, req.precision)?;
            timed(req, &model, &stats, threads, exec, progress)
        }
        other => Err(Error::Other(format!(
            "unknown mechanism '{other}' (cpu or gpu)"
        ))),
    }
}

/// The measured part of [`bench`], on any backend.
fn timed<B: crate::backend::Backend>(
    req: &BenchRequest,
    model: &super::LoadedModel,
    stats: &crate::graph::GraphStats,
    threads: usize,
    mut exec: Executor<B>,
    mut progress: impl FnMut(usize, usize),
) -> Result<BenchReport> {
    let input = bench_input(&model.input.shape);
    for _ in 0..req.warmup {
        exec.run(std::slice::from_ref(&input))?;
    }
    let mut runs_ns = Vec::with_capacity(req.iterations);
    let mut per_layer: Vec<Vec<u64>> = vec![Vec::with_capacity(req.iterations); stats.layers.len()];
    let mut traces = Vec::new();
    let min_ns = u64::from(req.min_duration_ms) * 1_000_000;
    let mut i = 0;
    while i < req.iterations || runs_ns.iter().sum::<u64>() < min_ns {
        let (_, trace) = exec.run(std::slice::from_ref(&input))?;
        runs_ns.push(trace.end_ns - trace.start_ns);
        for (slot, span) in per_layer.iter_mut().zip(&trace.layers) {
            slot.push(span.duration_ns());
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
        .zip(&per_layer)
        .map(|(l, ns)| {
            let s = LatencyStats::from_ns(ns);
            LayerTiming {
                node: l.name.clone(),
                kind: l.kind.clone(),
                macs: l.macs,
                p50_ms: s.as_ref().map_or(0.0, |s| s.p50_ms),
                mean_ms: s.as_ref().map_or(0.0, |s| s.mean_ms),
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
    })
}
