//! Runs a campaign: for every configuration (of this shard, not yet finished) a fresh agent
//! session, the monitor, the whole job sent at once with USB passthrough off for its
//! measured window, the trace recorded, alignment and energy, accuracy by `classify` (not
//! measured), then the result written and the checkpoint advanced.
//!
//! Fault injection for the resume tests (`ULAB_FAULT`, comma-separated; not for campaigns):
//! `kill-agent=<config id>` kills the agent 300 ms into that configuration's job;
//! `disconnect=<config id>@<seconds>` closes the simulated monitor's port that many seconds
//! after sampling starts; `refuse-fit=<config id>` treats that configuration's first clock
//! fit as refused (it is then measured again, as after a real refusal).
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ulayer::protocol::{
    BenchRequest, Classification, ClassifyRequest, JobReport, JobRequest, Request, Response,
    SyncPattern,
};

use crate::campaign::{Campaign, Configuration};
use crate::checkpoint::Checkpoint;
use crate::dataset::DeviceImages;
use crate::interrupt::{self, Interrupted};
use crate::monitor::{self, Recorder, SimFaults, UsbWindow};
use crate::record::{AccuracyRow, ConfigResult};
use crate::results::{self, config_dir, unix_ms, write_json, Metadata};
use crate::shard::Shard;
use crate::transport::{self, Agent, Transport};

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The results folder.
    pub out: PathBuf,
    pub shard: Option<Shard>,
    /// Folder relative paths of the campaign are resolved against (the file's folder).
    pub base: PathBuf,
    /// The campaign file's text (copied into the results folder).
    pub text: String,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Configurations finished by this run.
    pub finished: Vec<String>,
    /// Configurations skipped because an earlier run finished them.
    pub skipped: Vec<String>,
    /// Configurations that failed, with why (they are redone on the next run).
    pub failed: Vec<(String, String)>,
    pub interrupted: bool,
}

#[derive(Default)]
struct Faults {
    kill_agent: Option<String>,
    disconnect: Option<(String, f64)>,
    /// Treat the first clock fit of this configuration as refused (tests the re-measuring).
    refuse_fit: Option<String>,
}

fn faults() -> Faults {
    let mut f = Faults::default();
    let Ok(spec) = std::env::var("ULAB_FAULT") else {
        return f;
    };
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(id) = part.strip_prefix("kill-agent=") {
            f.kill_agent = Some(id.to_string());
        } else if let Some(id) = part.strip_prefix("refuse-fit=") {
            f.refuse_fit = Some(id.to_string());
        } else if let Some(rest) = part.strip_prefix("disconnect=") {
            if let Some((id, s)) = rest.rsplit_once('@') {
                if let Ok(s) = s.parse() {
                    f.disconnect = Some((id.to_string(), s));
                }
            }
        } else {
            tracing::warn!("ULAB_FAULT: unknown fault {part:?}");
        }
    }
    f
}

/// The git commit of the repository `ulab` runs from, if any.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(datasets::repo_root())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs (or resumes) a campaign.
pub fn run(c: &Campaign, opts: &RunOptions) -> Result<Outcome> {
    let out = &opts.out;
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let mut cp = Checkpoint::open(out, c)?;
    cp.save(out)?;
    let copy = out.join("campaign.toml");
    if !copy.exists() {
        results::write_atomic(&copy, opts.text.as_bytes())?;
    }
    interrupt::install();
    let faults = faults();

    let all = c.configurations();
    let mine: Vec<(usize, Configuration)> = match opts.shard {
        Some(s) => s.select(&all),
        None => all.iter().cloned().enumerate().collect(),
    };
    let mut outcome = Outcome::default();
    let todo: Vec<(usize, Configuration)> = mine
        .into_iter()
        .filter(|(_, cfg)| {
            let done = cp.is_finished(&cfg.slug());
            if done {
                outcome.skipped.push(cfg.id());
            }
            !done
        })
        .collect();
    if !outcome.skipped.is_empty() {
        eprintln!(
            "resuming {}: {} configuration(s) already finished, {} to run",
            out.display(),
            outcome.skipped.len(),
            todo.len()
        );
    }

    let meta_path = out.join("metadata.json");
    let mut meta: Metadata = if meta_path.exists() {
        results::read_json(&meta_path)?
    } else {
        Metadata {
            campaign: c.name.clone(),
            campaign_digest: c.digest(),
            soc: c.device.soc.clone(),
            ulab_version: env!("CARGO_PKG_VERSION").into(),
            monitor: format!("{:?}", c.monitor.kind).to_lowercase(),
            started_unix_ms: unix_ms(),
            ..Metadata::default()
        }
    };
    meta.git_commit = git_commit().or(meta.git_commit);
    if let Some(s) = opts.shard {
        if !meta.shards.contains(&s.to_string()) {
            meta.shards.push(s.to_string());
        }
    }
    meta.finished_unix_ms = None;
    write_json(&meta_path, &meta)?;

    let mut tr = transport::open(c, &opts.base)?;
    meta.transport = tr.describe();
    if !todo.is_empty() {
        tr.prepare()
            .with_context(|| format!("prepare the device ({})", tr.describe()))?;
    }
    let data_dir = transport::data_dir(c, &opts.base);
    let images = match (&c.accuracy, todo.is_empty()) {
        (Some(spec), false) => Some(crate::dataset::prepare(
            spec,
            &data_dir,
            &opts.base,
            tr.as_mut(),
        )?),
        _ => None,
    };

    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} configurations, ETA {eta} — {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut accuracy_cache = AccuracyCache::default();
    for (n, (index, cfg)) in todo.iter().enumerate() {
        if interrupt::requested() {
            outcome.interrupted = true;
            break;
        }
        if n > 0 && c.run.cooldown_ms > 0 {
            bar.set_message(format!("cooling down before {}", cfg.id()));
            std::thread::sleep(Duration::from_millis(c.run.cooldown_ms));
        }
        bar.set_message(cfg.id());
        let slug = cfg.slug();
        let dir = config_dir(out, &slug);
        // An interrupted configuration is redone from scratch.
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("clear the unfinished {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let ctx = ConfigContext {
            c,
            cfg,
            index: *index,
            dir: &dir,
            base: &opts.base,
            images: images.as_ref(),
            faults: &faults,
            bar: &bar,
            detached: tr.detached_jobs(),
        };
        match run_config(&ctx, tr.as_mut(), &mut meta, &mut accuracy_cache) {
            Ok(result) => {
                write_json(&dir.join("result.json"), &result)?;
                cp.finish(out, &slug)?;
                let done = results::load_results(out, &cp.finished)?;
                results::write_tables(out, &done)?;
                write_json(&meta_path, &meta)?;
                outcome.finished.push(cfg.id());
                note(
                    &bar,
                    format!(
                        "finished {} (p50 {:.2} ms{})",
                        cfg.id(),
                        result.latency.p50_ms,
                        result
                            .mean_of(|r| r.energy_j)
                            .map_or(String::new(), |j| format!(", {:.2} mJ/inference", j * 1e3))
                    ),
                );
            }
            Err(e) if e.downcast_ref::<Interrupted>().is_some() || interrupt::requested() => {
                outcome.interrupted = true;
                outcome.failed.push((cfg.id(), format!("{e:#}")));
                break;
            }
            Err(e) => {
                note(&bar, format!("FAILED {}: {e:#}", cfg.id()));
                outcome.failed.push((cfg.id(), format!("{e:#}")));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let done = results::load_results(out, &cp.finished)?;
    results::write_tables(out, &done)?;
    results::write_predictor(out, &cp.finished)?;
    if outcome.failed.is_empty() && !outcome.interrupted {
        meta.finished_unix_ms = Some(unix_ms());
    }
    write_json(&meta_path, &meta)?;
    if !done.is_empty() {
        println!("{}", results::summary_text(&done));
    }
    println!("results in {}", out.display());
    Ok(outcome)
}

struct ConfigContext<'a> {
    c: &'a Campaign,
    cfg: &'a Configuration,
    index: usize,
    dir: &'a Path,
    base: &'a Path,
    images: Option<&'a DeviceImages>,
    faults: &'a Faults,
    bar: &'a ProgressBar,
    /// Jobs run detached on the device (adb): the runner must say how long they take.
    detached: bool,
}

/// Top-5 predictions per (model, precision), and weights origin per model.
#[derive(Default)]
struct AccuracyCache {
    predictions: BTreeMap<(String, String), Vec<ulayer::protocol::Classification>>,
    weights: BTreeMap<String, String>,
}

fn run_config(
    ctx: &ConfigContext,
    tr: &mut dyn Transport,
    meta: &mut Metadata,
    cache: &mut AccuracyCache,
) -> Result<ConfigResult> {
    let started = unix_ms();
    let (c, cfg) = (ctx.c, ctx.cfg);
    let mut attempt = 1;
    let (report, mut rows, trace) = loop {
        let session = tr.connect()?;
        let mut agent = Agent::connect(session)?;
        meta.agent_version = Some(agent.info.agent_version.clone());
        meta.protocol = Some(agent.info.protocol);
        meta.device_arch = Some(agent.info.arch.clone());
        meta.device_cpus = Some(agent.info.cpus);
        meta.device_cpu_isa = Some(agent.info.cpu_isa.clone());
        let result = measure_config(ctx, &mut agent, meta, cache);
        match &result {
            Ok(_) => agent.close(),
            Err(_) => agent.kill(),
        }
        let measured = result?;
        // A clock fit refused as not credible (a burst of load elsewhere on the host blurred
        // the pulses) is measured again, once: the job is short next to a campaign.
        let injected = attempt == 1 && ctx.faults.refuse_fit.as_deref() == Some(&cfg.id());
        let refused =
            injected || (measured.1.power.samples > 0 && measured.1.power.clock_a.is_none());
        if refused && attempt < MAX_ATTEMPTS && !interrupt::requested() {
            note(
                ctx.bar,
                format!("{}: measuring again (attempt {})", cfg.id(), attempt + 1),
            );
            attempt += 1;
            continue;
        }
        break measured;
    };
    if attempt > 1 {
        let again = format!("measured {attempt} times: the first clock fit was refused");
        rows.power.note = Some(match rows.power.note.take() {
            Some(n) => format!("{n}; {again}"),
            None => again,
        });
    }

    // Accuracy: classify requests through the same transport, not under measurement.
    let weights = cache.weights.get(&cfg.model).cloned();
    let accuracy = match (ctx.images, weights.as_deref()) {
        (Some(images), Some("real")) => {
            ctx.bar.set_message(format!("{}: accuracy", cfg.id()));
            Some(accuracy(tr, ctx, images, cache)?)
        }
        _ => None,
    };
    let _ = (report, c);
    Ok(ConfigResult {
        config: cfg.clone(),
        index: ctx.index,
        started_unix_ms: started,
        finished_unix_ms: unix_ms(),
        weights,
        runs: rows.runs,
        layers: rows.layers,
        latency: rows.latency,
        power: rows.power,
        accuracy,
        trace_file: trace,
    })
}

/// Measurements of a configuration whose clock fit is refused (see [`run_config`]).
const MAX_ATTEMPTS: usize = 2;

struct MeasuredRows {
    runs: Vec<crate::record::RunRow>,
    layers: Vec<crate::record::LayerRow>,
    power: crate::record::PowerSummary,
    latency: ulayer::protocol::LatencyStats,
}

fn measure_config(
    ctx: &ConfigContext,
    agent: &mut Agent,
    meta: &mut Metadata,
    cache: &mut AccuracyCache,
) -> Result<(JobReport, MeasuredRows, Option<String>)> {
    let (c, cfg) = (ctx.c, ctx.cfg);
    if !cache.weights.contains_key(&cfg.model) {
        if let Response::Models { models } =
            agent.request(Request::Models, Duration::from_secs(120))?
        {
            for m in models {
                let w = serde_json::to_value(m.weights)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_lowercase))
                    .unwrap_or_else(|| "unknown".into());
                cache.weights.insert(m.name, w);
            }
        }
        cache
            .weights
            .entry(cfg.model.clone())
            .or_insert_with(|| "unknown".into());
    }
    if let Some(w) = cache.weights.get(&cfg.model) {
        meta.weights.insert(cfg.model.clone(), w.clone());
    }
    let bench = BenchRequest {
        model: cfg.model.clone(),
        iterations: c.run.iterations,
        warmup: c.run.warmup,
        precision: cfg.precision,
        threads: c.run.threads,
        traces: true,
        mechanism: cfg.mechanism.clone(),
        min_duration_ms: c.run.min_duration_ms,
        measured_fallback: true,
        predictor: Default::default(),
    };
    let pattern = SyncPattern::default();
    let timeout = Duration::from_secs(c.run.job_timeout_s);
    let expected = if ctx.detached {
        expected_duration(agent, &bench, c.run.idle_ms, &pattern)?
    } else {
        Duration::ZERO
    };

    let disconnect = ctx
        .faults
        .disconnect
        .as_ref()
        .filter(|(id, _)| *id == cfg.id())
        .map(|(_, s)| *s);
    let mut mon = monitor::open(
        &c.monitor,
        agent.local_pid(),
        &SimFaults {
            disconnect_at_s: disconnect,
        },
        ctx.base,
    )?;
    if let Some(m) = &mon {
        meta.monitor_serial = m.serial;
    }
    let trace_path = ctx.dir.join("trace.mtr");
    let recorder = match &mut mon {
        Some(m) => {
            let stream = m.monitor.start().context("start sampling")?;
            Some(Recorder::start(stream, &trace_path, m.serial)?)
        }
        None => None,
    };
    let request = Request::Job(JobRequest {
        bench,
        idle_ms: c.run.idle_ms,
        pattern,
    });
    ctx.bar.set_message(format!("{}: measuring", cfg.id()));
    let answer = {
        let mut window = UsbWindow::new(mon.as_mut().map(|m| &mut m.monitor));
        if ctx.faults.kill_agent.as_deref() == Some(cfg.id().as_str()) {
            window.kill_agent = agent
                .local_pid()
                .map(|pid| (pid, Duration::from_millis(300)));
        }
        agent.job(request, expected, timeout, &mut window)
    };
    let recording = match (&mut mon, recorder) {
        (Some(m), Some(rec)) => {
            let stopped = m.monitor.stop();
            let recording = rec.finish()?;
            if let Some(e) = &recording.error {
                bail!("the monitor failed during {}: {e}", cfg.id());
            }
            stopped.context("stop sampling")?;
            Some(recording)
        }
        _ => None,
    };
    if let Some(m) = mon {
        drop(m.monitor);
        if let Some(sim) = m.sim {
            if let Ok(r) = sim.shutdown() {
                if r.disconnected {
                    bail!("the monitor disconnected during {}", cfg.id());
                }
            }
        }
    }
    let report = match answer? {
        Response::Job(r) => r,
        other => bail!("the agent answered a job with {other:?}"),
    };
    let mut stored = report.clone();
    write_json(&ctx.dir.join("job.json"), &stored)?;
    if !report.bench.predictor.is_empty() {
        write_json(
            &ctx.dir.join(results::PREDICTOR_FILE),
            &results::PredictorFile {
                accuracy: report.bench.predictor.clone(),
                from: format!("configs/{}", cfg.slug()),
            },
        )?;
    }
    stored.bench.traces.clear();
    ctx.bar.set_message(format!("{}: aligning", cfg.id()));
    let rows = match &recording {
        Some(r) => crate::measure::rows(&r.samples, r.lost_samples, &report),
        None => crate::measure::timing_rows(&report, None),
    };
    if let Some(why) = &rows.power.note {
        note(ctx.bar, format!("{}: {why}", cfg.id()));
    }
    let trace = recording.map(|_| format!("configs/{}/trace.mtr", cfg.slug()));
    let latency = report.bench.latency.clone();
    Ok((
        report,
        MeasuredRows {
            runs: rows.runs,
            layers: rows.layers,
            power: rows.power,
            latency,
        },
        trace,
    ))
}

/// A line for the user: above the progress bar, or on stderr when there is none.
fn note(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// How long a job should take, from a short unmeasured bench (for transports whose jobs run
/// detached).
fn expected_duration(
    agent: &mut Agent,
    bench: &BenchRequest,
    idle_ms: u32,
    pattern: &SyncPattern,
) -> Result<Duration> {
    let probe = BenchRequest {
        iterations: 3,
        warmup: 1,
        traces: false,
        min_duration_ms: 0,
        ..bench.clone()
    };
    let per_run_ms = match agent.request(Request::Bench(probe), Duration::from_secs(600))? {
        Response::Bench(b) => b.latency.p90_ms,
        other => bail!("the agent answered a bench with {other:?}"),
    };
    let runs_ms = ((bench.warmup + bench.iterations) as f64 * per_run_ms)
        .max(f64::from(bench.min_duration_ms) + bench.warmup as f64 * per_run_ms);
    let pulses_ms: u32 = 2
        * (pattern.bursts_ms.iter().sum::<u32>() + pattern.gap_ms * pattern.bursts_ms.len() as u32);
    let ms = (f64::from(idle_ms) + f64::from(pulses_ms) + runs_ms) * 1.3 + 2000.0;
    Ok(Duration::from_millis(ms as u64))
}

fn accuracy(
    tr: &mut dyn Transport,
    ctx: &ConfigContext,
    images: &DeviceImages,
    cache: &mut AccuracyCache,
) -> Result<AccuracyRow> {
    let cfg = ctx.cfg;
    let mut predict =
        |mechanism: &str, precision: ulayer::backend::Precision| -> Result<Vec<Classification>> {
            let key = (format!("{}/{mechanism}", cfg.model), precision.to_string());
            if let Some(p) = cache.predictions.get(&key) {
                return Ok(p.clone());
            }
            let mut agent = Agent::connect(tr.connect()?)?;
            let answer = agent.request(
                Request::Classify(ClassifyRequest {
                    model: cfg.model.clone(),
                    images: images.paths.clone(),
                    top: 5,
                    precision,
                    threads: ctx.c.run.threads,
                    mechanism: mechanism.to_string(),
                }),
                Duration::from_secs(ctx.c.run.job_timeout_s),
            );
            agent.close();
            let preds = match answer? {
                Response::Classified { results } => results,
                other => bail!("the agent answered classify with {other:?}"),
            };
            if preds.len() != images.paths.len() {
                bail!(
                    "the agent classified {} of {} images",
                    preds.len(),
                    images.paths.len()
                );
            }
            cache.predictions.insert(key, preds.clone());
            Ok(preds)
        };
    let preds = predict(&cfg.mechanism, cfg.precision)?;
    // Agreement with the F32 CPU configuration of the same model (none for itself).
    let is_reference = cfg.precision == ulayer::backend::Precision::F32 && cfg.mechanism == "cpu";
    let reference = if is_reference {
        None
    } else {
        Some(predict("cpu", ulayer::backend::Precision::F32)?)
    };
    let score = crate::accuracy::score(&preds, &images.labels, reference.as_deref())
        .with_context(|| format!("score the accuracy of {}", cfg.id()))?;
    Ok(AccuracyRow {
        images: score.images,
        top1: score.top1_pct / 100.0,
        top5: score.top5_pct / 100.0,
        top1_agreement: score.agreement.as_ref().map(|a| a.top1_pct / 100.0),
        top5_agreement: score.agreement.as_ref().map(|a| a.top5_pct / 100.0),
        predictions: preds
            .iter()
            .map(|r| r.top.iter().map(|s| s.index).collect())
            .collect(),
    })
}
