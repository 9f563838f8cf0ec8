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
