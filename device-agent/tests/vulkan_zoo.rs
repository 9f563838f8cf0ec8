//! Every zoo network on the Vulkan backend against the CPU backend at F32 (seeded weights,
//! optimized graphs): F32 logits within 1e-4 of the largest |logit| (+1e-5), F16 logits within
//! 3e-2 of it (every tensor rounded to F16 at every layer, 50+ layers deep) with the same top-1.
//! One network also runs as μLayer-style slices (channels cut at a multiple of 8, the rest
//! by rows) and must equal its whole-layer run exactly. Per-layer spans come from GPU
//! timestamps on CLOCK_MONOTONIC and must be ordered and inside the inference.
mod vulkan_common;

use ulayer::backend::cpu::CpuBackend;
use ulayer::backend::Precision;
use ulayer::exec::Executor;
use ulayer::{Slice, Tensor};
use vulkan_common::*;

fn input(shape: &[usize]) -> Tensor {
    let mut rng = Rng::new(7);
    rng.tensor(shape, 1.0)
}

fn max_err(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let scale = b.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    let e = a
        .data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    (e, scale)
}

fn argmax(t: &Tensor) -> usize {
    t.data()
        .iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
        )
        .0
}

/// Per-layer spans (GPU timestamps on CLOCK_MONOTONIC) follow each other inside the inference.
fn assert_spans_ordered(name: &str, trace: &ulayer::exec::trace::Trace) {
    let mut last = trace.start_ns;
    for l in &trace.layers {
        assert!(
            l.start_ns >= last && l.end_ns >= l.start_ns,
            "{name}: span of {} out of order",
            l.node
        );
        last = l.end_ns;
    }
    assert!(last <= trace.end_ns);
}

#[test]
fn vulkan_zoo_networks_match_cpu() {
    let Some(_) = backend() else { return };
    for entry in ulayer::zoo::list() {
        let name = entry.name;
        let graph = ulayer::zoo::build_seeded(name, 1)
            .unwrap()
            .optimized()
            .unwrap();
        let x = input(&graph.inputs[0].shape);
        let mut cpu = Executor::new(&graph, CpuBackend::new(2).unwrap(), Precision::F32).unwrap();
        let want = cpu.run(std::slice::from_ref(&x)).unwrap().0.remove(0);
        for precision in [Precision::F32, Precision::F16] {
            let mut gpu = Executor::new(&graph, backend().unwrap(), precision).unwrap();
            let t0 = std::time::Instant::now();
            let (mut outs, trace) = gpu.run(std::slice::from_ref(&x)).unwrap();
            let got = outs.remove(0);
            let (e, scale) = max_err(&got, &want);
            eprintln!(
                "{name} {precision}: max |diff| {e:.3e} of max |logit| {scale:.3e}, top-1 {} vs {}, {:.1} ms",
                argmax(&got), argmax(&want), t0.elapsed().as_secs_f64() * 1e3
            );
            match precision {
                Precision::F32 => {
                    assert!(e <= 1e-5 + 1e-4 * scale, "{name} f32: {e} vs scale {scale}")
                }
                _ => {
                    assert!(e <= 3e-2 * scale, "{name} f16: {e} vs scale {scale}");
                    assert_eq!(argmax(&got), argmax(&want), "{name} f16 top-1");
                }
            }
            assert_spans_ordered(name, &trace);
        }
    }
}

#[test]
fn vulkan_zoo_slices_tile_the_whole() {
    let Some(b) = backend() else { return };
    let graph = ulayer::zoo::build_seeded("squeezenet1.1", 3)
        .unwrap()
        .optimized()
        .unwrap();
    let x = input(&graph.inputs[0].shape);
    let mut gpu = Executor::new(&graph, b, Precision::F32).unwrap();
    let whole = gpu.run(std::slice::from_ref(&x)).unwrap().0;
    let sliceable: Vec<bool> = graph.nodes.iter().map(|n| n.op.sliceable()).collect();
    let (sliced, trace) = gpu
        .run_sliced(std::slice::from_ref(&x), |i, shape| {
            let (c, h) = ulayer::tensor::channels_rows(shape);
            if !sliceable[i] || c < 16 {
                return vec![Slice::whole(shape)];
            }
            let c1 = (c * 5 / 8) / 8 * 8;
            vec![
                Slice {
                    channels: 0..c1,
                    rows: 0..h,
                },
                Slice {
                    channels: c1..c,
                    rows: 0..h / 2,
                },
                Slice {
                    channels: c1..c,
                    rows: h / 2..h,
                },
            ]
        })
        .unwrap();
    assert_eq!(sliced[0].data(), whole[0].data());
    assert!(trace.layers.len() > graph.nodes.len());
}

/// The whole network recorded into one command buffer (activations resident on the GPU, the
/// `gpu` mechanism's runner) computes exactly what the per-layer path computes — same
/// shaders, same buffers' contents — in both memory models, at F32 and F16, on a network with
/// concatenations (SqueezeNet) and one with residual adds (EfficientNet-Lite0); its spans
/// come from per-layer GPU timestamps, ordered and inside the inference, and the staged
/// model's upload and download are accounted as transfer time.
#[test]
fn vulkan_whole_network_equals_per_layer() {
    use ulayer::backend::vulkan::{GpuNetwork, MemoryModel, VulkanOptions};
    use ulayer::coop::Runner;
    let Some(_) = backend() else { return };
    // Each network in both memory models and both precisions, paired to bound lavapipe's time.
    let cases = [
        ("squeezenet1.1", MemoryModel::Unified, Precision::F32),
        ("squeezenet1.1", MemoryModel::Staged, Precision::F16),
        ("efficientnet-lite0", MemoryModel::Staged, Precision::F32),
        ("efficientnet-lite0", MemoryModel::Unified, Precision::F16),
    ];
    for (name, memory, precision) in cases {
        let graph = ulayer::zoo::build_seeded(name, 5)
            .unwrap()
            .optimized()
            .unwrap();
        let x = input(&graph.inputs[0].shape);
        let opts = || VulkanOptions {
            device: None,
            memory: Some(memory),
            conv: None,
            fence_poll: None,
        };
        let mut per_layer =
            Executor::new(&graph, backend_with(opts()).unwrap(), precision).unwrap();
        let want = per_layer.run(std::slice::from_ref(&x)).unwrap().0;
        let exec = Executor::new(&graph, backend_with(opts()).unwrap(), precision).unwrap();
        let mut net = GpuNetwork::new(exec).unwrap();
        // Twice: the recorded command buffer is resubmitted.
        for round in 0..2 {
            let (got, trace) = Runner::run(&mut net, std::slice::from_ref(&x)).unwrap();
            assert_eq!(
                got[0].data(),
                want[0].data(),
                "{name} {memory:?} {precision} round {round}"
            );
            assert_eq!(trace.layers.len(), graph.nodes.len());
            assert_spans_ordered(name, &trace);
            let transfer: u64 = trace.layers.iter().map(|l| l.transfer_ns).sum();
            match memory {
                MemoryModel::Staged => assert!(transfer > 0, "{name}: staged, no transfer"),
                MemoryModel::Unified => assert_eq!(transfer, 0),
            }
        }
    }
}
