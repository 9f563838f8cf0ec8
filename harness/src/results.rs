//! The results folder:
//!
//! ```text
//! results/<campaign>/
//!   campaign.toml          the campaign file as run
//!   checkpoint.json        finished configurations (see `checkpoint`)
//!   metadata.json          device, SoC, agent version, git commit, monitor serial, times
//!   runs.parquet|csv       one row per (configuration, measured run)
//!   layers.parquet|csv     one row per (configuration, layer)
//!   summary.parquet|csv    one row per configuration
//!   predictor.json         the latency predictors' accuracy on the device profile the
//!                          cooperative mechanisms planned from (when one of them ran)
//!   configs/<slug>/        result.json (the rows), job.json (the agent's report),
//!                          trace.mtr (the raw monitor samples of the job),
//!                          predictor.json (cooperative mechanisms)
//! ```
//! Tables are rebuilt from every `configs/*/result.json` after each configuration.
use anyhow::{Context, Result};
use polars::prelude::{
    Column, CsvReadOptions, CsvWriter, DataFrame, ParquetReader, ParquetWriter, SerReader,
    SerWriter,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::record::ConfigResult;

/// Campaign metadata (`metadata.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub campaign: String,
    pub campaign_digest: String,
    pub transport: String,
    pub device_arch: Option<String>,
    pub device_cpus: Option<usize>,
    pub device_cpu_isa: Option<String>,
    pub soc: String,
    pub agent_version: Option<String>,
    pub protocol: Option<u32>,
    pub ulab_version: String,
    pub git_commit: Option<String>,
    pub monitor: String,
    pub monitor_serial: Option<u16>,
    pub started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    /// Model name → "real" or "seeded".
    pub weights: std::collections::BTreeMap<String, String>,
    /// Shards this folder holds ("i/n"), or empty for the whole campaign.
    pub shards: Vec<String>,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes `bytes` to `path` atomically (temporary file beside it, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("rename into {}", path.display()))?;
    Ok(())
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).context("encode JSON")?;
    write_atomic(path, &text)
}

/// Reads a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{}: not valid", path.display()))
}

/// The folder of a configuration's files.
pub fn config_dir(out: &Path, slug: &str) -> PathBuf {
    out.join("configs").join(slug)
}

/// Name of the predictor accuracy file, in a configuration's folder and in the results
/// folder (where `ulab report` draws it from).
pub const PREDICTOR_FILE: &str = "predictor.json";

/// The latency predictors' accuracy on the held-out measurements of the device profile a
/// cooperative configuration planned from, as the agent reported it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PredictorFile {
    pub accuracy: Vec<ulayer::protocol::PredictorAccuracy>,
    /// The configuration folder it came from.
    pub from: String,
}

/// Copies the first finished configuration's predictor accuracy (in matrix order; every
/// configuration of a campaign plans from the same device profile) to
/// `out/predictor.json`; removes a stale one when none has any.
pub fn write_predictor(out: &Path, finished: &[String]) -> Result<()> {
    let target = out.join(PREDICTOR_FILE);
    let mut found: Option<(usize, PredictorFile)> = None;
    for slug in finished {
        let p = config_dir(out, slug).join(PREDICTOR_FILE);
        if !p.is_file() {
            continue;
        }
        let index = read_json::<ConfigResult>(&config_dir(out, slug).join("result.json"))?.index;
        if found.as_ref().is_none_or(|(i, _)| index < *i) {
            found = Some((index, read_json(&p)?));
        }
    }
    match found {
        Some((_, f)) => write_json(&target, &f),
        None if target.is_file() => std::fs::remove_file(&target)
            .with_context(|| format!("remove the stale {}", target.display())),
        None => Ok(()),
    }
}

/// Every finished configuration's result under `out`, in matrix order.
pub fn load_results(out: &Path, finished: &[String]) -> Result<Vec<ConfigResult>> {
    let mut all = Vec::new();
    for slug in finished {
        let p = config_dir(out, slug).join("result.json");
        all.push(read_json::<ConfigResult>(&p)?);
    }
    all.sort_by_key(|r| r.index);
    Ok(all)
}

fn s(name: &str, v: Vec<String>) -> Column {
    Column::new(name.into(), v)
}
fn f(name: &str, v: Vec<f64>) -> Column {
    Column::new(name.into(), v)
}
fn of(name: &str, v: Vec<Option<f64>>) -> Column {
    Column::new(name.into(), v)
}
fn u(name: &str, v: Vec<u64>) -> Column {
    Column::new(name.into(), v)
}
fn os(name: &str, v: Vec<Option<String>>) -> Column {
    Column::new(name.into(), v)
}

fn key_columns(rows: &[(&ConfigResult, usize)]) -> Vec<Column> {
    vec![
        s("config", rows.iter().map(|(r, _)| r.config.id()).collect()),
        s(
            "model",
            rows.iter().map(|(r, _)| r.config.model.clone()).collect(),
        ),
        s(
            "mechanism",
            rows.iter()
                .map(|(r, _)| r.config.mechanism.clone())
                .collect(),
        ),
        s(
            "precision",
            rows.iter()
                .map(|(r, _)| r.config.precision.to_string())
                .collect(),
        ),
    ]
}

/// One row per (configuration, measured run).
pub fn runs_table(results: &[ConfigResult]) -> Result<DataFrame> {
    let keys: Vec<(&ConfigResult, usize)> = results
        .iter()
        .flat_map(|r| (0..r.runs.len()).map(move |i| (r, i)))
        .collect();
    fn run<'a>(k: &(&'a ConfigResult, usize)) -> &'a crate::record::RunRow {
        &k.0.runs[k.1]
    }
    let mut cols = key_columns(&keys);
    cols.push(u("run", keys.iter().map(|k| run(k).run as u64).collect()));
    cols.push(u(
        "start_ns",
        keys.iter().map(|k| run(k).start_ns).collect(),
    ));
    cols.push(f(
        "latency_ms",
        keys.iter().map(|k| run(k).latency_ms).collect(),
    ));
    cols.push(of(
        "energy_j",
        keys.iter().map(|k| run(k).energy_j).collect(),
    ));
    cols.push(of(
        "energy_above_idle_j",
        keys.iter().map(|k| run(k).energy_above_idle_j).collect(),
    ));
    cols.push(of(
        "avg_power_w",
        keys.iter().map(|k| run(k).avg_power_w).collect(),
    ));
    DataFrame::new_infer_height(cols).context("build the runs table")
}

/// One row per (configuration, layer).
pub fn layers_table(results: &[ConfigResult]) -> Result<DataFrame> {
    let keys: Vec<(&ConfigResult, usize)> = results
        .iter()
        .flat_map(|r| (0..r.layers.len()).map(move |i| (r, i)))
        .collect();
    fn l<'a>(k: &(&'a ConfigResult, usize)) -> &'a crate::record::LayerRow {
        &k.0.layers[k.1]
    }
    let mut cols = key_columns(&keys);
    cols.push(u("layer", keys.iter().map(|k| l(k).layer as u64).collect()));
    cols.push(s("node", keys.iter().map(|k| l(k).node.clone()).collect()));
    cols.push(s("kind", keys.iter().map(|k| l(k).kind.clone()).collect()));
    cols.push(os(
        "processors",
        keys.iter().map(|k| l(k).processors.clone()).collect(),
    ));
    cols.push(u("macs", keys.iter().map(|k| l(k).macs).collect()));
    cols.push(f("p50_ms", keys.iter().map(|k| l(k).p50_ms).collect()));
    cols.push(f("mean_ms", keys.iter().map(|k| l(k).mean_ms).collect()));
    cols.push(of("energy_j", keys.iter().map(|k| l(k).energy_j).collect()));
    cols.push(of(
        "energy_above_idle_j",
        keys.iter().map(|k| l(k).energy_above_idle_j).collect(),
    ));
    cols.push(os(
        "energy_method",
        keys.iter().map(|k| l(k).energy_method.clone()).collect(),
    ));
    DataFrame::new_infer_height(cols).context("build the layers table")
}

/// One row per configuration.
pub fn summary_table(results: &[ConfigResult]) -> Result<DataFrame> {
    let keys: Vec<(&ConfigResult, usize)> = results.iter().map(|r| (r, 0)).collect();
    let mut cols = key_columns(&keys);
    let lat = |g: fn(&ulayer::protocol::LatencyStats) -> f64| -> Vec<f64> {
        results.iter().map(|r| g(&r.latency)).collect()
    };
    cols.push(u(
        "runs",
        results.iter().map(|r| r.latency.runs as u64).collect(),
    ));
    cols.push(f("latency_p50_ms", lat(|l| l.p50_ms)));
    cols.push(f("latency_p90_ms", lat(|l| l.p90_ms)));
    cols.push(f("latency_p99_ms", lat(|l| l.p99_ms)));
    cols.push(f("latency_mean_ms", lat(|l| l.mean_ms)));
    cols.push(f("latency_std_ms", lat(|l| l.std_ms)));
    cols.push(of(
        "energy_mean_j",
        results.iter().map(|r| r.mean_of(|x| x.energy_j)).collect(),
    ));
    cols.push(of(
        "energy_p50_j",
        results
            .iter()
            .map(|r| r.median_of(|x| x.energy_j))
            .collect(),
    ));
    cols.push(of(
        "energy_above_idle_mean_j",
        results
            .iter()
            .map(|r| r.mean_of(|x| x.energy_above_idle_j))
            .collect(),
    ));
    cols.push(of(
        "avg_power_w",
        results
            .iter()
            .map(|r| r.mean_of(|x| x.avg_power_w))
            .collect(),
    ));
    cols.push(of(
        "idle_power_w",
        results.iter().map(|r| r.power.idle_power_w).collect(),
    ));
    cols.push(of(
        "clock_residual_samples",
        results
            .iter()
            .map(|r| r.power.clock_residual_samples)
            .collect(),
    ));
    cols.push(os(
        "energy_method",
        results
            .iter()
            .map(|r| r.power.energy_method.clone())
            .collect(),
    ));
    let acc = |g: fn(&crate::record::AccuracyRow) -> Option<f64>| -> Vec<Option<f64>> {
        results
            .iter()
            .map(|r| r.accuracy.as_ref().and_then(g))
            .collect()
    };
    cols.push(of("top1", acc(|a| Some(a.top1))));
    cols.push(of("top5", acc(|a| Some(a.top5))));
    cols.push(of("top1_agreement", acc(|a| a.top1_agreement)));
    cols.push(of("top5_agreement", acc(|a| a.top5_agreement)));
    cols.push(of("accuracy_images", acc(|a| Some(a.images as f64))));
    cols.push(os(
        "weights",
        results.iter().map(|r| r.weights.clone()).collect(),
    ));
    DataFrame::new_infer_height(cols).context("build the summary table")
}

fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    ParquetWriter::new(file)
        .finish(df)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename into {}", path.display()))?;
    Ok(())
}

fn write_csv(df: &mut DataFrame, path: &Path) -> Result<()> {
    let tmp = path.with_extension("csv.tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    CsvWriter::new(file)
        .include_header(true)
        .finish(df)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename into {}", path.display()))?;
    Ok(())
}

/// Writes runs, layers and summary as Parquet and CSV into `out`.
pub fn write_tables(out: &Path, results: &[ConfigResult]) -> Result<()> {
    for (name, mut df) in [
        ("runs", runs_table(results)?),
        ("layers", layers_table(results)?),
        ("summary", summary_table(results)?),
    ] {
        write_parquet(&mut df, &out.join(format!("{name}.parquet")))?;
        write_csv(&mut df, &out.join(format!("{name}.csv")))?;
    }
    Ok(())
}

/// Reads a Parquet table back.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    ParquetReader::new(file)
        .finish()
        .with_context(|| format!("read {}", path.display()))
}

/// Reads a CSV table back.
pub fn read_csv(path: &Path) -> Result<DataFrame> {
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .with_context(|| format!("read {}", path.display()))
}

/// The summary as a text table for the terminal.
pub fn summary_text(results: &[ConfigResult]) -> String {
    // The first column is as wide as the longest configuration name.
    let w = results
        .iter()
        .map(|r| r.config.id().chars().count())
        .chain(std::iter::once("configuration".len()))
        .max()
        .unwrap_or(0);
    let mut t = format!(
        "{:<w$} {:>5} {:>8} {:>8} {:>8} {:>15} {:>7} {:>7}\n",
        "configuration", "runs", "p50 ms", "p90 ms", "mJ/inf", "above idle mJ", "top-1", "top-5"
    );
    for r in results {
        let mj = |v: Option<f64>| v.map_or("-".to_string(), |j| format!("{:.2}", j * 1e3));
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |p| format!("{:.0}%", p * 100.0));
        t.push_str(&format!(
            "{:<w$} {:>5} {:>8.2} {:>8.2} {:>8} {:>15} {:>7} {:>7}\n",
            r.config.id(),
            r.latency.runs,
            r.latency.p50_ms,
            r.latency.p90_ms,
            mj(r.mean_of(|x| x.energy_j)),
            mj(r.mean_of(|x| x.energy_above_idle_j)),
            pct(r.accuracy.as_ref().map(|a| a.top1)),
            pct(r.accuracy.as_ref().map(|a| a.top5)),
        ));
    }
    t
}
