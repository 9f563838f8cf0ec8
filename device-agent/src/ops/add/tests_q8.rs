//! 8-bit addition: every variant equal to the fixed-point reference (same shapes, operands
//! of different quantizations, broadcasting), slice unions; the reference within half a step
//! of the real sum.
use super::reference_q8::add;
use crate::backend::cpu::testutil::Rng;
use crate::backend::cpu::testutil_q8::{check_op_q8, qparams, qtensor};
use crate::ops::Op;
use crate::quant::QuantNode;

#[test]
fn residual_and_broadcast_sums() {
    let mut rng = Rng::new(71);
    let cases: &[(&[usize], &[usize])] = &[
        (&[1, 24, 28, 28], &[1, 24, 28, 28]),
        (&[1, 7, 5, 3], &[1, 7, 5, 3]),
        (&[2, 13, 4, 4], &[1, 13, 1, 1]),
        (&[1, 1000], &[1, 1000]),
        (&[1, 3, 200, 200], &[1, 3, 200, 200]),
    ];
    for (i, &(sa, sb)) in cases.iter().enumerate() {
        let (qa, qb, qy) = (qparams(&mut rng), qparams(&mut rng), qparams(&mut rng));
        let a = qtensor(&mut rng, sa, qa);
        let b = qtensor(&mut rng, sb, qb);
        let want = add(&a, &b, qy, 0, 255).expect("valid");
        let q = QuantNode {
            inputs: &[qa, qb],
            output: qy,
            weights: None,
        };
        check_op_q8(&Op::Add, &q, &[&a, &b], &want, 80 + i as u64);
        if sa == sb {
            let (ra, rb, ry) = (a.dequantize(), b.dequantize(), want.dequantize());
            let (lo, hi) = qy.range();
            for ((x, y), z) in ra.data().iter().zip(rb.data()).zip(ry.data()) {
                let s = x + y;
                if s > lo && s < hi {
                    assert!((s - z).abs() <= qy.scale * 0.501, "{x} + {y} = {z}");
                }
            }
        }
    }
}
