//! 8-bit fully connected layer: every 8-bit variant equal to the integer reference (batch 1
//! and several rows, awkward widths, rank 3), slice unions.
use super::reference::gemm as gemm_f32;
use super::reference_q8::gemm;
use super::Gemm;
use crate::backend::cpu::testutil::Rng;
use crate::backend::cpu::testutil_q8::{check_op_q8, qparams, qparams_of, qtensor, qweights};
use crate::ops::{Activation, Op};
use crate::quant::QuantNode;

#[test]
fn fully_connected_shapes() {
    let mut rng = Rng::new(11);
    let cases: &[(&[usize], usize, Activation)] = &[
        (&[1, 1], 1, Activation::None),
        (&[1, 13], 7, Activation::Relu),
        (&[1, 1280], 1000, Activation::None),
        (&[3, 24], 50, Activation::Clip { min: 0.0, max: 6.0 }),
        (&[2, 3, 17], 9, Activation::None),
        (&[1, 2, 2, 8], 5, Activation::None),
    ];
    for (i, &(shape, out, act)) in cases.iter().enumerate() {
        let k = *shape.last().expect("rank ≥ 2");
        let g = Gemm {
            weight: rng.tensor(&[out, k], 1.0 / (k as f32).sqrt()),
            bias: Some(rng.tensor(&[out], 0.3)),
            activation: act,
        };
        let xq = qparams(&mut rng);
        let x = qtensor(&mut rng, shape, xq);
        let qw = qweights(&g.weight, g.bias.as_ref(), xq.scale);
        let yq = qparams_of(&gemm_f32(&g, &x.dequantize()).expect("valid"));
        let want = gemm(&g, &qw, &x, yq).expect("valid");
        let q = QuantNode {
            inputs: &[xq],
            output: yq,
            weights: Some(&qw),
        };
        check_op_q8(&Op::Gemm(g), &q, &[&x], &want, 20 + i as u64);
    }
}
