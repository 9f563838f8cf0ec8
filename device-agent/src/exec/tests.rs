//! The executor on a tiny network: against the ops' references, sliced execution (also
//! with two threads writing one shared tensor), buffer reuse, and input checks.
use super::*;
use crate::backend::cpu::testutil::{assert_close, ulayer_partition, Rng};
use crate::backend::cpu::CpuBackend;
use crate::graph::{Node, ValueInfo, WeightsOrigin};
use crate::ops::{self, Activation, Conv2d, Gemm, Op, Pool};

fn node(name: &str, op: Op, inputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        output: name.into(),
    }
}

fn conv(rng: &mut Rng, cin: usize, cout: usize, k: usize, stride: usize, groups: usize) -> Conv2d {
    Conv2d {
        weight: rng.tensor(
            &[cout, cin / groups, k, k],
            1.0 / ((cin / groups * k * k) as f32).sqrt(),
        ),
        bias: Some(rng.tensor(&[cout], 0.2)),
        stride: [stride; 2],
        dilation: [1, 1],
        pads: [k / 2; 4],
        groups,
        activation: Activation::Clip { min: 0.0, max: 6.0 },
    }
}

/// conv 3×3/2 → depthwise → pointwise → max pool → (branch 1×1) concat → add → GAP → fc → softmax.
fn tiny(rng: &mut Rng) -> Graph {
    let pool = Pool {
        kernel: [3, 3],
        stride: [2, 2],
        pads: [0, 0, 1, 1],
        ceil_mode: false,
        count_include_pad: false,
    };
    let nodes = vec![
        node("c1", Op::Conv2d(conv(rng, 3, 8, 3, 2, 1)), &["x"]),
        node("dw", Op::Conv2d(conv(rng, 8, 8, 3, 1, 8)), &["c1"]),
        node("pw", Op::Conv2d(conv(rng, 8, 13, 1, 1, 1)), &["dw"]),
        node("mp", Op::MaxPool(pool), &["pw"]),
        node("b1", Op::Conv2d(conv(rng, 13, 3, 1, 1, 1)), &["mp"]),
        node("cat", Op::Concat { axis: 1 }, &["mp", "b1"]),
        node("sum", Op::Add, &["cat", "cat"]),
        node("gap", Op::GlobalAveragePool, &["sum"]),
        node("flat", Op::Flatten { axis: 1 }, &["gap"]),
        node(
            "fc",
            Op::Gemm(Gemm {
                weight: rng.tensor(&[10, 16], 0.25),
                bias: Some(rng.tensor(&[10], 0.1)),
                activation: Activation::None,
            }),
            &["flat"],
        ),
        node("prob", Op::Softmax { axis: 1 }, &["fc"]),
    ];
    Graph {
        name: "tiny".into(),
        inputs: vec![ValueInfo {
            name: "x".into(),
            shape: vec![1, 3, 17, 15],
        }],
        nodes,
        outputs: vec!["prob".into(), "fc".into()],
        weights: WeightsOrigin::Seeded,
    }
}

/// The same network through the reference kernels.
fn reference(g: &Graph, x: &Tensor) -> HashMap<String, Tensor> {
    let mut v: HashMap<String, Tensor> = HashMap::new();
    v.insert("x".into(), x.clone());
    for n in &g.nodes {
        let i = |k: usize| &v[&n.inputs[k]];
        let y = match &n.op {
            Op::Conv2d(c) => ops::conv2d::reference::conv2d(c, i(0)).expect("conv"),
            Op::MaxPool(p) => ops::pool::reference::pool(p, true, i(0)).expect("pool"),
            Op::Concat { axis } => {
                ops::concat::reference::concat(*axis, &[i(0), i(1)]).expect("concat")
            }
            Op::Add => ops::add::reference::add(i(0), i(1)).expect("add"),
            Op::GlobalAveragePool => ops::pool::reference::global_average(i(0)),
            Op::Flatten { .. } => i(0).clone().reshaped(&[1, 16]).expect("flatten"),
            Op::Gemm(gm) => ops::gemm::reference::gemm(gm, i(0)).expect("gemm"),
            Op::Softmax { axis } => ops::softmax::reference::softmax(*axis, i(0)),
            op => panic!("tiny graph has no {}", op.kind()),
        };
        v.insert(n.output.clone(), y);
    }
    v
}

#[test]
fn executor_matches_reference_and_traces_every_layer() {
    let mut rng = Rng::new(1);
    let g = tiny(&mut rng);
    let x = rng.tensor(&[1, 3, 17, 15], 1.0);
    let want = reference(&g, &x);
    for threads in [1, 2] {
        let mut exec = Executor::new(
            &g,
            CpuBackend::new(threads).expect("backend"),
            Precision::F32,
        )
        .expect("prepare");
        for _ in 0..2 {
            let (outs, trace) = exec.run(std::slice::from_ref(&x)).expect("run");
            assert_close(&outs[0], &want["prob"], 1.0, "prob");
            assert_close(&outs[1], &want["fc"], 1.0, "fc");
            assert_eq!(trace.layers.len(), g.nodes.len());
            assert!(
                trace.start_ns <= trace.layers[0].start_ns
                    && trace.layers.last().expect("layers").end_ns <= trace.end_ns
            );
            for (span, n) in trace.layers.iter().zip(&g.nodes) {
                assert_eq!(span.node, n.name);
                assert_eq!(span.kind, n.op.kind());
                assert!(span.start_ns <= span.end_ns);
                assert_eq!(span.processor, crate::backend::Processor::Cpu);
                assert_eq!(span.precision, Precision::F32);
            }
            for w in trace.layers.windows(2) {
                assert!(w[0].end_ns <= w[1].start_ns, "layers run in order");
            }
        }
    }
    let outs = run_graph_f32(&g, &x, 2).expect("run_graph_f32");
    assert_close(&outs[0], &want["prob"], 1.0, "run_graph_f32");
}

#[test]
fn union_of_slices_equals_whole_run() {
    let mut rng = Rng::new(2);
    let g = tiny(&mut rng);
    let x = rng.tensor(&[1, 3, 17, 15], 1.0);
    let sliceable: Vec<bool> = g.nodes.iter().map(|n| n.op.sliceable()).collect();
    let mut exec =
        Executor::new(&g, CpuBackend::new(2).expect("backend"), Precision::F32).expect("prepare");
    let (whole, _) = exec.run(std::slice::from_ref(&x)).expect("run");
    let (sliced, trace) = exec
        .run_sliced(std::slice::from_ref(&x), |i, shape| {
            if sliceable[i] {
                ulayer_partition(shape)
            } else {
                vec![Slice::whole(shape)]
            }
        })
        .expect("run sliced");
    assert_eq!(
        whole, sliced,
        "a layer computed as 5/8 of its channels + two row halves equals the whole layer"
    );
    let parts =
        sliceable.iter().filter(|s| **s).count() * 3 + sliceable.iter().filter(|s| !**s).count();
    assert_eq!(trace.layers.len(), parts, "one span per slice");
}

#[test]
fn two_workers_write_one_shared_tensor() {
    // What the cooperative executor does: two processors compute disjoint slices of one layer
    // concurrently into the same output tensor.
    let mut rng = Rng::new(3);
    let op = Op::Conv2d(conv(&mut rng, 16, 24, 3, 1, 1));
    let x = rng.tensor(&[1, 16, 19, 21], 1.0);
    let b = CpuBackend::new(1).expect("backend");
    let n = node("c", op, &["x"]);
    let shape = n.op.output_shape("c", &[x.shape()]).expect("shape");
    let p = b
        .prepare(&n, &[x.shape()], &shape, Precision::F32)
        .expect("prepare");
    let mut whole = Tensor::zeros(&shape);
    b.run(&p, &[&x], &whole.shared(), &Slice::whole(&shape))
        .expect("whole");
    let mut split = Tensor::zeros(&shape);
    {
        let shared = split.shared();
        let parts = ulayer_partition(&shape);
        std::thread::scope(|s| {
            for part in &parts {
                let (b, p, x, shared) = (&b, &p, &x, &shared);
                s.spawn(move || b.run(p, &[x], shared, part).expect("slice"));
            }
        });
    }
    assert_eq!(whole, split);
}

#[test]
fn wrong_input_shape_is_an_error() {
    let mut rng = Rng::new(4);
    let g = tiny(&mut rng);
    let mut exec =
        Executor::new(&g, CpuBackend::new(1).expect("backend"), Precision::F32).expect("prepare");
    match exec.run(&[Tensor::zeros(&[1, 3, 16, 15])]) {
        Err(Error::InputShape {
            name,
            expected,
            got,
        }) => {
            assert_eq!(name, "x");
            assert_eq!(expected, vec![1, 3, 17, 15]);
            assert_eq!(got, vec![1, 3, 16, 15]);
        }
        other => panic!("expected an input-shape error, got {other:?}"),
    }
    assert!(exec.run(&[]).is_err(), "missing input");
}

#[test]
fn bad_plans_and_precisions_are_errors() {
    let mut rng = Rng::new(5);
    let g = tiny(&mut rng);
    let x = rng.tensor(&[1, 3, 17, 15], 1.0);
    let mut exec =
        Executor::new(&g, CpuBackend::new(1).expect("backend"), Precision::F32).expect("prepare");
    let overlap = exec.run_sliced(std::slice::from_ref(&x), |_, s| {
        vec![Slice::whole(s), Slice::whole(s)]
    });
    assert!(overlap
        .expect_err("overlap")
        .to_string()
        .contains("overlap"));
    let gap = exec.run_sliced(std::slice::from_ref(&x), |_, s| {
        let (c, h) = crate::tensor::channels_rows(s);
        vec![Slice {
            channels: 0..c,
            rows: 0..h.saturating_sub(1),
        }]
    });
    assert!(gap.is_err());
    let err = Executor::new(&g, CpuBackend::new(1).expect("backend"), Precision::Quint8)
        .expect_err("quint8 not yet");
    assert!(err.to_string().contains("c1"), "names the node: {err}");
}

/// A chain of convolutions `l0 → l1 → …` on input `x` of `shape`; the last one is the output.
fn chain(name: &str, shape: &[usize], convs: Vec<Conv2d>) -> Graph {
    let n = convs.len();
    let nodes = convs
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let input = if i == 0 {
                "x".to_string()
            } else {
                format!("l{}", i - 1)
            };
            node(&format!("l{i}"), Op::Conv2d(c), &[&input])
        })
        .collect();
    Graph {
        name: name.into(),
        inputs: vec![ValueInfo {
            name: "x".into(),
            shape: shape.to_vec(),
        }],
        nodes,
        outputs: vec![format!("l{}", n - 1)],
        weights: WeightsOrigin::Seeded,
    }
}

#[test]
fn buffers_are_reused_along_a_chain() {
    let mut rng = Rng::new(6);
    let convs = (0..8)
        .map(|i| conv(&mut rng, 8, 8, 3, 1, if i % 2 == 0 { 8 } else { 1 }))
        .collect();
    let g = chain("chain", &[1, 8, 9, 9], convs);
    let exec =
        Executor::new(&g, CpuBackend::new(1).expect("backend"), Precision::F32).expect("prepare");
    assert_eq!(exec.buffers(), 2, "a chain ping-pongs between two buffers");
}

#[test]
fn buffers_are_reused_across_sizes() {
    // Widths that never repeat back to back: a same-size-only rule needs a buffer per width.
    let widths = [8, 16, 4, 12, 6, 20, 5, 9];
    let mut rng = Rng::new(7);
    let convs = widths
        .windows(2)
        .map(|w| conv(&mut rng, w[0], w[1], 1, 1, 1))
        .collect();
    let g = chain("widths", &[1, 8, 5, 7], convs);
    let last = g.outputs[0].clone();
    let mut exec =
        Executor::new(&g, CpuBackend::new(1).expect("backend"), Precision::F32).expect("prepare");
    assert_eq!(
        exec.buffers(),
        2,
        "two buffers, each as large as its largest value"
    );
    // Two inputs, twice: every run after the first writes into buffers that still hold
    // another run's (larger) values.
    let xs = [
        rng.tensor(&[1, 8, 5, 7], 1.0),
        rng.tensor(&[1, 8, 5, 7], 1.0),
    ];
    for x in xs.iter().chain(&xs) {
        let want = reference(&g, x);
        let (outs, _) = exec.run(std::slice::from_ref(x)).expect("run");
        assert_close(&outs[0], &want[&last], 1.0, "last layer");
    }
}
