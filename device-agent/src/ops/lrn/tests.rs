//! Local response normalisation against the reference (β = 0.75 fast path and general β).
use super::reference::lrn;
use super::Lrn;
use crate::backend::cpu::testutil::{check_op, Rng};
use crate::ops::Op;

#[test]
fn lrn_windows_and_betas() {
    let mut rng = Rng::new(81);
    for (i, (size, beta, c)) in [
        (5, 0.75, 13),
        (5, 0.75, 3),
        (4, 0.5, 8),
        (3, 0.6, 7),
        (1, 0.75, 16),
    ]
    .iter()
    .enumerate()
    {
        let l = Lrn {
            size: *size,
            alpha: 1e-4 * 50.0,
            beta: *beta,
            bias: 1.0,
        };
        let x = rng.tensor(&[1, *c, 9, 11], 3.0);
        check_op(&Op::Lrn(l.clone()), &[&x], &lrn(&l, &x), 1.0, i as u64);
    }
}

/// QUInt8 LRN runs as an F32 island (dequantize, the F32 kernel, quantize) on the caller's
/// slice only: every partition into slices gives the whole output, and a slice writes only
/// its own elements, against the F32 kernel's result quantized.
#[test]
fn quint8_lrn_island_computes_slices() {
    use crate::backend::cpu::testutil_q8::{check_op_q8, qparams, qparams_of, qtensor};
    use crate::backend::cpu::CpuBackend;
    use crate::backend::{Backend, Precision};
    use crate::graph::Node;
    use crate::quant::{QTensor, QuantNode};
    use crate::tensor::{Slice, Tensor};
    let mut rng = Rng::new(83);
    let l = Lrn {
        size: 5,
        alpha: 1e-4 * 50.0,
        beta: 0.75,
        bias: 1.0,
    };
    let xq = qparams(&mut rng);
    let x = qtensor(&mut rng, &[1, 13, 9, 11], xq);
    let op = Op::Lrn(l);
    let node = Node {
        name: "lrn".into(),
        op: op.clone(),
        inputs: vec!["x".into()],
        output: "y".into(),
    };
    let b = CpuBackend::new(1).expect("backend");
    let xf = x.dequantize();
    let p = b
        .prepare(&node, &[xf.shape()], xf.shape(), Precision::F32)
        .expect("prepare");
    let mut yf = Tensor::zeros(xf.shape());
    b.run(&p, &[&xf], &yf.shared(), &Slice::whole(xf.shape()))
        .expect("run");
    let yq = qparams_of(&yf);
    let q = QuantNode {
        inputs: &[xq],
        output: yq,
        weights: None,
    };
    check_op_q8(&op, &q, &[&x], &QTensor::quantize(&yf, yq), 84);
}
