//! Activations (and Dropout's identity) against the reference.
use super::reference::activation;
use super::Activation;
use crate::backend::cpu::testutil::{check_op, Rng};
use crate::ops::Op;

#[test]
fn activations_on_awkward_shapes() {
    let mut rng = Rng::new(21);
    let shapes: &[&[usize]] = &[
        &[1, 13, 7, 9],
        &[2, 3, 5, 5],
        &[1, 1000],
        &[4, 24, 1, 1],
        &[1, 8, 33, 17],
        &[5],
    ];
    for (i, s) in shapes.iter().enumerate() {
        let x = rng.tensor(s, 8.0);
        for a in [
            Activation::Relu,
            Activation::Clip {
                min: -1.0,
                max: 6.0,
            },
            Activation::None,
        ] {
            check_op(&Op::Activation(a), &[&x], &activation(a, &x), 1.0, i as u64);
        }
        check_op(&Op::Dropout, &[&x], &x, 1.0, i as u64);
    }
}
