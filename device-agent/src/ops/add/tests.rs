//! Element-wise addition with broadcasting against the reference.
use super::reference::add;
use crate::backend::cpu::testutil::{check_op, Rng};
use crate::ops::Op;

#[test]
fn add_same_shape_and_broadcast() {
    let mut rng = Rng::new(41);
    let cases: &[(&[usize], &[usize])] = &[
        (&[1, 13, 7, 9], &[1, 13, 7, 9]),
        (&[2, 8, 5, 5], &[1, 8, 1, 1]),
        (&[2, 8, 5, 5], &[8, 1, 1]),
        (&[1, 3, 4, 6], &[6]),
        (&[1, 3, 4, 6], &[1]),
        (&[1, 1, 4, 6], &[1, 7, 4, 6]),
        (&[1, 1000], &[1000]),
        (&[2, 3, 5], &[2, 1, 5]),
        (&[1, 24, 17, 16], &[1, 24, 17, 16]),
    ];
    for (i, (a, b)) in cases.iter().enumerate() {
        let (x, y) = (rng.tensor(a, 1.0), rng.tensor(b, 1.0));
        check_op(
            &Op::Add,
            &[&x, &y],
            &add(&x, &y).expect("broadcast"),
            1.0,
            i as u64,
        );
    }
}
