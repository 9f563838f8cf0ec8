//! Test helpers for the 8-bit kernels: random QUInt8 data, quantized nodes, and the check
//! that every 8-bit variant (each instruction set, 1 and 3 threads) computes exactly the
//! reference's codes, that unions of disjoint slices equal the whole output, and that a slice
//! writes its own elements and nothing else.
use super::testutil::{random_partition, ulayer_partition, Rng};
use super::{q8, CpuBackend};
use crate::backend::cpu::simd_q8::QIsa;
use crate::backend::Backend;
use crate::graph::Node;
use crate::ops::Op;
use crate::quant::{QParams, QTensor, QWeights, QuantNode};
use crate::tensor::{channels_rows, Slice, Tensor};

/// Random quantization parameters: a scale in `[0.005, 0.1)` and any zero point.
pub fn qparams(rng: &mut Rng) -> QParams {
    QParams {
        scale: 0.005 + (rng.sym() + 1.0) * 0.0475,
        zero_point: rng.below(256) as u8,
    }
}

/// A QUInt8 tensor of random codes.
pub fn qtensor(rng: &mut Rng, shape: &[usize], q: QParams) -> QTensor {
    let n = shape.iter().product();
    QTensor::from_vec(shape, (0..n).map(|_| rng.below(256) as u8).collect(), q)
        .expect("sized from shape")
}

/// The quantization of an output whose real values are `y`: their range, shrunk by 10% so
/// that the tests also saturate.
pub fn qparams_of(y: &Tensor) -> QParams {
    let (lo, hi) = y
        .data()
        .iter()
        .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    QParams::from_range(lo * 0.9, hi * 0.9)
}

/// Weights and their 8-bit form for an input of scale `s_x`.
pub fn qweights(w: &Tensor, b: Option<&Tensor>, s_x: f32) -> QWeights {
    QWeights::quantize(w, b, s_x)
}

fn run_slices(
    b: &CpuBackend,
    p: &super::CpuPrepared,
    inputs: &[&QTensor],
    shape: &[usize],
    q: QParams,
    fill: u8,
    slices: &[Slice],
) -> QTensor {
    let mut out = QTensor::from_vec(shape, vec![fill; shape.iter().product()], q).expect("sized");
    {
        let shared = out.shared();
        for s in slices {
            b.run_quantized(p, inputs, &shared, s).expect("run");
        }
    }
    out
}

/// Checks `op` (quantized as `q`) on `inputs` against the reference codes `want` on every
/// 8-bit variant: whole output equal, the μLayer partition and three random partitions equal
/// to the whole output, and one random slice alone writes exactly its own elements.
#[track_caller]
pub fn check_op_q8(op: &Op, q: &QuantNode<'_>, inputs: &[&QTensor], want: &QTensor, seed: u64) {
    let mut rng = Rng::new(seed);
    let node = Node {
        name: "t".into(),
        op: op.clone(),
        inputs: (0..inputs.len()).map(|i| format!("x{i}")).collect(),
        output: "y".into(),
    };
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let shape = want.shape().to_vec();
    let (c, h) = channels_rows(&shape);
    for isa in QIsa::available() {
        for threads in [1, 3] {
            let b = CpuBackend::with_isa(threads, isa.level()).expect("supported level");
            let what = format!("{} on {} × {threads} threads", op.kind(), isa.name());
            let p = q8::prepare_with(&b, &node, q, &shapes, &shape, isa).expect("prepare");
            let whole = run_slices(&b, &p, inputs, &shape, q.output, 0, &[Slice::whole(&shape)]);
            if let Some(i) = whole
                .data()
                .iter()
                .zip(want.data())
                .position(|(a, b)| a != b)
            {
                panic!(
                    "{what}: element {i} of {shape:?}: got {}, want {}",
                    whole.data()[i],
                    want.data()[i]
                );
            }
            if !op.sliceable() {
                continue;
            }
            let mut parts = vec![ulayer_partition(&shape)];
            parts.extend((0..3).map(|_| random_partition(&mut rng, &shape)));
            for part in parts {
                let got = run_slices(&b, &p, inputs, &shape, q.output, 0, &part);
                assert_eq!(got.data(), whole.data(), "{what}: union of {part:?}");
            }
            let c0 = rng.below(c);
            let r0 = rng.below(h);
            let s = Slice {
                channels: c0..c0 + 1 + rng.below(c - c0),
                rows: r0..r0 + 1 + rng.below(h - r0),
            };
            let g = super::Geom::of(&shape);
            for fill in [0u8, 255] {
                let got = run_slices(
                    &b,
                    &p,
                    inputs,
                    &shape,
                    q.output,
                    fill,
                    std::slice::from_ref(&s),
                );
                for (i, (&v, &w)) in got.data().iter().zip(whole.data()).enumerate() {
                    let ch = (i / (g.h * g.inner)) % g.c;
                    let row = (i / g.inner) % g.h;
                    let inside = s.channels.contains(&ch) && s.rows.contains(&row);
                    let expect = if inside { w } else { fill };
                    assert_eq!(
                        v, expect,
                        "{what}: slice {s:?}, element {i} (inside: {inside})"
                    );
                }
            }
        }
    }
}
