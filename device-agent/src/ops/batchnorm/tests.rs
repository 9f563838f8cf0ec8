//! Unfolded batch normalisation against the reference.
use super::reference::batchnorm;
use super::BatchNorm;
use crate::backend::cpu::testutil::{check_op, Rng};
use crate::ops::Op;

#[test]
fn batchnorm_awkward_channels() {
    let mut rng = Rng::new(31);
    for (i, &c) in [1, 3, 4, 7, 8, 13, 16, 24].iter().enumerate() {
        let v =
            |rng: &mut Rng, base: f32| (0..c).map(|_| base + rng.sym().abs()).collect::<Vec<_>>();
        let b = BatchNorm {
            scale: v(&mut rng, 0.5),
            bias: v(&mut rng, -0.5),
            mean: v(&mut rng, -0.5),
            var: v(&mut rng, 0.1),
            epsilon: 1e-3,
        };
        let x = rng.tensor(&[2, c, 5, 9], 2.0);
        check_op(
            &Op::BatchNorm(b.clone()),
            &[&x],
            &batchnorm(&b, &x),
            1.0,
            i as u64,
        );
    }
}
