//! The report's content, independent of its output format: sections of notes, tables and
//! figures built from a results folder. `html` and `markdown` render it.
use crate::error::{Error, Result};
use crate::figures::bars::Bars;
use crate::figures::trace::TracePlot;
use crate::figures::{Figure, Stamp};
use crate::job::{self, ConfigFiles, Job};
use crate::load::{Results, SummaryRow};
use crate::normalise::{baseline, ratio, series_label};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Choices of `render_report`.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Configuration (`model/mechanism/precision`) of the per-layer breakdown and the trace
    /// excerpt. Default: the first μLayer one, else the first.
    pub config: Option<String>,
    /// Which measured run the trace zoom shows (default 0).
    pub run: usize,
    /// Predictor accuracy (JSON: a list of `{predictor, target, measurements, within_10,
    /// within_20, median_error}`, as the agent's `predict::evaluate` gives, or an object
    /// with such a list under `accuracy`). Default: `predictor.json` in the results folder
    /// when there is one.
    pub predictor: Option<PathBuf>,
    /// Report title. Default: "μLayer Lab report: <campaign>".
    pub title: Option<String>,
}

/// A table of text cells.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableData {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One part of the report.
#[derive(Clone, Debug, Default)]
pub struct Section {
    pub id: String,
    pub title: String,
    /// Paragraphs: what is shown, how it was computed, what is missing and why.
    pub notes: Vec<String>,
    pub tables: Vec<TableData>,
    pub figures: Vec<Figure>,
}

/// The whole report.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub title: String,
    /// Campaign facts shown at the top.
    pub facts: Vec<(String, String)>,
    pub sections: Vec<Section>,
}

/// UTC date of a Unix time in ms, YYYY-MM-DD (civil-from-days, proleptic Gregorian).
pub fn date_of(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "date unknown".into();
    }
    let z = (unix_ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn fmt_opt(v: Option<f64>, scale: f64, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{:.*}", digits, x * scale))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{:.1}%", x * 100.0))
}

struct Ctx<'a> {
    r: &'a Results,
    files: BTreeMap<String, ConfigFiles>,
}

impl Ctx<'_> {
    fn stamp(&self, rows: &[&SummaryRow]) -> Stamp {
        let runs: Vec<u64> = rows.iter().map(|r| r.runs).collect();
        let (lo, hi) = (
            runs.iter().min().copied().unwrap_or(0),
            runs.iter().max().copied().unwrap_or(0),
        );
        let runs = if rows.len() == 1 {
            format!("{lo} runs")
        } else if lo == hi {
            format!("{lo} runs per configuration")
        } else {
            format!("{lo}–{hi} runs per configuration")
        };
        let mut models: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
        models.dedup();
        Stamp {
            device: self.r.metadata.device(),
            soc: if self.r.metadata.soc.is_empty() {
                "unknown".into()
            } else {
                self.r.metadata.soc.clone()
            },
            runs,
            date: date_of(self.r.metadata.started_unix_ms),
            weights: self.r.weights_of(models),
        }
    }

    fn all(&self) -> Vec<&SummaryRow> {
        self.r.summary.iter().collect()
    }

    fn models(&self) -> Vec<String> {
        let mut m: Vec<String> = Vec::new();
        for r in &self.r.summary {
            if !m.contains(&r.model) {
                m.push(r.model.clone());
            }
        }
        m
    }

    fn series_labels(&self, keep: impl Fn(&SummaryRow) -> bool) -> Vec<String> {
        let mut s: Vec<String> = Vec::new();
        for r in self.r.summary.iter().filter(|r| keep(r)) {
            let l = series_label(r);
            if !s.contains(&l) {
                s.push(l);
            }
        }
        s
    }
}

/// Builds the report of `results`.
pub fn build(results: &Results, options: &RenderOptions) -> Result<Report> {
    let ctx = Ctx {
        r: results,
        files: job::config_files(&results.dir)?,
    };
    let m = &results.metadata;
    let title = options
        .title
        .clone()
        .unwrap_or_else(|| format!("μLayer Lab report: {}", m.campaign));
    let mut facts = vec![
        ("Campaign".to_string(), m.campaign.clone()),
        ("Device".into(), m.device()),
        ("SoC".into(), m.soc.clone()),
        ("Date (UTC)".into(), date_of(m.started_unix_ms)),
        ("Monitor".into(), m.monitor.clone()),
        (
            "Weights".into(),
            if m.weights.is_empty() {
                results.weights_of(ctx.models().iter().map(String::as_str))
            } else {
                m.weights
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ("Configurations".into(), results.summary.len().to_string()),
    ];
    if let Some(v) = &m.agent_version {
        facts.push(("Agent".into(), v.clone()));
    }
    if let Some(g) = &m.git_commit {
        facts.push(("Commit".into(), g.clone()));
    }
    if !m.shards.is_empty() {
        facts.push(("Shards".into(), m.shards.join(", ")));
    }
    let chosen = choose_config(results, options)?;
    let sections = vec![
        summary_section(&ctx),
        latency_section(&ctx)?,
        energy_section(&ctx)?,
        layers_section(&ctx, chosen)?,
        trace_section(&ctx, chosen, options.run)?,
        accuracy_section(&ctx)?,
        predictor_section(&ctx, options)?,
    ];
    Ok(Report {
        title,
        facts,
        sections,
    })
}

fn choose_config<'a>(r: &'a Results, options: &RenderOptions) -> Result<Option<&'a SummaryRow>> {
    if let Some(id) = &options.config {
        return r.config(id).map(Some).ok_or_else(|| Error::Invalid {
            path: r.dir.join("summary"),
            msg: format!(
                "no configuration {id:?} (there are: {})",
                r.summary
                    .iter()
                    .map(|s| s.config.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(r.summary
        .iter()
        .find(|s| s.mechanism.starts_with("ulayer"))
        .or(r.summary.first()))
}

fn summary_section(ctx: &Ctx) -> Section {
    let rows = ctx
        .r
        .summary
        .iter()
        .map(|s| {
            vec![
                s.config.clone(),
                s.runs.to_string(),
                format!("{:.3}", s.latency_p50_ms),
                format!("{:.3}", s.latency_p90_ms),
                format!("{:.3}", s.latency_p99_ms),
                format!("{:.3} ± {:.3}", s.latency_mean_ms, s.latency_std_ms),
                fmt_opt(s.energy_mean_j, 1e3, 3),
                fmt_opt(s.energy_above_idle_mean_j, 1e3, 3),
                fmt_opt(s.avg_power_w, 1.0, 3),
                s.energy_mean_j
                    .filter(|e| *e > 0.0)
                    .map_or("–".into(), |e| format!("{:.1}", 1.0 / e)),
                pct(s.top1),
                pct(s.top5),
            ]
        })
        .collect();
    let mut notes = vec![
        "Latency statistics over the measured runs (warm-up discarded); percentiles are \
         nearest-rank. Energy is per inference, gross and above the idle baseline measured \
         before each job."
            .to_string(),
    ];
    let methods: Vec<String> = {
        let mut v: Vec<String> = ctx
            .r
            .summary
            .iter()
            .filter_map(|s| s.energy_method.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if !methods.is_empty() {
        notes.push(format!("Energy attribution: {}.", methods.join("; ")));
    }
    Section {
        id: "summary".into(),
        title: "Summary".into(),
        notes,
        tables: vec![TableData {
            caption: "Every configuration".into(),
            header: [
                "configuration",
                "runs",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "mean ± sd ms",
                "mJ/inference",
                "above idle mJ",
                "avg W",
                "inferences/J",
                "top-1",
                "top-5",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        }],
        figures: Vec::new(),
    }
}

/// Bar series: (name, one value per category).
type Series = Vec<(String, Vec<Option<f64>>)>;

/// Normalised bars per model: `value(row) / value(baseline)` (or the inverse ratio):
/// categories, series, notes and tables.
fn normalised_bars(
    ctx: &Ctx,
    value: impl Fn(&SummaryRow) -> Option<f64>,
    inverse: bool,
) -> (Vec<String>, Series, Vec<String>, Vec<TableData>) {
    let models = ctx.models();
    let labels = ctx.series_labels(|r| value(r).is_some());
    let mut notes = Vec::new();
    let mut series: Series = labels.iter().map(|l| (l.clone(), Vec::new())).collect();
    let mut rows = Vec::new();
    for model in &models {
        let b = baseline(model, &ctx.r.summary);
        if let Some(n) = b.as_ref().and_then(|b| b.note.clone()) {
            notes.push(n);
        }
        for (label, vals) in series.iter_mut() {
            let row = ctx
                .r
                .summary
                .iter()
                .find(|r| r.model == *model && series_label(r) == *label);
            let v = match (row, &b) {
                (Some(row), Some(b)) => {
                    if inverse {
                        ratio(value(b.row), value(row))
                    } else {
                        ratio(value(row), value(b.row))
                    }
                }
                _ => None,
            };
            vals.push(v);
        }
        if let Some(b) = &b {
            rows.push((model.clone(), b.row.config.clone()));
        }
    }
    let mut table = TableData {
        caption: "Normalised to the baseline; geometric mean over networks".into(),
        header: vec!["series".into()],
        rows: Vec::new(),
    };
    table.header.extend(models.iter().cloned());
    table.header.push("geomean".into());
    for (label, vals) in &series {
        let mut cells = vec![label.clone()];
        cells.extend(vals.iter().map(|v| fmt_opt(*v, 1.0, 3)));
        let present: Vec<f64> = vals.iter().flatten().copied().collect();
        cells.push(fmt_opt(crate::stats::geomean(&present), 1.0, 3));
        table.rows.push(cells);
    }
    let base_table = TableData {
        caption: "Baseline per network".into(),
        header: vec!["network".into(), "baseline configuration".into()],
        rows: rows.into_iter().map(|(m, c)| vec![m, c]).collect(),
    };
    (models, series, notes, vec![table, base_table])
}

fn latency_section(ctx: &Ctx) -> Result<Section> {
    let (models, series, mut notes, tables) =
        normalised_bars(ctx, |r| Some(r.latency_p50_ms), false);
    notes.insert(
        0,
        "Median (p50) latency of every mechanism and precision divided by the network's \
         layer-to-processor latency (the paper's Figure 16 form): below 1 is faster."
            .into(),
    );
    let stamp = ctx.stamp(&ctx.all());
    let bars = Bars {
        title: "Latency normalised to layer-to-processor".into(),
        value_desc: "latency / baseline latency (p50)".into(),
        categories: models,
        series,
        reference: Some(1.0),
        ..Bars::default()
    };
    let fig = Figure {
        id: "fig-latency".into(),
        title: bars.title.clone(),
        svg: bars.svg(&stamp)?,
        caption: "Grouped by network; the dashed line is the baseline (1.0).".into(),
        stamp,
    };
    Ok(Section {
        id: "latency".into(),
        title: "Latency (Figure 16 form)".into(),
        notes,
        tables,
        figures: vec![fig],
    })
}

fn energy_section(ctx: &Ctx) -> Result<Section> {
    let with_energy: Vec<&SummaryRow> = ctx
        .r
        .summary
        .iter()
        .filter(|r| r.energy_mean_j.is_some())
        .collect();
    let mut section = Section {
        id: "energy".into(),
        title: "Energy per inference and energy efficiency (Figure 17 form)".into(),
        ..Section::default()
    };
    if with_energy.is_empty() {
        section.notes.push(
            "No configuration has energy: the campaign ran without a power monitor, or \
             alignment failed (see each configuration's result.json note)."
                .into(),
        );
        return Ok(section);
    }
    let stamp = ctx.stamp(&with_energy);
    let (models, series, notes, mut tables) = normalised_bars(ctx, |r| r.energy_mean_j, false);
    section.notes.push(
        "Mean gross energy per inference divided by the baseline's (below 1 uses less), and \
         energy efficiency in inferences per joule relative to the baseline (above 1 is \
         better; the paper reports its geometric mean)."
            .into(),
    );
    section.notes.extend(notes);
    let bars = Bars {
        title: "Energy per inference normalised to layer-to-processor".into(),
        value_desc: "energy / baseline energy".into(),
        categories: models.clone(),
        series,
        reference: Some(1.0),
        ..Bars::default()
    };
    section.figures.push(Figure {
        id: "fig-energy".into(),
        title: bars.title.clone(),
        svg: bars.svg(&stamp)?,
        caption: "Mean gross energy of one inference, grouped by network.".into(),
        stamp: stamp.clone(),
    });
    let (_, eff, _, eff_tables) = normalised_bars(ctx, |r| r.energy_mean_j, true);
    let bars = Bars {
        title: "Energy efficiency (inferences per joule) relative to layer-to-processor".into(),
        value_desc: "efficiency / baseline efficiency".into(),
        categories: models,
        series: eff,
        reference: Some(1.0),
        ..Bars::default()
    };
    section.figures.push(Figure {
        id: "fig-efficiency".into(),
        title: bars.title.clone(),
        svg: bars.svg(&stamp)?,
        caption: "Inferences per joule divided by the baseline's.".into(),
        stamp,
    });
    tables[0].caption = "Energy per inference normalised; geometric mean over networks".into();
    let mut t = eff_tables.into_iter().next().unwrap_or_default();
    t.caption = "Energy efficiency relative to the baseline; geometric mean over networks".into();
    tables.insert(1, t);
    section.tables = tables;
    Ok(section)
}

/// Where a layer ran, from the job's spans or the layer table.
fn placement(per: Option<&BTreeMap<String, f64>>, column: Option<&str>) -> &'static str {
    let (cpu, gpu) = match (per, column) {
        (Some(p), _) if !p.is_empty() => (p.contains_key("cpu"), p.contains_key("gpu")),
        (_, Some(c)) => {
            let c = c.to_lowercase();
            (c.contains("cpu"), c.contains("gpu"))
        }
        _ => (false, false),
    };
    match (cpu, gpu) {
        (true, true) => "CPU+GPU",
        (true, false) => "CPU only",
        (false, true) => "GPU only",
        _ => "unknown",
    }
}

fn layers_section(ctx: &Ctx, chosen: Option<&SummaryRow>) -> Result<Section> {
    let mut section = Section {
        id: "layers".into(),
        title: "Per-layer breakdown".into(),
        ..Section::default()
    };
    let Some(cfg) = chosen else {
        section
            .notes
            .push("No configurations in the results.".into());
        return Ok(section);
    };
    section.title = format!("Per-layer breakdown: {}", cfg.config);
    let mut layers: Vec<&crate::load::LayerRow> = ctx
        .r
        .layers
        .iter()
        .filter(|l| l.config == cfg.config)
        .collect();
    layers.sort_by_key(|l| l.layer);
    if layers.is_empty() {
        section
            .notes
            .push(format!("The layers table has no rows for {}.", cfg.config));
        return Ok(section);
    }
    let job = match ctx.files.get(&cfg.config) {
        Some(f) => Job::load(&f.dir)?,
        None => None,
    };
    let per: BTreeMap<String, BTreeMap<String, f64>> = job
        .as_ref()
        .map(|j| j.layer_processor_ms().into_iter().collect())
        .unwrap_or_default();
    let stamp = ctx.stamp(&[cfg]);
    let categories: Vec<String> = layers
        .iter()
        .map(|l| format!("{} {} ({})", l.layer, l.node, l.kind))
        .collect();
    let (cpu, gpu): (Vec<Option<f64>>, Vec<Option<f64>>) = if !per.is_empty() {
        section.notes.push(
            "CPU and GPU bars: median time each processor spent on the layer over the \
             measured runs (from the agent's per-layer spans in job.json); both bars of a \
             split layer run concurrently."
                .into(),
        );
        layers
            .iter()
            .map(|l| {
                let p = per.get(&l.node);
                (
                    p.and_then(|p| p.get("cpu").copied()),
                    p.and_then(|p| p.get("gpu").copied()),
                )
            })
            .unzip()
    } else if layers.iter().any(|l| l.processor.is_some()) {
        section.notes.push(
            "No per-processor spans (job.json): each layer's p50 is drawn on the processor(s) \
             the layers table names."
                .into(),
        );
        layers
            .iter()
            .map(|l| {
                let p = l.processor.as_deref().unwrap_or("").to_lowercase();
                (
                    p.contains("cpu").then_some(l.p50_ms),
                    p.contains("gpu").then_some(l.p50_ms),
                )
            })
            .unzip()
    } else {
        section.notes.push(
            "Neither job.json spans nor a processor column: the layer's p50 is drawn without \
             a processor."
                .into(),
        );
        (
            layers.iter().map(|l| Some(l.p50_ms)).collect(),
            vec![None; layers.len()],
        )
    };
    let lat_series = if gpu.iter().all(Option::is_none) && per.is_empty() {
        vec![("all processors".to_string(), cpu.clone())]
    } else {
        vec![
            ("CPU".to_string(), cpu.clone()),
            ("GPU".to_string(), gpu.clone()),
        ]
    };
    let bars = Bars {
        title: format!("Per-layer latency, {}", cfg.config),
        value_desc: "ms per inference (median over runs)".into(),
        categories: categories.clone(),
        series: lat_series,
        horizontal: true,
        ..Bars::default()
    };
    section.figures.push(Figure {
        id: "fig-layer-latency".into(),
        title: bars.title.clone(),
        svg: bars.svg(&stamp)?,
        caption: "CPU and GPU side by side for every layer.".into(),
        stamp: stamp.clone(),
    });
    let places: Vec<&str> = layers
        .iter()
        .map(|l| placement(per.get(&l.node), l.processor.as_deref()))
        .collect();
    let has_energy = layers.iter().any(|l| l.energy_j.is_some());
    if has_energy {
        let kinds = ["CPU only", "GPU only", "CPU+GPU", "unknown"];
        let series: Vec<(String, Vec<Option<f64>>)> = kinds
            .iter()
            .filter(|k| places.contains(k))
            .map(|k| {
                (
                    format!("ran on {k}"),
                    layers
                        .iter()
                        .zip(&places)
                        .map(|(l, p)| {
                            if p == k {
                                l.energy_j.map(|e| e * 1e3)
                            } else {
                                None
                            }
                        })
                        .collect(),
                )
            })
            .collect();
        let bars = Bars {
            title: format!("Per-layer energy, {}", cfg.config),
            value_desc: "mJ per inference (gross)".into(),
            categories,
            series,
            horizontal: true,
            overlay: true,
            ..Bars::default()
        };
        let mut methods: Vec<String> = layers
            .iter()
            .filter_map(|l| l.energy_method.clone())
            .collect();
        methods.sort();
        methods.dedup();
        section.notes.push(format!(
            "Layer energy attribution: {} (phase aggregation folds many runs' windows of a \
             layer shorter than a few samples; proportional gives it its time share).",
            if methods.is_empty() {
                "not stated".into()
            } else {
                methods.join(", ")
            }
        ));
        section.figures.push(Figure {
            id: "fig-layer-energy".into(),
            title: bars.title.clone(),
            svg: bars.svg(&stamp)?,
            caption: "Energy of each layer, coloured by where it ran.".into(),
            stamp,
        });
    } else {
        section
            .notes
            .push("No per-layer energy for this configuration (no power trace).".into());
    }
    section.tables.push(TableData {
        caption: format!("Layers of {}", cfg.config),
        header: [
            "layer",
            "node",
            "kind",
            "placement",
            "p50 ms",
            "CPU ms",
            "GPU ms",
            "mJ",
            "above idle mJ",
            "method",
        ]
        .map(String::from)
        .to_vec(),
        rows: layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                vec![
                    l.layer.to_string(),
                    l.node.clone(),
                    l.kind.clone(),
                    places[i].to_string(),
                    format!("{:.3}", l.p50_ms),
                    fmt_opt(cpu[i], 1.0, 3),
                    fmt_opt(gpu[i], 1.0, 3),
                    fmt_opt(l.energy_j, 1e3, 4),
                    fmt_opt(l.energy_above_idle_j, 1e3, 4),
                    l.energy_method.clone().unwrap_or_else(|| "–".into()),
                ]
            })
            .collect(),
    });
    Ok(section)
}

fn trace_section(ctx: &Ctx, chosen: Option<&SummaryRow>, run: usize) -> Result<Section> {
    let mut section = Section {
        id: "trace".into(),
        title: "Power trace excerpt".into(),
        ..Section::default()
    };
    let usable = |id: &str| {
        ctx.files
            .get(id)
            .filter(|f| f.clock.is_some() && f.trace_file.as_ref().is_some_and(|t| t.is_file()))
    };
    let pick = chosen
        .filter(|c| usable(&c.config).is_some())
        .or_else(|| ctx.r.summary.iter().find(|s| usable(&s.config).is_some()));
    let Some(cfg) = pick else {
        section.notes.push(
            "No configuration has both a recorded trace (configs/<config>/trace.mtr) and a \
             clock map: nothing to draw (monitor \"none\", or alignment failed)."
                .into(),
        );
        return Ok(section);
    };
    let Some(files) = usable(&cfg.config) else {
        return Ok(section);
    };
    let (Some(clock), Some(path)) = (files.clock, files.trace_file.as_ref()) else {
        return Ok(section);
    };
    let samples = job::read_power(path)?;
    let job = Job::load(&files.dir)?.unwrap_or_default();
    if chosen.is_some_and(|c| c.config != cfg.config) {
        section.notes.push(format!(
            "The chosen configuration has no usable trace; showing {}.",
            cfg.config
        ));
    }
    section.title = format!("Power trace excerpt: {}", cfg.config);
    section.notes.push(format!(
        "From {} through the clock map sample = {:.3} + {:.6e} · device_ns{}. Top: the whole \
         job with the idle baseline, the sync pulses and the measured runs. Bottom: one \
         measured run, each layer's start on each processor as a vertical line.",
        path.strip_prefix(&ctx.r.dir).unwrap_or(path).display(),
        clock.0,
        clock.1,
        cfg.clock_residual_samples
            .map_or(String::new(), |r| format!(
                " (fit residual {r:.2} samples rms)"
            ))
    ));
    let stamp = ctx.stamp(&[cfg]);
    let plot = TracePlot {
        config: &cfg.config,
        samples: &samples,
        clock,
        job: &job,
        run,
    };
    let title = format!("Power, {}", plot.config);
    section.figures.push(Figure {
        id: "fig-trace".into(),
        svg: plot.svg(&title, &stamp)?,
        title,
        caption: "Main-channel power (V·I) at 5000 samples per second.".into(),
        stamp,
    });
    Ok(section)
}

fn accuracy_section(ctx: &Ctx) -> Result<Section> {
    let mut section = Section {
        id: "accuracy".into(),
        title: "Accuracy per precision and mechanism".into(),
        ..Section::default()
    };
    let rows: Vec<&SummaryRow> = ctx
        .r
        .summary
        .iter()
        .filter(|r| r.top1.is_some() || r.top5.is_some())
        .collect();
    if rows.is_empty() {
        section
            .notes
            .push("No configuration has accuracy (the campaign has no [accuracy] set).".into());
        return Ok(section);
    }
    section.notes.push(
        "Top-1 and top-5 on the labeled image set, and agreement of each configuration's \
         top-1 / top-5 with the same network in f32 on the CPU (meaningful even on small sets)."
            .into(),
    );
    let stamp = ctx.stamp(&rows);
    let p = |v: Option<f64>| v.map(|x| x * 100.0);
    let bars = Bars {
        title: "Accuracy per configuration".into(),
        value_desc: "%".into(),
        categories: rows.iter().map(|r| r.config.clone()).collect(),
        series: vec![
            ("top-1".into(), rows.iter().map(|r| p(r.top1)).collect()),
            ("top-5".into(), rows.iter().map(|r| p(r.top5)).collect()),
            (
                "top-1 agreement with f32".into(),
                rows.iter().map(|r| p(r.top1_agreement)).collect(),
            ),
            (
                "top-5 agreement with f32".into(),
                rows.iter().map(|r| p(r.top5_agreement)).collect(),
            ),
        ],
        horizontal: true,
        max: Some(110.0),
        ..Bars::default()
    };
    section.figures.push(Figure {
        id: "fig-accuracy".into(),
        title: bars.title.clone(),
        svg: bars.svg(&stamp)?,
        caption: "Accuracy and agreement with f32, in percent.".into(),
        stamp,
    });
    section.tables.push(TableData {
        caption: "Accuracy".into(),
        header: [
            "network",
            "mechanism",
            "precision",
            "images",
            "top-1",
            "top-5",
            "top-1 agreement",
            "top-5 agreement",
        ]
        .map(String::from)
        .to_vec(),
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    r.model.clone(),
                    r.mechanism.clone(),
                    r.precision.clone(),
                    fmt_opt(r.accuracy_images, 1.0, 0),
                    pct(r.top1),
                    pct(r.top5),
                    pct(r.top1_agreement),
                    pct(r.top5_agreement),
                ]
            })
            .collect(),
    });
    Ok(section)
}

/// One predictor's score on held-out measurements.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PredictorAccuracy {
    pub predictor: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub measurements: usize,
    pub within_10: f64,
    pub within_20: f64,
    #[serde(default)]
    pub median_error: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PredictorFile {
    List(Vec<PredictorAccuracy>),
    Wrapped { accuracy: Vec<PredictorAccuracy> },
}

/// Reads a predictor accuracy file.
pub fn read_predictor(path: &Path) -> Result<Vec<PredictorAccuracy>> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let f: PredictorFile = serde_json::from_slice(&text).map_err(|e| Error::Invalid {
        path: path.to_path_buf(),
        msg: format!(
            "not predictor accuracy (a list of {{predictor, target, within_10, within_20}}): {e}"
        ),
    })?;
    Ok(match f {
        PredictorFile::List(v) | PredictorFile::Wrapped { accuracy: v } => v,
    })
}

fn predictor_section(ctx: &Ctx, options: &RenderOptions) -> Result<Section> {
    let mut section = Section {
        id: "predictor".into(),
        title: "Latency predictor accuracy".into(),
        ..Section::default()
    };
    let path = options
        .predictor
        .clone()
        .or_else(|| Some(ctx.r.dir.join("predictor.json")).filter(|p| p.is_file()));
    let Some(path) = path else {
        section.notes.push(
            "No device profile's predictor accuracy in these results (predictor.json): \
             skipped."
                .into(),
        );
        return Ok(section);
    };
    let acc = read_predictor(&path)?;
    section.notes.push(format!(
        "Share of held-out profile measurements predicted within ±10% and ±20% of the \
         measured time (from {}).",
        path.display()
    ));
    let stamp = ctx.stamp(&ctx.all());
    let bars = Bars {
        title: "Predictions within ±10% / ±20% of measured latency".into(),
        value_desc: "% of held-out measurements".into(),
        categories: acc
            .iter()
            .map(|a| format!("{} · {}", a.predictor, a.target))
            .collect(),
        series: vec![
            (
                "within ±10%".into(),
                acc.iter().map(|a| Some(a.within_10 * 100.0)).collect(),
            ),
            (
                "within ±20%".into(),
                acc.iter().map(|a| Some(a.within_20 * 100.0)).collect(),
            ),
        ],
        horizontal: true,
        max: Some(110.0),
        ..Bars::default()
    };
    section.figures.push(Figure {
        id: "fig-predictor".into(),
        title: bars.title.clone(),
        svg: bars.svg(&stamp)?,
        caption: "Per predictor and processor/precision target.".into(),
        stamp,
    });
    section.tables.push(TableData {
        caption: "Predictor accuracy".into(),
        header: [
            "predictor",
            "target",
            "measurements",
            "within ±10%",
            "within ±20%",
            "median error",
        ]
        .map(String::from)
        .to_vec(),
        rows: acc
            .iter()
            .map(|a| {
                vec![
                    a.predictor.clone(),
                    a.target.clone(),
                    a.measurements.to_string(),
                    pct(Some(a.within_10)),
                    pct(Some(a.within_20)),
                    pct(a.median_error),
                ]
            })
            .collect(),
    });
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil() {
        assert_eq!(date_of(0), "date unknown");
        assert_eq!(date_of(86_400_000), "1970-01-02");
        assert_eq!(date_of(1_709_164_800_000), "2024-02-29");
        assert_eq!(date_of(1_798_761_599_000), "2026-12-31");
    }

    #[test]
    fn placement_reads_spans_then_column() {
        let mut p = BTreeMap::new();
        p.insert("cpu".to_string(), 1.0);
        assert_eq!(placement(Some(&p), Some("gpu")), "CPU only");
        p.insert("gpu".to_string(), 1.0);
        assert_eq!(placement(Some(&p), None), "CPU+GPU");
        assert_eq!(placement(None, Some("GPU")), "GPU only");
        assert_eq!(placement(None, None), "unknown");
    }

    #[test]
    fn predictor_file_accepts_list_and_wrapped() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = dir.path().join("a.json");
        std::fs::write(&a, r#"[{"predictor":"kernel","target":"all","measurements":9,"within_10":0.5,"within_20":0.8,"median_error":0.1}]"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_predictor(&a).map(|v| v.len()).ok(), Some(1));
        std::fs::write(
            &a,
            r#"{"accuracy":[{"predictor":"paper","within_10":0.1,"within_20":0.2}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read_predictor(&a).map(|v| v[0].predictor.clone()).ok(),
            Some("paper".into())
        );
        std::fs::write(&a, "{}").unwrap_or_else(|e| panic!("{e}"));
        let e = read_predictor(&a)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("a.json"), "{e}");
    }
}
