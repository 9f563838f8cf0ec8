//! Constant padding against the reference.
use super::reference::pad;
use super::Pad;
use crate::backend::cpu::testutil::{check_op, Rng};
use crate::ops::Op;

#[test]
fn pad_asymmetric() {
    let mut rng = Rng::new(61);
    for (i, pads) in [[0, 1, 2, 3], [1, 1, 1, 1], [3, 0, 0, 2], [0; 4]]
        .iter()
        .enumerate()
    {
        let p = Pad {
            pads: *pads,
            value: -0.5,
        };
        let x = rng.tensor(&[2, 7, 5, 6], 1.0);
        check_op(
            &Op::Pad(p.clone()),
            &[&x],
            &pad(&p, &x).expect("valid"),
            1.0,
            i as u64,
        );
    }
}
