//! Gradient-boosted regression trees on the logarithm of the time, one ensemble per
//! (processor, precision), over the layer's kernel-level features: work (multiply-adds),
//! output channels and positions of the slice, reduction depth, input, weight-share and
//! output sizes, the whole layer's channels, rows and width, kernel and stride, the parallel
//! steps of a few tilings, the slice's share of the layer's channels and rows (+7 points
//! within ±10% on the six kept GPU-host profiles), how the slice meets the vector and tile
//! widths, the kernel variant (one-hot), and the kernel-aware predictor's own
//! prediction (fitted on the same measurements: the trees correct it where its linear form
//! misses; on the GPU host's profiles this added 2–4 points within ±10%). This is the
//! approach of nn-Meter (per-kernel tree ensembles), which reports ≥ 99% within ±10% on
//! phones.
//!
//! Why by hand: the one Rust crate for boosted regression trees (`gbdt` 0.1) samples with a
//! thread-local random generator and returns f32; the plans must be deterministic for a
//! given profile, and the fit needed here (squared loss, exact greedy splits, depth-limited
//! trees) is short. Fitting is deterministic: no sampling, ties broken by feature order.
use super::engine_span;
use super::kernel::KernelPredictor;
use super::Predictor;
use crate::backend::{Precision, Processor};
use crate::coop::profile::{LayerDesc, Measurement};
use std::collections::BTreeMap;

/// Boosting rounds, tree depth, smallest leaf and learning rate (chosen on the GPU host's
/// profiles, BENCHMARKS.md).
const ROUNDS: usize = 300;
const DEPTH: usize = 4;
const MIN_LEAF: usize = 3;
const SHRINK: f64 = 0.1;

/// Tilings (channels × positions) whose parallel steps are features.
const TILINGS: [(usize, usize); 4] = [(16, 16), (48, 8), (8, 64), (4, 4)];

/// A regression tree: internal nodes split on `feature < threshold`.
#[derive(Clone, Debug)]
enum Node {
    Leaf(f64),
    Split {
        feature: usize,
        threshold: f64,
        left: Box<Node>,
        right: Box<Node>,
    },
}

impl Node {
    fn eval(&self, x: &[f64]) -> f64 {
        match self {
            Node::Leaf(v) => *v,
            Node::Split {
                feature,
                threshold,
                left,
                right,
            } => {
                if x[*feature] < *threshold {
                    left.eval(x)
                } else {
                    right.eval(x)
                }
            }
        }
    }
}

/// One (processor, precision) ensemble.
#[derive(Clone, Debug)]
struct Ensemble {
    /// Variants seen in training, in one-hot order.
    variants: Vec<String>,
    base: f64,
    trees: Vec<Node>,
}

fn ln1p(v: f64) -> f64 {
    v.max(0.0).ln_1p()
}

/// The features of a slice of `c` channels × `h` rows of `d` on `parallel` workers.
fn features(
    d: &LayerDesc,
    c: usize,
    h: usize,
    parallel: usize,
    variants: &[String],
    kernel: f64,
    span: f64,
) -> Vec<f64> {
    let pos = h * d.inner * d.outer;
    let wshare = if d.c > 0 {
        d.weight_elems as f64 * c as f64 / d.c as f64
    } else {
        0.0
    };
    let mut f = vec![
        ln1p(d.macs(c, h)),
        ln1p(c as f64),
        ln1p(pos as f64),
        ln1p(d.k_red as f64),
        ln1p(d.in_elems as f64),
        ln1p(wshare),
        ln1p(d.out_elems(c, h)),
        ln1p(d.c as f64),
        ln1p(d.h as f64),
        ln1p(d.inner as f64),
        d.kernel[0] as f64,
        d.stride[0] as f64,
        ln1p(kernel),
        // The CPU engine's own estimate of its task grid (0 elsewhere).
        ln1p(span),
        // The slice's share of the layer's channels and rows: a slice runs the kernel on a
        // sub-range (edge tiles, a strided output view), which a whole layer of the slice's
        // size does not.
        c as f64 / d.c.max(1) as f64,
        h as f64 / d.h.max(1) as f64,
        // How the slice meets the vector and tile widths (a partial tile costs a whole one).
        (c % 16) as f64,
        (c % 8) as f64,
        ((h * d.inner) % 16) as f64,
    ];
    for (tc, tp) in TILINGS {
        let tiles = d.outer * c.div_ceil(tc) * (h * d.inner).div_ceil(tp);
        let steps = tiles.div_ceil(parallel.max(1));
        f.push(ln1p((steps * tc * tp * d.k_red) as f64));
        f.push(ln1p(tiles as f64));
    }
    f.extend(
        variants
            .iter()
            .map(|v| if *v == d.variant { 1.0 } else { 0.0 }),
    );
    f
}

/// Workers a processor's kernels spread tiles over (GPU: a nominal count; the trees learn
/// the rest).
fn parallel(p: Processor, cpu_threads: usize) -> usize {
    match p {
        Processor::Cpu => cpu_threads.max(1),
        Processor::Gpu => 64,
    }
}

/// The best split of `idx` (rows of `x`, presorted per feature in `order`) for residuals
/// `r`: `(feature, threshold, gain)`.
fn best_split(
    x: &[Vec<f64>],
    r: &[f64],
    idx: &[usize],
    member: &[bool],
    order: &[Vec<usize>],
) -> Option<(usize, f64, f64)> {
    let n = idx.len();
    if n < 2 * MIN_LEAF {
        return None;
    }
    let total: f64 = idx.iter().map(|&i| r[i]).sum();
    let base = total * total / n as f64;
    let mut best: Option<(usize, f64, f64)> = None;
    for (f, ord) in order.iter().enumerate() {
        let (mut sl, mut nl) = (0.0, 0usize);
        let mut prev: Option<usize> = None;
        for &i in ord.iter().filter(|&&i| member[i]) {
            if let Some(p) = prev {
                // A split between p and i, where the feature's value changes.
                if x[p][f] < x[i][f] && nl >= MIN_LEAF && n - nl >= MIN_LEAF {
                    let sr = total - sl;
                    let gain = sl * sl / nl as f64 + sr * sr / (n - nl) as f64 - base;
                    if best.is_none_or(|(_, _, g)| gain > g + 1e-12) {
                        best = Some((f, 0.5 * (x[p][f] + x[i][f]), gain));
                    }
                }
            }
            sl += r[i];
            nl += 1;
            prev = Some(i);
        }
    }
    best.filter(|&(_, _, g)| g > 1e-12)
}

fn grow(
    x: &[Vec<f64>],
    r: &[f64],
    idx: Vec<usize>,
    order: &[Vec<usize>],
    member: &mut [bool],
    depth: usize,
) -> Node {
    let mean = idx.iter().map(|&i| r[i]).sum::<f64>() / idx.len().max(1) as f64;
    if depth == DEPTH {
        return Node::Leaf(mean);
    }
    idx.iter().for_each(|&i| member[i] = true);
    let split = best_split(x, r, &idx, member, order);
    idx.iter().for_each(|&i| member[i] = false);
    let Some((feature, threshold, _)) = split else {
        return Node::Leaf(mean);
    };
    let (l, rr): (Vec<usize>, Vec<usize>) =
        idx.into_iter().partition(|&i| x[i][feature] < threshold);
    Node::Split {
        feature,
        threshold,
        left: Box::new(grow(x, r, l, order, member, depth + 1)),
        right: Box::new(grow(x, r, rr, order, member, depth + 1)),
    }
}

impl Ensemble {
    fn fit(g: &[&Measurement], cpu_threads: usize, k: &KernelPredictor) -> Option<Ensemble> {
        let first = g.first()?;
        let par = parallel(first.processor, cpu_threads);
        let mut variants: Vec<String> = g.iter().map(|m| m.layer.variant.clone()).collect();
        variants.sort();
        variants.dedup();
        let x: Vec<Vec<f64>> = g
            .iter()
            .map(|m| {
                let kp = k
                    .predict(&m.layer, m.processor, m.precision, m.c, m.h)
                    .unwrap_or(0.0);
                let span = engine_span(&m.layer, m.processor, m.precision, (m.c, m.h), cpu_threads);
                features(&m.layer, m.c, m.h, par, &variants, kp, span)
            })
            .collect();
        let y: Vec<f64> = g.iter().map(|m| m.ns.max(1.0).ln()).collect();
        let base = y.iter().sum::<f64>() / y.len() as f64;
        let nf = x[0].len();
        let order: Vec<Vec<usize>> = (0..nf)
            .map(|f| {
                let mut o: Vec<usize> = (0..x.len()).collect();
                o.sort_by(|&a, &b| x[a][f].total_cmp(&x[b][f]).then(a.cmp(&b)));
                o
            })
            .collect();
        let mut pred = vec![base; y.len()];
        let mut member = vec![false; y.len()];
        let mut trees = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let r: Vec<f64> = y.iter().zip(&pred).map(|(t, p)| t - p).collect();
            let tree = grow(&x, &r, (0..y.len()).collect(), &order, &mut member, 0);
            for (p, xi) in pred.iter_mut().zip(&x) {
                *p += SHRINK * tree.eval(xi);
            }
            trees.push(tree);
        }
        Some(Ensemble {
            variants,
            base,
            trees,
        })
    }

    /// `kp`: the kernel-aware prediction; `span`: the CPU engine's estimate.
    fn predict(
        &self,
        d: &LayerDesc,
        (c, h): (usize, usize),
        par: usize,
        kp: f64,
        span: f64,
    ) -> f64 {
        let x = features(d, c, h, par, &self.variants, kp, span);
        let log = self.base + SHRINK * self.trees.iter().map(|t| t.eval(&x)).sum::<f64>();
        log.exp()
    }
}

/// Boosted trees per (processor, precision).
#[derive(Debug, Default)]
pub struct BoostedPredictor {
    cpu_threads: usize,
    kernel: KernelPredictor,
    models: BTreeMap<String, Ensemble>,
}

fn key(p: Processor, q: Precision) -> String {
    format!("{p:?}/{q}")
}

impl BoostedPredictor {
    /// Fits one ensemble per (processor, precision) of `ms`.
    pub fn fit(ms: &[Measurement], cpu_threads: usize) -> BoostedPredictor {
        Self::fit_on(ms, cpu_threads, KernelPredictor::fit(ms, cpu_threads))
    }

    /// [`BoostedPredictor::fit`] with `kernel` already fitted on the same `ms` (its
    /// predictions are a feature), so that a caller that has one does not fit it again.
    pub fn fit_on(
        ms: &[Measurement],
        cpu_threads: usize,
        kernel: KernelPredictor,
    ) -> BoostedPredictor {
        let mut groups: BTreeMap<String, Vec<&Measurement>> = BTreeMap::new();
        for m in ms {
            groups
                .entry(key(m.processor, m.precision))
                .or_default()
                .push(m);
        }
        let models = groups
            .into_iter()
            .filter_map(|(k, g)| Ensemble::fit(&g, cpu_threads, &kernel).map(|e| (k, e)))
            .collect();
        BoostedPredictor {
            cpu_threads,
            kernel,
            models,
        }
    }
}

impl Predictor for BoostedPredictor {
    fn predict(
        &self,
        d: &LayerDesc,
        processor: Processor,
        precision: Precision,
        c: usize,
        h: usize,
    ) -> Option<f64> {
        let e = self.models.get(&key(processor, precision))?;
        let kp = self
            .kernel
            .predict(d, processor, precision, c, h)
            .unwrap_or(0.0);
        let span = engine_span(d, processor, precision, (c, h), self.cpu_threads);
        Some(
            e.predict(d, (c, h), parallel(processor, self.cpu_threads), kp, span)
                .max(1.0),
        )
    }

    fn name(&self) -> &'static str {
        "boosted"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coop::profile::tests_conv_desc as desc;

    /// A synthetic device: time steps with the tiles of 8 channels over 2 workers.
    fn measurements() -> Vec<Measurement> {
        let mut ms = Vec::new();
        for cin in [3, 8, 16, 24, 40] {
            for cout in [4, 8, 12, 20, 28, 36, 60] {
                for hw in [5, 7, 13, 17] {
                    let d = desc(cin, cout, hw);
                    for c in [1, cout / 2, cout] {
                        let steps = c.div_ceil(8).div_ceil(2) as f64;
                        ms.push(Measurement {
                            source: format!("synthetic/{cin}x{cout}x{hw}"),
                            ns: 2000.0 + steps * (hw * hw * cin) as f64 * 8.0,
                            layer: d.clone(),
                            processor: Processor::Cpu,
                            precision: Precision::Quint8,
                            c,
                            h: d.h,
                            rounds_ns: Vec::new(),
                        });
                    }
                }
            }
        }
        ms
    }

    #[test]
    fn a_tree_recovers_a_step_function_exactly() {
        // y = 1 below 10 and 5 from 10 on: one split at the midpoint of 9 and 10.
        let x: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64, 0.0]).collect();
        let r: Vec<f64> = (0..20).map(|i| if i < 10 { 1.0 } else { 5.0 }).collect();
        let order = vec![(0..20).collect::<Vec<_>>(), (0..20).collect()];
        let mut member = vec![false; 20];
        let t = grow(&x, &r, (0..20).collect(), &order, &mut member, 0);
        match &t {
            Node::Split {
                feature, threshold, ..
            } => assert_eq!((*feature, *threshold), (0, 9.5)),
            Node::Leaf(_) => panic!("no split"),
        }
        for (xi, ri) in x.iter().zip(&r) {
            assert_eq!(t.eval(xi), *ri);
        }
    }

    #[test]
    fn fits_held_out_layers_and_is_deterministic() {
        let ms = measurements();
        let (test, train): (Vec<_>, Vec<_>) = ms.iter().cloned().partition(super::super::held_out);
        assert!(!test.is_empty() && train.len() > 100);
        let a = BoostedPredictor::fit(&train, 2);
        let b = BoostedPredictor::fit(&train, 2);
        let mut within = 0;
        for m in &test {
            let p = a
                .predict(&m.layer, m.processor, m.precision, m.c, m.h)
                .expect("fitted");
            let q = b.predict(&m.layer, m.processor, m.precision, m.c, m.h);
            assert_eq!(Some(p), q, "two fits of one profile differ");
            if (p - m.ns).abs() / m.ns <= 0.2 {
                within += 1;
            }
        }
        let share = within as f64 / test.len() as f64;
        assert!(share >= 0.8, "{within} of {} within ±20%", test.len());
        // Nothing fitted for a processor the profile lacks.
        assert!(a
            .predict(&ms[0].layer, Processor::Gpu, Precision::F16, 1, 1)
            .is_none());
    }
}
