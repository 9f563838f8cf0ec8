//! Latency predictors fitted from a device profile, and how well they predict held-out
//! measurements.
//!
//! Held-out split: a measurement is held out when its layer's key hashes to 0 mod 4, so every
//! slice of a held-out layer is held out together (the predictor never saw that layer's
//! shape); the predictors are fitted on the rest and scored on the held-out part: the share
//! of predictions within ±10 % and ±20 % of the measured time (the figure CoDL and nn-Meter
//! report).
use super::profile::{LayerDesc, Measurement, Profile};
use crate::backend::{Precision, Processor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod boosted;
pub mod kernel;
pub mod paper;

/// A latency predictor: time in ns of `c` output channels × `h` output rows of a layer.
pub trait Predictor: Send + Sync + std::fmt::Debug {
    /// Predicted time, ns; `None` when the profile has nothing for this processor and
    /// precision.
    fn predict(
        &self,
        d: &LayerDesc,
        processor: Processor,
        precision: Precision,
        c: usize,
        h: usize,
    ) -> Option<f64>;
    /// The predictor's name.
    fn name(&self) -> &'static str;
}

/// The CPU engine's own estimate of a slice of a product-type layer (a convolution other than
/// depthwise, or fully connected), in multiply-adds: the simulated makespan of the task grid
/// the matrix-product engine of `precision` would plan for it on `threads` workers of this
/// machine's instruction set (as the profile is of this machine). 0 for other layers and for
/// the GPU. It carries the steps of the engine's grid (a slice one task too big for the
/// workers costs a whole round more) and, for 8-bit products, the packing of every column
/// whatever the slice's channels.
pub(crate) fn engine_span(
    d: &LayerDesc,
    processor: Processor,
    precision: Precision,
    (c, h): (usize, usize),
    threads: usize,
) -> f64 {
    use crate::backend::cpu::{gemm, gemm_q8, isa::Isa, simd_q8::QIsa};
    if processor != Processor::Cpu || c == 0 || h == 0 {
        return 0.0;
    }
    // (layer m × n, output contiguous along m, this slice's m × n, images in turn)
    let (layer, m_contig, slice, images) = if d.variant == "gemm" {
        let rows = d.outer * d.inner;
        ((d.c, rows * d.h), true, (c, rows * h), 1)
    } else if d.variant == "pw" || d.variant.starts_with("conv") {
        ((d.c, d.h * d.inner), false, (c, h * d.inner), d.outer)
    } else {
        return 0.0;
    };
    let isa = Isa::detect();
    let span = match precision {
        Precision::Quint8 => {
            // Convolutions other than 1×1 gather their columns (im2col).
            let gathered = d.variant.starts_with("conv");
            gemm_q8::predicted_span(
                QIsa::for_isa(isa),
                layer,
                m_contig,
                d.k_red,
                slice,
                gathered,
                threads,
            )
        }
        Precision::F32 | Precision::F16 => {
            gemm::predicted_span(isa, layer, m_contig, d.k_red, slice, threads)
        }
    };
    span as f64 * images as f64
}

/// Which predictor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    /// The paper's: linear in FLOPs, input size, (kernel/stride)²·output channels.
    Paper,
    /// Ours: kernel-aware (tiles, parallel steps, memory traffic).
    #[default]
    Kernel,
    /// Gradient-boosted trees on the logarithm of the time over kernel-level features (as
    /// nn-Meter's per-kernel ensembles).
    Boosted,
}

impl Which {
    /// The fitted predictor's [`Predictor::name`].
    pub fn name(self) -> &'static str {
        match self {
            Which::Paper => "paper",
            Which::Kernel => "kernel-aware",
            Which::Boosted => "boosted",
        }
    }
}

/// Fits predictor `which` on `ms`.
pub fn fit(which: Which, ms: &[Measurement], cpu_threads: usize) -> Box<dyn Predictor> {
    match which {
        Which::Paper => Box::new(paper::PaperPredictor::fit(ms)),
        Which::Kernel => Box::new(kernel::KernelPredictor::fit(ms, cpu_threads)),
        Which::Boosted => Box::new(boosted::BoostedPredictor::fit(ms, cpu_threads)),
    }
}

/// True when `m` belongs to the held-out set.
pub fn held_out(m: &Measurement) -> bool {
    let h = m
        .layer
        .key()
        .bytes()
        .fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
        });
    h % 4 == 0
}

/// A predictor's accuracy on held-out measurements (a protocol type: jobs report it).
pub use crate::protocol::PredictorAccuracy as Accuracy;

/// How finely held-out scores are broken down, beyond the overall row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Breakdown {
    /// Per (processor, precision).
    #[default]
    Target,
    /// Per (processor, precision) and per (processor, precision, kernel variant): which
    /// kernels a predictor misses.
    Variant,
}

/// Fits every predictor on the training part of `profile` and scores them on the held-out
/// part: overall and per (processor, precision).
pub fn evaluate(profile: &Profile) -> Vec<Accuracy> {
    evaluate_by(profile, Breakdown::Target)
}

/// Every predictor fitted on `profile`'s training part, and its held-out part.
fn fit_held_out(profile: &Profile) -> ([Box<dyn Predictor>; 3], Vec<Measurement>) {
    let (test, train): (Vec<Measurement>, Vec<Measurement>) =
        profile.measurements.iter().cloned().partition(held_out);
    let threads = profile.cpu_threads;
    let kernel = kernel::KernelPredictor::fit(&train, threads);
    // The boosted trees take the kernel-aware model fitted here instead of fitting it again.
    let fitted: [Box<dyn Predictor>; 3] = [
        Box::new(paper::PaperPredictor::fit(&train)),
        Box::new(kernel.clone()),
        Box::new(boosted::BoostedPredictor::fit_on(&train, threads, kernel)),
    ];
    (fitted, test)
}

/// One held-out measurement and what each predictor made of it (a line of
/// `profile --evaluate --residuals`).
#[derive(Clone, Debug, Serialize)]
pub struct Residual {
    /// The measured layer (`model/node`, or `grid/...`).
    pub source: String,
    pub processor: Processor,
    pub precision: Precision,
    pub variant: String,
    /// The slice: output channels × output rows.
    pub c: usize,
    pub h: usize,
    /// Measured time, ns.
    pub measured_ns: f64,
    /// Each predictor's time, ns, by name (`null` where it has no model).
    pub predicted_ns: BTreeMap<&'static str, Option<f64>>,
}

/// Every held-out measurement of `profile` with each predictor's prediction, fitted as
/// [`evaluate`] fits them: the detail behind its shares.
pub fn residuals(profile: &Profile) -> Vec<Residual> {
    evaluate_with_residuals(profile, Breakdown::Target).1
}

/// [`evaluate`], broken down as `by` says.
pub fn evaluate_by(profile: &Profile, by: Breakdown) -> Vec<Accuracy> {
    evaluate_with_residuals(profile, by).0
}

/// [`evaluate_by`] and [`residuals`] from one fit of the predictors (fitting is the slow
/// part: seconds on a full profile).
pub fn evaluate_with_residuals(profile: &Profile, by: Breakdown) -> (Vec<Accuracy>, Vec<Residual>) {
    let (fitted, test) = fit_held_out(profile);
    let mut scores = Vec::new();
    for p in &fitted {
        scores.extend(score_all(p.name(), &test, by, |m| {
            p.predict(&m.layer, m.processor, m.precision, m.c, m.h)
        }));
    }
    let rows = test
        .into_iter()
        .map(|m| Residual {
            predicted_ns: fitted
                .iter()
                .map(|p| {
                    (
                        p.name(),
                        p.predict(&m.layer, m.processor, m.precision, m.c, m.h),
                    )
                })
                .collect(),
            source: m.source,
            processor: m.processor,
            precision: m.precision,
            variant: m.layer.variant,
            c: m.c,
            h: m.h,
            measured_ns: m.ns,
        })
        .collect();
    (scores, rows)
}

/// The measurements' own repeatability on this device: `second`, another profile of the same
/// device, "predicts" each held-out measurement of `first` by its own measurement of the same
/// slice, scored as the predictors are (a slice missing from `second` is a miss). Two
/// measurements carry the noise of both, a predictor's error only that of the one it is
/// scored against, so a predictor can score somewhat above this row; but where measurements
/// repeat within ±10% only p% of the time, no predictor can be shown within ±10% on nearly
/// all of them.
pub fn repeatability(first: &Profile, second: &Profile) -> Vec<Accuracy> {
    repeatability_by(first, second, Breakdown::Target)
}

/// [`repeatability`], broken down as `by` says.
pub fn repeatability_by(first: &Profile, second: &Profile, by: Breakdown) -> Vec<Accuracy> {
    use std::collections::HashMap;
    let again: HashMap<(&str, Processor, Precision, usize, usize), f64> = second
        .measurements
        .iter()
        .map(|m| {
            (
                (m.source.as_str(), m.processor, m.precision, m.c, m.h),
                m.ns,
            )
        })
        .collect();
    let test: Vec<Measurement> = first
        .measurements
        .iter()
        .filter(|m| held_out(m))
        .cloned()
        .collect();
    score_all("repeat", &test, by, |m| {
        again
            .get(&(m.source.as_str(), m.processor, m.precision, m.c, m.h))
            .copied()
    })
}

/// Scores `predict` on `test`: overall, then per group of `by`, groups in name order.
fn score_all(
    name: &str,
    test: &[Measurement],
    by: Breakdown,
    predict: impl Fn(&Measurement) -> Option<f64>,
) -> Vec<Accuracy> {
    let target = |m: &Measurement| format!("{:?} {}", m.processor, m.precision).to_lowercase();
    let mut groups: Vec<(String, bool)> = test.iter().map(|m| (target(m), false)).collect();
    if by == Breakdown::Variant {
        groups.extend(
            test.iter()
                .map(|m| (format!("{} {}", target(m), m.layer.variant), true)),
        );
    }
    groups.sort();
    groups.dedup();
    let score = |target: String, ms: Vec<&Measurement>| {
        let mut errs: Vec<f64> = ms
            .iter()
            .map(|m| predict(m).map_or(f64::INFINITY, |t| (t - m.ns).abs() / m.ns.max(1.0)))
            .collect();
        errs.sort_by(f64::total_cmp);
        let n = errs.len().max(1) as f64;
        Accuracy {
            predictor: name.to_string(),
            target,
            measurements: errs.len(),
            within_10: errs.iter().filter(|&&e| e <= 0.10).count() as f64 / n,
            within_20: errs.iter().filter(|&&e| e <= 0.20).count() as f64 / n,
            median_error: errs.get(errs.len() / 2).copied().unwrap_or(0.0),
        }
    };
    let mut out = vec![score("all".into(), test.iter().collect())];
    for (group, with_variant) in groups {
        let members = test
            .iter()
            .filter(|m| {
                let t = target(m);
                if with_variant {
                    format!("{t} {}", m.layer.variant) == group
                } else {
                    t == group
                }
            })
            .collect();
        out.push(score(group, members));
    }
    out
}

/// Weighted least squares `min Σ w·(x·β − y)²` by the normal equations with columns scaled
/// to unit norm (and a tiny ridge); `None` when singular.
pub fn lstsq(x: &[Vec<f64>], y: &[f64], w: &[f64]) -> Option<Vec<f64>> {
    let k = x.first()?.len();
    let mut norm = vec![0f64; k];
    for (row, &wi) in x.iter().zip(w) {
        for j in 0..k {
            norm[j] += wi * row[j] * row[j];
        }
    }
    let norm: Vec<f64> = norm
        .iter()
        .map(|&n| if n > 0.0 { n.sqrt() } else { 1.0 })
        .collect();
    let mut a = vec![vec![0f64; k + 1]; k];
    for ((row, &yi), &wi) in x.iter().zip(y).zip(w) {
        for i in 0..k {
            let xi = row[i] / norm[i];
            for j in 0..k {
                a[i][j] += wi * xi * row[j] / norm[j];
            }
            a[i][k] += wi * xi * yi;
        }
    }
    for (i, r) in a.iter_mut().enumerate() {
        r[i] += 1e-9;
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..k {
        let piv = (col..k).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))?;
        if a[piv][col].abs() < 1e-14 {
            return None;
        }
        a.swap(col, piv);
        for r in 0..k {
            if r != col {
                let f = a[r][col] / a[col][col];
                let pivot = a[col].clone();
                for (x, p) in a[r][col..].iter_mut().zip(&pivot[col..]) {
                    *x -= f * p;
                }
            }
        }
    }
    Some((0..k).map(|i| a[i][k] / a[i][i] / norm[i]).collect())
}

/// Least squares with non-negative coefficients: fits, drops the most negative coefficient's
/// column, refits, until none is negative. Returns the coefficients (0 for dropped columns).
pub fn nnls(x: &[Vec<f64>], y: &[f64], w: &[f64]) -> Option<Vec<f64>> {
    let k = x.first()?.len();
    let mut active: Vec<usize> = (0..k).collect();
    while !active.is_empty() {
        let sub: Vec<Vec<f64>> = x
            .iter()
            .map(|r| active.iter().map(|&j| r[j]).collect())
            .collect();
        let b = lstsq(&sub, y, w)?;
        match b
            .iter()
            .enumerate()
            .filter(|(_, &v)| v < 0.0)
            .min_by(|a, b| a.1.total_cmp(b.1))
        {
            Some((i, _)) => {
                active.remove(i);
            }
            None => {
                let mut full = vec![0.0; k];
                for (&j, &v) in active.iter().zip(&b) {
                    full[j] = v;
                }
                return Some(full);
            }
        }
    }
    Some(vec![0.0; k])
}
