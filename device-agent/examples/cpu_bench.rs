//! Times the CPU F32 executor on zoo networks (seeded weights: latency only) and shows where
//! the time goes, per layer kind and per layer.
//!
//! ```text
//! cargo run --release -p ulayer --example cpu_bench -- [--model mobilenet-v1,efficientnet-lite0]
//!     [--threads 2] [--iters 200] [--warmup 20] [--min-secs 0] [--isa avx512|avx2|scalar] [--layers 12]
//!     [--export DIR]
//! ```
//!
//! `--export DIR` also writes each network as run (optimised graph) to `DIR/<model>.onnx`, so
//! that a peer (`examples/ort_bench.py`) times exactly the same network.
use std::collections::BTreeMap;
use std::time::Instant;
use ulayer::backend::cpu::{CpuBackend, Isa};
use ulayer::backend::Precision;
use ulayer::exec::Executor;
use ulayer::Tensor;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(v, 0.5)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let models = opt("--model", "mobilenet-v1,efficientnet-lite0");
    let threads: usize = opt("--threads", "2").parse()?;
    let iters: usize = opt("--iters", "200").parse()?;
    let warmup: usize = opt("--warmup", "20").parse()?;
    let min_secs: f64 = opt("--min-secs", "0").parse()?;
    let top: usize = opt("--layers", "12").parse()?;
    let isa = match args.iter().position(|a| a == "--isa") {
        Some(_) => Isa::from_name(&opt("--isa", ""))
            .ok_or_else(|| anyhow::anyhow!("--isa: scalar|avx2|avx512|neon"))?,
        None => ulayer::backend::cpu::default_isa(),
    };
    for model in models.split(',') {
        let graph = ulayer::zoo::build_seeded(model, ulayer::zoo::DEFAULT_SEED)?.optimized()?;
        let stats = graph.stats()?;
        if let Some(i) = args.iter().position(|a| a == "--export") {
            let dir = std::path::PathBuf::from(
                args.get(i + 1)
                    .ok_or_else(|| anyhow::anyhow!("--export DIR"))?,
            );
            std::fs::create_dir_all(&dir)?;
            ulayer::onnx::export_file(&graph, &dir.join(format!("{model}.onnx")))?;
        }
        let input_shape = graph.inputs[0].shape.clone();
        let n: usize = input_shape.iter().product();
        let input = Tensor::from_vec(
            &input_shape,
            (0..n)
                .map(|i| ((i * 7919 % 255) as f32 - 127.0) / 128.0)
                .collect(),
        )
        .expect("sized");
        let backend = CpuBackend::with_isa(threads, isa)?;
        let mut exec = Executor::new(&graph, backend, Precision::F32)?;
        for _ in 0..warmup {
            exec.run(std::slice::from_ref(&input))?;
        }
        let mut total = Vec::with_capacity(iters);
        let mut per_layer: Vec<Vec<f64>> = vec![Vec::with_capacity(iters); graph.nodes.len()];
        let t0 = Instant::now();
        while total.len() < iters || t0.elapsed().as_secs_f64() < min_secs {
            let (_, trace) = exec.run(std::slice::from_ref(&input))?;
            total.push((trace.end_ns - trace.start_ns) as f64 / 1e6);
            for (slot, span) in per_layer.iter_mut().zip(&trace.layers) {
                slot.push(span.duration_ns() as f64 / 1e6);
            }
        }
        let mut sorted = total.clone();
        sorted.sort_by(f64::total_cmp);
        let p50 = percentile(&sorted, 0.5);
        let gmacs = stats.macs as f64 / 1e9;
        println!(
            "{model}: isa {} threads {threads} runs {}: p50 {p50:.3} ms  p90 {:.3} ms  min {:.3} ms  ({:.1} GFLOP/s at p50, {:.3} GMAC)",
            isa.name(),
            total.len(),
            percentile(&sorted, 0.9),
            sorted[0],
            2.0 * gmacs / (p50 / 1e3),
            gmacs
        );
        let layer_p50: Vec<f64> = per_layer.iter_mut().map(|v| median(v)).collect();
        let sum_p50: f64 = layer_p50.iter().sum();
        println!(
            "  sum of per-layer p50 {sum_p50:.3} ms (the rest is executor overhead and variance)"
        );
        let mut by_kind: BTreeMap<&str, (usize, f64, u64)> = BTreeMap::new();
        for (l, t) in stats.layers.iter().zip(&layer_p50) {
            let e = by_kind.entry(l.kind.as_str()).or_default();
            e.0 += 1;
            e.1 += t;
            e.2 += l.macs;
        }
        let mut kinds: Vec<_> = by_kind.into_iter().collect();
        kinds.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        println!(
            "  {:<18} {:>6} {:>9} {:>7} {:>10}",
            "kind", "layers", "ms", "share", "GFLOP/s"
        );
        for (k, (count, ms, macs)) in kinds {
            let gf = if macs > 0 {
                format!("{:.1}", 2.0 * macs as f64 / 1e9 / (ms / 1e3))
            } else {
                "-".into()
            };
            println!(
                "  {k:<18} {count:>6} {ms:>9.3} {:>6.1}% {gf:>10}",
                100.0 * ms / sum_p50
            );
        }
        let mut order: Vec<usize> = (0..layer_p50.len()).collect();
        order.sort_by(|&a, &b| layer_p50[b].total_cmp(&layer_p50[a]));
        println!("  slowest layers:");
        for &i in order.iter().take(top) {
            let l = &stats.layers[i];
            let gf = if l.macs > 0 {
                format!(
                    "{:.1} GFLOP/s",
                    2.0 * l.macs as f64 / 1e9 / (layer_p50[i] / 1e3)
                )
            } else {
                String::new()
            };
            println!(
                "    {:<22} {:<16} {:>18} {:>8.3} ms  {gf}",
                l.name,
                l.kind,
                format!("{:?}", l.output_shape),
                layer_p50[i]
            );
        }
    }
    Ok(())
}
