//! Our QUInt8 execution against onnxruntime running the same quantized network: each model is
//! calibrated and quantized by us, exported as an ONNX QDQ model carrying our scales, zero
//! points and 8-bit weights (`ulayer::onnx::export_qdq`), and run by onnxruntime twice:
//!
//! - with graph optimisations off: onnxruntime runs the QDQ model as written (dequantize,
//!   F32 operator, quantize) — the definition of the quantized network. Our output codes
//!   must be within 1 LSB of its codes on at least 99% of the elements.
//! - with all optimisations (the default): onnxruntime fuses the QDQ pattern into its own
//!   8-bit kernels (QLinearConv, QGemm, QLinearAdd, ...). On x86 without VNNI these multiply
//!   u8 × s8 with `vpmaddubsw`, whose 16-bit pair sums saturate with full-range 8-bit
//!   weights (onnxruntime's documentation recommends `reduce_range` for that reason), so its
//!   codes drift from its own unoptimised ones there: the figures are printed and asserted
//!   only where the CPU has VNNI (no saturation).
//!
//! We requantise with a 31-bit fixed-point multiplier and one rounding; onnxruntime computes
//! in float: the engines disagree where a value falls within a rounding error of a half
//! step, and such 1-LSB differences propagate through later layers. Share equal, share
//! within 1 LSB and the largest difference are printed for every model and mode.
use std::path::Path;
use std::process::Command;
use ulayer::onnx::reference::OrtReference;
use ulayer::quant::{CalibrationMethod, QParams, QTensor};
use ulayer::Tensor;

/// Deterministic inputs in the normalised range of images.
fn inputs(shape: &[usize], n: usize, seed: u64) -> Vec<Tensor> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let len = shape.iter().product();
            let data = (0..len)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
                })
                .collect();
            Tensor::from_vec(shape, data).expect("sized")
        })
        .collect()
}

/// onnxruntime's first output for `x` at an optimisation level (`tools/ort_run.py`).
fn ort_output(ort: &OrtReference, model: &Path, x: &Tensor, level: &str, dir: &Path) -> Tensor {
    let input = dir.join("x.npy");
    ulayer::onnx::npy::write(&input, x).expect("writes the input");
    let out = dir.join(format!("out-{level}"));
    let status = Command::new(&ort.python)
        .arg(&ort.script)
        .arg(model)
        .arg("--out-dir")
        .arg(&out)
        .arg("--input")
        .arg(&input)
        .args(["--opt-level", level, "--threads", "1"])
        .status()
        .expect("python starts");
    assert!(status.success(), "ort_run.py failed on {}", model.display());
    ulayer::onnx::npy::read(&out.join("output_0.npy")).expect("reads the output")
}

/// (elements, equal, within 1 LSB, largest difference) of two outputs in codes of `q`.
fn compare(a: &Tensor, b: &Tensor, q: QParams) -> (usize, usize, usize, i32) {
    let (a, b) = (QTensor::quantize(a, q), QTensor::quantize(b, q));
    let mut r = (0, 0, 0, 0);
    for (&u, &v) in a.data().iter().zip(b.data()) {
        let d = (i32::from(u) - i32::from(v)).abs();
        r.0 += 1;
        r.1 += usize::from(d == 0);
        r.2 += usize::from(d <= 1);
        r.3 = r.3.max(d);
    }
    r
}

fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn quantized_networks_match_onnxruntime_within_one_lsb() {
    let ort = OrtReference::from_env();
    assert!(
        ort.available(),
        "onnxruntime reference missing: run ./lab setup (or set ULAB_PYTHON)"
    );
    let dir = datasets::default_cache_dir();
    let have_data = datasets::fetch(&dir).is_ok();
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for name in ["mobilenet-v1", "squeezenet1.1", "efficientnet-lite0"] {
        // Real EfficientNet-Lite0 weights and photo calibration when the data is there;
        // seeded weights and synthetic calibration otherwise.
        let (model, calibration) = if have_data {
            let m = ulayer::agent::load_model(name, &dir).expect("model loads");
            let cal = ulayer::agent::quant::calibration_inputs(&m, &dir, |i| i % 3 == 0)
                .expect("calibration inputs");
            (m.graph, cal)
        } else {
            let g = ulayer::zoo::build_seeded(name, 3)
                .and_then(ulayer::Graph::optimized)
                .expect("zoo builds");
            let shape = g.inputs[0].shape.clone();
            let cal = inputs(&shape, 4, 11).into_iter().map(|t| vec![t]).collect();
            (g, cal)
        };
        let q = ulayer::quant::quantize(&model, &calibration, CalibrationMethod::Percentile, 2)
            .expect("quantizes");
        let path = tmp.path().join(format!("{name}.qdq.onnx"));
        ulayer::onnx::export_qdq_file(&q, &path).expect("QDQ export");
        let shape = model.inputs[0].shape.clone();
        let mut exec = ulayer::exec::Executor::new_quantized(
            &q,
            ulayer::backend::cpu::CpuBackend::new(2).expect("backend"),
        )
        .expect("prepares");
        let out_q = q.outputs()[0];
        for (level, enforce) in [("disable", true), ("all", vnni())] {
            let mut t = (0, 0, 0, 0);
            for x in inputs(&shape, 3, 5) {
                let ours = exec.run(std::slice::from_ref(&x)).expect("runs").0;
                let theirs = ort_output(&ort, &path, &x, level, tmp.path());
                let r = compare(&ours[0], &theirs, out_q);
                t = (t.0 + r.0, t.1 + r.1, t.2 + r.2, t.3.max(r.3));
            }
            let share = t.2 as f64 / t.0 as f64;
            eprintln!(
                "{name} vs onnxruntime (optimisations {level}): {} output codes, {:.2}% equal, {:.2}% within 1 LSB, largest difference {} LSB{}",
                t.0,
                100.0 * t.1 as f64 / t.0 as f64,
                100.0 * share,
                t.3,
                if enforce { "" } else { " (not asserted: no VNNI here)" }
            );
            if enforce && share < 0.99 {
                failures.push(format!(
                    "{name} ({level}): {:.2}% within 1 LSB",
                    100.0 * share
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
