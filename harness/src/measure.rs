//! From a job's samples and report to result rows: clock alignment (`align`), energy
//! attribution (`energy`), and the join with the agent's per-run and per-layer timings.
use ulayer::protocol::JobReport;

use crate::record::{LayerRow, PowerSummary, RunRow};

/// Rows of one job.
pub struct Rows {
    pub runs: Vec<RunRow>,
    pub layers: Vec<LayerRow>,
    pub power: PowerSummary,
}

/// Timing-only rows (no monitor, or power analysis failed: `note` says why).
pub fn timing_rows(report: &JobReport, note: Option<String>) -> Rows {
    let b = &report.bench;
    let starts: Vec<u64> = b.traces.iter().map(|t| t.start_ns).collect();
    let runs = b
        .runs_ns
        .iter()
        .enumerate()
        .map(|(i, &ns)| RunRow {
            run: i,
            start_ns: starts.get(i).copied().unwrap_or(0),
            latency_ms: ns as f64 / 1e6,
            energy_j: None,
            energy_above_idle_j: None,
            avg_power_w: None,
        })
        .collect();
    let mut procs: std::collections::HashMap<&str, std::collections::BTreeSet<String>> =
        std::collections::HashMap::new();
    for t in &b.traces {
        for span in &t.layers {
            let name = serde_json::to_value(span.processor)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            procs.entry(span.node.as_str()).or_default().insert(name);
        }
    }
    let layers = b
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| LayerRow {
            layer: i,
            node: l.node.clone(),
            kind: l.kind.clone(),
            processors: procs
                .get(l.node.as_str())
                .map(|p| p.iter().cloned().collect::<Vec<_>>().join("+")),
            macs: l.macs,
            p50_ms: l.p50_ms,
            mean_ms: l.mean_ms,
            energy_j: None,
            energy_above_idle_j: None,
            energy_method: None,
        })
        .collect();
    Rows {
        runs,
        layers,
        power: PowerSummary {
            note,
            ..PowerSummary::default()
        },
    }
}

/// Aligns the trace to the device clock and attributes energy; on failure the rows carry
/// timing only and the power summary says why (the configuration still counts: a fit that
/// is not credible must not become numbers).
pub fn rows(samples: &[monsoon::Sample], lost: u64, report: &JobReport) -> Rows {
    let mut out = timing_rows(report, None);
    out.power.samples = samples.len() as u64;
    out.power.lost_samples = lost;
    let map = match crate::align::align(samples, report) {
        Ok(m) => m,
        Err(e) => {
            out.power.note = Some(format!("clock alignment failed: {e}"));
            return out;
        }
    };
    out.power.clock_a = Some(map.a);
    out.power.clock_b = Some(map.b);
    out.power.clock_residual_samples = Some(map.residual_rms_samples);
    out.power.mapping_error_samples = Some(map.mapping_error_samples);
    let energy = match crate::energy::attribute(samples, &map, report) {
        Ok(e) => e,
        Err(e) => {
            out.power.note = Some(format!("energy attribution failed: {e}"));
            return out;
        }
    };
    out.power.idle_power_w = Some(energy.idle.power_w);
    out.power.energy_method = Some(energy.method.clone());
    for r in &mut out.runs {
        if let Some(e) = energy.runs.iter().find(|e| e.run == r.run && e.used) {
            r.energy_j = Some(e.energy_j);
            r.energy_above_idle_j = Some(e.energy_above_idle_j);
            r.avg_power_w = Some(e.avg_power_w);
        }
    }
    for l in &mut out.layers {
        if let Some(e) = energy.layers.iter().find(|e| e.node == l.node) {
            l.energy_j = Some(e.energy_j);
            l.energy_above_idle_j = Some(e.energy_above_idle_j);
            l.energy_method = serde_json::to_value(e.method)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
        }
    }
    out
}
