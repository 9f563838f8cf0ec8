//! The ONNX importer and exporter against models written by the Python `onnx` package
//! (`tools/onnx_test_models.py`, run here) and against onnxruntime (`tools/ort_run.py`).
//!
//! Needs the Python reference environment: `$ULAB_PYTHON`, or `<repo>/.venv/bin/python` made by
//! `python3 -m venv .venv && .venv/bin/pip install -r tools/requirements.txt`. Without it these
//! tests fail with that instruction, unless `ULAB_SKIP_PYTHON=1` (then they pass vacuously
//! and say so).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use ulayer::backend::cpu::CpuBackend;
use ulayer::backend::Precision;
use ulayer::exec::Executor;
use ulayer::onnx::reference::{check_close, OrtInputs, OrtJob, OrtReference};
use ulayer::ops::{Activation, Op};
use ulayer::{Error, Graph, Tensor};

/// Tolerances of every comparison with onnxruntime (issue: 1e-4 relative / 1e-5 absolute).
const REL: f32 = 1e-4;
const ABS: f32 = 1e-5;

/// The reference runner, or `None` when the environment asks to skip Python.
fn ort() -> Option<OrtReference> {
    let r = OrtReference::from_env();
    if r.available() {
        return Some(r);
    }
    if std::env::var_os("ULAB_SKIP_PYTHON").is_some() {
        eprintln!(
            "SKIPPED: no Python reference environment at {} (ULAB_SKIP_PYTHON set)",
            r.python.display()
        );
        return None;
    }
    panic!(
        "no Python reference environment at {}: run `python3 -m venv .venv && .venv/bin/pip install -r tools/requirements.txt` in the repository root, set ULAB_PYTHON, or set ULAB_SKIP_PYTHON=1",
        r.python.display()
    );
}

/// The directory of the Python-made test models, generated once per test run.
fn models() -> Option<&'static Path> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let r = ort()?;
    Some(DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx_test_models");
        let _ = std::fs::remove_dir_all(&dir);
        let script = OrtReference::repo_root().join("tools/onnx_test_models.py");
        let out = Command::new(&r.python)
            .arg(&script)
            .arg(&dir)
            .output()
            .expect("runs python");
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    }))
}

/// Every model the generator wrote: (name, path).
fn all_models() -> Vec<(String, PathBuf)> {
    let Some(dir) = models() else { return vec![] };
    let listing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("models.json")).expect("models.json"))
            .expect("json");
    listing
        .as_array()
        .expect("list")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().expect("name").to_string(),
                dir.join(m["file"].as_str().expect("file")),
            )
        })
        .collect()
}

/// Models the importer must refuse.
const REFUSED: &[&str] = &["unsupported_ops", "pad_reflect", "conv_runtime_weight"];

fn import(name: &str) -> Option<ulayer::Result<Graph>> {
    Some(ulayer::onnx::import_file(
        &models()?.join(format!("{name}.onnx")),
    ))
}

/// Imports a model that must import, or `None` when Python is skipped.
fn load(name: &str) -> Option<Graph> {
    Some(import(name)?.unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn node<'g>(g: &'g Graph, name: &str) -> &'g Op {
    &g.nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no node '{name}' in {:?}",
                g.nodes.iter().map(|n| &n.name).collect::<Vec<_>>()
            )
        })
        .op
}

fn shape_of(g: &Graph, value: &str) -> Vec<usize> {
    g.infer_shapes().expect("valid")[value].clone()
}

// --- What each op imports to ----------------------------------------------------------------

#[test]
fn conv_explicit_and_auto_pads() {
    let Some(g) = load("conv_basic") else { return };
    let Op::Conv2d(c) = node(&g, "conv") else {
        panic!("not a conv")
    };
    assert_eq!(
        (c.pads, c.weight.shape(), c.bias.as_ref().map(Tensor::len)),
        ([1, 1, 1, 1], &[4, 3, 3, 3][..], Some(4))
    );

    // Input 7×8, kernel 4×3, stride 2: totals 3 (H) and 1 (W).
    for (model, pads) in [
        ("conv_same_upper", [1, 0, 2, 1]),
        ("conv_same_lower", [2, 1, 1, 0]),
        ("conv_valid", [0, 0, 0, 0]),
    ] {
        let Some(g) = load(model) else { return };
        let Op::Conv2d(c) = node(&g, "conv") else {
            panic!("not a conv")
        };
        assert_eq!(c.pads, pads, "{model}");
        assert_eq!(
            shape_of(&g, "y"),
            if model == "conv_valid" {
                vec![1, 3, 2, 3]
            } else {
                vec![1, 3, 4, 4]
            },
            "{model}"
        );
    }
}

#[test]
fn conv_groups_dilation_depthwise() {
    let Some(g) = load("conv_group_dilation") else {
        return;
    };
    let Op::Conv2d(c) = node(&g, "grouped") else {
        panic!("not a conv")
    };
    assert_eq!((c.groups, c.dilation, c.pads), (2, [2, 2], [2, 1, 2, 3]));
    let Op::Conv2d(d) = node(&g, "depthwise") else {
        panic!("not a conv")
    };
    assert!(d.is_depthwise());
    assert_eq!(d.stride, [2, 1]);
}

#[test]
fn batchnorm_imports_and_folds() {
    let Some(g) = load("batchnorm") else { return };
    let Op::BatchNorm(bn) = node(&g, "bn") else {
        panic!("not a batchnorm")
    };
    assert_eq!((bn.scale.len(), bn.epsilon), (5, 1e-3));
    let opt = g.optimized().expect("optimizes");
    assert_eq!(opt.nodes.len(), 1, "folded into the conv");
    assert_eq!(opt.nodes[0].output, "y");
}

#[test]
fn relu_and_the_three_clip_forms() {
    let act = |model: &str, node_name: &str| -> Option<Activation> {
        let g = load(model)?;
        match node(&g, node_name) {
            Op::Activation(a) => Some(*a),
            other => panic!("{model}: {other:?}"),
        }
    };
    let Some(relu) = act("relu", "relu") else {
        return;
    };
    assert_eq!(relu, Activation::Relu);
    assert_eq!(
        act("clip_opset10", "clip"),
        Some(Activation::Clip {
            min: -0.5,
            max: 0.75
        })
    );
    assert_eq!(
        act("clip_opset11", "clip"),
        Some(Activation::Clip { min: 0.0, max: 6.0 })
    );
    assert_eq!(
        act("clip_opset13", "clip"),
        Some(Activation::Clip {
            min: f32::NEG_INFINITY,
            max: 0.25
        })
    );
}

#[test]
fn pooling_lrn_global() {
    let Some(g) = load("maxpool_ceil") else {
        return;
    };
    let Op::MaxPool(p) = node(&g, "pool") else {
        panic!("not a max pool")
    };
    assert!(p.ceil_mode);
    assert_eq!(p.pads, [0, 0, 1, 1]);
    let Some(g) = load("avgpool_include_pad") else {
        return;
    };
    let Op::AveragePool(p) = node(&g, "pool") else {
        panic!("not an average pool")
    };
    assert!(p.count_include_pad);
    let Some(g) = load("avgpool_same_upper") else {
        return;
    };
    let Op::AveragePool(p) = node(&g, "pool") else {
        panic!("not an average pool")
    };
    assert_eq!(p.pads, [0, 0, 1, 1]);
    let Some(g) = load("global_avgpool") else {
        return;
    };
    assert_eq!(shape_of(&g, "y"), [1, 3, 1, 1]);
    let Some(g) = load("lrn") else { return };
    let Op::Lrn(l) = node(&g, "lrn") else {
        panic!("not LRN")
    };
    assert_eq!((l.size, l.alpha, l.beta, l.bias), (5, 2e-4, 0.75, 1.0));
}

#[test]
fn gemm_and_matmul_normalise_to_out_by_in_weights() {
    for model in ["gemm_transb", "gemm_plain"] {
        let Some(g) = load(model) else { return };
        let Op::Gemm(fc) = node(&g, "fc") else {
            panic!("{model}: not a Gemm")
        };
        assert_eq!(fc.weight.shape(), [4, 6], "{model}");
        assert_eq!(
            fc.bias.as_ref().map(Tensor::shape),
            Some(&[4][..]),
            "{model}"
        );
    }
    let Some(g) = load("matmul_const") else {
        return;
    };
    let Op::Gemm(fc) = node(&g, "mm") else {
        panic!("constant MatMul is a Gemm")
    };
    assert_eq!((fc.weight.shape(), fc.bias.is_none()), (&[4, 6][..], true));
    let Some(g) = load("matmul_const_bias") else {
        return;
    };
    assert_eq!(
        g.nodes.len(),
        1,
        "MatMul + Add(bias) is one Gemm: {:?}",
        g.nodes
    );
    assert!(matches!(node(&g, "mm"), Op::Gemm(fc) if fc.bias.is_some()));
    assert_eq!(shape_of(&g, "y"), [1, 3, 4]);
    let Some(g) = load("matmul_runtime") else {
        return;
    };
    assert!(matches!(node(&g, "mm"), Op::MatMul));
}

#[test]
fn constants_read_at_run_time_become_constant_nodes() {
    let Some(g) = load("add_const") else { return };
    for (add, konst) in [("add_after", "c"), ("add_before", "c2")] {
        let n = g.nodes.iter().find(|n| n.name == add).expect("add node");
        assert_eq!(n.inputs[1], konst, "run-time operand first");
        assert!(matches!(node(&g, konst), Op::Constant(_)));
    }
    let Some(g) = load("constant_nodes") else {
        return;
    };
    assert!(matches!(node(&g, "reshape"), Op::Reshape { shape } if *shape == [1, -1]));
    assert!(matches!(node(&g, "bias_const"), Op::Constant(t) if t.shape() == [12]));
    assert!(
        g.nodes.iter().all(|n| n.name != "shape_const"),
        "integer shape constants are not nodes"
    );
}

#[test]
fn axes_shapes_softmax_forms() {
    let Some(g) = load("concat_negative_axis") else {
        return;
    };
    assert!(matches!(node(&g, "cat"), Op::Concat { axis: 1 }));
    let Some(g) = load("flatten_reshape") else {
        return;
    };
    assert!(matches!(node(&g, "flat"), Op::Flatten { axis: 2 }));
    assert_eq!(shape_of(&g, "y"), [2, 6, 2]);
    let Some(g) = load("softmax_opset13") else {
        return;
    };
    assert!(matches!(node(&g, "softmax"), Op::Softmax { axis: 3 }));
    // Softmax-11 over dims 1.. of a 4-D tensor: Flatten → Softmax → Reshape.
    let Some(g) = load("softmax_opset11") else {
        return;
    };
    let kinds: Vec<&str> = g.nodes.iter().map(|n| n.op.kind()).collect();
    assert_eq!(kinds, ["Flatten", "Softmax", "Reshape"]);
    assert_eq!(shape_of(&g, "y"), [1, 3, 2, 2]);
}

#[test]
fn dropout_identity_pad_dynamic_batch() {
    let Some(g) = load("dropout_identity") else {
        return;
    };
    let summary: Vec<(&str, &str)> = g
        .nodes
        .iter()
        .map(|n| (n.op.kind(), n.output.as_str()))
        .collect();
    assert_eq!(
        summary,
        [("Relu", "r"), ("Dropout", "y")],
        "identities dropped, output name kept"
    );
    let Some(g) = load("pad_opset11") else { return };
    assert!(matches!(node(&g, "pad"), Op::Pad(p) if p.pads == [1, 2, 3, 0] && p.value == -1.5));
    let Some(g) = load("pad_opset18_axes") else {
        return;
    };
    assert!(matches!(node(&g, "pad"), Op::Pad(p) if p.pads == [1, 1, 2, 0] && p.value == 0.0));
    let Some(g) = load("dynamic_batch") else {
        return;
    };
    assert_eq!(g.inputs[0].shape, [1, 3, 4, 4]);
}

// --- What the importer refuses ----------------------------------------------------------------

#[test]
fn refusals_are_clear_errors() {
    let Some(r) = import("unsupported_ops") else {
        return;
    };
    match r {
        Err(Error::Unsupported(list)) => assert_eq!(
            list,
            [
                "Sigmoid (nodes: sigmoid1)",
                "Transpose (nodes: transpose1, transpose2)"
            ]
        ),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    for (model, node_name, mentions) in [
        ("pad_reflect", "reflect_pad", "reflect"),
        ("conv_runtime_weight", "conv_rt", "'w'"),
    ] {
        match import(model) {
            Some(Err(Error::Node { node, msg })) => {
                assert_eq!(node, node_name, "{model}");
                assert!(msg.contains(mentions), "{model}: {msg}");
            }
            other => panic!("{model}: expected a node error, got {other:?}"),
        }
    }
}

/// Seeded random bytes and every prefix of every valid model are errors, never panics.
#[test]
fn random_and_truncated_bytes_are_errors() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..2000 {
        let len = (next() % 4096) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        assert!(
            ulayer::onnx::import_bytes(&bytes, "random").is_err(),
            "random input {i} accepted"
        );
    }
    let mut checked = 0;
    for (name, path) in all_models() {
        let bytes = std::fs::read(&path).expect("model file");
        // Every prefix of the small models, a stride through the larger ones.
        let step = (bytes.len() / 3000).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            assert!(
                ulayer::onnx::import_bytes(&bytes[..cut], &name).is_err(),
                "{name}: prefix of {cut} bytes accepted"
            );
            checked += 1;
        }
    }
    eprintln!("{checked} truncated models refused");
}

// --- Against onnxruntime ------------------------------------------------------------------------

/// For every model the importer accepts: onnxruntime on the original model and on our export of
/// the imported graph (as imported, and optimized) agree within the tolerances. This checks
/// the import semantics (SAME padding, Gemm normalisation, Softmax-11 expansion, Clip forms...)
/// and the exporter, with no executor of ours involved.
#[test]
fn onnxruntime_agrees_on_reexported_models() {
    let Some(mut r) = ort() else { return };
    r.check = true;
    let models: Vec<(String, PathBuf)> = all_models()
        .into_iter()
        .filter(|(n, _)| !REFUSED.contains(&n.as_str()))
        .collect();
    // One onnxruntime process for the originals, one for our exports.
    let jobs: Vec<OrtJob> = models
        .iter()
        .map(|(_, p)| OrtJob::new(p, OrtInputs::Seed(7)))
        .collect();
    let references = r.run_batch(&jobs).unwrap_or_else(|e| panic!("{e}"));
    let mut graphs = Vec::new();
    for ((name, path), reference) in models.iter().zip(&references) {
        let g = ulayer::onnx::import_file(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let inputs = OrtInputs::Given(reference.inputs.iter().map(|(_, t)| t.clone()).collect());
        graphs.push((
            format!("{name} (imported)"),
            g.clone(),
            inputs.clone(),
            reference,
        ));
        graphs.push((
            format!("{name} (optimized)"),
            g.optimized().expect("optimizes"),
            inputs,
            reference,
        ));
    }
    let runs = r
        .run_graphs(
            &graphs
                .iter()
                .map(|(_, g, i, _)| (g, i.clone()))
                .collect::<Vec<_>>(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    for ((what, _, _, reference), ours) in graphs.iter().zip(runs) {
        assert_eq!(ours.outputs.len(), reference.outputs.len(), "{what}");
        for ((out, want), (_, got)) in reference.outputs.iter().zip(&ours.outputs) {
            check_close(&format!("{what} output {out}"), got, want, REL, ABS)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// Our CPU F32 executor on every imported model (optimized, as the agent runs it) against
/// onnxruntime on the original model, same inputs, within the tolerances.
#[test]
fn cpu_executor_matches_onnxruntime_on_every_model() {
    let Some(r) = ort() else { return };
    let models: Vec<(String, PathBuf)> = all_models()
        .into_iter()
        .filter(|(n, _)| !REFUSED.contains(&n.as_str()))
        .collect();
    let jobs: Vec<OrtJob> = models
        .iter()
        .map(|(_, p)| OrtJob::new(p, OrtInputs::Seed(11)))
        .collect();
    let references = r.run_batch(&jobs).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for ((name, path), reference) in models.iter().zip(&references) {
        let g = ulayer::onnx::import_file(path)
            .and_then(Graph::optimized)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let inputs: Vec<Tensor> = reference.inputs.iter().map(|(_, t)| t.clone()).collect();
        let ours = CpuBackend::new(2)
            .and_then(|b| Executor::new(&g, b, Precision::F32))
            .and_then(|mut exec| exec.run(&inputs))
            .map(|(outputs, _trace)| outputs);
        match ours {
            Err(e) => failures.push(format!("{name}: {e}")),
            Ok(ours) => {
                for ((out, want), got) in reference.outputs.iter().zip(&ours) {
                    if let Err(e) =
                        check_close(&format!("{name} output {out}"), got, want, REL, ABS)
                    {
                        failures.push(e);
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} model(s) differ from onnxruntime:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Deterministic values in [-1, 1).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor(seed: u64, shape: &[usize]) -> Tensor {
    Tensor::from_vec(shape, values(seed, shape.iter().product())).expect("sizes agree")
}

/// An IR graph with what only our side makes (fused activations on convolutions and fully
/// connected layers, a fully connected layer on a 3-D input, a constant node named apart from
/// its value): onnxruntime on its export, through the reference helper, agrees with our
/// executor.
#[test]
fn exported_ir_graph_matches_cpu_executor() {
    let Some(r) = ort() else { return };
    use ulayer::graph::ValueInfo;
    use ulayer::ops::{Conv2d, Gemm, Lrn, Pad};
    let node = |name: &str, op: Op, inputs: &[&str], output: &str| ulayer::Node {
        name: name.into(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        output: output.into(),
    };
    let conv = Conv2d {
        weight: tensor(1, &[6, 3, 3, 3]),
        bias: Some(tensor(2, &[6])),
        stride: [2, 2],
        dilation: [1, 1],
        pads: [1, 0, 1, 1],
        groups: 1,
        activation: Activation::Clip { min: 0.0, max: 6.0 },
    };
    let fc = |seed, out, inp, activation| Gemm {
        weight: tensor(seed, &[out, inp]),
        bias: Some(tensor(seed + 1, &[out])),
        activation,
    };
    let g = Graph {
        name: "ir_only".into(),
        inputs: vec![ValueInfo {
            name: "x".into(),
            shape: vec![1, 3, 8, 8],
        }],
        nodes: vec![
            node("conv", Op::Conv2d(conv), &["x"], "c"),
            node(
                "lrn",
                Op::Lrn(Lrn {
                    size: 3,
                    alpha: 1e-2,
                    beta: 0.75,
                    bias: 1.0,
                }),
                &["c"],
                "l",
            ),
            node(
                "pad",
                Op::Pad(Pad {
                    pads: [0, 1, 1, 0],
                    value: -0.25,
                }),
                &["l"],
                "p",
            ),
            node("gap", Op::GlobalAveragePool, &["p"], "g"),
            node("flat", Op::Flatten { axis: 1 }, &["g"], "f"),
            node("fc", Op::Gemm(fc(3, 8, 6, Activation::Relu)), &["f"], "h"),
            node(
                "reshape",
                Op::Reshape {
                    shape: vec![1, 2, 4],
                },
                &["h"],
                "h3",
            ),
            node(
                "fc3",
                Op::Gemm(fc(
                    5,
                    3,
                    4,
                    Activation::Clip {
                        min: -0.1,
                        max: 0.2,
                    },
                )),
                &["h3"],
                "o",
            ),
            node("offset", Op::Constant(tensor(7, &[3])), &[], "offset_value"),
            node("add", Op::Add, &["o", "offset_value"], "y"),
        ],
        outputs: vec!["y".into(), "h".into()],
        weights: ulayer::WeightsOrigin::Seeded,
    };
    let reference = r.run_graph_seeded(&g, 5).unwrap_or_else(|e| panic!("{e}"));
    let inputs: Vec<Tensor> = reference.inputs.iter().map(|(_, t)| t.clone()).collect();
    let ours = Executor::new(&g, CpuBackend::new(2).expect("cpu backend"), Precision::F32)
        .and_then(|mut e| e.run(&inputs))
        .expect("runs")
        .0;
    assert_eq!(ours.len(), 2);
    for ((out, want), got) in reference.outputs.iter().zip(&ours) {
        check_close(&format!("ir_only output {out}"), got, want, REL, ABS)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // The same through the one-call helper, on the inputs just used.
    let again = r
        .run_graph(&g, &inputs.iter().collect::<Vec<_>>())
        .expect("runs");
    assert_eq!(again[0], reference.outputs[0].1);
}

/// The export of an imported model round-trips: importing it again gives the same graph.
#[test]
fn import_export_import_is_a_fixed_point() {
    for (name, path) in all_models() {
        if REFUSED.contains(&name.as_str()) {
            continue;
        }
        let g = ulayer::onnx::import_file(&path)
            .expect("imports")
            .optimized()
            .expect("optimizes");
        let bytes = ulayer::onnx::export(&g).expect("exports");
        let back = ulayer::onnx::import_bytes(&bytes, &name)
            .expect("re-imports")
            .optimized()
            .expect("optimizes");
        assert_eq!(back, g, "{name}");
    }
}
