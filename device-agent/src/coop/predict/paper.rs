//! The paper's predictor (μLayer §4.3, after Neurosurgeon): one linear regression per
//! (layer type, processor) — here also per precision, since each precision is its own set of
//! kernels — on the layer's FLOPs, input size and (kernel/stride)²·output channels, fitted
//! by ordinary least squares on the profile.
use super::{lstsq, Predictor};
use crate::backend::{Precision, Processor};
use crate::coop::profile::{LayerDesc, Measurement};
use std::collections::BTreeMap;

/// One regression per (kind, processor, precision).
#[derive(Debug, Default)]
pub struct PaperPredictor {
    models: BTreeMap<String, Vec<f64>>,
}

fn key(kind: &str, p: Processor, q: Precision) -> String {
    format!("{kind}/{p:?}/{q}")
}

/// `[1, FLOPs, input elements, (k/s)²·out channels]` of a slice.
fn features(d: &LayerDesc, c: usize, h: usize) -> Vec<f64> {
    let ks = (d.kernel[0] * d.kernel[1]) as f64 / (d.stride[0] * d.stride[1]).max(1) as f64;
    vec![1.0, 2.0 * d.macs(c, h), d.in_elems as f64, ks * c as f64]
}

impl PaperPredictor {
    /// Fits every group of `ms`; a group too small for the regression predicts its mean.
    pub fn fit(ms: &[Measurement]) -> PaperPredictor {
        let mut groups: BTreeMap<String, Vec<&Measurement>> = BTreeMap::new();
        for m in ms {
            groups
                .entry(key(&m.layer.kind, m.processor, m.precision))
                .or_default()
                .push(m);
        }
        let mut models = BTreeMap::new();
        for (k, g) in groups {
            let x: Vec<Vec<f64>> = g.iter().map(|m| features(&m.layer, m.c, m.h)).collect();
            let y: Vec<f64> = g.iter().map(|m| m.ns).collect();
            let w = vec![1.0; y.len()];
            let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
            let beta = if g.len() >= 5 {
                lstsq(&x, &y, &w).unwrap_or_else(|| vec![mean, 0.0, 0.0, 0.0])
            } else {
                vec![mean, 0.0, 0.0, 0.0]
            };
            models.insert(k, beta);
        }
        PaperPredictor { models }
    }
}

impl Predictor for PaperPredictor {
    fn predict(
        &self,
        d: &LayerDesc,
        processor: Processor,
        precision: Precision,
        c: usize,
        h: usize,
    ) -> Option<f64> {
        let b = self.models.get(&key(&d.kind, processor, precision))?;
        let f = features(d, c, h);
        // A linear fit can go negative on small layers; a time cannot.
        Some(f.iter().zip(b).map(|(x, b)| x * b).sum::<f64>().max(1.0))
    }

    fn name(&self) -> &'static str {
        "paper"
    }
}
