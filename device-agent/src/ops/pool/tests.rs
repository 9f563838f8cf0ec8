//! Max, average and global average pooling against the reference.
use super::reference::{global_average, pool};
use super::Pool;
use crate::backend::cpu::testutil::{check_op, Rng};
use crate::ops::Op;

/// (input shape, kernel, stride, pads, ceil mode, count_include_pad)
type Case = ([usize; 4], [usize; 2], [usize; 2], [usize; 4], bool, bool);

#[test]
fn pools_awkward_windows() {
    let mut rng = Rng::new(71);
    let cases: &[Case] = &[
        ([1, 3, 17, 19], [3, 3], [2, 2], [0; 4], true, false),
        ([1, 13, 14, 14], [2, 2], [2, 2], [0; 4], false, false),
        ([2, 7, 9, 11], [3, 3], [1, 1], [1, 1, 1, 1], false, true),
        ([1, 8, 9, 11], [3, 3], [1, 1], [1, 1, 1, 1], false, false),
        ([1, 4, 13, 13], [3, 3], [2, 2], [0, 0, 1, 1], true, true),
        ([1, 16, 7, 7], [7, 7], [1, 1], [0; 4], false, false),
        ([1, 24, 15, 10], [5, 3], [3, 2], [2, 1, 2, 1], true, false),
        ([1, 1, 56, 56], [3, 3], [2, 2], [0; 4], true, false),
    ];
    for (i, &(shape, kernel, stride, pads, ceil_mode, count_include_pad)) in
        cases.iter().enumerate()
    {
        let p = Pool {
            kernel,
            stride,
            pads,
            ceil_mode,
            count_include_pad,
        };
        let x = rng.tensor(&shape, 1.0);
        check_op(
            &Op::MaxPool(p.clone()),
            &[&x],
            &pool(&p, true, &x).expect("valid"),
            1.0,
            i as u64,
        );
        check_op(
            &Op::AveragePool(p.clone()),
            &[&x],
            &pool(&p, false, &x).expect("valid"),
            1.0,
            i as u64,
        );
    }
}

#[test]
fn global_average_pooling() {
    let mut rng = Rng::new(72);
    for (i, s) in [[1, 13, 7, 7], [2, 24, 1, 1], [1, 3, 17, 9], [1, 1024, 7, 7]]
        .iter()
        .enumerate()
    {
        let x = rng.tensor(s, 1.0);
        check_op(
            &Op::GlobalAveragePool,
            &[&x],
            &global_average(&x),
            1.0,
            i as u64,
        );
    }
}
