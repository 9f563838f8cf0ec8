//! A results folder written exactly in the harness's schema (`harness/src/results.rs`:
//! runs, layers and summary tables as Parquet and CSV, metadata.json, configs/<slug>/ with
//! result.json, job.json and a monitor trace), with deterministic synthetic numbers.
use monsoon::trace::{TraceMeta, TraceWriter};
use monsoon::Sample;
use polars::prelude::*;
use std::path::Path;

pub struct Cfg {
    pub model: &'static str,
    pub mechanism: &'static str,
    pub precision: &'static str,
    /// Median latency, ms.
    pub latency_ms: f64,
    /// Mean power while running, W.
    pub power_w: f64,
    pub top1: f64,
    pub top5: f64,
}

impl Cfg {
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.model, self.mechanism, self.precision)
    }
    pub fn slug(&self) -> String {
        format!("{}__{}__{}", self.model, self.mechanism, self.precision)
    }
}

pub fn matrix() -> Vec<Cfg> {
    let c = |model, mechanism, precision, latency_ms, power_w, top1, top5| Cfg {
        model,
        mechanism,
        precision,
        latency_ms,
        power_w,
        top1,
        top5,
    };
    vec![
        c("mobilenet-v1", "cpu", "f32", 24.0, 3.0, 0.70, 0.89),
        c("mobilenet-v1", "gpu", "f16", 18.0, 3.4, 0.70, 0.89),
        c(
            "mobilenet-v1",
            "layer-to-processor",
            "f32",
            16.0,
            3.3,
            0.70,
            0.89,
        ),
        c("mobilenet-v1", "ulayer", "quint8", 8.0, 3.8, 0.69, 0.88),
        c("tinynet", "cpu", "f32", 5.0, 2.5, 0.55, 0.78),
        c("tinynet", "gpu", "f32", 6.0, 2.8, 0.55, 0.78),
        c("tinynet", "ulayer", "f32", 3.5, 3.1, 0.55, 0.78),
    ]
}

pub const RUNS: usize = 12;
pub const LAYERS: [(&str, &str); 6] = [
    ("conv1", "Conv2d"),
    ("dw2", "Conv2d"),
    ("pw2", "Conv2d"),
    ("pool", "GlobalAveragePool"),
    ("fc", "Gemm"),
    ("softmax", "Softmax"),
];
const SHARE: [f64; 6] = [0.3, 0.15, 0.3, 0.05, 0.15, 0.05];
const RATE: f64 = 5000.0;
const T0: u64 = 1_000_000_000_000;

/// Deterministic noise in [-1, 1).
fn noise(seed: u64, i: u64) -> f64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    (x % 2_000_000) as f64 / 1_000_000.0 - 1.0
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    v[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1]
}

fn write_df(dir: &Path, name: &str, cols: Vec<Column>) {
    let mut df = DataFrame::new_infer_height(cols).unwrap_or_else(|e| panic!("{name}: {e}"));
    let f = std::fs::File::create(dir.join(format!("{name}.parquet")))
        .unwrap_or_else(|e| panic!("{e}"));
    ParquetWriter::new(f)
        .finish(&mut df)
        .unwrap_or_else(|e| panic!("{e}"));
    let f =
        std::fs::File::create(dir.join(format!("{name}.csv"))).unwrap_or_else(|e| panic!("{e}"));
    CsvWriter::new(f)
        .include_header(true)
        .finish(&mut df)
        .unwrap_or_else(|e| panic!("{e}"));
}

fn s(n: &str, v: Vec<String>) -> Column {
    Column::new(n.into(), v)
}
fn f(n: &str, v: Vec<f64>) -> Column {
    Column::new(n.into(), v)
}
fn of(n: &str, v: Vec<Option<f64>>) -> Column {
    Column::new(n.into(), v)
}
fn u(n: &str, v: Vec<u64>) -> Column {
    Column::new(n.into(), v)
}
fn os(n: &str, v: Vec<Option<String>>) -> Column {
    Column::new(n.into(), v)
}

/// Options of a fixture.
#[derive(Clone, Default)]
pub struct Fixture {
    /// Noise seed (a "rerun" uses another one).
    pub seed: u64,
    /// (configuration id, factor): that configuration's latency and energy multiplied.
    pub slow: Option<(String, f64)>,
    /// Configurations left out (by id).
    pub drop: Vec<String>,
    /// Extra model added as a copy of tinynet's configurations under this name.
    pub extra_model: Option<&'static str>,
    pub soc: Option<&'static str>,
}

/// Writes a results folder into `dir`.
pub fn write(dir: &Path, fx: &Fixture) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    let mut cfgs: Vec<Cfg> = matrix()
        .into_iter()
        .filter(|c| !fx.drop.contains(&c.id()))
        .collect();
    if let Some(extra) = fx.extra_model {
        for c in matrix().into_iter().filter(|c| c.model == "tinynet") {
            cfgs.push(Cfg { model: extra, ..c });
        }
    }
    let mut runs_cols: Vec<Vec<String>> = vec![vec![]; 4];
    let mut layer_cols: Vec<Vec<String>> = vec![vec![]; 4];
    let mut sum_cols: Vec<Vec<String>> = vec![vec![]; 4];
    let mut r_run = vec![];
    let mut r_start = vec![];
    let mut r_lat = vec![];
    let mut r_e = vec![];
    let mut r_ea = vec![];
    let mut r_p = vec![];
    let (
        mut l_layer,
        mut l_node,
        mut l_kind,
        mut l_macs,
        mut l_p50,
        mut l_mean,
        mut l_e,
        mut l_ea,
        mut l_m,
    ) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    let mut sm: Vec<Vec<Option<f64>>> = vec![vec![]; 17];
    let mut s_method = vec![];
    let mut s_weights = vec![];
    let mut s_runs = vec![];
    let idle_w = 1.0;
    for (ci, c) in cfgs.iter().enumerate() {
        let factor = match &fx.slow {
            Some((id, k)) if *id == c.id() => *k,
            _ => 1.0,
        };
        let keys = [
            c.id(),
            c.model.to_string(),
            c.mechanism.to_string(),
            c.precision.to_string(),
        ];
        let lats: Vec<f64> = (0..RUNS)
            .map(|i| {
                c.latency_ms * factor * (1.0 + 0.02 * noise(fx.seed * 1000 + ci as u64, i as u64))
            })
            .collect();
        let energies: Vec<f64> = lats.iter().map(|l| l / 1e3 * c.power_w).collect();
        // Device timeline: idle 300 ms, pulses 120/40/80 ms with 80 ms gaps, runs, pulses.
        let ms = 1_000_000u64;
        let idle = (T0, T0 + 300 * ms);
        let mut t = idle.1;
        let mut pulses = vec![];
        for b in [120u64, 40, 80] {
            pulses.push((t, t + b * ms));
            t += (b + 80) * ms;
        }
        let mut traces = vec![];
        let mut spans_all = vec![];
        for (i, l) in lats.iter().enumerate() {
            let start = t;
            let dur = (l * 1e6) as u64;
            let mut lt = start;
            let mut spans = vec![];
            for (k, (node, kind)) in LAYERS.iter().enumerate() {
                let d = (dur as f64 * SHARE[k]) as u64;
                let procs: Vec<&str> = match c.mechanism {
                    "cpu" => vec!["cpu"],
                    "gpu" => vec!["gpu"],
                    "layer-to-processor" => vec![if k % 2 == 0 { "gpu" } else { "cpu" }],
                    _ => {
                        if k < 3 || k == 4 {
                            vec!["cpu", "gpu"]
                        } else {
                            vec!["cpu"]
                        }
                    }
                };
                for (pi, p) in procs.iter().enumerate() {
                    let pd = if procs.len() == 2 {
                        d * (90 + 10 * pi as u64) / 100
                    } else {
                        d
                    };
                    spans.push(serde_json::json!({
                        "node": node, "kind": kind, "processor": p, "precision": c.precision,
                        "slice": {"channels": {"start": 0, "end": 8}, "rows": {"start": 0, "end": 1}},
                        "start_ns": lt, "end_ns": lt + pd, "transfer_ns": 0
                    }));
                }
                spans_all.push((lt, lt + d, k));
                lt += d;
            }
            traces.push(
                serde_json::json!({"start_ns": start, "end_ns": start + dur, "layers": spans}),
            );
            r_start.push(start);
            r_run.push(i as u64);
            t = start + dur + ms / 2;
        }
        let runs_end = t;
        let mut closing = vec![];
        t += 50 * ms;
        for b in [120u64, 40, 80] {
            closing.push((t, t + b * ms));
            t += (b + 80) * ms;
        }
        let job = (T0, t);
        for (i, l) in lats.iter().enumerate() {
            for (k, v) in keys.iter().enumerate() {
                runs_cols[k].push(v.clone());
            }
            r_lat.push(*l);
            r_e.push(Some(energies[i]));
            r_ea.push(Some(energies[i] - idle_w * l / 1e3));
            r_p.push(Some(c.power_w));
        }
        for (k, (node, kind)) in LAYERS.iter().enumerate() {
            for (j, v) in keys.iter().enumerate() {
                layer_cols[j].push(v.clone());
            }
            let p50 = c.latency_ms * factor * SHARE[k];
            l_layer.push(k as u64);
            l_node.push(node.to_string());
            l_kind.push(kind.to_string());
            l_macs.push(1_000_000 * (k as u64 + 1));
            l_p50.push(p50);
            l_mean.push(p50 * 1.01);
            l_e.push(Some(p50 / 1e3 * c.power_w * (0.8 + 0.1 * k as f64)));
            l_ea.push(Some(p50 / 1e3 * (c.power_w - idle_w)));
            l_m.push(Some(
                if p50 < 1.0 {
                    "phase-aggregation"
                } else {
                    "direct"
                }
                .to_string(),
            ));
        }
        for (k, v) in keys.iter().enumerate() {
            sum_cols[k].push(v.clone());
        }
        let mean = lats.iter().sum::<f64>() / RUNS as f64;
        let sd = (lats.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (RUNS - 1) as f64).sqrt();
        let e_mean = energies.iter().sum::<f64>() / RUNS as f64;
        let f32_ref = c.precision == "f32" && c.mechanism == "cpu";
        for (k, v) in [
            Some(pct(&lats, 50.0)),
            Some(pct(&lats, 90.0)),
            Some(pct(&lats, 99.0)),
            Some(mean),
            Some(sd),
            Some(e_mean),
            Some(pct(&energies, 50.0)),
            Some(e_mean - idle_w * mean / 1e3),
            Some(c.power_w),
            Some(idle_w),
            Some(0.4),
            Some(c.top1),
            Some(c.top5),
            (!f32_ref).then_some(0.97),
            (!f32_ref).then_some(0.99),
            Some(18.0),
            None,
        ]
        .into_iter()
        .enumerate()
        {
            sm[k].push(v);
        }
        s_method.push(Some("direct + phase-aggregation".to_string()));
        s_weights.push(Some(
            if c.model == "mobilenet-v1" {
                "real"
            } else {
                "seeded"
            }
            .to_string(),
        ));
        s_runs.push(RUNS as u64);

        // configs/<slug>/: result.json, job.json, trace.mtr.
        let cdir = dir.join("configs").join(c.slug());
        std::fs::create_dir_all(&cdir).unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (
            250.0 - T0 as f64 * RATE / 1e9 * (1.0 + 20e-6),
            RATE / 1e9 * (1.0 + 20e-6),
        );
        let trace_rel = format!("configs/{}/trace.mtr", c.slug());
        let result = serde_json::json!({
            "config": {"model": c.model, "mechanism": c.mechanism, "precision": c.precision},
            "index": ci, "started_unix_ms": 1_798_700_000_000u64, "finished_unix_ms": 1_798_700_060_000u64,
            "weights": "seeded", "runs": [], "layers": [],
            "latency": {"runs": RUNS, "p50_ms": pct(&lats, 50.0), "p90_ms": pct(&lats, 90.0), "p99_ms": pct(&lats, 99.0),
                        "mean_ms": mean, "std_ms": sd, "min_ms": 0.0, "max_ms": 0.0},
            "power": {"idle_power_w": idle_w, "clock_a": a, "clock_b": b, "clock_residual_samples": 0.4,
                      "energy_method": "direct", "samples": 0, "lost_samples": 0, "note": null},
            "accuracy": null,
            "trace_file": trace_rel,
        });
        std::fs::write(
            cdir.join("result.json"),
            serde_json::to_vec_pretty(&result).unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let iv = |(s, e): (u64, u64)| serde_json::json!({"start_ns": s, "end_ns": e});
        let jobj = serde_json::json!({
            "idle": iv(idle),
            "pattern": {"bursts_ms": [120, 40, 80], "gap_ms": 80},
            "pulses_before": pulses.iter().map(|p| iv(*p)).collect::<Vec<_>>(),
            "pulses_after": closing.iter().map(|p| iv(*p)).collect::<Vec<_>>(),
            "bench": {"model": c.model, "mechanism": c.mechanism, "precision": c.precision, "threads": 0,
                      "warmup": 2, "latency": result["latency"].clone(), "layers": [], "runs_ns": [],
                      "traces": traces},
            "job": iv(job),
        });
        std::fs::write(
            cdir.join("job.json"),
            serde_json::to_vec(&jobj).unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let to_sample = |ns: u64| a + b * ns as f64;
        let last = to_sample(job.1) as u64 + 250;
        let mut w = TraceWriter::create(dir.join(&trace_rel), &TraceMeta::new("reports fixture"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut batch = Vec::new();
        for idx in 0..last {
            let x = idx as f64;
            let mut p = idle_w + 0.05 * noise(fx.seed, idx);
            if pulses
                .iter()
                .chain(&closing)
                .any(|&(s, e)| x >= to_sample(s) && x < to_sample(e))
            {
                p = 4.5 + 0.05 * noise(fx.seed + 1, idx);
            } else if x >= to_sample(r_start[r_start.len() - RUNS]) && x < to_sample(runs_end) {
                p = c.power_w * 0.7;
                for &(s, e, k) in &spans_all {
                    if x >= to_sample(s) && x < to_sample(e) {
                        p = c.power_w * (0.8 + 0.1 * k as f64);
                    }
                }
            }
            batch.push(Sample {
                index: idx,
                main_current_a: (p / 4.0) as f32,
                usb_current_a: 0.0,
                aux_current_a: 0.0,
                voltage_v: 4.0,
            });
        }
        w.push_samples(&batch).unwrap_or_else(|e| panic!("{e}"));
        w.finish().unwrap_or_else(|e| panic!("{e}"));
    }
    let keyed = |cols: &Vec<Vec<String>>| -> Vec<Column> {
        ["config", "model", "mechanism", "precision"]
            .iter()
            .zip(cols)
            .map(|(n, v)| s(n, v.clone()))
            .collect()
    };
    let mut rc = keyed(&runs_cols);
    rc.extend([
        u("run", r_run),
        u("start_ns", r_start),
        f("latency_ms", r_lat),
        of("energy_j", r_e),
        of("energy_above_idle_j", r_ea),
        of("avg_power_w", r_p),
    ]);
    write_df(dir, "runs", rc);
    let mut lc = keyed(&layer_cols);
    lc.extend([
        u("layer", l_layer),
        s("node", l_node),
        s("kind", l_kind),
        u("macs", l_macs),
        f("p50_ms", l_p50),
        f("mean_ms", l_mean),
        of("energy_j", l_e),
        of("energy_above_idle_j", l_ea),
        os("energy_method", l_m),
    ]);
    write_df(dir, "layers", lc);
    let mut sc = keyed(&sum_cols);
    sc.push(u("runs", s_runs));
    let names = [
        "latency_p50_ms",
        "latency_p90_ms",
        "latency_p99_ms",
        "latency_mean_ms",
        "latency_std_ms",
        "energy_mean_j",
        "energy_p50_j",
        "energy_above_idle_mean_j",
        "avg_power_w",
        "idle_power_w",
        "clock_residual_samples",
    ];
    for (k, n) in names.iter().enumerate() {
        if k < 5 {
            sc.push(f(n, sm[k].iter().map(|v| v.unwrap_or(0.0)).collect()));
        } else {
            sc.push(of(n, sm[k].clone()));
        }
    }
    sc.push(os("energy_method", s_method));
    for (k, n) in [
        "top1",
        "top5",
        "top1_agreement",
        "top5_agreement",
        "accuracy_images",
    ]
    .iter()
    .enumerate()
    {
        sc.push(of(n, sm[11 + k].clone()));
    }
    sc.push(os("weights", s_weights));
    write_df(dir, "summary", sc);
    let meta = serde_json::json!({
        "campaign": "fixture", "campaign_digest": "0", "transport": "local",
        "device_arch": "x86_64", "device_cpus": 8, "device_cpu_isa": "avx2",
        "soc": fx.soc.unwrap_or("Simulated SoC"), "agent_version": "0.1.0", "protocol": 1,
        "ulab_version": "0.1.0", "git_commit": null, "monitor": "simulated",
        "monitor_serial": null, "started_unix_ms": 1_798_700_000_000u64,
        "finished_unix_ms": 1_798_700_600_000u64,
        "weights": {"mobilenet-v1": "real", "tinynet": "seeded"}, "shards": []
    });
    std::fs::write(
        dir.join("metadata.json"),
        serde_json::to_vec_pretty(&meta).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}
