//! Classifying images and scoring a model on the bundled labeled photos.
use super::{load_model, resolve_threads, LoadedModel};
use crate::backend::Precision;
use crate::exec::trace::Trace;
use crate::protocol::{ClassScore, Classification};
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::path::Path;

/// Softmax over logits (stable), unless they already look like probabilities.
fn probabilities(logits: &[f32]) -> Vec<f32> {
    let sum: f32 = logits.iter().sum();
    if logits.iter().all(|&p| (0.0..=1.0).contains(&p)) && (sum - 1.0).abs() < 1e-3 {
        return logits.to_vec();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// Indices of the `k` largest values, best first.
pub(crate) fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    idx.truncate(k);
    idx
}

fn image_tensor(model: &LoadedModel, path: &Path) -> Result<Tensor> {
    let img = datasets::load_image(path)?;
    let spec = &model.input;
    let norm = datasets::Normalization {
        mean: spec.mean,
        std: spec.std,
    };
    let (shape, data) =
        datasets::preprocess(&img, spec.resize_shorter, spec.shape[2] as u32, &norm);
    Tensor::from_vec(&shape, data).ok_or_else(|| {
        Error::Other(format!(
            "{}: preprocessing produced a wrong-sized tensor",
            path.display()
        ))
    })
}

fn run_one(exec: &mut impl crate::coop::Runner, input: Tensor) -> Result<(Vec<f32>, Trace)> {
    let (mut outs, trace) = exec.run(&[input])?;
    let out = outs
        .pop()
        .ok_or_else(|| Error::Other("model produced no output".into()))?;
    Ok((probabilities(out.data()), trace))
}

/// Classifies each image; returns the top `top` classes with names when the class list is cached.
pub fn classify(
    model: &str,
    images: &[String],
    top: usize,
    precision: Precision,
    threads: usize,
    data_dir: &Path,
) -> Result<(Vec<Classification>, Vec<Trace>)> {
    classify_with(model, images, top, precision, "cpu", threads, data_dir)
}

/// [`classify`] with a mechanism by name (`cpu`, `gpu`, `layer-to-processor`, `ulayer`,
/// `ulayer+branch`; see [`super::coop::runner`]).
pub fn classify_with(
    model: &str,
    images: &[String],
    top: usize,
    precision: Precision,
    mechanism: &str,
    threads: usize,
    data_dir: &Path,
) -> Result<(Vec<Classification>, Vec<Trace>)> {
    let model = load_model(model, data_dir)?;
    let names = datasets::imagenet_class_names(data_dir).ok();
    let mut exec = super::coop::runner(
        &model,
        mechanism,
        precision,
        resolve_threads(threads),
        data_dir,
        None,
    )?;
    let mut results = Vec::new();
    let mut traces = Vec::new();
    for path in images {
        let input = image_tensor(&model, Path::new(path))?;
        let (probs, trace) = run_one(&mut exec, input)?;
        let top = top_k(&probs, top)
            .into_iter()
            .map(|i| ClassScore {
                index: i,
                name: names
                    .as_ref()
                    .and_then(|n| n.get(i).cloned())
                    .unwrap_or_else(|| format!("class {i}")),
                probability: probs[i],
            })
            .collect();
        results.push(Classification {
            image: path.clone(),
            top,
            latency_ms: (trace.end_ns - trace.start_ns) as f64 / 1e6,
        });
        traces.push(trace);
    }
    Ok((results, traces))
}

/// One photo's outcome in an evaluation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhotoResult {
    pub photo: String,
    pub variant: String,
    pub accepted: Vec<usize>,
    pub top5: Vec<usize>,
    pub top1_correct: bool,
    pub top5_correct: bool,
}

/// Top-1 / top-5 accuracy of a model on the bundled labeled photos.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    pub model: String,
    pub precision: Precision,
    pub images: usize,
    pub top1: usize,
    pub top5: usize,
    pub results: Vec<PhotoResult>,
}

/// Scores `model` on the bundled photos (and their deterministic augmentations if `augment`).
pub fn evaluate(
    model: &str,
    precision: Precision,
    threads: usize,
    augment: bool,
    data_dir: &Path,
) -> Result<Evaluation> {
    evaluate_with(model, precision, "cpu", threads, augment, data_dir)
}

/// [`evaluate`] with a mechanism by name (see [`super::coop::runner`]).
pub fn evaluate_with(
    model: &str,
    precision: Precision,
    mechanism: &str,
    threads: usize,
    augment: bool,
    data_dir: &Path,
) -> Result<Evaluation> {
    let loaded = load_model(model, data_dir)?;
    let photos = datasets::bundled_photos(data_dir)?;
    let mut exec = super::coop::runner(
        &loaded,
        mechanism,
        precision,
        resolve_threads(threads),
        data_dir,
        None,
    )?;
    let spec = loaded.input;
    let norm = datasets::Normalization {
        mean: spec.mean,
        std: spec.std,
    };
    let augs = if augment {
        datasets::augmentations()
    } else {
        Vec::new()
    };
    let mut results = Vec::new();
    for photo in &photos {
        let img = datasets::load_image(&photo.path)?;
        let mut inputs = vec![(
            "centre".to_string(),
            datasets::preprocess(&img, spec.resize_shorter, spec.shape[2] as u32, &norm),
        )];
        for a in &augs {
            inputs.push((
                a.to_string(),
                datasets::preprocess_augmented(&img, a, spec.shape[2] as u32, &norm),
            ));
        }
        for (variant, (shape, data)) in inputs {
            let t = Tensor::from_vec(&shape, data)
                .ok_or_else(|| Error::Other(format!("{}: wrong-sized input", photo.name)))?;
            let (probs, _) = run_one(&mut exec, t)?;
            let top5 = top_k(&probs, 5);
            results.push(PhotoResult {
                photo: photo.name.clone(),
                variant,
                accepted: photo.accepted.clone(),
                top1_correct: top5.first().is_some_and(|c| photo.accepted.contains(c)),
                top5_correct: top5.iter().any(|c| photo.accepted.contains(c)),
                top5,
            });
        }
    }
    Ok(Evaluation {
        model: model.to_string(),
        precision,
        images: results.len(),
        top1: results.iter().filter(|r| r.top1_correct).count(),
        top5: results.iter().filter(|r| r.top5_correct).count(),
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_best_first() {
        assert_eq!(top_k(&[0.1, 0.5, 0.2, 0.9], 2), vec![3, 1]);
    }

    #[test]
    fn probabilities_sum_to_one() {
        let p = probabilities(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
    }
}
