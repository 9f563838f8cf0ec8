//! Concatenation along channels and other axes against the reference.
use super::reference::concat;
use crate::backend::cpu::testutil::{check_op, Rng};
use crate::ops::Op;

#[test]
fn concat_axes() {
    let mut rng = Rng::new(51);
    let cases: &[(usize, &[&[usize]])] = &[
        (1, &[&[1, 3, 5, 7], &[1, 13, 5, 7], &[1, 8, 5, 7]]),
        (1, &[&[2, 1, 4, 4], &[2, 24, 4, 4]]),
        (2, &[&[1, 3, 2, 5], &[1, 3, 7, 5]]),
        (3, &[&[1, 4, 3, 2], &[1, 4, 3, 5]]),
        (0, &[&[1, 4, 3, 2], &[2, 4, 3, 2]]),
        (1, &[&[1, 16], &[1, 7]]),
    ];
    for (i, (axis, shapes)) in cases.iter().enumerate() {
        let xs: Vec<_> = shapes.iter().map(|s| rng.tensor(s, 1.0)).collect();
        let refs: Vec<_> = xs.iter().collect();
        check_op(
            &Op::Concat { axis: *axis },
            &refs,
            &concat(*axis, &refs).expect("valid"),
            1.0,
            i as u64,
        );
    }
}

/// Channel planes larger than one parallel task (16 Ki elements) are cut into pieces; each
/// piece must read from its own place in the input channel, not from the channel's start.
#[test]
fn concat_large_planes_cut_into_pieces() {
    let mut rng = Rng::new(52);
    let xs = [
        rng.tensor(&[1, 2, 130, 131], 1.0),
        rng.tensor(&[1, 3, 130, 131], 1.0),
    ];
    let refs: Vec<_> = xs.iter().collect();
    check_op(
        &Op::Concat { axis: 1 },
        &refs,
        &concat(1, &refs).expect("valid"),
        1.0,
        7,
    );
}
