//! Our predictor: kernel-aware. Latency is stepped, not linear in FLOPs: a kernel computes
//! its output in tiles (a block of output channels × a block of output positions, reducing
//! over blocks of the input), a partial tile costs a whole one, and the tiles are spread over
//! `P` parallel workers (CPU threads, GPU work-group slots), so the time follows
//! `ceil(tiles / P)` — plus a fixed cost (dispatch, fork/join) and memory traffic. Per kernel
//! variant (`conv3s1`, `dw3s2`, `pw`, `gemm`, ...), processor and precision:
//!
//! `t = a + b · ceil(tiles/P)·Tc·Tp·ceil(K/Tk)·Tk + d · ceil(tiles/P) + e_in · input bytes
//!     + e_w · weight bytes + e_out · output bytes + f · packed bytes + g · engine span`
//!
//! with `tiles = outer · ceil(C/Tc) · ceil(H·W/Tp)`, the bytes those of the inputs, the
//! slice's share of the weights and the output slice at the precision's element size, the
//! packed bytes those a matrix product packs for the slice's positions (the whole reduction,
//! whatever the slice's channels), and the engine span the CPU matrix-product engine's own
//! simulated makespan of the slice ([`super::engine_span`]; 0 elsewhere). Groups of fewer than
//! 12 measurements use one byte term and no step, packing or span term. The tile sizes and
//! `P` are chosen per group from a small candidate set by the fit (minimum relative squared
//! error), the coefficients by non-negative least squares weighted by 1/t² (relative error).
//! A variant with too few measurements falls back to its op kind, then to all layers of
//! that processor and precision.
use super::{engine_span, nnls, Predictor};
use crate::backend::{Precision, Processor};
use crate::coop::profile::{LayerDesc, Measurement};
use std::collections::BTreeMap;

/// The fitted model of one group.
#[derive(Clone, Debug)]
struct Model {
    tc: usize,
    tp: usize,
    tk: usize,
    par: usize,
    /// All six features (enough measurements), else three.
    full: bool,
    beta: Vec<f64>,
}

/// Element size in bytes of activations and weights at a precision.
fn elem_bytes(q: Precision) -> (f64, f64) {
    match q {
        Precision::F32 => (4.0, 4.0),
        Precision::F16 => (2.0, 2.0),
        Precision::Quint8 => (1.0, 1.0),
    }
}

/// `span`: the CPU engine's own estimate of the slice ([`super::engine_span`]), 0 elsewhere.
fn features(m: &Model, d: &LayerDesc, q: Precision, c: usize, h: usize, span: f64) -> Vec<f64> {
    let pos = h * d.inner;
    let tiles = (d.outer * c.div_ceil(m.tc) * pos.div_ceil(m.tp)) as f64;
    let steps = (tiles / m.par as f64).ceil();
    let kpad = (d.k_red.div_ceil(m.tk) * m.tk) as f64;
    let work = steps * (m.tc * m.tp) as f64 * kpad;
    let (ea, ew) = elem_bytes(q);
    let wshare = if d.c > 0 {
        d.weight_elems as f64 * c as f64 / d.c as f64
    } else {
        0.0
    };
    let (bi, bw, bo) = (d.in_elems as f64 * ea, wshare * ew, d.out_elems(c, h) * ea);
    // The activations a product packs: every position of the slice over the whole reduction,
    // whatever its channels (a channel slice packs as much as the whole layer).
    let packed = (d.outer * d.k_red * pos) as f64 * ea;
    if m.full {
        vec![1.0, work, steps, bi, bw, bo, packed, span]
    } else {
        vec![1.0, work, bi + bw + bo]
    }
}

/// Kernel-aware models per (variant | kind | all, processor, precision).
#[derive(Clone, Debug, Default)]
pub struct KernelPredictor {
    models: BTreeMap<String, Model>,
    cpu_threads: usize,
}

fn key(scope: &str, p: Processor, q: Precision) -> String {
    format!("{scope}/{p:?}/{q}")
}

/// Minimum measurements to fit a group on its own.
const MIN_GROUP: usize = 8;

fn fit_group(g: &[&Measurement], cpu_threads: usize) -> Option<Model> {
    if g.is_empty() {
        return None;
    }
    let y: Vec<f64> = g.iter().map(|m| m.ns.max(1.0)).collect();
    let w: Vec<f64> = y.iter().map(|t| 1.0 / (t * t)).collect();
    // The engine's estimate, once per measurement (it does not depend on the tiling tried).
    let spans: Vec<f64> = g
        .iter()
        .map(|s| engine_span(&s.layer, s.processor, s.precision, (s.c, s.h), cpu_threads))
        .collect();
    let pars: Vec<usize> = match g[0].processor {
        Processor::Cpu => vec![1, cpu_threads.max(1), 2 * cpu_threads.max(1)],
        Processor::Gpu => vec![1, 4, 16, 64],
    };
    // Small groups cannot tell tilings apart from noise: plain work and bytes only.
    let small = g.len() < 12;
    let (tcs, tps, tks): (&[usize], &[usize], &[usize]) = if small {
        (&[1], &[1], &[1])
    } else {
        (&[1, 4, 8, 16, 32], &[1, 4, 8, 16, 64], &[1, 4, 16])
    };
    let pars = if small { vec![1] } else { pars };
    let mut best: Option<(f64, Model)> = None;
    for &tc in tcs {
        for &tp in tps {
            for &tk in tks {
                for &par in &pars {
                    let mut m = Model {
                        tc,
                        tp,
                        tk,
                        par,
                        // Few points: fewer free coefficients.
                        full: g.len() >= 12,
                        beta: Vec::new(),
                    };
                    let x: Vec<Vec<f64>> = g
                        .iter()
                        .zip(&spans)
                        .map(|(s, &span)| features(&m, &s.layer, s.precision, s.c, s.h, span))
                        .collect();
                    let Some(beta) = nnls(&x, &y, &w) else {
                        continue;
                    };
                    let err: f64 = x
                        .iter()
                        .zip(&y)
                        .map(|(r, t)| {
                            let p: f64 = r.iter().zip(&beta).map(|(a, b)| a * b).sum();
                            ((p - t) / t).powi(2)
                        })
                        .sum();
                    m.beta = beta;
                    if best.as_ref().is_none_or(|(e, _)| err < *e) {
                        best = Some((err, m));
                    }
                }
            }
        }
    }
    best.map(|(_, m)| m)
}

impl KernelPredictor {
    /// Fits every group of `ms` (CPU parallelism candidates from `cpu_threads`).
    pub fn fit(ms: &[Measurement], cpu_threads: usize) -> KernelPredictor {
        let mut by_variant: BTreeMap<String, Vec<&Measurement>> = BTreeMap::new();
        let mut by_kind: BTreeMap<String, Vec<&Measurement>> = BTreeMap::new();
        let mut by_all: BTreeMap<String, Vec<&Measurement>> = BTreeMap::new();
        for m in ms {
            by_variant
                .entry(key(
                    &format!("v:{}", m.layer.variant),
                    m.processor,
                    m.precision,
                ))
                .or_default()
                .push(m);
            by_kind
                .entry(key(
                    &format!("k:{}", m.layer.kind),
                    m.processor,
                    m.precision,
                ))
                .or_default()
                .push(m);
            by_all
                .entry(key("all", m.processor, m.precision))
                .or_default()
                .push(m);
        }
        let mut models = BTreeMap::new();
        for groups in [by_variant, by_kind, by_all] {
            for (k, g) in groups {
                if g.len() >= MIN_GROUP || k.starts_with("all/") {
                    if let Some(m) = fit_group(&g, cpu_threads) {
                        models.insert(k, m);
                    }
                }
            }
        }
        KernelPredictor {
            models,
            cpu_threads,
        }
    }
}

impl Predictor for KernelPredictor {
    fn predict(
        &self,
        d: &LayerDesc,
        processor: Processor,
        precision: Precision,
        c: usize,
        h: usize,
    ) -> Option<f64> {
        let m = self
            .models
            .get(&key(&format!("v:{}", d.variant), processor, precision))
            .or_else(|| {
                self.models
                    .get(&key(&format!("k:{}", d.kind), processor, precision))
            })
            .or_else(|| self.models.get(&key("all", processor, precision)))?;
        let span = engine_span(d, processor, precision, (c, h), self.cpu_threads);
        let f = features(m, d, precision, c, h, span);
        Some(
            f.iter()
                .zip(&m.beta)
                .map(|(x, b)| x * b)
                .sum::<f64>()
                .max(1.0),
        )
    }

    fn name(&self) -> &'static str {
        "kernel-aware"
    }
}
