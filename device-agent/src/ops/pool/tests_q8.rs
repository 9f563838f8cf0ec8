//! 8-bit pooling: every variant equal to the integer reference (max, average with and
//! without padding in the divisor, ceil mode, global average), slice unions; max pooling
//! with the input's quantization is an exact selection.
use super::reference::{global_average as gap_f32, pool as pool_f32};
use super::reference_q8::{global_average, pool};
use super::Pool;
use crate::backend::cpu::testutil::Rng;
use crate::backend::cpu::testutil_q8::{check_op_q8, qparams, qparams_of, qtensor};
use crate::ops::Op;
use crate::quant::QuantNode;

fn pools() -> Vec<(Pool, [usize; 4])> {
    let p = |k: usize, s: usize, pads: [usize; 4], ceil: bool, inc: bool| Pool {
        kernel: [k, k],
        stride: [s, s],
        pads,
        ceil_mode: ceil,
        count_include_pad: inc,
    };
    vec![
        (p(3, 2, [0; 4], true, false), [1, 7, 13, 13]),
        (p(2, 2, [0; 4], false, false), [1, 3, 8, 9]),
        (p(3, 1, [1; 4], false, false), [2, 4, 6, 5]),
        (p(3, 1, [1; 4], false, true), [1, 13, 7, 7]),
        (p(5, 3, [2, 1, 2, 1], true, false), [1, 8, 11, 10]),
        // Rows narrower than the window: every window clipped by the padding.
        (p(5, 1, [2; 4], false, false), [1, 3, 4, 2]),
        (p(3, 2, [1; 4], true, false), [1, 5, 2, 2]),
    ]
}

#[test]
fn max_and_average_pooling() {
    let mut rng = Rng::new(31);
    for (i, (pl, shape)) in pools().into_iter().enumerate() {
        let xq = qparams(&mut rng);
        let x = qtensor(&mut rng, &shape, xq);
        // Max pooling keeps the input's quantization (as the quantized model does), and
        // once with another one.
        for yq in [xq, qparams(&mut rng)] {
            let want = pool(&pl, true, &x, yq).expect("valid");
            let q = QuantNode {
                inputs: &[xq],
                output: yq,
                weights: None,
            };
            check_op_q8(&Op::MaxPool(pl.clone()), &q, &[&x], &want, 40 + i as u64);
        }
        let yq = qparams_of(&pool_f32(&pl, false, &x.dequantize()).expect("valid"));
        let want = pool(&pl, false, &x, yq).expect("valid");
        let q = QuantNode {
            inputs: &[xq],
            output: yq,
            weights: None,
        };
        check_op_q8(&Op::AveragePool(pl), &q, &[&x], &want, 50 + i as u64);
    }
}

#[test]
fn global_average_pooling() {
    let mut rng = Rng::new(33);
    for (i, shape) in [[1, 1, 1, 1], [1, 13, 7, 7], [2, 24, 5, 3], [1, 8, 56, 56]]
        .into_iter()
        .enumerate()
    {
        let xq = qparams(&mut rng);
        let x = qtensor(&mut rng, &shape, xq);
        let yq = qparams_of(&gap_f32(&x.dequantize()));
        let want = global_average(&x, yq);
        let q = QuantNode {
            inputs: &[xq],
            output: yq,
            weights: None,
        };
        check_op_q8(&Op::GlobalAveragePool, &q, &[&x], &want, 60 + i as u64);
        // Within half a step of the real mean (plus the multiplier's precision).
        let real = gap_f32(&x.dequantize());
        for (a, b) in want.dequantize().data().iter().zip(real.data()) {
            let (lo, hi) = yq.range();
            if *b > lo && *b < hi {
                assert!((a - b).abs() <= yq.scale * 0.5001, "{a} vs {b}");
            }
        }
    }
}
