//! Softmax (whole output only) against the reference.
use super::reference::softmax;
use crate::backend::cpu::testutil::{check_op, Rng};
use crate::ops::Op;

#[test]
fn softmax_axes() {
    let mut rng = Rng::new(101);
    for (i, (shape, axis)) in [
        (&[1usize, 1000][..], 1),
        (&[2, 3, 4][..], 1),
        (&[2, 3, 4][..], 2),
        (&[5][..], 0),
    ]
    .iter()
    .enumerate()
    {
        let x = rng.tensor(shape, 5.0);
        check_op(
            &Op::Softmax { axis: *axis },
            &[&x],
            &softmax(*axis, &x),
            1.0,
            i as u64,
        );
    }
}
