//! Convolution: every CPU variant (each instruction set, 1 and 3 threads) against the
//! reference on awkward shapes, slice unions, and the algorithm choice.
use super::cpu_f32;
use super::reference::conv2d;
use super::Conv2d;
use crate::backend::cpu::testutil::{check_op, Rng};
use crate::backend::cpu::Isa;
use crate::ops::{Activation, Op};

/// (batch, cin, h, w, cout, [kh, kw], stride, dilation, pads [t, l, b, r], groups, activation)
type Case = (
    usize,
    usize,
    usize,
    usize,
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 4],
    usize,
    Activation,
);

fn conv(rng: &mut Rng, c: &Case) -> (Conv2d, crate::Tensor) {
    let &(n, cin, h, w, cout, k, stride, dilation, pads, groups, activation) = c;
    let fan_in = (cin / groups * k[0] * k[1]) as f32;
    let conv = Conv2d {
        weight: rng.tensor(&[cout, cin / groups, k[0], k[1]], 1.0 / fan_in.sqrt()),
        bias: Some(rng.tensor(&[cout], 0.5)),
        stride,
        dilation,
        pads,
        groups,
        activation,
    };
    (conv, rng.tensor(&[n, cin, h, w], 1.0))
}

fn run_cases(cases: &[Case], seed: u64) {
    let mut rng = Rng::new(seed);
    for (i, c) in cases.iter().enumerate() {
        let (cv, x) = conv(&mut rng, c);
        let want = conv2d(&cv, &x).expect("valid case");
        check_op(&Op::Conv2d(cv), &[&x], &want, 1.0, seed + i as u64);
    }
}

const RELU6: Activation = Activation::Clip { min: 0.0, max: 6.0 };
const NONE: Activation = Activation::None;
const RELU: Activation = Activation::Relu;

#[test]
fn pointwise_awkward_channels() {
    let mut cases = Vec::new();
    for (i, &cin) in [1, 3, 4, 7, 8, 13, 16, 24].iter().enumerate() {
        for &cout in &[1, 7, 8, 13, 24] {
            let (h, w) = [(5, 7), (9, 13), (1, 1), (17, 3)][i % 4];
            cases.push((
                1,
                cin,
                h,
                w,
                cout,
                [1, 1],
                [1, 1],
                [1, 1],
                [0; 4],
                1,
                [NONE, RELU, RELU6][cin % 3],
            ));
        }
    }
    run_cases(&cases, 1);
}

#[test]
fn pointwise_wide_and_narrow_outputs() {
    run_cases(
        &[
            // Wide n (weights broadcast, several tasks, partial panels).
            (1, 13, 33, 35, 24, [1, 1], [1, 1], [1, 1], [0; 4], 1, RELU6),
            (1, 32, 56, 56, 64, [1, 1], [1, 1], [1, 1], [0; 4], 1, RELU6),
            // Narrow n (activations broadcast): MobileNet's 7×7 end, and 14×14.
            (1, 64, 7, 7, 80, [1, 1], [1, 1], [1, 1], [0; 4], 1, RELU6),
            (1, 48, 14, 14, 40, [1, 1], [1, 1], [1, 1], [0; 4], 1, NONE),
            (1, 24, 3, 3, 24, [1, 1], [1, 1], [1, 1], [0; 4], 1, RELU),
        ],
        2,
    );
}

#[test]
fn general_kxk_strides_dilations_pads() {
    run_cases(
        &[
            (
                1,
                3,
                17,
                19,
                8,
                [3, 3],
                [2, 2],
                [1, 1],
                [1, 1, 1, 1],
                1,
                RELU6,
            ),
            (
                1,
                4,
                13,
                11,
                7,
                [3, 3],
                [1, 1],
                [2, 2],
                [2, 2, 2, 2],
                1,
                NONE,
            ),
            (
                1,
                7,
                9,
                15,
                13,
                [5, 3],
                [1, 2],
                [1, 1],
                [0, 1, 2, 0],
                1,
                RELU,
            ),
            (
                2,
                8,
                10,
                9,
                16,
                [3, 3],
                [2, 1],
                [1, 2],
                [1, 0, 0, 3],
                1,
                RELU6,
            ),
            (
                1,
                3,
                23,
                23,
                24,
                [7, 7],
                [2, 2],
                [1, 1],
                [3, 3, 3, 3],
                1,
                RELU,
            ),
            (1, 16, 8, 8, 24, [1, 1], [2, 2], [1, 1], [0; 4], 1, NONE),
            (1, 5, 6, 6, 3, [2, 2], [1, 1], [1, 1], [1, 1, 0, 0], 1, NONE),
            // K = 120·9 = 1080 > 1024: accumulation over K chunks.
            (
                1,
                120,
                9,
                9,
                16,
                [3, 3],
                [1, 1],
                [1, 1],
                [1, 1, 1, 1],
                1,
                RELU6,
            ),
            (
                1,
                120,
                3,
                3,
                40,
                [3, 3],
                [1, 1],
                [1, 1],
                [1, 1, 1, 1],
                1,
                RELU6,
            ),
        ],
        3,
    );
}

#[test]
fn grouped() {
    run_cases(
        &[
            (
                1,
                8,
                9,
                7,
                16,
                [3, 3],
                [1, 1],
                [1, 1],
                [1, 1, 1, 1],
                2,
                RELU,
            ),
            (
                1,
                4,
                11,
                11,
                6,
                [3, 3],
                [2, 2],
                [1, 1],
                [0, 1, 1, 0],
                2,
                NONE,
            ),
            (1, 24, 5, 5, 24, [1, 1], [1, 1], [1, 1], [0; 4], 4, RELU6),
            // Depthwise with channel multiplier 2 runs as a grouped product.
            (1, 3, 9, 8, 6, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 3, NONE),
        ],
        4,
    );
}

#[test]
fn depthwise() {
    let mut cases = Vec::new();
    for &c in &[1, 3, 4, 7, 8, 13, 16, 24] {
        cases.push((
            1,
            c,
            15,
            17,
            c,
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1, 1, 1],
            c,
            RELU6,
        ));
        cases.push((
            1,
            c,
            14,
            13,
            c,
            [3, 3],
            [2, 2],
            [1, 1],
            [0, 0, 1, 1],
            c,
            RELU6,
        ));
    }
    cases.extend([
        (
            1,
            8,
            11,
            40,
            8,
            [3, 3],
            [1, 1],
            [2, 2],
            [2, 2, 2, 2],
            8,
            NONE,
        ),
        (2, 5, 9, 9, 5, [5, 5], [2, 2], [1, 1], [2, 1, 2, 3], 5, RELU),
        (
            1,
            6,
            7,
            7,
            6,
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1, 1, 1],
            6,
            RELU6,
        ),
        (
            1,
            4,
            33,
            65,
            4,
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1, 1, 1],
            4,
            RELU6,
        ),
        (1, 4, 8, 9, 4, [1, 3], [3, 3], [1, 1], [0, 1, 0, 1], 4, NONE),
        // Several blocks of 8 and 16 channels plus a remainder, and a 7×7 filter (taps past
        // the 25 held in registers).
        (1, 41, 12, 30, 41, [3, 3], [1, 1], [1, 1], [1; 4], 41, RELU6),
        (1, 17, 9, 20, 17, [7, 7], [1, 1], [1, 1], [3; 4], 17, RELU),
    ]);
    run_cases(&cases, 5);
}

#[test]
fn algorithm_choice() {
    let mut rng = Rng::new(6);
    let isa = Isa::detect();
    let pick = |c: &Case, rng: &mut Rng| {
        let (cv, x) = conv(rng, c);
        let out = cv.output_shape("t", x.shape()).expect("valid");
        cpu_f32::prepare("t", &cv, x.shape(), &out, isa)
            .expect("prepare")
            .algorithm()
    };
    assert_eq!(
        pick(
            &(1, 16, 56, 56, 32, [1, 1], [1, 1], [1, 1], [0; 4], 1, NONE),
            &mut rng
        ),
        "gemm-1x1"
    );
    assert_eq!(
        pick(
            &(1, 64, 7, 7, 64, [1, 1], [1, 1], [1, 1], [0; 4], 1, NONE),
            &mut rng
        ),
        "gemm-1x1-t"
    );
    assert_eq!(
        pick(
            &(1, 3, 32, 32, 16, [3, 3], [2, 2], [1, 1], [1; 4], 1, NONE),
            &mut rng
        ),
        "gemm-im2col"
    );
    assert_eq!(
        pick(
            &(1, 16, 32, 32, 16, [3, 3], [1, 1], [1, 1], [1; 4], 16, NONE),
            &mut rng
        ),
        "depthwise"
    );
}
