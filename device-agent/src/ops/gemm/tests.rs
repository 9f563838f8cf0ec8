//! Fully connected: every CPU variant against the reference, slices over neurons.
use super::reference::gemm;
use super::Gemm;
use crate::backend::cpu::testutil::{check_op, Rng};
use crate::ops::{Activation, Op};

#[test]
fn fully_connected_awkward_sizes() {
    let mut rng = Rng::new(11);
    let cases: &[(&[usize], usize, Activation)] = &[
        (&[1, 1024], 1000, Activation::None),
        (&[1, 7], 13, Activation::Relu),
        (&[3, 24], 16, Activation::Clip { min: 0.0, max: 6.0 }),
        (&[1, 1], 1, Activation::None),
        (&[2, 13], 8, Activation::None),
        (&[17, 33], 24, Activation::Relu),
        (&[2, 3, 7], 5, Activation::None),
        (&[2, 3, 4, 9], 7, Activation::Relu),
        (&[1, 1100], 40, Activation::None),
    ];
    for (i, (shape, o, act)) in cases.iter().enumerate() {
        let k = *shape.last().expect("rank ≥ 2");
        let g = Gemm {
            weight: rng.tensor(&[*o, k], 1.0 / (k as f32).sqrt()),
            bias: (i % 3 != 1).then(|| rng.tensor(&[*o], 0.5)),
            activation: *act,
        };
        let x = rng.tensor(shape, 1.0);
        let want = gemm(&g, &x).expect("valid");
        check_op(&Op::Gemm(g), &[&x], &want, 1.0, 100 + i as u64);
    }
}
