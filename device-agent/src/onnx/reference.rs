//! Reference outputs from onnxruntime: exports a graph (or takes an `.onnx` file), runs
//! `tools/ort_run.py` on the CPU provider, and reads its outputs back as [`Tensor`]s. This is
//! the oracle of the "matches onnxruntime within 1e-4 relative / 1e-5 absolute" tests.
//!
//! Python is `$ULAB_PYTHON`, or `<repo>/.venv/bin/python` (made by
//! `python3 -m venv .venv && .venv/bin/pip install -r tools/requirements.txt`). Each call
//! starts Python once; [`OrtReference::run_graphs`] and [`OrtReference::run_batch`] run many
//! models in that one process (about a second saved per model).
//!
//! ```no_run
//! # fn compare(graph: &ulayer::Graph) -> ulayer::Result<()> {
//! use ulayer::onnx::reference::{check_close, OrtReference};
//! let ort = OrtReference::from_env();
//! let run = ort.run_graph_seeded(graph, 0)?; // inputs drawn by numpy, returned with the outputs
//! let input = &run.inputs[0].1;
//! let ours = ulayer::exec::run_graph_f32(&graph.clone().optimized()?, input, 2)?;
//! check_close(&graph.name, &ours[0], &run.outputs[0].1, 1e-4, 1e-5).map_err(ulayer::Error::Other)?;
//! # Ok(())
//! # }
//! # fn main() {}
//! ```
use super::npy;
use crate::tensor::Tensor;
use crate::{Error, Graph, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs ONNX models through onnxruntime with `tools/ort_run.py`.
#[derive(Clone, Debug)]
pub struct OrtReference {
    /// The Python interpreter (with onnxruntime, onnx and numpy installed).
    pub python: PathBuf,
    /// `tools/ort_run.py`.
    pub script: PathBuf,
    /// onnxruntime intra-op threads (`None`: onnxruntime's default).
    pub threads: Option<usize>,
    /// Run `onnx.checker` (full check, with shape inference) on the model first.
    pub check: bool,
}

/// The inputs of one onnxruntime run.
#[derive(Clone, Debug)]
pub enum OrtInputs {
    /// These tensors, in model input order.
    Given(Vec<Tensor>),
    /// Drawn by `ort_run.py` from numpy's default generator with this seed (standard normal;
    /// symbolic dimensions become 1). They come back in [`OrtRun::inputs`].
    Seed(u64),
}

/// One model to run.
#[derive(Clone, Debug)]
pub struct OrtJob {
    /// The `.onnx` file.
    pub model: PathBuf,
    /// What to run it on.
    pub inputs: OrtInputs,
    /// Timed runs after the first (0: none); their latencies land in [`OrtRun::timings_ms`].
    pub repeat: usize,
    /// Untimed runs before the timed ones.
    pub warmup: usize,
}

impl OrtJob {
    /// One untimed run of `model` on `inputs`.
    pub fn new(model: impl Into<PathBuf>, inputs: OrtInputs) -> Self {
        OrtJob {
            model: model.into(),
            inputs,
            repeat: 0,
            warmup: 0,
        }
    }
}

/// What one onnxruntime run produced.
#[derive(Clone, Debug)]
pub struct OrtRun {
    /// The inputs it ran on (as given, or generated from the seed), in model input order.
    pub inputs: Vec<(String, Tensor)>,
    /// The outputs, in model output order.
    pub outputs: Vec<(String, Tensor)>,
    /// Latency of each timed run, in milliseconds (empty unless the job asked for repeats).
    pub timings_ms: Vec<f64>,
}

impl OrtRun {
    /// The output tensors alone, in model output order.
    pub fn output_tensors(self) -> Vec<Tensor> {
        self.outputs.into_iter().map(|(_, t)| t).collect()
    }
}

impl Default for OrtReference {
    fn default() -> Self {
        Self::from_env()
    }
}

impl OrtReference {
    /// The repository root (where `tools/` and `.venv/` are), as of this build.
    pub fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    /// Python from `$ULAB_PYTHON` (default `<repo>/.venv/bin/python`), `<repo>/tools/ort_run.py`.
    pub fn from_env() -> Self {
        let root = Self::repo_root();
        let python = std::env::var_os("ULAB_PYTHON")
            .map_or_else(|| root.join(".venv/bin/python"), PathBuf::from);
        OrtReference {
            python,
            script: root.join("tools/ort_run.py"),
            threads: None,
            check: false,
        }
    }

    /// True when the interpreter and the script exist.
    pub fn available(&self) -> bool {
        self.python.exists() && self.script.exists()
    }

    /// Runs an `.onnx` file on the given inputs (model input order).
    pub fn run_model(&self, model: &Path, inputs: &[&Tensor]) -> Result<OrtRun> {
        self.run_one(OrtJob::new(
            model,
            OrtInputs::Given(inputs.iter().map(|t| (*t).clone()).collect()),
        ))
    }

    /// Runs an `.onnx` file on seeded random inputs, returned with the outputs.
    pub fn run_model_seeded(&self, model: &Path, seed: u64) -> Result<OrtRun> {
        self.run_one(OrtJob::new(model, OrtInputs::Seed(seed)))
    }

    /// Exports the graph to ONNX and runs it on the given inputs (graph input order); the
    /// outputs come back in graph output order.
    pub fn run_graph(&self, graph: &Graph, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let given = OrtInputs::Given(inputs.iter().map(|t| (*t).clone()).collect());
        Ok(self
            .run_graphs(&[(graph, given)])?
            .into_iter()
            .next()
            .map(OrtRun::output_tensors)
            .unwrap_or_default())
    }

    /// Exports the graph and runs it on seeded random inputs; returns them with the outputs.
    pub fn run_graph_seeded(&self, graph: &Graph, seed: u64) -> Result<OrtRun> {
        self.run_graphs(&[(graph, OrtInputs::Seed(seed))])?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Other("onnxruntime returned no run".into()))
    }

    /// Exports each graph and runs them all in one onnxruntime process (Python and
    /// onnxruntime start once: use this for many networks).
    pub fn run_graphs(&self, graphs: &[(&Graph, OrtInputs)]) -> Result<Vec<OrtRun>> {
        let dir = TempDir::new()?;
        let mut jobs = Vec::with_capacity(graphs.len());
        for (i, (g, inputs)) in graphs.iter().enumerate() {
            let model = dir.0.join(format!("graph_{i}.onnx"));
            super::export_file(g, &model)?;
            jobs.push(OrtJob::new(model, inputs.clone()));
        }
        self.run_batch(&jobs)
    }

    fn run_one(&self, job: OrtJob) -> Result<OrtRun> {
        self.run_batch(&[job])?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Other("onnxruntime returned no run".into()))
    }

    /// Runs every job in one onnxruntime process; results in job order.
    pub fn run_batch(&self, jobs: &[OrtJob]) -> Result<Vec<OrtRun>> {
        if !self.available() {
            return Err(Error::Other(format!(
                "onnxruntime reference unavailable: {} or {} is missing (python3 -m venv .venv && .venv/bin/pip install -r tools/requirements.txt, or set ULAB_PYTHON)",
                self.python.display(),
                self.script.display()
            )));
        }
        let dir = TempDir::new()?;
        let mut specs = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            let out_dir = dir.0.join(format!("job_{i}"));
            let (inputs, seed) = match &job.inputs {
                OrtInputs::Seed(s) => (vec![], Some(*s)),
                OrtInputs::Given(ts) => {
                    let mut files = Vec::with_capacity(ts.len());
                    for (k, t) in ts.iter().enumerate() {
                        let p = dir.0.join(format!("job_{i}_input_{k}.npy"));
                        npy::write(&p, t)?;
                        files.push(p);
                    }
                    (files, None)
                }
            };
            specs.push(JobSpec {
                model: job.model.clone(),
                out_dir,
                inputs,
                seed,
                repeat: job.repeat,
                warmup: job.warmup,
            });
        }
        let batch = dir.0.join("jobs.json");
        let json =
            serde_json::to_vec(&specs).map_err(|e| Error::Other(format!("job list: {e}")))?;
        std::fs::write(&batch, json).map_err(|cause| Error::Io {
            path: batch.clone(),
            cause,
        })?;

        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script).arg("--batch").arg(&batch);
        if let Some(t) = self.threads {
            cmd.arg("--threads").arg(t.to_string());
        }
        if self.check {
            cmd.arg("--check");
        }
        let output = cmd.output().map_err(|cause| Error::Io {
            path: self.python.clone(),
            cause,
        })?;
        if !output.status.success() {
            return Err(Error::Other(format!(
                "onnxruntime failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        specs.iter().map(|s| read_run(&s.out_dir)).collect()
    }
}

/// Reads one job's `outputs.json` and the tensors it lists.
fn read_run(out_dir: &Path) -> Result<OrtRun> {
    let path = out_dir.join("outputs.json");
    let bytes = std::fs::read(&path).map_err(|cause| Error::Io {
        path: path.clone(),
        cause,
    })?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    let load = |entries: Vec<Entry>| -> Result<Vec<(String, Tensor)>> {
        entries
            .into_iter()
            .map(|e| Ok((e.name, npy::read(&out_dir.join(e.file))?)))
            .collect()
    };
    Ok(OrtRun {
        inputs: load(m.inputs)?,
        outputs: load(m.outputs)?,
        timings_ms: m.timings_ms,
    })
}

/// One entry of the `--batch` job list of `ort_run.py`.
#[derive(serde::Serialize)]
struct JobSpec {
    model: PathBuf,
    out_dir: PathBuf,
    inputs: Vec<PathBuf>,
    seed: Option<u64>,
    repeat: usize,
    warmup: usize,
}

/// `outputs.json` written by `ort_run.py`.
#[derive(serde::Deserialize)]
struct Manifest {
    inputs: Vec<Entry>,
    outputs: Vec<Entry>,
    #[serde(default)]
    timings_ms: Vec<f64>,
}

#[derive(serde::Deserialize)]
struct Entry {
    name: String,
    file: String,
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "ulayer-ort-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|cause| Error::Io {
            path: dir.clone(),
            cause,
        })?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compares two tensors elementwise: every `|a - b| <= abs + rel * |b|` (`b` the reference).
/// On failure, the message gives the worst element.
pub fn check_close(
    what: &str,
    got: &Tensor,
    want: &Tensor,
    rel: f32,
    abs: f32,
) -> std::result::Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "{what}: shape {:?}, reference {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        let excess = (g - w).abs() - (abs + rel * w.abs());
        let bad = excess > 0.0 || excess.is_nan();
        if bad && worst.is_none_or(|(_, e)| excess > e || excess.is_nan()) {
            worst = Some((i, excess));
        }
    }
    match worst {
        None => Ok(()),
        Some((i, _)) => Err(format!(
            "{what}: element {i} is {}, reference {} (tolerance {rel} rel / {abs} abs)",
            got.data()[i],
            want.data()[i]
        )),
    }
}
