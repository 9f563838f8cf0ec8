//! Times single layers of MobileNet-v1-like shapes on the CPU backend (median of many runs),
//! to tune kernels in isolation.
//!
//! ```text
//! cargo run --release -p ulayer --example cpu_layer_bench -- [--threads 2] [--isa avx512] [--iters 200] [--only dw]
//! ```
use std::time::Instant;
use ulayer::backend::cpu::{CpuBackend, Isa};
use ulayer::backend::{Backend, Precision};
use ulayer::graph::Node;
use ulayer::ops::{Activation, Conv2d, Op};
use ulayer::{Slice, Tensor};

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed;
    let data = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    Tensor::from_vec(shape, data).expect("sized")
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, groups: usize) -> Conv2d {
    Conv2d {
        weight: tensor(&[cout, cin / groups, k, k], 7),
        bias: Some(tensor(&[cout], 8)),
        stride: [stride; 2],
        dilation: [1, 1],
        pads: [k / 2; 4],
        groups,
        activation: Activation::Clip { min: 0.0, max: 6.0 },
    }
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
    let threads: usize = opt("--threads", "2").parse()?;
    let iters: usize = opt("--iters", "200").parse()?;
    let isa = Isa::from_name(&opt("--isa", ulayer::backend::cpu::default_isa().name()))
        .ok_or_else(|| anyhow::anyhow!("--isa"))?;
    let only = opt("--only", "");
    let b = CpuBackend::with_isa(threads, isa)?;
    // (name, cin, h, cout, k, stride, groups)
    let layers: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
        ("conv1 3x3/2", 3, 224, 32, 3, 2, 1),
        ("dw 32@112", 32, 112, 32, 3, 1, 32),
        ("pw 32>64@112", 32, 112, 64, 1, 1, 1),
        ("dw/2 64@112", 64, 112, 64, 3, 2, 64),
        ("pw 64>128@56", 64, 56, 128, 1, 1, 1),
        ("dw 128@56", 128, 56, 128, 3, 1, 128),
        ("pw 128>128@56", 128, 56, 128, 1, 1, 1),
        ("pw 256>256@28", 256, 28, 256, 1, 1, 1),
        ("dw 512@14", 512, 14, 512, 3, 1, 512),
        ("pw 512>512@14", 512, 14, 512, 1, 1, 1),
        ("dw 1024@7", 1024, 7, 1024, 3, 1, 1024),
        ("pw 1024>1024@7", 1024, 7, 1024, 1, 1, 1),
    ];
    println!("isa {} threads {threads}", isa.name());
    for &(name, cin, h, cout, k, stride, groups) in
        layers.iter().filter(|l| l.0.contains(only.as_str()))
    {
        let c = conv(cin, cout, k, stride, groups);
        let x = tensor(&[1, cin, h, h], 3);
        let shape = c.output_shape(name, x.shape())?;
        let macs = (shape.iter().product::<usize>() * cin / groups * k * k) as f64;
        let node = Node {
            name: name.into(),
            op: Op::Conv2d(c),
            inputs: vec!["x".into()],
            output: "y".into(),
        };
        let p = b.prepare(&node, &[x.shape()], &shape, Precision::F32)?;
        let mut out = Tensor::zeros(&shape);
        let whole = Slice::whole(&shape);
        let mut times = Vec::with_capacity(iters);
        b.install(|| -> anyhow::Result<()> {
            let shared = out.shared();
            for i in 0..iters + 10 {
                let t = Instant::now();
                b.run(&p, &[&x], &shared, &whole)?;
                if i >= 10 {
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            Ok(())
        })?;
        times.sort_by(f64::total_cmp);
        let p50 = times[times.len() / 2];
        println!(
            "{name:<16} {:>20} p50 {p50:>8.4} ms  {:>7.1} GFLOP/s",
            format!("{shape:?}"),
            2.0 * macs / 1e9 / (p50 / 1e3)
        );
    }
    Ok(())
}
