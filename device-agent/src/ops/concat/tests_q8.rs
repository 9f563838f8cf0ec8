//! 8-bit concatenation: every variant equal to the reference along channels (inputs with
//! their own quantization or the output's) and along other axes, slice unions.
use super::reference_q8::concat;
use crate::backend::cpu::testutil::Rng;
use crate::backend::cpu::testutil_q8::{check_op_q8, qparams, qtensor};
use crate::ops::Op;
use crate::quant::QuantNode;

#[test]
fn channel_and_row_concatenation() {
    let mut rng = Rng::new(91);
    let cases: &[(usize, &[&[usize]])] = &[
        (1, &[&[1, 3, 5, 5], &[1, 13, 5, 5], &[1, 8, 5, 5]]),
        (1, &[&[2, 4, 3, 7], &[2, 1, 3, 7]]),
        (2, &[&[1, 3, 4, 5], &[1, 3, 2, 5]]),
        (1, &[&[1, 16, 130, 130], &[1, 8, 130, 130]]),
    ];
    for (i, &(axis, shapes)) in cases.iter().enumerate() {
        let qy = qparams(&mut rng);
        let inputs: Vec<_> = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| {
                // The first input shares the output's quantization (a copy), the others not.
                let q = if k == 0 { qy } else { qparams(&mut rng) };
                qtensor(&mut rng, s, q)
            })
            .collect();
        let refs: Vec<_> = inputs.iter().collect();
        let qs: Vec<_> = inputs.iter().map(|t| t.qparams()).collect();
        let want = concat(axis, &refs, qy).expect("valid");
        let q = QuantNode {
            inputs: &qs,
            output: qy,
            weights: None,
        };
        check_op_q8(&Op::Concat { axis }, &q, &refs, &want, 100 + i as u64);
    }
}
