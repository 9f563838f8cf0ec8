//! Post-training calibration: the real range of every value of a graph, observed on sample
//! inputs run through the F32 executor, reduced to one `[min, max]` per value by a
//! [`CalibrationMethod`].
//!
//! The graph calibrated must be the one that will be quantized (after
//! [`Graph::optimized`](crate::Graph::optimized)): a fused ReLU6 is then part of its layer's
//! output range.
use crate::backend::cpu::CpuBackend;
use crate::backend::Precision;
use crate::exec::Executor;
use crate::graph::Graph;
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::collections::HashMap;

/// How a value's observed distribution becomes its quantization range.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationMethod {
    /// The smallest and largest value seen. No clipping error, coarser steps when a few
    /// outliers stretch the range. The default: best measured accuracy (see the README's
    /// accuracy table).
    #[default]
    #[value(name = "minmax")]
    MinMax,
    /// The 0.01th and 99.99th percentiles of all values seen (of all samples together):
    /// clips the rarest outliers for finer steps.
    Percentile,
    /// The clipping threshold that minimises the Kullback-Leibler divergence between the
    /// histogram of `|x|` and its quantized form (TensorRT's entropy calibration; 256 levels
    /// for non-negative values, 128 per side for signed ones), never clipping more than
    /// 0.1% of the values (a ReLU6 output's spike at 6 is not an outlier).
    Entropy,
}

impl std::fmt::Display for CalibrationMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CalibrationMethod::MinMax => "minmax",
            CalibrationMethod::Percentile => "percentile",
            CalibrationMethod::Entropy => "entropy",
        })
    }
}

/// The lower and upper percentiles [`CalibrationMethod::Percentile`] keeps.
pub const PERCENTILE: f64 = 99.99;

/// Histogram bins per value for the percentile and entropy methods.
const BINS: usize = 2048;

/// The calibrated range of every value of a graph (inputs and node outputs).
#[derive(Clone, Debug, PartialEq)]
pub struct Ranges {
    /// The method that produced them.
    pub method: CalibrationMethod,
    /// Number of sample inputs observed.
    pub samples: usize,
    /// `[min, max]` per value name.
    pub ranges: HashMap<String, (f32, f32)>,
    /// The mean of every channel (dimension 1; the last dimension of a 2-D value) of every
    /// value, over all samples: what bias correction needs.
    pub means: HashMap<String, Vec<f32>>,
}

/// Runs `samples` (one tensor per graph input each; a graph of one input takes one tensor per
/// sample) through `graph` at F32 on `threads` threads and reduces what every value held to
/// a range with `method`. Two passes for the histogram methods (extremes, then histograms).
pub fn calibrate(
    graph: &Graph,
    samples: &[Vec<Tensor>],
    method: CalibrationMethod,
    threads: usize,
) -> Result<Ranges> {
    if samples.is_empty() {
        return Err(Error::Graph {
            graph: graph.name.clone(),
            msg: "calibration needs at least one sample input".into(),
        });
    }
    // Every value becomes an output of a probe graph, in a fixed order.
    let mut names: Vec<String> = graph.inputs.iter().map(|i| i.name.clone()).collect();
    for n in &graph.nodes {
        if !names.contains(&n.output) {
            names.push(n.output.clone());
        }
    }
    let mut probe = graph.clone();
    probe.outputs = names[graph.inputs.len()..].to_vec();
    let mut exec = Executor::new(&probe, CpuBackend::new(threads)?, Precision::F32)?;
    let n_in = graph.inputs.len();
    let mut observe = |f: &mut dyn FnMut(usize, &[f32])| -> Result<()> {
        for s in samples {
            let (outs, _) = exec.run(s)?;
            for (i, t) in s.iter().enumerate().take(n_in) {
                f(i, t.data());
            }
            for (i, t) in outs.iter().enumerate() {
                f(n_in + i, t.data());
            }
        }
        Ok(())
    };
    // Value shapes, for the channel means.
    let shapes = graph.infer_shapes()?;
    let geo: Vec<(usize, usize)> = names
        .iter()
        .map(|n| {
            let s = &shapes[n];
            match s.len() {
                0 | 1 => (1, 1),
                2 => (s[1], 1),
                _ => (s[1], s[2..].iter().product()),
            }
        })
        .collect();
    let mut sums: Vec<Vec<f64>> = geo.iter().map(|&(c, _)| vec![0.0; c]).collect();
    let mut counts = vec![0usize; names.len()];
    // Pass 1: extremes and channel sums.
    let mut ext = vec![(f32::INFINITY, f32::NEG_INFINITY); names.len()];
    observe(&mut |i, d| {
        let e = &mut ext[i];
        for &v in d {
            if v.is_finite() {
                e.0 = e.0.min(v);
                e.1 = e.1.max(v);
            }
        }
        let (c, inner) = geo[i];
        if c * inner > 0 && d.len() % (c * inner) == 0 {
            for (k, chunk) in d.chunks(inner).enumerate() {
                sums[i][k % c] += chunk.iter().map(|&v| f64::from(v)).sum::<f64>();
            }
            counts[i] += d.len() / c;
        }
    })?;
    let means: HashMap<String, Vec<f32>> = names
        .iter()
        .zip(sums.iter().zip(&counts))
        .map(|(n, (s, &k))| {
            (
                n.clone(),
                s.iter().map(|&v| (v / k.max(1) as f64) as f32).collect(),
            )
        })
        .collect();
    for e in &mut ext {
        if e.0 > e.1 {
            *e = (0.0, 0.0);
        }
    }
    let ranges: Vec<(f32, f32)> = match method {
        CalibrationMethod::MinMax => ext,
        CalibrationMethod::Percentile => {
            let mut hists = vec![vec![0u64; BINS]; names.len()];
            observe(&mut |i, d| {
                let (lo, hi) = ext[i];
                bin_into(&mut hists[i], d, lo, hi, false);
            })?;
            hists
                .iter()
                .zip(&ext)
                .map(|(h, &(lo, hi))| percentile_range(h, lo, hi, PERCENTILE))
                .collect()
        }
        CalibrationMethod::Entropy => {
            let mut hists = vec![vec![0u64; BINS]; names.len()];
            observe(&mut |i, d| {
                let amax = ext[i].0.abs().max(ext[i].1.abs());
                bin_into(&mut hists[i], d, 0.0, amax, true);
            })?;
            hists
                .iter()
                .zip(&ext)
                .map(|(h, &(lo, hi))| {
                    let amax = lo.abs().max(hi.abs());
                    let levels = if lo >= 0.0 { 256 } else { 128 };
                    let floor = percentile_range(h, 0.0, amax, 99.9).1;
                    let t = entropy_threshold(h, amax, levels).max(floor);
                    (lo.max(-t), hi.min(t))
                })
                .collect()
        }
    };
    Ok(Ranges {
        method,
        samples: samples.len(),
        ranges: names.into_iter().zip(ranges).collect(),
        means,
    })
}

/// Adds the values of `d` (their absolute values if `abs`) to a histogram of `h.len()` equal
/// bins over `[lo, hi]`.
fn bin_into(h: &mut [u64], d: &[f32], lo: f32, hi: f32, abs: bool) {
    let n = h.len();
    let width = (hi - lo) / n as f32;
    if width <= 0.0 || !width.is_finite() {
        h[0] += d.len() as u64;
        return;
    }
    let inv = 1.0 / width;
    for &v in d {
        let v = if abs { v.abs() } else { v };
        if !v.is_finite() {
            continue;
        }
        let b = ((v - lo) * inv) as isize;
        h[b.clamp(0, n as isize - 1) as usize] += 1;
    }
}

/// The `[100 − p, p]` percentile range of a histogram over `[lo, hi]` (bin edges; the outer
/// edge of the bin where the cumulative count crosses the rank).
fn percentile_range(h: &[u64], lo: f32, hi: f32, p: f64) -> (f32, f32) {
    let total: u64 = h.iter().sum();
    if total == 0 || hi <= lo {
        return (lo, hi);
    }
    let width = (hi - lo) / h.len() as f32;
    let cut = ((1.0 - p / 100.0) * total as f64).floor() as u64;
    let mut acc = 0;
    let mut first = 0;
    for (i, &c) in h.iter().enumerate() {
        acc += c;
        if acc > cut {
            first = i;
            break;
        }
    }
    acc = 0;
    let mut last = h.len() - 1;
    for (i, &c) in h.iter().enumerate().rev() {
        acc += c;
        if acc > cut {
            last = i;
            break;
        }
    }
    (lo + first as f32 * width, lo + (last + 1) as f32 * width)
}

/// The clipping threshold of a histogram of `|x|` over `[0, amax]` that minimises
/// `KL(P || Q)`, where `P` is the histogram clipped at the threshold (the clipped mass added
/// to its last bin) and `Q` is the histogram below the threshold (without the clipped mass)
/// merged into `levels` bins and spread back evenly over the bins that were non-empty
/// (TensorRT's method).
fn entropy_threshold(h: &[u64], amax: f32, levels: usize) -> f32 {
    let n = h.len();
    if amax <= 0.0 || h.iter().sum::<u64>() == 0 {
        return amax;
    }
    let width = amax / n as f32;
    let mut best = (f64::INFINITY, n);
    let mut i = levels;
    while i <= n {
        let mut p: Vec<f64> = h[..i].iter().map(|&c| c as f64).collect();
        p[i - 1] += h[i..].iter().map(|&c| c as f64).sum::<f64>();
        let total: f64 = p.iter().sum();
        if total == 0.0 {
            i += 8;
            continue;
        }
        // Q: merge into `levels` chunks, spread each chunk's mass over its non-empty bins.
        let mut q = vec![0.0f64; i];
        for l in 0..levels {
            let (a, b) = (
                l * i / levels,
                ((l + 1) * i / levels).max(l * i / levels + 1),
            );
            let b = b.min(i);
            let mass: f64 = h[a..b].iter().map(|&c| c as f64).sum();
            let nonzero = h[a..b].iter().filter(|&&c| c > 0).count();
            if nonzero > 0 {
                for j in a..b {
                    if h[j] > 0 {
                        q[j] = mass / nonzero as f64;
                    }
                }
            }
        }
        let qt: f64 = q.iter().sum();
        let mut kl = 0.0;
        for j in 0..i {
            if p[j] > 0.0 {
                let pj = p[j] / total;
                // Where only the clipped mass put P above zero, Q is empty: a floor keeps
                // the divergence finite (and large).
                let qj = (q[j] / qt.max(1.0)).max(1e-12);
                kl += pj * (pj / qj).ln();
            }
        }
        if kl < best.0 {
            best = (kl, i);
        }
        i += 8;
    }
    (best.1 as f32 + 0.5).min(n as f32) * width
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_clip_rare_outliers() {
        let mut h = vec![0u64; 100];
        h[10..90].iter_mut().for_each(|c| *c = 1000);
        h[99] = 1; // one outlier at the top
        let (lo, hi) = percentile_range(&h, 0.0, 100.0, 99.99);
        assert_eq!((lo, hi), (10.0, 90.0));
        let (lo, hi) = percentile_range(&h, 0.0, 100.0, 100.0);
        assert_eq!((lo, hi), (10.0, 100.0));
    }

    #[test]
    fn entropy_clips_a_long_thin_tail() {
        // A peaked distribution with a long, thin tail: the threshold lands well inside.
        let mut h = vec![0u64; BINS];
        for (i, c) in h.iter_mut().enumerate() {
            *c = (1e6 * (-(i as f64) / 40.0).exp()) as u64 + u64::from(i % 97 == 0);
        }
        let t = entropy_threshold(&h, BINS as f32, 256);
        assert!(t > 200.0 && t < 1500.0, "threshold {t}");
        // A uniform distribution keeps (nearly) its whole range.
        let u = vec![100u64; BINS];
        assert!(entropy_threshold(&u, 1.0, 256) > 0.95);
    }

    #[test]
    fn histograms_bin_and_clamp() {
        let mut h = vec![0u64; 4];
        bin_into(
            &mut h,
            &[0.0, 0.99, 1.0, 3.99, 4.0, -7.0, f32::NAN],
            0.0,
            4.0,
            false,
        );
        assert_eq!(h, vec![3, 1, 0, 2]);
        let mut h = vec![0u64; 2];
        bin_into(&mut h, &[-3.0, 1.0], 0.0, 4.0, true);
        assert_eq!(h, vec![1, 1]);
    }
}
