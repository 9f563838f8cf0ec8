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

/// Planes larger than one parallel task (16 Ki elements) are cut into pieces; the cuts must
/// fall on row boundaries for the row-wise kernel (rows of 133 elements do not divide 16 Ki).
#[test]
fn pad_large_planes_cut_into_pieces() {
    let mut rng = Rng::new(62);
    let p = Pad {
        pads: [1, 2, 1, 1],
        value: 0.25,
    };
    let x = rng.tensor(&[1, 2, 150, 130], 1.0);
    check_op(
        &Op::Pad(p.clone()),
        &[&x],
        &pad(&p, &x).expect("valid"),
        1.0,
        3,
    );
}
