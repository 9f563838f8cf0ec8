//! The accuracy cost of quantization: F32 and QUInt8 scored on the bundled labeled photos
//! (and their deterministic augmentations), with the agreement of each QUInt8 model with F32.
//!
//! - **top-1 / top-5**: the model's first class / one of its five first classes is among the
//!   photo's accepted labels.
//! - **top-1 agreement**: QUInt8's first class is F32's first class.
//! - **top-5 agreement**: F32's first class is among QUInt8's five first classes (top-5
//!   accuracy with F32's answer as the label).
//! - **top-5 overlap**: mean share of F32's five first classes that QUInt8's five contain.
//!
//! Calibration is held out: with `folds = k`, the photos are split into `k` folds by index,
//! and every view of a photo is scored by a model calibrated on the centre crops of the
//! photos of the *other* folds (`k = 1` calibrates on every photo, the views scored
//! included).
use super::classify::top_k;
use super::{load_model, resolve_threads, LoadedModel};
use crate::backend::cpu::CpuBackend;
use crate::backend::Precision;
use crate::exec::Executor;
use crate::quant::CalibrationMethod;
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::path::Path;

/// One precision's scores.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AccuracyRow {
    /// `f32`, or `quint8 (<calibration>)`.
    pub label: String,
    pub precision: Precision,
    /// The calibration of a QUInt8 row.
    pub calibration: Option<CalibrationMethod>,
    pub images: usize,
    pub top1: usize,
    pub top5: usize,
    pub top1_agreement: usize,
    pub top5_agreement: usize,
    /// Mean `|top5 ∩ top5_f32| / 5`.
    pub top5_overlap: f64,
}

impl AccuracyRow {
    fn pct(&self, n: usize) -> f64 {
        100.0 * n as f64 / self.images.max(1) as f64
    }
    /// Top-1 accuracy, %.
    pub fn top1_pct(&self) -> f64 {
        self.pct(self.top1)
    }
    /// Top-5 accuracy, %.
    pub fn top5_pct(&self) -> f64 {
        self.pct(self.top5)
    }
    /// Top-1 agreement with F32, %.
    pub fn top1_agreement_pct(&self) -> f64 {
        self.pct(self.top1_agreement)
    }
    /// Top-5 agreement with F32, %.
    pub fn top5_agreement_pct(&self) -> f64 {
        self.pct(self.top5_agreement)
    }
}

/// F32 and QUInt8 accuracy of one model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AccuracyReport {
    pub model: String,
    pub photos: usize,
    /// Views per photo (1, or 12 with the augmentations).
    pub views: usize,
    pub folds: usize,
    pub threads: usize,
    pub rows: Vec<AccuracyRow>,
}

impl AccuracyReport {
    /// The report as a Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "{} · {} images ({} photos × {} views) · calibration on the centre crops of the photos, {}\n\n",
            self.model,
            self.photos * self.views,
            self.photos,
            self.views,
            if self.folds > 1 {
                format!("held out ({}-fold by photo)", self.folds)
            } else {
                "all photos (not held out)".to_string()
            }
        );
        s += "| precision | top-1 | top-5 | top-1 agreement with F32 | top-5 agreement with F32 | top-5 overlap |\n";
        s += "| --- | --- | --- | --- | --- | --- |\n";
        for r in &self.rows {
            s += &format!(
                "| {} | {}/{} ({:.1}%) | {}/{} ({:.1}%) | {}/{} ({:.1}%) | {}/{} ({:.1}%) | {:.1}% |\n",
                r.label,
                r.top1,
                r.images,
                r.top1_pct(),
                r.top5,
                r.images,
                r.top5_pct(),
                r.top1_agreement,
                r.images,
                r.top1_agreement_pct(),
                r.top5_agreement,
                r.images,
                r.top5_agreement_pct(),
                100.0 * r.top5_overlap
            );
        }
        s
    }
}

/// One preprocessed view: `(photo index, accepted labels, tensor)`.
type View = (usize, Vec<usize>, Tensor);

/// The preprocessed views of every bundled photo.
fn views(model: &LoadedModel, data_dir: &Path, augment: bool) -> Result<(usize, Vec<View>)> {
    let photos = datasets::bundled_photos(data_dir)?;
    let spec = &model.input;
    let norm = datasets::Normalization {
        mean: spec.mean,
        std: spec.std,
    };
    let augs = if augment {
        datasets::augmentations()
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for (i, p) in photos.iter().enumerate() {
        let img = datasets::load_image(&p.path)?;
        let mut all = vec![datasets::preprocess(
            &img,
            spec.resize_shorter,
            spec.shape[2] as u32,
            &norm,
        )];
        for a in &augs {
            all.push(datasets::preprocess_augmented(
                &img,
                a,
                spec.shape[2] as u32,
                &norm,
            ));
        }
        for (shape, data) in all {
            let t = Tensor::from_vec(&shape, data)
                .ok_or_else(|| Error::Other(format!("{}: wrong-sized input", p.name)))?;
            out.push((i, p.accepted.clone(), t));
        }
    }
    Ok((photos.len(), out))
}

/// The five first classes of each input.
fn top5s(exec: &mut Executor<CpuBackend>, inputs: &[&Tensor]) -> Result<Vec<Vec<usize>>> {
    inputs
        .iter()
        .map(|t| {
            let (outs, _) = exec.run(std::slice::from_ref(*t))?;
            let o = outs
                .first()
                .ok_or_else(|| Error::Other("model produced no output".into()))?;
            Ok(top_k(o.data(), 5))
        })
        .collect()
}

/// Scores `model` at F32 and at QUInt8 with each calibration of `methods` on the bundled
/// photos (with the augmentations if `augment`), calibration held out over `folds` folds.
pub fn accuracy(
    model: &str,
    methods: &[CalibrationMethod],
    threads: usize,
    augment: bool,
    folds: usize,
    data_dir: &Path,
) -> Result<AccuracyReport> {
    let loaded = load_model(model, data_dir)?;
    let threads = resolve_threads(threads);
    let folds = folds.max(1);
    let (photos, views) = views(&loaded, data_dir, augment)?;
    if folds > photos {
        return Err(Error::Other(format!("{folds} folds for {photos} photos")));
    }
    let inputs: Vec<&Tensor> = views.iter().map(|v| &v.2).collect();
    let mut f32_exec = Executor::new(&loaded.graph, CpuBackend::new(threads)?, Precision::F32)?;
    let reference = top5s(&mut f32_exec, &inputs)?;
    let score = |label: String, calibration, precision, got: &[Vec<usize>]| {
        let mut row = AccuracyRow {
            label,
            precision,
            calibration,
            images: got.len(),
            top1: 0,
            top5: 0,
            top1_agreement: 0,
            top5_agreement: 0,
            top5_overlap: 0.0,
        };
        for ((v, t5), r5) in views.iter().zip(got).zip(&reference) {
            let accepted = &v.1;
            row.top1 += usize::from(t5.first().is_some_and(|c| accepted.contains(c)));
            row.top5 += usize::from(t5.iter().any(|c| accepted.contains(c)));
            row.top1_agreement += usize::from(t5.first() == r5.first());
            row.top5_agreement += usize::from(r5.first().is_some_and(|c| t5.contains(c)));
            row.top5_overlap += r5.iter().filter(|c| t5.contains(c)).count() as f64 / 5.0;
        }
        row.top5_overlap /= got.len().max(1) as f64;
        row
    };
    let mut rows = vec![score("f32".into(), None, Precision::F32, &reference)];
    for &method in methods {
        let mut got = vec![Vec::new(); views.len()];
        for fold in 0..folds {
            let held = |i: usize| i % folds == fold;
            let m = super::quant::quantize_model(&loaded, method, threads, data_dir, |i| {
                folds == 1 || !held(i)
            })?;
            let mut exec = Executor::new_quantized(&m, CpuBackend::new(threads)?)?;
            let idx: Vec<usize> = (0..views.len()).filter(|&i| held(views[i].0)).collect();
            let ins: Vec<&Tensor> = idx.iter().map(|&i| inputs[i]).collect();
            for (i, t5) in idx.into_iter().zip(top5s(&mut exec, &ins)?) {
                got[i] = t5;
            }
        }
        rows.push(score(
            format!("quint8 ({method})"),
            Some(method),
            Precision::Quint8,
            &got,
        ));
    }
    Ok(AccuracyReport {
        model: model.to_string(),
        photos,
        views: views.len() / photos.max(1),
        folds,
        threads,
        rows,
    })
}
