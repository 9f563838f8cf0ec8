//! 8-bit convolution: every 8-bit variant (each instruction set, 1 and 3 threads) equal to
//! the integer reference on awkward shapes (channels 1, 3, 4, 7, 8, 13, 16, 24), every
//! algorithm (1×1, im2col, grouped, depthwise), slice unions; and the reference against F32.
use super::reference::conv2d as conv2d_f32;
use super::reference_q8::conv2d;
use super::Conv2d;
use crate::backend::cpu::testutil::Rng;
use crate::backend::cpu::testutil_q8::{check_op_q8, qparams, qparams_of, qtensor, qweights};
use crate::ops::{Activation, Op};
use crate::quant::QuantNode;

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

const RELU6: Activation = Activation::Clip { min: 0.0, max: 6.0 };
const NONE: Activation = Activation::None;
const RELU: Activation = Activation::Relu;

fn run_cases(cases: &[Case], seed: u64) {
    run_cases_scaled(cases, seed, 1.0);
}

/// As [`run_cases`] with the output's range divided by `shrink` (a finer output scale: a
/// large `shrink` makes requantisation multipliers of 0.5 or more, the wide path).
fn run_cases_scaled(cases: &[Case], seed: u64, shrink: f32) -> usize {
    let mut rng = Rng::new(seed);
    let mut wide = 0;
    for (i, c) in cases.iter().enumerate() {
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
        let xq = qparams(&mut rng);
        let x = qtensor(&mut rng, &[n, cin, h, w], xq);
        let qw = qweights(&conv.weight, conv.bias.as_ref(), xq.scale);
        // The output's quantization from the real result's range.
        let y = conv2d_f32(&conv, &x.dequantize()).expect("valid case");
        let yq = qparams_of(&y);
        let yq = crate::quant::QParams::from_range(
            yq.dequantize(0) / shrink,
            yq.dequantize(255) / shrink,
        );
        wide += qw
            .scales
            .iter()
            .filter(|&&s| f64::from(xq.scale * s / yq.scale) >= 0.5)
            .count();
        let want = conv2d(&conv, &qw, &x, yq).expect("valid case");
        let q = QuantNode {
            inputs: &[xq],
            output: yq,
            weights: Some(&qw),
        };
        check_op_q8(&Op::Conv2d(conv), &q, &[&x], &want, seed + i as u64);
    }
    wide
}

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
fn pointwise_wide_narrow_and_long() {
    run_cases(
        &[
            (1, 16, 28, 28, 40, [1, 1], [1, 1], [1, 1], [0; 4], 1, RELU6),
            (1, 96, 7, 7, 50, [1, 1], [1, 1], [1, 1], [0; 4], 1, NONE),
            (1, 300, 3, 5, 17, [1, 1], [1, 1], [1, 1], [0; 4], 1, RELU),
            (2, 13, 6, 6, 9, [1, 1], [1, 1], [1, 1], [0; 4], 1, NONE),
        ],
        2,
    );
}

#[test]
fn general_kernels_strides_dilations_pads() {
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
                [0, 0, 1, 1],
                1,
                RELU6,
            ),
            (
                1,
                4,
                9,
                9,
                13,
                [3, 3],
                [1, 1],
                [1, 1],
                [1, 1, 1, 1],
                1,
                RELU,
            ),
            (
                1,
                7,
                11,
                8,
                5,
                [5, 3],
                [1, 2],
                [2, 1],
                [2, 1, 3, 0],
                1,
                NONE,
            ),
            (
                2,
                3,
                12,
                12,
                24,
                [7, 7],
                [2, 2],
                [1, 1],
                [3, 3, 3, 3],
                1,
                RELU,
            ),
            (1, 1, 6, 6, 1, [2, 2], [2, 2], [1, 1], [0; 4], 1, NONE),
            // A deep reduction over a narrow output: the product's tasks take a few columns
            // each, so im2col rows start mid output row (13 columns, and 7 strided).
            (1, 192, 13, 13, 24, [3, 3], [1, 1], [1, 1], [1; 4], 1, RELU),
            (1, 96, 14, 14, 16, [3, 3], [2, 2], [1, 1], [1; 4], 1, NONE),
            (
                1,
                8,
                10,
                10,
                16,
                [3, 3],
                [1, 1],
                [1, 1],
                [1, 1, 1, 1],
                2,
                RELU6,
            ),
        ],
        3,
    );
}

#[test]
fn depthwise_strides_and_kernels() {
    let mut cases = Vec::new();
    for (i, &c) in [1, 3, 4, 8, 13, 24].iter().enumerate() {
        let (k, s) = [([3, 3], 1), ([3, 3], 2), ([5, 5], 1), ([5, 5], 2)][i % 4];
        let p = k[0] / 2;
        let pads = if s == 2 { [p - 1, p - 1, p, p] } else { [p; 4] };
        cases.push((
            1,
            c,
            9 + i,
            14 - i,
            c,
            k,
            [s, s],
            [1, 1],
            pads,
            c,
            [RELU6, NONE, RELU][i % 3],
        ));
    }
    cases.push((2, 5, 7, 7, 5, [3, 3], [1, 1], [2, 2], [2; 4], 5, NONE));
    // Several blocks of 8 and 16 channels plus a remainder, rows wider than the 8-column
    // transposes with a tail, and a 7×7 filter (taps past the 25 held in registers).
    cases.push((1, 41, 12, 30, 41, [3, 3], [1, 1], [1, 1], [1; 4], 41, RELU6));
    cases.push((
        1,
        19,
        11,
        23,
        19,
        [3, 3],
        [2, 2],
        [1, 1],
        [0, 0, 1, 1],
        19,
        NONE,
    ));
    cases.push((1, 17, 9, 20, 17, [7, 7], [1, 1], [1, 1], [3; 4], 17, RELU));
    cases.push((
        1,
        6,
        5,
        40,
        6,
        [3, 1],
        [1, 3],
        [1, 1],
        [1, 0, 1, 0],
        6,
        RELU,
    ));
    run_cases(&cases, 4);
}

#[test]
fn depthwise_wide_multipliers() {
    // Multipliers of 0.5 and more (a fine output scale): the requantisation's wide path.
    let cases = [
        (1, 24, 14, 14, 24, [3, 3], [1, 1], [1, 1], [1; 4], 24, NONE),
        (
            1,
            17,
            9,
            20,
            17,
            [5, 5],
            [2, 2],
            [1, 1],
            [1, 2, 2, 1],
            17,
            RELU6,
        ),
    ];
    let wide = run_cases_scaled(&cases, 11, 300.0);
    assert!(
        wide > 0,
        "no multiplier of 0.5 or more: the case tests nothing new"
    );
}

#[test]
fn quantized_convolution_tracks_f32() {
    // Codes dequantized through the reference stay within a couple of output steps of the
    // F32 convolution of the same (dequantized) input with the F32 weights.
    let mut rng = Rng::new(9);
    let conv = Conv2d {
        weight: rng.tensor(&[16, 8, 3, 3], 0.2),
        bias: Some(rng.tensor(&[16], 0.5)),
        stride: [1, 1],
        dilation: [1, 1],
        pads: [1; 4],
        groups: 1,
        activation: NONE,
    };
    let xq = qparams(&mut rng);
    let x = qtensor(&mut rng, &[1, 8, 6, 6], xq);
    let y = conv2d_f32(&conv, &x.dequantize()).expect("valid");
    let yq = crate::quant::QParams::from_range(
        y.data().iter().copied().fold(0.0, f32::min),
        y.data().iter().copied().fold(0.0, f32::max),
    );
    let qw = qweights(&conv.weight, conv.bias.as_ref(), xq.scale);
    let got = conv2d(&conv, &qw, &x, yq).expect("valid").dequantize();
    let worst = got
        .data()
        .iter()
        .zip(y.data())
        .map(|(a, b)| (a - b).abs() / yq.scale)
        .fold(0f32, f32::max);
    assert!(worst <= 2.0, "worst error {worst} steps");
}
