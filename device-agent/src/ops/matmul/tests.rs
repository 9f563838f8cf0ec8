//! Batched MatMul (whole output only) against the reference.
use super::reference::matmul;
use crate::backend::cpu::testutil::{check_op, Rng};
use crate::ops::Op;

#[test]
fn matmul_batched_and_broadcast() {
    let mut rng = Rng::new(111);
    let cases: &[(&[usize], &[usize])] = &[
        (&[3, 5], &[5, 7]),
        (&[2, 3, 5], &[2, 5, 4]),
        (&[2, 3, 5], &[5, 4]),
        (&[1, 13], &[13, 1]),
    ];
    for (i, (a, b)) in cases.iter().enumerate() {
        let (x, y) = (rng.tensor(a, 1.0), rng.tensor(b, 1.0));
        check_op(
            &Op::MatMul,
            &[&x, &y],
            &matmul(&x, &y).expect("valid"),
            1.0,
            i as u64,
        );
    }
}
