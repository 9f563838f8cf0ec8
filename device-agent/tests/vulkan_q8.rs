//! Processor-friendly QUInt8 on the Vulkan backend (lavapipe here): every op against the CPU
//! backend's QUInt8 kernels on the same quantization (the same 8-bit weights, biases, scales
//! and zero points), in both memory models; slices; and EfficientNet-Lite0 quantized end to
//! end on the GPU against the CPU at QUInt8 on the bundled photos.
//!
//! **Tolerance, per op: at least 99% of the output codes within 1 LSB of the CPU's, and every
//! code within 2 LSB.** Why: the GPU computes the same real value as the CPU's integer
//! pipeline — `s_x·s_w·(b_q + Σ w_q·(x_q − z_x))` is exactly what the CPU's accumulator times
//! its multiplier stands for — but with the dequantized inputs and weights rounded to F16
//! (relative error ≤ 2^−11 each), F32 accumulation in another order, and a float rather than
//! a 31-bit fixed-point requantization. These move the value before rounding by a small
//! fraction of an output step (e.g. K = 1152 products of random sign, each off by ≤ 2^−10 of
//! itself: ~0.05 step for a layer whose output spans 255 steps), so a code differs only when
//! the exact value lies within that distance of a rounding boundary: by 1, on a few percent
//! of elements at most; 2 only if an operand of F16 arithmetic (element-wise add, pools) sits
//! on a boundary too. Ops that only move codes (max pool, pad, copies, ReLU/clip on the input's
//! quantization) must match exactly apart from those boundary cases.
//!
//! Slices (channel cuts at multiples of 4 and 8, random grids) must reproduce the GPU's whole
//! output bit for bit, and a lone slice must write exactly its own codes.
mod vulkan_common;

use ulayer::backend::cpu::CpuBackend;
use ulayer::backend::vulkan::{ConvShaders, MemoryModel, VulkanBackend, VulkanOptions};
use ulayer::backend::{Backend, Precision};
use ulayer::graph::Node;
use ulayer::ops::{self, Activation, Conv2d, Gemm, Lrn, Op, Pad, Pool};
use ulayer::quant::{QParams, QTensor, QWeights, QuantNode};
use ulayer::{Slice, Tensor};
use vulkan_common::*;

/// Share of codes that must be within 1 LSB of the CPU's.
const WITHIN_1: f64 = 0.99;
/// No code may be further than this from the CPU's.
const MAX_LSB: i32 = 2;

fn node(op: &Op, arity: usize) -> Node {
    Node {
        name: "t".into(),
        op: op.clone(),
        inputs: (0..arity).map(|i| format!("x{i}")).collect(),
        output: "y".into(),
    }
}

/// Runs a quantized node on `b` as the union of `slices`, the output codes starting as `fill`.
fn run_q<B: Backend>(
    b: &B,
    op: &Op,
    q: &QuantNode<'_>,
    inputs: &[&QTensor],
    slices: &[Slice],
    fill: u8,
) -> QTensor {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let shape = op.output_shape("t", &shapes).expect("valid op");
    let p = b
        .prepare_quantized(&node(op, inputs.len()), q, &shapes, &shape)
        .expect("prepare_quantized");
    let n = shape.iter().product();
    let mut out = QTensor::from_vec(&shape, vec![fill; n], q.output).unwrap();
    {
        let shared = out.shared();
        for s in slices {
            b.run_quantized(&p, inputs, &shared, s)
                .expect("run_quantized");
        }
    }
    out
}

/// The quantization of `t`'s range.
fn qparams_of(t: &Tensor) -> QParams {
    let (lo, hi) = t
        .data()
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    QParams::from_range(lo, hi)
}

/// (share within 1 LSB, largest difference) of two code tensors.
fn code_diff(got: &QTensor, want: &QTensor) -> (f64, i32) {
    assert_eq!(got.shape(), want.shape());
    let mut near = 0usize;
    let mut worst = 0;
    for (&g, &w) in got.data().iter().zip(want.data()) {
        let d = (i32::from(g) - i32::from(w)).abs();
        near += usize::from(d <= 1);
        worst = worst.max(d);
    }
    (near as f64 / got.len().max(1) as f64, worst)
}

/// Quantizes `op`'s inputs by their ranges and its output by the range of its F32 result
/// (or keeps the input's quantization, as the model does for code-moving ops), then checks the
/// GPU against the CPU's QUInt8 kernels, and the GPU's slices against its whole output.
fn check(gpu: &VulkanBackend, cpu: &CpuBackend, op: &Op, inputs: &[&Tensor], seed: u64) {
    let what = format!("{} ({:?})", op.kind(), gpu.memory_model());
    let qin: Vec<QParams> = inputs.iter().map(|t| qparams_of(t)).collect();
    let xs: Vec<QTensor> = inputs
        .iter()
        .zip(&qin)
        .map(|(t, &q)| QTensor::quantize(t, q))
        .collect();
    let xr: Vec<&QTensor> = xs.iter().collect();
    // The F32 result on the dequantized inputs gives the output's range.
    let real: Vec<Tensor> = xs.iter().map(|x| x.dequantize()).collect();
    let real_refs: Vec<&Tensor> = real.iter().collect();
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let shape = op.output_shape("t", &shapes).unwrap();
    let pf = cpu
        .prepare(&node(op, inputs.len()), &shapes, &shape, Precision::F32)
        .unwrap();
    let mut yf = Tensor::zeros(&shape);
    cpu.run(&pf, &real_refs, &yf.shared(), &Slice::whole(&shape))
        .unwrap();
    let qout = match qin.first() {
        Some(&q) if ulayer::quant::model::keeps_input_quantization(op) => q,
        _ => qparams_of(&yf),
    };
    let weights = match op {
        Op::Conv2d(c) => Some(QWeights::quantize(&c.weight, c.bias.as_ref(), qin[0].scale)),
        Op::Gemm(g) => Some(QWeights::quantize(&g.weight, g.bias.as_ref(), qin[0].scale)),
        _ => None,
    };
    let q = QuantNode {
        inputs: &qin,
        output: qout,
        weights: weights.as_ref(),
    };
    let whole = [Slice::whole(&shape)];
    let want = run_q(cpu, op, &q, &xr, &whole, 0);
    let got = run_q(gpu, op, &q, &xr, &whole, 0);
    let (near, worst) = code_diff(&got, &want);
    let exact = got
        .data()
        .iter()
        .zip(want.data())
        .filter(|(a, b)| a == b)
        .count() as f64
        / got.len().max(1) as f64;
    eprintln!(
        "{what} {shape:?}: {:.2}% equal, {:.2}% within 1 LSB, max {worst} LSB",
        100.0 * exact,
        100.0 * near
    );
    assert!(
        near >= WITHIN_1 && worst <= MAX_LSB,
        "{what}: {:.3}% within 1 LSB, max {worst} LSB on {shape:?}",
        100.0 * near
    );
    if !op.sliceable() {
        return;
    }
    let mut rng = Rng::new(seed);
    let mut parts = vec![packed_partition(&shape, 4), packed_partition(&shape, 8)];
    parts.extend((0..2).map(|_| random_partition(&mut rng, &shape)));
    for p in &parts {
        let sliced = run_q(gpu, op, &q, &xr, p, 0x5a);
        assert_eq!(sliced.data(), got.data(), "{what}: slices {p:?}");
    }
    // A lone slice writes exactly its codes: outside, both fills survive.
    let (c, h) = ulayer::tensor::channels_rows(&shape);
    let s = Slice {
        channels: c / 3..c - c / 4,
        rows: h / 3..h,
    };
    if s.is_empty() {
        return;
    }
    let g = ulayer::backend::cpu::Geom::of(&shape);
    let mut inside = vec![false; got.len()];
    g.spans(&s, |off, len| {
        inside[off..off + len].iter_mut().for_each(|v| *v = true)
    });
    for fill in [0u8, 255] {
        let lone = run_q(gpu, op, &q, &xr, std::slice::from_ref(&s), fill);
        for (i, (&v, &w)) in lone.data().iter().zip(got.data()).enumerate() {
            let expect = if inside[i] { w } else { fill };
            assert_eq!(v, expect, "{what}: lone slice {s:?}, element {i}");
        }
    }
}

fn backends() -> Vec<VulkanBackend> {
    let Some(b) = backend() else { return vec![] };
    let other = match b.memory_model() {
        MemoryModel::Unified => MemoryModel::Staged,
        MemoryModel::Staged => MemoryModel::Unified,
    };
    let mut v = vec![b];
    if let Some(b2) = backend_with(VulkanOptions {
        device: None,
        memory: Some(other),
        // And the other convolution shaders: every kind is checked.
        conv: Some(match v[0].conv_shaders() {
            ConvShaders::Direct => ConvShaders::SmallTiles,
            _ => ConvShaders::Direct,
        }),
        // This one polls its fence before blocking: both waits are exercised.
        fence_poll: Some(std::time::Duration::from_micros(500)),
    }) {
        v.push(b2);
    }
    if let Some(b3) = backend_with(VulkanOptions {
        device: None,
        memory: None,
        conv: Some(ConvShaders::Tiled),
        fence_poll: None,
    }) {
        v.push(b3);
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn conv(
    rng: &mut Rng,
    cin: usize,
    cout: usize,
    k: [usize; 2],
    stride: usize,
    pads: [usize; 4],
    groups: usize,
    act: Activation,
) -> Conv2d {
    let fan = (cin / groups * k[0] * k[1]) as f32;
    Conv2d {
        weight: rng.tensor(&[cout, cin / groups, k[0], k[1]], 1.0 / fan.sqrt()),
        bias: Some(rng.tensor(&[cout], 0.5)),
        stride: [stride, stride],
        dilation: [1, 1],
        pads,
        groups,
        activation: act,
    }
}

#[test]
fn vulkan_q8_convolutions_match_cpu_quint8() {
    let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
    let cpu = CpuBackend::new(2).unwrap();
    for b in backends() {
        assert!(b.variant(Precision::Quint8).unwrap().starts_with("q8"));
        let mut rng = Rng::new(11);
        // (n, cin, h, w, cout, k, stride, pads, groups, act): k×k, 1×1, depthwise, grouped.
        let cases = [
            (
                1,
                3,
                17,
                15,
                8,
                [3, 3],
                2,
                [1, 1, 1, 1],
                1,
                Activation::Relu,
            ),
            (
                2,
                7,
                9,
                11,
                13,
                [3, 3],
                1,
                [1, 1, 1, 1],
                1,
                Activation::None,
            ),
            (1, 16, 8, 8, 24, [1, 1], 1, [0; 4], 1, relu6),
            (1, 128, 7, 7, 67, [1, 1], 1, [0; 4], 1, Activation::None),
            (1, 13, 10, 9, 13, [3, 3], 1, [1, 1, 1, 1], 13, relu6),
            (
                1,
                24,
                11,
                11,
                24,
                [5, 5],
                2,
                [1, 2, 2, 1],
                24,
                Activation::Relu,
            ),
            (
                1,
                8,
                12,
                12,
                12,
                [3, 3],
                1,
                [1, 1, 1, 1],
                4,
                Activation::None,
            ),
        ];
        for (i, &(n, cin, h, w, cout, k, s, p, g, a)) in cases.iter().enumerate() {
            let c = conv(&mut rng, cin, cout, k, s, p, g, a);
            let x = rng.tensor(&[n, cin, h, w], 1.0);
            check(&b, &cpu, &Op::Conv2d(c), &[&x], i as u64);
        }
    }
}

#[test]
fn vulkan_q8_other_ops_match_cpu_quint8() {
    let cpu = CpuBackend::new(2).unwrap();
    for b in backends() {
        let mut rng = Rng::new(12);
        for &(rows, k, o) in &[(1, 37, 13), (2, 1024, 1000)] {
            let g = Gemm {
                weight: rng.tensor(&[o, k], 1.0 / (k as f32).sqrt()),
                bias: Some(rng.tensor(&[o], 0.5)),
                activation: Activation::Relu,
            };
            let x = rng.tensor(&[rows, k], 1.0);
            check(&b, &cpu, &Op::Gemm(g), &[&x], 1);
        }
        let x = rng.tensor(&[2, 13, 15, 14], 2.0);
        for &(k, s, pads, ceil, cip) in &[
            ([3, 3], [2, 2], [0, 0, 0, 0], true, false),
            ([3, 3], [1, 1], [1, 1, 1, 1], false, true),
            ([5, 3], [2, 3], [2, 1, 0, 1], true, false),
        ] {
            let p = Pool {
                kernel: k,
                stride: s,
                pads,
                ceil_mode: ceil,
                count_include_pad: cip,
            };
            check(&b, &cpu, &Op::MaxPool(p.clone()), &[&x], 2);
            check(&b, &cpu, &Op::AveragePool(p), &[&x], 3);
        }
        check(&b, &cpu, &Op::GlobalAveragePool, &[&x], 4);
        for a in [
            Activation::Relu,
            Activation::Clip { min: 0.0, max: 6.0 },
            Activation::Clip {
                min: -0.5,
                max: 0.75,
            },
        ] {
            check(&b, &cpu, &Op::Activation(a), &[&x], 5);
        }
        // Add: same shape and broadcast, operands of different quantizations.
        let y = rng.tensor(&[2, 13, 15, 14], 0.7);
        check(&b, &cpu, &Op::Add, &[&x, &y], 6);
        let bc = rng.tensor(&[13, 1, 1], 3.0);
        check(&b, &cpu, &Op::Add, &[&x, &bc], 7);
        // Concat with requantization (each input its own scale).
        let (c1, c2, c3) = (
            rng.tensor(&[2, 3, 5, 6], 1.0),
            rng.tensor(&[2, 8, 5, 6], 4.0),
            rng.tensor(&[2, 5, 5, 6], 0.3),
        );
        check(&b, &cpu, &Op::Concat { axis: 1 }, &[&c1, &c2, &c3], 8);
        let p = Pad {
            pads: [1, 0, 2, 3],
            value: 0.0,
        };
        check(&b, &cpu, &Op::Pad(p), &[&x], 9);
        check(&b, &cpu, &Op::Flatten { axis: 1 }, &[&x], 10);
        check(&b, &cpu, &Op::Dropout, &[&x], 11);
        // The CPU's float islands: BatchNorm, LRN, Softmax, MatMul, Constant.
        let bn = ops::BatchNorm {
            scale: rng.tensor(&[13], 1.0).into_vec(),
            bias: rng.tensor(&[13], 1.0).into_vec(),
            mean: rng.tensor(&[13], 1.0).into_vec(),
            var: rng
                .tensor(&[13], 0.5)
                .into_vec()
                .into_iter()
                .map(|v| v.abs() + 0.1)
                .collect(),
            epsilon: 1e-5,
        };
        check(&b, &cpu, &Op::BatchNorm(bn), &[&x], 12);
        let l = Lrn {
            size: 5,
            alpha: 1e-4 * 50.0,
            beta: 0.75,
            bias: 1.0,
        };
        check(&b, &cpu, &Op::Lrn(l), &[&x], 13);
        let s = rng.tensor(&[2, 1000], 8.0);
        check(&b, &cpu, &Op::Softmax { axis: 1 }, &[&s], 14);
        let (a, bm) = (rng.tensor(&[2, 7, 19], 1.0), rng.tensor(&[19, 5], 1.0));
        check(&b, &cpu, &Op::MatMul, &[&a, &bm], 15);
        check(&b, &cpu, &Op::Constant(y.clone()), &[], 16);
    }
}

#[test]
fn vulkan_q8_staged_transfers_are_timed() {
    let Some(b) = backend_with(VulkanOptions {
        device: None,
        memory: Some(MemoryModel::Staged),
        conv: None,
        fence_poll: None,
    }) else {
        return;
    };
    let Some(u) = backend_with(VulkanOptions {
        device: None,
        memory: Some(MemoryModel::Unified),
        conv: None,
        fence_poll: None,
    }) else {
        return;
    };
    let mut rng = Rng::new(13);
    let c = conv(
        &mut rng,
        16,
        32,
        [3, 3],
        1,
        [1, 1, 1, 1],
        1,
        Activation::Relu,
    );
    let x = rng.tensor(&[1, 16, 32, 32], 1.0);
    let op = Op::Conv2d(c);
    let shape = op.output_shape("t", &[x.shape()]).unwrap();
    for (be, staged) in [(&b, true), (&u, false)] {
        let p = be
            .prepare(&node(&op, 1), &[x.shape()], &shape, Precision::F32)
            .unwrap();
        let mut out = Tensor::zeros(&shape);
        be.run(&p, &[&x], &out.shared(), &Slice::whole(&shape))
            .unwrap();
        let t = be.last_transfer_ns();
        eprintln!("{:?}: transfer {t} ns", be.memory_model());
        if be.calibration().is_some() {
            assert_eq!(t > 0, staged, "{:?}: transfer {t} ns", be.memory_model());
        }
    }
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

/// EfficientNet-Lite0 (the real weights) quantized as `ulayer-agent` quantizes it (min/max
/// on the bundled photos), on the GPU and on the CPU at QUInt8: the same top-1 on the bundled
/// photos, a disagreement allowed only on a near-tie (the CPU's own top-2 within two logit
/// quantization steps) and on at most one photo in ten: the two compute the same real
/// values up to the rounding described above, so a near-tie may flip.
#[test]
fn vulkan_q8_efficientnet_lite0_agrees_with_cpu_quint8() {
    let Some(gpu) = backend() else { return };
    let dir = datasets::default_cache_dir();
    if let Err(e) = datasets::fetch(&dir) {
        panic!("fetching the bundled data (run ./lab setup if offline): {e}");
    }
    let model = ulayer::agent::load_model("efficientnet-lite0", &dir).unwrap();
    let q = ulayer::agent::quant::quantize_model(
        &model,
        ulayer::quant::CalibrationMethod::default(),
        2,
        &dir,
        |_| true,
    )
    .unwrap();
    let photos = ulayer::agent::quant::calibration_inputs(&model, &dir, |_| true).unwrap();
    let mut cpu = ulayer::exec::Executor::new_quantized(&q, CpuBackend::new(2).unwrap()).unwrap();
    let mut g = ulayer::exec::Executor::new_quantized(&q, gpu).unwrap();
    let mut agree = 0;
    let mut near_ties = Vec::new();
    for x in &photos {
        let want = cpu.run(x).unwrap().0.remove(0);
        let t0 = std::time::Instant::now();
        let (mut outs, trace) = g.run(x).unwrap();
        let got = outs.remove(0);
        let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        let e = got
            .data()
            .iter()
            .zip(want.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "top-1 gpu {} cpu {}, max |logit diff| {e:.3} of {scale:.3}, {:.1} ms, {} spans",
            argmax(&got),
            argmax(&want),
            t0.elapsed().as_secs_f64() * 1e3,
            trace.layers.len()
        );
        let (gt, ct) = (argmax(&got), argmax(&want));
        if gt == ct {
            agree += 1;
        } else {
            // A near-tie: the CPU ranks the GPU's pick almost as high as its own.
            let margin = want.data()[ct] - want.data()[gt];
            eprintln!("  disagreement: the CPU's margin over the GPU's pick is {margin:.3}");
            near_ties.push(margin);
        }
    }
    assert!(!photos.is_empty());
    eprintln!("top-1 agreement {agree}/{}", photos.len());
    // Every photo agrees, except near-ties (CPU margin below 2 output steps of the logits'
    // quantization) on at most one photo in ten.
    let step = 2.0 * q.outputs()[0].scale;
    assert!(
        near_ties.len() * 10 <= photos.len() && near_ties.iter().all(|&m| m <= step),
        "top-1 agreement {agree}/{}: disagreements with CPU margins {near_ties:?} (limit {step})",
        photos.len()
    );
}
