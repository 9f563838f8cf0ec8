//! Every zoo network, exported to ONNX, computes the same logits in onnxruntime (CPU
//! provider, installed from PyPI into .venv by `./lab test`) as in our CPU F32 executor:
//! every element within 1e-5 absolute plus 1e-4 relative to the largest reference logit.
//!
//! Why relative to the largest logit rather than to each element: the seeded networks end in
//! fully connected layers of up to 25,088 inputs whose sums cancel to small logits; two
//! correct float32 engines that sum in different orders then differ by ~1e-5 on a logit of
//! 0.02 (VGG-16, AlexNet), which a per-element relative rule would call a mismatch. The
//! per-element relative error is printed for every network all the same.
//! The networks are compared as built (BatchNorm and activations unfused in the export) so
//! the check also covers our load-time folding.
use ulayer::onnx::reference::{check_close, OrtInputs, OrtReference};

#[test]
fn zoo_networks_match_onnxruntime() {
    let dir = datasets::default_cache_dir();
    datasets::fetch(&dir).expect("fetching the bundled data (run ./lab setup if offline)");
    let ort = OrtReference::from_env();
    assert!(
        ort.available(),
        "onnxruntime reference missing: run ./lab setup (or set ULAB_PYTHON)"
    );
    let mut failures = Vec::new();
    // One model at a time keeps VGG-16's 553 MB export from piling up next to the others.
    for entry in ulayer::zoo::list() {
        let graph = ulayer::zoo::build(entry.name, &dir).expect("zoo model builds");
        let run = ort
            .run_graphs(&[(&graph, OrtInputs::Seed(7))])
            .expect("onnxruntime runs the export")
            .remove(0);
        let input = &run.inputs[0].1;
        let ours =
            ulayer::exec::run_graph_f32(&graph.clone().optimized().expect("optimizes"), input, 2)
                .expect("our executor runs");
        let want = &run.outputs[0].1;
        let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst_rel = ours[0]
            .data()
            .iter()
            .zip(want.data())
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-12))
            .fold(0f32, f32::max);
        let worst_abs = ours[0]
            .data()
            .iter()
            .zip(want.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{}: max |ours − ort| = {worst_abs:.3e} (max |logit| {scale:.3}), worst per-element relative {worst_rel:.3e}", entry.name);
        if let Err(e) = check_close(entry.name, &ours[0], want, 0.0, 1e-5 + 1e-4 * scale) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}
