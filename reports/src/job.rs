//! Per-configuration files of a results folder: `configs/<slug>/result.json` (clock map,
//! trace file) and `job.json` (the agent's report: idle window, sync pulses, every measured
//! run's per-layer spans with the processor that ran them). Read as plain JSON, so this crate
//! does not depend on the agent's crate; unknown fields are ignored.
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the report uses of one configuration's folder.
#[derive(Clone, Debug, Default)]
pub struct ConfigFiles {
    pub dir: PathBuf,
    /// `sample_index = a + b · device_ns`, when the clock was aligned.
    pub clock: Option<(f64, f64)>,
    /// The raw monitor samples (absolute path), when a monitor recorded.
    pub trace_file: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ResultJson {
    config: ConfigJson,
    #[serde(default)]
    power: PowerJson,
    #[serde(default)]
    trace_file: Option<String>,
}

#[derive(Deserialize)]
struct ConfigJson {
    model: String,
    mechanism: String,
    precision: String,
}

#[derive(Deserialize, Default)]
struct PowerJson {
    #[serde(default)]
    clock_a: Option<f64>,
    #[serde(default)]
    clock_b: Option<f64>,
}

/// Every `configs/*/result.json` under `results`, by configuration id
/// (`model/mechanism/precision`). A folder without `configs/` gives an empty map.
pub fn config_files(results: &Path) -> Result<BTreeMap<String, ConfigFiles>> {
    let mut out = BTreeMap::new();
    let root = results.join("configs");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    for entry in entries {
        let dir = entry.map_err(|e| Error::io(&root, e))?.path();
        let path = dir.join("result.json");
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        let r: ResultJson = serde_json::from_slice(&text).map_err(|e| Error::Invalid {
            path: path.clone(),
            msg: format!("not a configuration result: {e}"),
        })?;
        let id = format!(
            "{}/{}/{}",
            r.config.model, r.config.mechanism, r.config.precision
        );
        let clock = r.power.clock_a.zip(r.power.clock_b);
        out.insert(
            id,
            ConfigFiles {
                clock,
                trace_file: r.trace_file.map(|t| results.join(t)),
                dir,
            },
        );
    }
    Ok(out)
}

/// A device `CLOCK_MONOTONIC` interval, ns.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
pub struct Interval {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// One processor's work on one layer in one run.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Span {
    pub node: String,
    #[serde(default)]
    pub processor: String,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// One measured inference.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Inference {
    pub start_ns: u64,
    pub end_ns: u64,
    #[serde(default)]
    pub layers: Vec<Span>,
}

#[derive(Deserialize, Default)]
struct BenchJson {
    #[serde(default)]
    traces: Vec<Inference>,
}

/// The parts of `job.json` the report draws.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Job {
    #[serde(default)]
    pub idle: Option<Interval>,
    #[serde(default)]
    pub pulses_before: Vec<Interval>,
    #[serde(default)]
    pub pulses_after: Vec<Interval>,
    #[serde(default)]
    pub job: Option<Interval>,
    #[serde(skip)]
    pub runs: Vec<Inference>,
}

impl Job {
    /// Reads `dir/job.json`; `None` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Job>> {
        let path = dir.join("job.json");
        let Ok(text) = std::fs::read(&path) else {
            return Ok(None);
        };
        let invalid = |e: serde_json::Error| Error::Invalid {
            path: path.clone(),
            msg: format!("not a job report: {e}"),
        };
        let value: serde_json::Value = serde_json::from_slice(&text).map_err(invalid)?;
        let mut job: Job = serde_json::from_value(value.clone()).map_err(invalid)?;
        if let Some(b) = value.get("bench") {
            let bench: BenchJson = serde_json::from_value(b.clone()).map_err(invalid)?;
            job.runs = bench.traces;
        }
        Ok(Some(job))
    }

    /// Per layer (by node, in order of first appearance): the median time each processor
    /// spent on it over the runs, ms.
    pub fn layer_processor_ms(&self) -> Vec<(String, BTreeMap<String, f64>)> {
        let mut order: Vec<String> = Vec::new();
        let mut times: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        for run in &self.runs {
            for s in &run.layers {
                if !order.contains(&s.node) {
                    order.push(s.node.clone());
                }
                let ms = s.end_ns.saturating_sub(s.start_ns) as f64 / 1e6;
                times
                    .entry((s.node.clone(), s.processor.clone()))
                    .or_default()
                    .push(ms);
            }
        }
        order
            .into_iter()
            .map(|node| {
                let per: BTreeMap<String, f64> = times
                    .iter()
                    .filter(|((n, _), _)| *n == node)
                    .map(|((_, p), v)| (p.clone(), crate::stats::median(v).unwrap_or(0.0)))
                    .collect();
                (node, per)
            })
            .collect()
    }
}

/// Power samples of a trace file: (sample index, main-channel watts).
pub fn read_power(path: &Path) -> Result<Vec<(u64, f64)>> {
    let mut r = monsoon::trace::TraceReader::open(path).map_err(|e| Error::Invalid {
        path: path.to_path_buf(),
        msg: format!("not a readable monitor trace: {e}"),
    })?;
    let data = r.read_all().map_err(|e| Error::Invalid {
        path: path.to_path_buf(),
        msg: format!("trace samples not readable: {e}"),
    })?;
    Ok(data
        .samples
        .iter()
        .map(|s| (s.index, s.main_power_w()))
        .collect())
}
