//! What one finished configuration leaves on disk (`configs/<slug>/result.json`): the rows
//! the results tables are built from. Tables are always rebuilt from these files, so a
//! resumed or merged campaign gets the same tables as an uninterrupted one.
use serde::{Deserialize, Serialize};

use crate::campaign::Configuration;

/// One measured run of a configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub run: usize,
    /// Device `CLOCK_MONOTONIC` start, ns.
    pub start_ns: u64,
    pub latency_ms: f64,
    /// Gross energy of the inference window, J (None without a monitor).
    pub energy_j: Option<f64>,
    /// Energy above the idle baseline, J.
    pub energy_above_idle_j: Option<f64>,
    /// Mean power over the window, W.
    pub avg_power_w: Option<f64>,
}

/// One layer of a configuration, over its measured runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    pub layer: usize,
    pub node: String,
    pub kind: String,
    /// Processors that ran part of it in the traces ("cpu", "gpu", "cpu+gpu").
    #[serde(default)]
    pub processors: Option<String>,
    pub macs: u64,
    pub p50_ms: f64,
    pub mean_ms: f64,
    /// Mean gross energy per inference spent in this layer, J.
    pub energy_j: Option<f64>,
    /// The same above the idle baseline, J.
    pub energy_above_idle_j: Option<f64>,
    /// How the layer's energy was attributed (e.g. "phase-aggregation", "proportional").
    pub energy_method: Option<String>,
}

/// Power-side facts of a configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PowerSummary {
    /// Mean power during the idle window before the job, W.
    pub idle_power_w: Option<f64>,
    /// Clock fit `sample = a + b·device_ns`.
    pub clock_a: Option<f64>,
    pub clock_b: Option<f64>,
    /// Fit residual, samples.
    pub clock_residual_samples: Option<f64>,
    /// The fit's predicted mapping error (two standard errors at the job's ends), samples.
    #[serde(default)]
    pub mapping_error_samples: Option<f64>,
    /// Energy attribution method, as stated by the attribution.
    pub energy_method: Option<String>,
    /// Samples recorded for the job.
    pub samples: u64,
    /// Samples lost in transport.
    pub lost_samples: u64,
    /// Why there is no energy, when there is none though a monitor recorded.
    pub note: Option<String>,
}

/// Top-1/top-5 of a configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyRow {
    pub images: usize,
    pub top1: f64,
    pub top5: f64,
    /// Agreement with the f32 cpu configuration of the same model (None for itself or when
    /// the campaign has none).
    pub top1_agreement: Option<f64>,
    pub top5_agreement: Option<f64>,
    /// Each image's top-5 class indices, best first (for agreement, merge and audits).
    pub predictions: Vec<Vec<usize>>,
}

/// Everything about one finished configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigResult {
    pub config: Configuration,
    /// Position in the campaign's matrix.
    pub index: usize,
    pub started_unix_ms: u64,
    pub finished_unix_ms: u64,
    /// "real" or "seeded".
    pub weights: Option<String>,
    pub runs: Vec<RunRow>,
    pub layers: Vec<LayerRow>,
    pub latency: ulayer::protocol::LatencyStats,
    pub power: PowerSummary,
    pub accuracy: Option<AccuracyRow>,
    /// The raw monitor samples of the job (relative to the results folder).
    pub trace_file: Option<String>,
}

impl ConfigResult {
    /// Mean of a run column's present values.
    pub fn mean_of(&self, f: impl Fn(&RunRow) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Median of a run column's present values.
    pub fn median_of(&self, f: impl Fn(&RunRow) -> Option<f64>) -> Option<f64> {
        let mut v: Vec<f64> = self.runs.iter().filter_map(f).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[(v.len() - 1) / 2])
    }
}
