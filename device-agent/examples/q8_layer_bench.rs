//! Per-layer timing of the 8-bit CPU kernels against the F32 ones on typical layer shapes
//! (MobileNet v1 / EfficientNet-Lite0), each variant: best of N runs after warm-up, all inside
//! one `install` (the worker team awake, as in a network).
//!
//! With a channel fraction `f` < 1, every variant computes the slice of the first
//! `ceil(f·C)` output channels (as the CPU's part of a split layer), so the cost of a slice
//! can be set against the whole layer's.
//!
//! `cargo run --release -p ulayer --example q8_layer_bench [threads] [filter] [runs] [f]`
use std::time::Instant;
use ulayer::backend::cpu::CpuBackend;
use ulayer::backend::{Backend, Precision};
use ulayer::graph::Node;
use ulayer::ops::{Activation, Conv2d, Op};
use ulayer::quant::{QParams, QTensor, QWeights, QuantNode};
use ulayer::tensor::{Slice, Tensor};

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn tensor(shape: &[usize], scale: f32, seed: &mut u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| lcg(seed) * scale).collect()).expect("sized")
}

fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let filter = args.get(2).cloned().unwrap_or_default();
    let runs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let frac: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let b = CpuBackend::new(threads).expect("backend");
    let mut seed = 1u64;
    // name, cin, h, w, cout, k, stride, groups
    type Layer = (
        &'static str,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
    );
    let layers: &[Layer] = &[
        ("stem 3x3/2 3→32 224", 3, 224, 224, 32, 3, 2, 1),
        ("pw 32→64 112", 32, 112, 112, 64, 1, 1, 1),
        ("pw 16→96 112", 16, 112, 112, 96, 1, 1, 1),
        ("pw 144→24 56", 144, 56, 56, 24, 1, 1, 1),
        ("pw 128→128 56", 128, 56, 56, 128, 1, 1, 1),
        ("pw 24→144 56", 24, 56, 56, 144, 1, 1, 1),
        ("pw 40→240 28", 40, 28, 28, 240, 1, 1, 1),
        ("pw 80→480 14", 80, 14, 14, 480, 1, 1, 1),
        ("pw 480→80 14", 480, 14, 14, 80, 1, 1, 1),
        ("pw 112→672 14", 112, 14, 14, 672, 1, 1, 1),
        ("pw 672→112 14", 672, 14, 14, 112, 1, 1, 1),
        ("pw 192→1152 7", 192, 7, 7, 1152, 1, 1, 1),
        ("pw 256→256 28", 256, 28, 28, 256, 1, 1, 1),
        ("pw 512→512 14", 512, 14, 14, 512, 1, 1, 1),
        ("pw 1024→1024 7", 1024, 7, 7, 1024, 1, 1, 1),
        ("pw 320→1280 7", 320, 7, 7, 1280, 1, 1, 1),
        ("pw 1152→192 7", 1152, 7, 7, 192, 1, 1, 1),
        ("pw 1152→320 7", 1152, 7, 7, 320, 1, 1, 1),
        ("conv3x3 192→384 13", 192, 13, 13, 384, 3, 1, 1),
        ("conv3x3 128→192 28", 128, 28, 28, 192, 3, 1, 1),
        ("conv3x3 160→320 14", 160, 14, 14, 320, 3, 1, 1),
        ("conv3x3 64→192 56", 64, 56, 56, 192, 3, 1, 1),
        ("dw 3x3 32 112", 32, 112, 112, 32, 3, 1, 32),
        ("dw 3x3 144 56", 144, 56, 56, 144, 3, 1, 144),
        ("dw 3x3/2 96 112", 96, 112, 112, 96, 3, 2, 96),
        ("dw 5x5 240 28", 240, 28, 28, 240, 5, 1, 240),
        ("dw 3x3 512 14", 512, 14, 14, 512, 3, 1, 512),
        ("dw 5x5 1152 7", 1152, 7, 7, 1152, 5, 1, 1152),
        ("dw 3x3 480 14", 480, 14, 14, 480, 3, 1, 480),
        ("dw 3x3 1152 7", 1152, 7, 7, 1152, 3, 1, 1152),
    ];
    println!(
        "{threads} threads · 8-bit variant {} · channel fraction {frac}",
        ulayer::backend::cpu::simd_q8::QIsa::for_isa(b.isa()).name()
    );
    println!(
        "{:<24} {:>9} {:>9} {:>7} {:>9}",
        "layer", "f32 ms", "q8 ms", "ratio", "q8 GMAC/s"
    );
    for &(name, cin, h, w, cout, k, s, groups) in layers {
        if !name.contains(&filter) {
            continue;
        }
        let p = if k > 1 { k / 2 } else { 0 };
        let conv = Conv2d {
            weight: tensor(&[cout, cin / groups, k, k], 0.3, &mut seed),
            bias: Some(tensor(&[cout], 0.1, &mut seed)),
            stride: [s, s],
            dilation: [1, 1],
            pads: [p; 4],
            groups,
            activation: Activation::Clip { min: 0.0, max: 6.0 },
        };
        let node = Node {
            name: name.into(),
            op: Op::Conv2d(conv.clone()),
            inputs: vec!["x".into()],
            output: "y".into(),
        };
        let x = tensor(&[1, cin, h, w], 1.0, &mut seed);
        let shape = node.op.output_shape(name, &[x.shape()]).expect("shape");
        let macs = node.op.macs(&[x.shape()], &shape) as f64;
        let pf = b
            .prepare(&node, &[x.shape()], &shape, Precision::F32)
            .expect("f32");
        let mut y = Tensor::zeros(&shape);
        let mut whole = Slice::whole(&shape);
        whole.channels.end = ((cout as f64 * frac).ceil() as usize).clamp(1, cout);
        let macs = macs * whole.channels.len() as f64 / cout as f64;
        // Every run inside one `install`, as a network's layers run: the workers stay awake.
        let tf = b.install(|| {
            best(runs, || {
                b.run(&pf, &[&x], &y.shared(), &whole).expect("run");
            })
        });
        let xq = QParams::from_range(-1.0, 1.0);
        let yq = QParams::from_range(0.0, 6.0);
        let qw = QWeights::quantize(&conv.weight, conv.bias.as_ref(), xq.scale);
        let q = QuantNode {
            inputs: &[xq],
            output: yq,
            weights: Some(&qw),
        };
        let pq = b
            .prepare_quantized(&node, &q, &[x.shape()], &shape)
            .expect("q8");
        let xq8 = QTensor::quantize(&x, xq);
        let mut yq8 = QTensor::zeros(&shape, yq);
        let tq = b.install(|| {
            best(runs, || {
                b.run_quantized(&pq, &[&xq8], &yq8.shared(), &whole)
                    .expect("run");
            })
        });
        println!(
            "{:<24} {:>9.3} {:>9.3} {:>7.2} {:>9.1}",
            name,
            tf,
            tq,
            tf / tq,
            macs / tq / 1e6
        );
    }
}
