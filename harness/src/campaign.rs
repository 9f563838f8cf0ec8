//! Campaign files: what to measure, where and how (TOML).
//!
//! ```toml
//! name = "demo"                       # results go to results/<name> by default
//! [device]
//! transport = "local"                 # local | ssh | adb
//! soc = "host CPU"                    # a label for the results
//! [monitor]
//! kind = "simulated"                  # monsoon | simulated | none
//! voltage = 4.0
//! [matrix]
//! models = ["mobilenet-v1"]
//! mechanisms = ["cpu", "gpu"]
//! precisions = ["f32", "quint8"]
//! [run]
//! warmup = 2
//! iterations = 10
//! [accuracy]
//! dataset = "bundled"
//! ```
//!
//! Unknown keys are refused; every error names the file, line and column.
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;
use ulayer::backend::Precision;

/// A campaign file that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// How the host reaches the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// The agent runs on this machine as a child process.
    Local,
    /// The agent runs on another machine reached with the system `ssh`/`scp`.
    Ssh,
    /// The agent runs on an Android device reached with the `adb` client.
    Adb,
}

/// `[device]`: where the agent runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub transport: TransportKind,
    /// ssh: `user@host` or a host alias of the user's ssh config.
    #[serde(default)]
    pub host: Option<String>,
    /// ssh: port (default: the ssh config's).
    #[serde(default)]
    pub port: Option<u16>,
    /// ssh: identity file (default: the user's keys).
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// ssh: extra `-o Option=value` settings.
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// adb: device serial (default: the only device attached).
    #[serde(default)]
    pub serial: Option<String>,
    /// A label for the results (e.g. "Snapdragon 855").
    #[serde(default = "default_soc")]
    pub soc: String,
    /// The agent binary on this machine: run (local) or pushed (ssh, adb). Default:
    /// `ulayer-agent` beside `ulab`, else `target/release/ulayer-agent`.
    #[serde(default)]
    pub agent: Option<PathBuf>,
    /// Working folder on the device (ssh default `/tmp/ulab-agent`, adb
    /// `/data/local/tmp/ulab`).
    #[serde(default)]
    pub remote_dir: Option<String>,
    /// The data folder on this machine (weights, photos): default `$ULAB_DATA_DIR`,
    /// else `.cache/datasets` of the repository. Pushed for ssh and adb.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

fn default_soc() -> String {
    "unknown".into()
}

/// Which power monitor records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorKind {
    /// A Monsoon monitor on a serial port.
    Monsoon,
    /// The in-process simulator, its power following the local agent process.
    Simulated,
    /// No power measurement (latency and accuracy only).
    None,
}

/// `[monitor]`: the power monitor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
    pub kind: MonitorKind,
    /// monsoon: serial port (e.g. /dev/ttyACM0).
    #[serde(default)]
    pub port: Option<PathBuf>,
    /// monsoon: refuse a monitor with another serial number.
    #[serde(default)]
    pub serial: Option<u16>,
    /// Output voltage, V (2.01..=4.55).
    #[serde(default = "default_voltage")]
    pub voltage: f32,
    /// Runtime current limit, A (0..=8); default: leave as is.
    #[serde(default)]
    pub current_limit_a: Option<f32>,
    /// simulated: clock offset of the simulator's sample 0, ms.
    #[serde(default)]
    pub sim_offset_ms: f64,
    /// simulated: sample clock drift, ppm.
    #[serde(default)]
    pub sim_drift_ppm: f64,
    /// simulated: seed of its noise.
    #[serde(default = "default_seed")]
    pub sim_seed: u64,
}

fn default_voltage() -> f32 {
    4.0
}
fn default_seed() -> u64 {
    1
}

impl Default for MonitorSpec {
    fn default() -> Self {
        MonitorSpec {
            kind: MonitorKind::None,
            port: None,
            serial: None,
            voltage: default_voltage(),
            current_limit_a: None,
            sim_offset_ms: 0.0,
            sim_drift_ppm: 0.0,
            sim_seed: default_seed(),
        }
    }
}

/// `[matrix]`: every model × mechanism × precision is one configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// Zoo names or `.onnx` paths on the device.
    pub models: Vec<String>,
    /// Execution mechanisms as the agent names them ("cpu", "gpu", "ulayer", ...).
    #[serde(default = "default_mechanisms")]
    pub mechanisms: Vec<String>,
    #[serde(default = "default_precisions")]
    pub precisions: Vec<Precision>,
}

fn default_mechanisms() -> Vec<String> {
    vec!["cpu".into()]
}
fn default_precisions() -> Vec<Precision> {
    vec![Precision::F32]
}

/// `[run]`: how each configuration is timed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Runs before the measured ones, discarded.
    #[serde(default = "default_warmup")]
    pub warmup: usize,
    /// Measured runs (at least; see `min_duration_ms`).
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    /// Keep running until the measured runs last this long, ms.
    #[serde(default)]
    pub min_duration_ms: u32,
    /// Pause between configurations (the device cools down), ms.
    #[serde(default = "default_cooldown")]
    pub cooldown_ms: u64,
    /// CPU threads (0 = all cores).
    #[serde(default)]
    pub threads: usize,
    /// Idle window before each job's opening pulses (the baseline), ms.
    #[serde(default = "default_idle")]
    pub idle_ms: u32,
    /// Give up on a job after this long, s.
    #[serde(default = "default_job_timeout")]
    pub job_timeout_s: u64,
}

fn default_warmup() -> usize {
    5
}
fn default_iterations() -> usize {
    50
}
fn default_cooldown() -> u64 {
    1000
}
fn default_idle() -> u32 {
    500
}
fn default_job_timeout() -> u64 {
    600
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            warmup: default_warmup(),
            iterations: default_iterations(),
            min_duration_ms: 0,
            cooldown_ms: default_cooldown(),
            threads: 0,
            idle_ms: default_idle(),
            job_timeout_s: default_job_timeout(),
        }
    }
}

/// `[accuracy]`: the labeled images every configuration classifies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracySpec {
    /// "bundled" (the 18 photos of the data fetch) or an ImageNet-style folder.
    pub dataset: String,
    /// Use at most this many images (in the folder's order).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A whole campaign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub name: String,
    pub description: String,
    pub device: DeviceSpec,
    pub monitor: MonitorSpec,
    pub matrix: Matrix,
    pub run: RunSpec,
    pub accuracy: Option<AccuracySpec>,
}

/// The file as written: tables keep their spans for cross-field checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    device: Spanned<DeviceSpec>,
    #[serde(default)]
    monitor: Option<Spanned<MonitorSpec>>,
    matrix: Spanned<Matrix>,
    #[serde(default)]
    run: Option<Spanned<RunSpec>>,
    #[serde(default)]
    accuracy: Option<Spanned<AccuracySpec>>,
}

/// One configuration of the matrix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Configuration {
    pub model: String,
    pub mechanism: String,
    pub precision: Precision,
}

impl Configuration {
    /// `model/mechanism/precision`: unique within a campaign.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.model, self.mechanism, self.precision)
    }

    /// The id as a folder name (`model__mechanism__precision`).
    pub fn slug(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-.+".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        format!(
            "{}__{}__{}",
            clean(&self.model),
            clean(&self.mechanism),
            self.precision
        )
    }
}

/// The folder a campaign file's relative paths resolve against: the file's folder (`.` for
/// a bare file name).
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Line and column (1-based) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary_compat(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

impl Campaign {
    /// Reads and validates a campaign file.
    pub fn load(path: &Path) -> Result<(Campaign, String), CampaignError> {
        let text = std::fs::read_to_string(path).map_err(|source| CampaignError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let c = Self::parse(&text, &path.display().to_string())?;
        Ok((c, text))
    }

    /// Parses and validates campaign text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Campaign, CampaignError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            CampaignError::Invalid {
                path: origin.to_string(),
                line,
                column,
                message,
            }
        };
        let raw: RawCampaign = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            invalid(offset, e.message().trim().to_string())
        })?;
        let name_at = raw.name.span().start;
        let name = raw.name.into_inner();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                name_at,
                format!("name {name:?}: use letters, digits, '-', '_' or '.' (it names the results folder)"),
            ));
        }
        let dev_at = raw.device.span().start;
        let device = raw.device.into_inner();
        match device.transport {
            TransportKind::Ssh if device.host.as_deref().is_none_or(str::is_empty) => {
                return Err(invalid(
                    dev_at,
                    "[device] transport = \"ssh\" needs host = \"user@host\"".into(),
                ))
            }
            TransportKind::Local | TransportKind::Adb if device.host.is_some() => {
                return Err(invalid(
                    dev_at,
                    "[device] host is for transport = \"ssh\" only".into(),
                ))
            }
            TransportKind::Local | TransportKind::Ssh if device.serial.is_some() => {
                return Err(invalid(
                    dev_at,
                    "[device] serial is for transport = \"adb\" only".into(),
                ))
            }
            _ => {}
        }
        for (what, v) in [("host", &device.host), ("serial", &device.serial)] {
            if v.as_deref()
                .is_some_and(|v| v.starts_with('-') || v.contains(char::is_whitespace))
            {
                return Err(invalid(
                    dev_at,
                    format!("[device] {what} {v:?}: must not start with '-' or contain spaces"),
                ));
            }
        }
        let (monitor, mon_at) = match raw.monitor {
            Some(m) => {
                let at = m.span().start;
                (m.into_inner(), at)
            }
            None => (MonitorSpec::default(), 0),
        };
        match monitor.kind {
            MonitorKind::Monsoon if monitor.port.is_none() => {
                return Err(invalid(
                    mon_at,
                    "[monitor] kind = \"monsoon\" needs port = \"/dev/ttyACM0\" (or the monitor's port)".into(),
                ))
            }
            MonitorKind::Simulated if device.transport != TransportKind::Local => {
                return Err(invalid(
                    mon_at,
                    "[monitor] kind = \"simulated\" follows the agent process, so it needs [device] transport = \"local\"".into(),
                ))
            }
            _ => {}
        }
        if monitor.kind != MonitorKind::None && !(2.01..=4.55).contains(&monitor.voltage) {
            return Err(invalid(
                mon_at,
                format!("[monitor] voltage {} V: use 2.01..=4.55 V", monitor.voltage),
            ));
        }
        if let Some(a) = monitor.current_limit_a {
            if !(0.0..=8.0).contains(&a) {
                return Err(invalid(
                    mon_at,
                    format!("[monitor] current_limit_a {a} A: use 0..=8 A"),
                ));
            }
        }
        let mat_at = raw.matrix.span().start;
        let matrix = raw.matrix.into_inner();
        for (what, empty) in [
            ("models", matrix.models.is_empty()),
            ("mechanisms", matrix.mechanisms.is_empty()),
            ("precisions", matrix.precisions.is_empty()),
        ] {
            if empty {
                return Err(invalid(mat_at, format!("[matrix] {what} is empty")));
            }
        }
        for m in matrix.models.iter().chain(&matrix.mechanisms) {
            if m.trim().is_empty() || m.contains('/') && !m.ends_with(".onnx") {
                return Err(invalid(mat_at, format!("[matrix] bad name {m:?}")));
            }
        }
        let (run, run_at) = match raw.run {
            Some(r) => {
                let at = r.span().start;
                (r.into_inner(), at)
            }
            None => (RunSpec::default(), 0),
        };
        if run.iterations == 0 && run.min_duration_ms == 0 {
            return Err(invalid(
                run_at,
                "[run] iterations = 0 with min_duration_ms = 0 measures nothing".into(),
            ));
        }
        if run.job_timeout_s == 0 {
            return Err(invalid(run_at, "[run] job_timeout_s must be > 0".into()));
        }
        let accuracy = match raw.accuracy {
            Some(a) => {
                let at = a.span().start;
                let a = a.into_inner();
                if a.dataset.trim().is_empty() {
                    return Err(invalid(
                        at,
                        "[accuracy] dataset: \"bundled\" or an ImageNet-style folder".into(),
                    ));
                }
                if a.limit == Some(0) {
                    return Err(invalid(at, "[accuracy] limit = 0 scores nothing".into()));
                }
                Some(a)
            }
            None => None,
        };
        let c = Campaign {
            name,
            description: raw.description,
            device,
            monitor,
            matrix,
            run,
            accuracy,
        };
        let mut seen = std::collections::BTreeSet::new();
        for cfg in c.configurations() {
            if !seen.insert(cfg.id()) {
                return Err(invalid(
                    mat_at,
                    format!("[matrix] configuration {} appears twice", cfg.id()),
                ));
            }
        }
        Ok(c)
    }

    /// Every configuration, in matrix order (models, then mechanisms, then precisions).
    pub fn configurations(&self) -> Vec<Configuration> {
        let mut out = Vec::new();
        for model in &self.matrix.models {
            for mechanism in &self.matrix.mechanisms {
                for &precision in &self.matrix.precisions {
                    out.push(Configuration {
                        model: model.clone(),
                        mechanism: mechanism.clone(),
                        precision,
                    });
                }
            }
        }
        out
    }

    /// A digest of what defines the campaign's results — name, SoC label, transport and
    /// monitor kinds, voltage, matrix, run settings, accuracy dataset — but not where things
    /// are on one lab host (agent and data paths, ssh host, adb serial, monitor port), so that
    /// shards run on different hosts share it. Resume and merge refuse another digest.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let view = serde_json::json!({
            "name": self.name,
            "soc": self.device.soc,
            "transport": self.device.transport,
            "monitor": self.monitor.kind,
            "voltage": self.monitor.voltage,
            "matrix": self.matrix,
            "run": self.run,
            "accuracy": self.accuracy,
        });
        hex::encode(&sha2::Sha256::digest(view.to_string().as_bytes())[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
[device]
transport = "local"
[matrix]
models = ["mobilenet-v1"]
mechanisms = ["cpu", "gpu"]
precisions = ["f32", "quint8"]
"#;

    fn err(text: &str) -> (usize, usize, String) {
        match Campaign::parse(text, "c.toml") {
            Err(CampaignError::Invalid {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("expected an invalid campaign, got {other:?}"),
        }
    }

    #[test]
    fn a_good_campaign_expands_its_matrix() {
        let c = Campaign::parse(GOOD, "c.toml").expect("valid");
        let ids: Vec<String> = c.configurations().iter().map(|c| c.id()).collect();
        assert_eq!(
            ids,
            [
                "mobilenet-v1/cpu/f32",
                "mobilenet-v1/cpu/quint8",
                "mobilenet-v1/gpu/f32",
                "mobilenet-v1/gpu/quint8"
            ]
        );
        assert_eq!(c.run, RunSpec::default());
        assert_eq!(
            c.digest(),
            Campaign::parse(GOOD, "x").expect("valid").digest()
        );
    }

    #[test]
    fn unknown_keys_bad_values_and_missing_fields_name_line_and_column() {
        let (l, c, m) = err(&GOOD.replace("[matrix]", "[matrix]\nmodles = [\"x\"]"));
        assert_eq!((l, c), (6, 1), "{m}");
        assert!(m.contains("modles"), "{m}");

        let (l, c, m) = err(&GOOD.replace("\"quint8\"", "\"int4\""));
        assert_eq!(l, 8, "{m}");
        assert!(c > 10, "{m}");
        assert!(m.contains("int4"), "{m}");

        let (l, _, m) = err(&GOOD.replace("\"local\"", "\"ssh\""));
        assert_eq!(l, 3, "{m}");
        assert!(m.contains("host"), "{m}");

        let (l, _, m) = err(&format!("{GOOD}[monitor]\nkind = \"monsoon\"\n"));
        assert_eq!(l, 9, "{m}");
        assert!(m.contains("port"), "{m}");

        let (l, c, m) = err("name = \"t\"\n[device]\ntransport = \"local\"\n");
        assert!(m.contains("matrix"), "{l}:{c} {m}");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
