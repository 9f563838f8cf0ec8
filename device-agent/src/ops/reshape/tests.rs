//! Flatten and Reshape (whole output only) against the reference.
use super::reference::reshape;
use crate::backend::cpu::testutil::{backends, check_op, run_slices, Rng};
use crate::backend::Backend;
use crate::ops::Op;
use crate::tensor::Slice;

#[test]
fn flatten_and_reshape() {
    let mut rng = Rng::new(91);
    let x = rng.tensor(&[2, 3, 4, 5], 1.0);
    check_op(
        &Op::Flatten { axis: 1 },
        &[&x],
        &reshape(&x, &[2, 60]).expect("same count"),
        1.0,
        0,
    );
    check_op(
        &Op::Reshape {
            shape: vec![0, -1, 5],
        },
        &[&x],
        &reshape(&x, &[2, 12, 5]).expect("same count"),
        1.0,
        1,
    );
    let t = rng.tensor(&[3, 7], 1.0);
    check_op(&Op::Constant(t.clone()), &[], &t, 1.0, 2);
}

#[test]
fn non_sliceable_ops_refuse_part_slices() {
    let mut rng = Rng::new(92);
    let x = rng.tensor(&[1, 4, 2, 2], 1.0);
    for b in backends() {
        let op = Op::Flatten { axis: 1 };
        let node = crate::graph::Node {
            name: "f".into(),
            op: op.clone(),
            inputs: vec!["x".into()],
            output: "y".into(),
        };
        let p = b
            .prepare(
                &node,
                &[x.shape()],
                &[1, 16],
                crate::backend::Precision::F32,
            )
            .expect("prepare");
        let mut out = crate::Tensor::zeros(&[1, 16]);
        let err = b
            .run(
                &p,
                &[&x],
                &out.shared(),
                &Slice {
                    channels: 0..8,
                    rows: 0..1,
                },
            )
            .expect_err("part slice of a reshape");
        assert!(err.to_string().contains("whole output"), "{err}");
        let _ = run_slices(&b, &op, &[&x], &[Slice::whole(&[1, 16])]);
    }
}
