//! Reading a results folder (harness `results.rs`): `metadata.json`, the `summary`, `runs`
//! and `layers` tables (Parquet, else CSV) and, per configuration, `configs/<slug>/`
//! (`result.json`: clock map and trace file; `job.json`: the agent's per-layer spans and
//! sync pulses).
//!
//! Every column is looked up by name; a missing one is an error naming the file and column.
use crate::error::{Error, Result};
use polars::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `metadata.json` (only the fields the report shows; all optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Metadata {
    pub campaign: String,
    pub transport: String,
    pub device_arch: Option<String>,
    pub device_cpus: Option<usize>,
    pub device_cpu_isa: Option<String>,
    pub soc: String,
    pub agent_version: Option<String>,
    pub ulab_version: String,
    pub git_commit: Option<String>,
    pub monitor: String,
    pub started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    /// Model name → "real" or "seeded".
    pub weights: BTreeMap<String, String>,
    pub shards: Vec<String>,
}

impl Metadata {
    /// The device in words: architecture and CPU count (or "unknown device").
    pub fn device(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = &self.device_arch {
            parts.push(a.clone());
        }
        if let Some(c) = self.device_cpus {
            parts.push(format!("{c} CPUs"));
        }
        if let Some(i) = &self.device_cpu_isa {
            parts.push(i.clone());
        }
        if parts.is_empty() {
            format!("unknown device ({})", self.transport)
        } else {
            format!("{} via {}", parts.join(", "), self.transport)
        }
    }
}

/// One row of `summary`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SummaryRow {
    pub config: String,
    pub model: String,
    pub mechanism: String,
    pub precision: String,
    pub runs: u64,
    pub latency_p50_ms: f64,
    pub latency_p90_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_mean_ms: f64,
    pub latency_std_ms: f64,
    pub energy_mean_j: Option<f64>,
    pub energy_above_idle_mean_j: Option<f64>,
    pub avg_power_w: Option<f64>,
    pub idle_power_w: Option<f64>,
    pub clock_residual_samples: Option<f64>,
    pub energy_method: Option<String>,
    pub top1: Option<f64>,
    pub top5: Option<f64>,
    pub top1_agreement: Option<f64>,
    pub top5_agreement: Option<f64>,
    pub accuracy_images: Option<f64>,
    pub weights: Option<String>,
}

/// One row of `runs`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunRow {
    pub config: String,
    pub run: u64,
    pub latency_ms: f64,
    pub energy_j: Option<f64>,
    pub energy_above_idle_j: Option<f64>,
    pub avg_power_w: Option<f64>,
}

/// One row of `layers`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerRow {
    pub config: String,
    pub layer: u64,
    pub node: String,
    pub kind: String,
    pub p50_ms: f64,
    pub energy_j: Option<f64>,
    pub energy_above_idle_j: Option<f64>,
    pub energy_method: Option<String>,
    /// Where the layer ran, when the table says ("cpu", "gpu", "cpu+gpu"): from a
    /// `processor` or `processors` column if the table has one.
    pub processor: Option<String>,
}

/// A results folder, read.
#[derive(Clone, Debug, Default)]
pub struct Results {
    pub dir: PathBuf,
    pub metadata: Metadata,
    pub summary: Vec<SummaryRow>,
    pub runs: Vec<RunRow>,
    pub layers: Vec<LayerRow>,
}

impl Results {
    /// Reads `dir`.
    pub fn load(dir: &Path) -> Result<Results> {
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                path: dir.to_path_buf(),
                what: "a results folder written by `ulab run`".into(),
            });
        }
        let meta_path = dir.join("metadata.json");
        let text = std::fs::read(&meta_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingFile {
                path: meta_path.clone(),
                what: "campaign metadata written by `ulab run`".into(),
            },
            _ => Error::io(&meta_path, e),
        })?;
        let metadata: Metadata = serde_json::from_slice(&text).map_err(|e| Error::Invalid {
            path: meta_path.clone(),
            msg: format!("not valid metadata JSON: {e}"),
        })?;
        Ok(Results {
            dir: dir.to_path_buf(),
            metadata,
            summary: read_summary(&Table::open(dir, "summary")?)?,
            runs: read_runs(&Table::open(dir, "runs")?)?,
            layers: read_layers(&Table::open(dir, "layers")?)?,
        })
    }

    /// The summary row of configuration `id`.
    pub fn config(&self, id: &str) -> Option<&SummaryRow> {
        self.summary.iter().find(|r| r.config == id)
    }

    /// Latency samples of configuration `id`, ms, in run order.
    pub fn run_latencies(&self, id: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|r| r.config == id)
            .map(|r| r.latency_ms)
            .collect()
    }

    /// Gross energy samples of configuration `id`, J (runs with energy only).
    pub fn run_energies(&self, id: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|r| r.config == id)
            .filter_map(|r| r.energy_j)
            .collect()
    }

    /// "real", "seeded", "mixed" or "unknown": where the weights of `models` came from.
    pub fn weights_of<'a>(&self, models: impl IntoIterator<Item = &'a str>) -> String {
        let mut seen: Vec<String> = Vec::new();
        for m in models {
            let w = self
                .metadata
                .weights
                .get(m)
                .cloned()
                .or_else(|| {
                    self.summary
                        .iter()
                        .find(|r| r.model == m)
                        .and_then(|r| r.weights.clone())
                })
                .unwrap_or_else(|| "unknown".into());
            if !seen.contains(&w) {
                seen.push(w);
            }
        }
        match seen.len() {
            0 => "unknown".into(),
            1 => seen.remove(0),
            _ => format!("mixed ({})", seen.join(", ")),
        }
    }
}

/// A table of the results folder with the path it came from.
pub struct Table {
    pub path: PathBuf,
    pub df: DataFrame,
}

impl Table {
    /// `dir/name.parquet`, else `dir/name.csv`.
    pub fn open(dir: &Path, name: &str) -> Result<Table> {
        let pq = dir.join(format!("{name}.parquet"));
        let csv = dir.join(format!("{name}.csv"));
        let table_err = |path: &Path, e: PolarsError| Error::Table {
            path: path.to_path_buf(),
            msg: format!("not readable: {e}"),
        };
        if pq.is_file() {
            let file = std::fs::File::open(&pq).map_err(|e| Error::io(&pq, e))?;
            let df = ParquetReader::new(file)
                .finish()
                .map_err(|e| table_err(&pq, e))?;
            return Ok(Table { path: pq, df });
        }
        if csv.is_file() {
            let df = CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(None)
                .try_into_reader_with_file_path(Some(csv.clone()))
                .and_then(|r| r.finish())
                .map_err(|e| table_err(&csv, e))?;
            return Ok(Table { path: csv, df });
        }
        Err(Error::MissingFile {
            path: pq,
            what: format!("the {name} table (neither {name}.parquet nor {name}.csv)"),
        })
    }

    /// Whether the table has column `c`.
    pub fn has(&self, c: &str) -> bool {
        self.df.column(c).is_ok()
    }

    fn cast(&self, c: &str, dt: &DataType) -> Result<Column> {
        let col = self.df.column(c).map_err(|_| Error::MissingColumn {
            path: self.path.clone(),
            column: c.into(),
        })?;
        col.cast(dt).map_err(|e| Error::Table {
            path: self.path.clone(),
            msg: format!("column {c:?} is not {dt}: {e}"),
        })
    }

    /// Column `c` as optional floats.
    pub fn opt_f64(&self, c: &str) -> Result<Vec<Option<f64>>> {
        let col = self.cast(c, &DataType::Float64)?;
        let ca = col.f64().map_err(|e| Error::Table {
            path: self.path.clone(),
            msg: format!("column {c:?}: {e}"),
        })?;
        Ok(ca.iter().collect())
    }

    /// Column `c` as floats; a null is an error naming the row.
    pub fn f64(&self, c: &str) -> Result<Vec<f64>> {
        self.opt_f64(c)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| self.null(c, i)))
            .collect()
    }

    /// Column `c` as optional strings.
    pub fn opt_str(&self, c: &str) -> Result<Vec<Option<String>>> {
        let col = self.cast(c, &DataType::String)?;
        let ca = col.str().map_err(|e| Error::Table {
            path: self.path.clone(),
            msg: format!("column {c:?}: {e}"),
        })?;
        Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
    }

    /// Column `c` as strings; a null is an error naming the row.
    pub fn str(&self, c: &str) -> Result<Vec<String>> {
        self.opt_str(c)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| self.null(c, i)))
            .collect()
    }

    /// Column `c` as non-negative integers (floats are rounded).
    pub fn u64(&self, c: &str) -> Result<Vec<u64>> {
        Ok(self
            .f64(c)?
            .into_iter()
            .map(|v| v.max(0.0) as u64)
            .collect())
    }

    fn null(&self, c: &str, row: usize) -> Error {
        Error::Table {
            path: self.path.clone(),
            msg: format!("column {c:?} has no value in row {}", row + 1),
        }
    }
}

fn read_summary(t: &Table) -> Result<Vec<SummaryRow>> {
    let config = t.str("config")?;
    let (model, mechanism, precision) = (t.str("model")?, t.str("mechanism")?, t.str("precision")?);
    let runs = t.u64("runs")?;
    let p50 = t.f64("latency_p50_ms")?;
    let p90 = t.f64("latency_p90_ms")?;
    let p99 = t.f64("latency_p99_ms")?;
    let mean = t.f64("latency_mean_ms")?;
    let std = t.f64("latency_std_ms")?;
    let energy = t.opt_f64("energy_mean_j")?;
    let above = t.opt_f64("energy_above_idle_mean_j")?;
    let power = t.opt_f64("avg_power_w")?;
    let idle = t.opt_f64("idle_power_w")?;
    let resid = t.opt_f64("clock_residual_samples")?;
    let method = t.opt_str("energy_method")?;
    let top1 = t.opt_f64("top1")?;
    let top5 = t.opt_f64("top5")?;
    let a1 = t.opt_f64("top1_agreement")?;
    let a5 = t.opt_f64("top5_agreement")?;
    let images = t.opt_f64("accuracy_images")?;
    let weights = t.opt_str("weights")?;
    Ok((0..config.len())
        .map(|i| SummaryRow {
            config: config[i].clone(),
            model: model[i].clone(),
            mechanism: mechanism[i].clone(),
            precision: precision[i].clone(),
            runs: runs[i],
            latency_p50_ms: p50[i],
            latency_p90_ms: p90[i],
            latency_p99_ms: p99[i],
            latency_mean_ms: mean[i],
            latency_std_ms: std[i],
            energy_mean_j: energy[i],
            energy_above_idle_mean_j: above[i],
            avg_power_w: power[i],
            idle_power_w: idle[i],
            clock_residual_samples: resid[i],
            energy_method: method[i].clone(),
            top1: top1[i],
            top5: top5[i],
            top1_agreement: a1[i],
            top5_agreement: a5[i],
            accuracy_images: images[i],
            weights: weights[i].clone(),
        })
        .collect())
}

fn read_runs(t: &Table) -> Result<Vec<RunRow>> {
    let config = t.str("config")?;
    let run = t.u64("run")?;
    let lat = t.f64("latency_ms")?;
    let e = t.opt_f64("energy_j")?;
    let ea = t.opt_f64("energy_above_idle_j")?;
    let p = t.opt_f64("avg_power_w")?;
    Ok((0..config.len())
        .map(|i| RunRow {
            config: config[i].clone(),
            run: run[i],
            latency_ms: lat[i],
            energy_j: e[i],
            energy_above_idle_j: ea[i],
            avg_power_w: p[i],
        })
        .collect())
}

fn read_layers(t: &Table) -> Result<Vec<LayerRow>> {
    let config = t.str("config")?;
    let layer = t.u64("layer")?;
    let node = t.str("node")?;
    let kind = t.str("kind")?;
    let p50 = t.f64("p50_ms")?;
    let e = t.opt_f64("energy_j")?;
    let ea = t.opt_f64("energy_above_idle_j")?;
    let method = t.opt_str("energy_method")?;
    let processor = match ["processor", "processors"].into_iter().find(|c| t.has(c)) {
        Some(c) => t.opt_str(c)?,
        None => vec![None; config.len()],
    };
    Ok((0..config.len())
        .map(|i| LayerRow {
            config: config[i].clone(),
            layer: layer[i],
            node: node[i].clone(),
            kind: kind[i].clone(),
            p50_ms: p50[i],
            energy_j: e[i],
            energy_above_idle_j: ea[i],
            energy_method: method[i].clone(),
            processor: processor[i].clone(),
        })
        .collect())
}
