//! Every op on the Vulkan backend (lavapipe here) against the plain reference of
//! `ops/*/reference.rs`: F32 within 1e-4 relative to the output's largest magnitude, F16
//! within 1e-2 (F16 storage rounds every tensor to 11 significant bits, 4.9e-4 relative;
//! products, activations and pooling in F16 add a few such roundings, reductions accumulate
//! in F32, and inputs, weights and outputs are each rounded once: a few ulps of the output's
//! scale, below 1e-2 for K up to thousands). Slices (packed by 4 and 8, random grids) must
//! reproduce the whole output exactly and write only their elements; both memory models run.
mod vulkan_common;

use ulayer::backend::vulkan::{ConvShaders, MemoryModel, VulkanBackend, VulkanOptions};
use ulayer::backend::{Backend, Precision};
use ulayer::ops::{self, Activation, Conv2d, Gemm, Lrn, Op, Pad, Pool};
use ulayer::{Slice, Tensor};
use vulkan_common::*;

const F32_TOL: f32 = 1e-4;
const F16_TOL: f32 = 1e-2;

/// Checks `op` against `want` on `b`: whole output at both precisions; slice unions equal the
/// whole bit for bit; a lone slice writes only its own elements.
fn check(b: &VulkanBackend, op: &Op, inputs: &[&Tensor], want: &Tensor, seed: u64) {
    let shape = want.shape().to_vec();
    let whole = run_slices(b, op, inputs, &[Slice::whole(&shape)], Precision::F32);
    let e = rel_err(&whole, want, op.kind());
    assert!(
        e <= F32_TOL,
        "{} f32: relative error {e} on {shape:?}",
        op.kind()
    );
    let half = run_slices(b, op, inputs, &[Slice::whole(&shape)], Precision::F16);
    let e16 = rel_err(&half, want, op.kind());
    assert!(
        e16 <= F16_TOL,
        "{} f16: relative error {e16} on {shape:?}",
        op.kind()
    );
    if !op.sliceable() {
        return;
    }
    let mut rng = Rng::new(seed);
    let mut parts = vec![packed_partition(&shape, 4), packed_partition(&shape, 8)];
    parts.extend((0..2).map(|_| random_partition(&mut rng, &shape)));
    for p in &parts {
        let got = run_slices(b, op, inputs, p, Precision::F32);
        assert_eq!(got.data(), whole.data(), "{} slices {p:?}", op.kind());
    }
    // One slice alone writes exactly its elements.
    let (c, h) = ulayer::tensor::channels_rows(&shape);
    let s = Slice {
        channels: c / 3..c - c / 4,
        rows: h / 3..h,
    };
    if !s.is_empty() {
        let got = run_slices(b, op, inputs, std::slice::from_ref(&s), Precision::F16);
        let g = ulayer::backend::cpu::Geom::of(&shape);
        let mut inside = vec![false; got.len()];
        g.spans(&s, |off, len| {
            inside[off..off + len].iter_mut().for_each(|v| *v = true)
        });
        for (i, v) in got.data().iter().enumerate() {
            assert_eq!(
                inside[i],
                *v != SENTINEL,
                "{} lone slice {s:?}, element {i}",
                op.kind()
            );
        }
    }
}

/// A convolution with random weights (parameters as in the case table).
#[allow(clippy::too_many_arguments)]
fn conv(
    rng: &mut Rng,
    cin: usize,
    cout: usize,
    k: [usize; 2],
    stride: usize,
    dil: usize,
    pads: [usize; 4],
    groups: usize,
    act: Activation,
) -> Conv2d {
    let fan = (cin / groups * k[0] * k[1]) as f32;
    Conv2d {
        weight: rng.tensor(&[cout, cin / groups, k[0], k[1]], 1.0 / fan.sqrt()),
        bias: Some(rng.tensor(&[cout], 0.5)),
        stride: [stride, stride],
        dilation: [dil, dil],
        pads,
        groups,
        activation: act,
    }
}

fn backends() -> Vec<VulkanBackend> {
    let Some(b) = backend() else { return vec![] };
    let mut v = vec![b];
    // The other memory model on the same device (staging copies on a unified device too).
    let other = match v[0].memory_model() {
        MemoryModel::Unified => MemoryModel::Staged,
        MemoryModel::Staged => MemoryModel::Unified,
    };
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

#[test]
fn vulkan_conv2d_general_pointwise_depthwise_grouped() {
    let mut rng = Rng::new(1);
    let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
    let cases = [
        // (n, cin, h, w, cout, k, stride, dil, pads, groups, act)
        (
            1,
            3,
            17,
            15,
            8,
            [3, 3],
            2,
            1,
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
            1,
            [1, 1, 1, 1],
            1,
            Activation::None,
        ),
        (1, 16, 8, 8, 24, [1, 1], 1, 1, [0, 0, 0, 0], 1, relu6),
        (
            2,
            33,
            7,
            9,
            40,
            [1, 1],
            1,
            1,
            [0, 0, 0, 0],
            1,
            Activation::Relu,
        ),
        (
            1,
            70,
            5,
            6,
            67,
            [1, 1],
            1,
            1,
            [0, 0, 0, 0],
            1,
            Activation::None,
        ),
        (1, 13, 10, 9, 13, [3, 3], 1, 1, [1, 1, 1, 1], 13, relu6),
        (
            1,
            24,
            11,
            11,
            24,
            [5, 5],
            2,
            1,
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
            2,
            [2, 2, 2, 2],
            4,
            Activation::None,
        ),
        (
            1,
            4,
            13,
            13,
            4,
            [7, 5],
            3,
            1,
            [0, 1, 2, 0],
            1,
            Activation::None,
        ),
    ];
    for b in backends() {
        let mut failed = Vec::new();
        for (i, &(n, cin, h, w, cout, k, s, d, p, g, a)) in cases.iter().enumerate() {
            let c = conv(&mut rng, cin, cout, k, s, d, p, g, a);
            let x = rng.tensor(&[n, cin, h, w], 1.0);
            let want = ops::conv2d::reference::conv2d(&c, &x).unwrap();
            let op = Op::Conv2d(c);
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check(&b, &op, &[&x], &want, i as u64)
            }));
            if run.is_err() {
                failed.push(format!("case {i} ({}, {:?})", op.kind(), b.memory_model()));
            }
        }
        assert!(failed.is_empty(), "failed: {failed:?}");
    }
}

#[test]
fn vulkan_gemm_pool_elementwise() {
    let mut rng = Rng::new(2);
    for b in backends() {
        // Fully connected.
        for &(rows, k, o) in &[(1, 37, 13), (3, 300, 24), (2, 1024, 1000)] {
            let g = Gemm {
                weight: rng.tensor(&[o, k], 1.0 / (k as f32).sqrt()),
                bias: Some(rng.tensor(&[o], 0.5)),
                activation: Activation::Relu,
            };
            let x = rng.tensor(&[rows, k], 1.0);
            let want = ops::gemm::reference::gemm(&g, &x).unwrap();
            check(&b, &Op::Gemm(g), &[&x], &want, 3);
        }
        // Pooling: floor/ceil, padding, count_include_pad.
        let x = rng.tensor(&[2, 13, 15, 14], 2.0);
        for &(k, s, pads, ceil, cip) in &[
            ([3, 3], [2, 2], [0, 0, 0, 0], true, false),
            ([2, 2], [2, 2], [0, 0, 0, 0], false, false),
            ([3, 3], [1, 1], [1, 1, 1, 1], false, true),
            ([3, 3], [1, 1], [1, 1, 1, 1], false, false),
            ([5, 3], [2, 3], [2, 1, 0, 1], true, true),
        ] {
            let p = Pool {
                kernel: k,
                stride: s,
                pads,
                ceil_mode: ceil,
                count_include_pad: cip,
            };
            let want = ops::pool::reference::pool(&p, true, &x).unwrap();
            check(&b, &Op::MaxPool(p.clone()), &[&x], &want, 4);
            let want = ops::pool::reference::pool(&p, false, &x).unwrap();
            check(&b, &Op::AveragePool(p), &[&x], &want, 5);
        }
        let want = ops::pool::reference::global_average(&x);
        check(&b, &Op::GlobalAveragePool, &[&x], &want, 6);
        // Activations.
        for a in [
            Activation::Relu,
            Activation::Clip {
                min: -0.5,
                max: 0.75,
            },
            Activation::None,
        ] {
            let want = ops::activation::reference::activation(a, &x);
            check(&b, &Op::Activation(a), &[&x], &want, 7);
        }
        // BatchNorm (unfolded).
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
        let want = ops::batchnorm::reference::batchnorm(&bn, &x);
        check(&b, &Op::BatchNorm(bn), &[&x], &want, 8);
        // Add: same shape, per-channel broadcast, scalar-ish, rank 2.
        let y = rng.tensor(&[2, 13, 15, 14], 1.0);
        for other in [
            y.clone(),
            rng.tensor(&[13, 1, 1], 1.0),
            rng.tensor(&[1, 13, 1, 14], 1.0),
            rng.tensor(&[1], 1.0),
        ] {
            let want = ops::add::reference::add(&x, &other).unwrap();
            check(&b, &Op::Add, &[&x, &other], &want, 9);
        }
        let (m1, m2) = (rng.tensor(&[3, 40], 1.0), rng.tensor(&[1, 40], 1.0));
        check(
            &b,
            &Op::Add,
            &[&m1, &m2],
            &ops::add::reference::add(&m1, &m2).unwrap(),
            10,
        );
        // Concat along channels (Inception/Fire), rows and rank 2.
        let (c1, c2, c3) = (
            rng.tensor(&[2, 3, 5, 6], 1.0),
            rng.tensor(&[2, 8, 5, 6], 1.0),
            rng.tensor(&[2, 5, 5, 6], 1.0),
        );
        let want = ops::concat::reference::concat(1, &[&c1, &c2, &c3]).unwrap();
        check(&b, &Op::Concat { axis: 1 }, &[&c1, &c2, &c3], &want, 11);
        let c4 = rng.tensor(&[2, 3, 2, 6], 1.0);
        let want = ops::concat::reference::concat(2, &[&c1, &c4]).unwrap();
        check(&b, &Op::Concat { axis: 2 }, &[&c1, &c4], &want, 12);
        let c5 = rng.tensor(&[2, 3, 5, 4], 1.0);
        let want = ops::concat::reference::concat(3, &[&c1, &c5]).unwrap();
        check(&b, &Op::Concat { axis: 3 }, &[&c1, &c5], &want, 13);
        // LRN (AlexNet / GoogLeNet parameters) and an even size.
        for size in [5, 4] {
            let l = Lrn {
                size,
                alpha: 1e-4 * 50.0,
                beta: 0.75,
                bias: 1.0,
            };
            let want = ops::lrn::reference::lrn(&l, &x);
            check(&b, &Op::Lrn(l), &[&x], &want, 14);
        }
        // Pad.
        let p = Pad {
            pads: [1, 0, 2, 3],
            value: 0.25,
        };
        let want = ops::pad::reference::pad(&p, &x).unwrap();
        check(&b, &Op::Pad(p), &[&x], &want, 15);
        // Softmax (whole only), over the last axis and over channels.
        let s = rng.tensor(&[2, 1000], 8.0);
        check(
            &b,
            &Op::Softmax { axis: 1 },
            &[&s],
            &ops::softmax::reference::softmax(1, &s),
            16,
        );
        check(
            &b,
            &Op::Softmax { axis: 1 },
            &[&x],
            &ops::softmax::reference::softmax(1, &x),
            17,
        );
        // Flatten, reshape, constant, dropout, matmul (whole only).
        let want = x.clone().reshaped(&[2, 13 * 15 * 14]).unwrap();
        check(&b, &Op::Flatten { axis: 1 }, &[&x], &want, 18);
        check(&b, &Op::Reshape { shape: vec![0, -1] }, &[&x], &want, 19);
        check(&b, &Op::Dropout, &[&x], &x, 20);
        check(&b, &Op::Constant(y.clone()), &[], &y, 21);
        let (a, bm) = (rng.tensor(&[2, 7, 19], 1.0), rng.tensor(&[19, 5], 1.0));
        check(
            &b,
            &Op::MatMul,
            &[&a, &bm],
            &ops::matmul::reference::matmul(&a, &bm).unwrap(),
            22,
        );
    }
}

#[test]
fn vulkan_device_is_reported_and_timestamps_are_calibrated() {
    let Some(b) = backend() else { return };
    let i = b.info();
    eprintln!(
        "device: {i:?}\nmemory: {}\ncalibration: {:?}",
        b.memory_description(),
        b.calibration()
    );
    assert!(!i.name.is_empty());
    assert_eq!(b.variant(Precision::F32).unwrap(), "f32");
    assert!(b.variant(Precision::Quint8).unwrap().starts_with("q8"));
    let devices = ulayer::backend::vulkan::list_devices().unwrap();
    assert!(devices.iter().any(|d| d.name == i.name));
    // A span lies inside the host's bracket of the call.
    let mut rng = Rng::new(3);
    let c = conv(
        &mut rng,
        16,
        32,
        [3, 3],
        1,
        1,
        [1, 1, 1, 1],
        1,
        Activation::Relu,
    );
    let x = rng.tensor(&[1, 16, 32, 32], 1.0);
    let op = Op::Conv2d(c);
    let node = ulayer::Node {
        name: "c".into(),
        op: op.clone(),
        inputs: vec!["x".into()],
        output: "y".into(),
    };
    let shape = op.output_shape("c", &[x.shape()]).unwrap();
    let p = b
        .prepare(&node, &[x.shape()], &shape, Precision::F32)
        .unwrap();
    let mut out = Tensor::zeros(&shape);
    for _ in 0..3 {
        let t0 = ulayer::exec::trace::monotonic_ns();
        b.run(&p, &[&x], &out.shared(), &Slice::whole(&shape))
            .unwrap();
        let t1 = ulayer::exec::trace::monotonic_ns();
        let (s, e) = b.last_span_ns().expect("a span");
        assert!(
            t0 <= s && s <= e && e <= t1,
            "span {s}..{e} outside {t0}..{t1}"
        );
    }
}

#[test]
fn vulkan_without_a_driver_fails_clearly() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ulayer-agent"))
        .args([
            "bench",
            "--model",
            "squeezenet1.1",
            "--mechanism",
            "gpu",
            "--iterations",
            "1",
        ])
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .output()
        .expect("agent runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded without a driver: {err}");
    assert!(
        err.contains("Vulkan") && err.contains("driver"),
        "unclear error: {err}"
    );
}
