//! Quantized execution for the agent: the calibration inputs of a model and a CPU executor at
//! any precision (QUInt8 calibrates and quantizes the model first).
use super::LoadedModel;
use crate::backend::cpu::CpuBackend;
use crate::backend::Precision;
use crate::exec::Executor;
use crate::quant::{CalibrationMethod, QuantizedModel};
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::path::Path;

/// Synthetic calibration inputs used when the bundled photos are not fetched.
const SYNTHETIC_SAMPLES: usize = 8;

/// The centre crop of `photo`, preprocessed for `model`.
pub(crate) fn photo_tensor(model: &LoadedModel, photo: &Path) -> Result<Tensor> {
    let img = datasets::load_image(photo)?;
    let spec = &model.input;
    let norm = datasets::Normalization {
        mean: spec.mean,
        std: spec.std,
    };
    let (shape, data) =
        datasets::preprocess(&img, spec.resize_shorter, spec.shape[2] as u32, &norm);
    Tensor::from_vec(&shape, data).ok_or_else(|| {
        Error::Other(format!(
            "{}: preprocessing gave a wrong-sized tensor",
            photo.display()
        ))
    })
}

/// The calibration set of `model`: the centre crops of the bundled photos (of those whose
/// index `i` passes `keep(i)`), or — when the photos are not fetched — deterministic
/// synthetic inputs in the normalised range of images (logged at `warn`: ranges from them
/// suit latency measurements, not accuracy).
pub fn calibration_inputs(
    model: &LoadedModel,
    data_dir: &Path,
    keep: impl Fn(usize) -> bool,
) -> Result<Vec<Vec<Tensor>>> {
    match datasets::bundled_photos(data_dir) {
        Ok(photos) => photos
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(_, p)| Ok(vec![photo_tensor(model, &p.path)?]))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "bundled photos missing: calibrating on synthetic inputs");
            let shape = &model.input.shape;
            Ok((0..SYNTHETIC_SAMPLES)
                .map(|s| {
                    let n: usize = shape.iter().product();
                    let data = (0..n)
                        .map(|i| {
                            let v = ((i.wrapping_mul(2654435761) ^ (s * 40503)) % 4096) as f32;
                            v / 2048.0 * 2.2 - 2.2
                        })
                        .collect();
                    vec![Tensor::from_vec(shape, data).expect("sized from the shape")]
                })
                .collect())
        }
    }
}

/// Calibrates `model` on its calibration inputs (photos `i` with `keep(i)`) with `method`
/// and quantizes it.
pub fn quantize_model(
    model: &LoadedModel,
    method: CalibrationMethod,
    threads: usize,
    data_dir: &Path,
    keep: impl Fn(usize) -> bool,
) -> Result<QuantizedModel> {
    let samples = calibration_inputs(model, data_dir, keep)?;
    let m = crate::quant::quantize(&model.graph, &samples, method, threads)?;
    tracing::info!(model = %model.name, method = %method, samples = samples.len(), "quantized");
    Ok(m)
}

/// A CPU executor of `model` at `precision` on `threads` threads; QUInt8 quantizes the model
/// first ([`quantize_model`] with the default calibration, on every bundled photo).
pub fn cpu_executor(
    model: &LoadedModel,
    precision: Precision,
    threads: usize,
    data_dir: &Path,
) -> Result<Executor<CpuBackend>> {
    let backend = CpuBackend::new(threads)?;
    match precision {
        Precision::Quint8 => {
            let m = quantize_model(
                model,
                CalibrationMethod::default(),
                threads,
                data_dir,
                |_| true,
            )?;
            Executor::new_quantized(&m, backend)
        }
        p => Executor::new(&model.graph, backend, p),
    }
}
