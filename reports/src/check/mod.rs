//! `ulab check`: compares a current results folder with a baseline one, configuration by
//! configuration and metric by metric, against the thresholds of [`rules`]; where both
//! sides have enough runs, a one-sided Mann–Whitney U test over the per-run samples must
//! also find the change significant before it counts as a regression.
pub mod junit;
pub mod markdown;
pub mod rules;

use crate::error::Result;
use crate::load::{Results, SummaryRow};
use crate::stats::mann_whitney_greater;
pub use rules::{Limits, Rules};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    /// A regression (or a configuration missing from current).
    Fail,
    /// Not checked (the value is missing on a side, or the metric is switched off).
    Skipped,
}

/// The statistical test behind a verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct TestInfo {
    /// e.g. "Mann–Whitney U, one-sided (exact)".
    pub name: String,
    pub p_value: f64,
    pub alpha: f64,
    pub n_baseline: usize,
    pub n_current: usize,
}

/// One configuration × metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// `model/mechanism/precision`, or "campaign" for campaign-wide checks.
    pub config: String,
    /// "latency_p90", "energy_per_inference", "top5", "top1", "present", "device".
    pub metric: String,
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    /// Unit of the values ("ms", "mJ", "%").
    pub unit: &'static str,
    /// Relative change in percent (latency, energy) or change in points (accuracy).
    pub change: Option<f64>,
    /// The threshold, in words.
    pub limit: String,
    pub test: Option<TestInfo>,
    pub status: Status,
    /// Why, in one sentence.
    pub message: String,
}

/// What `check` found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckOutcome {
    pub baseline: PathBuf,
    pub current: PathBuf,
    pub cases: Vec<Case>,
    /// Differences that do not fail the check (extra configurations, ...).
    pub warnings: Vec<String>,
}

impl CheckOutcome {
    /// Failed cases.
    pub fn failures(&self) -> Vec<&Case> {
        self.cases
            .iter()
            .filter(|c| c.status == Status::Fail)
            .collect()
    }

    /// True when nothing regressed.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// 0 when passed, 1 on a regression.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.passed())
    }
}

fn set<'a>(rows: &'a [SummaryRow], f: impl Fn(&'a SummaryRow) -> &'a str) -> BTreeSet<&'a str> {
    rows.iter().map(f).collect()
}

fn campaign_differences(b: &Results, c: &Results, rules: &Rules, out: &mut CheckOutcome) {
    for (what, fb, fc) in [
        (
            "models",
            set(&b.summary, |r| &r.model),
            set(&c.summary, |r| &r.model),
        ),
        (
            "mechanisms",
            set(&b.summary, |r| &r.mechanism),
            set(&c.summary, |r| &r.mechanism),
        ),
        (
            "precisions",
            set(&b.summary, |r| &r.precision),
            set(&c.summary, |r| &r.precision),
        ),
    ] {
        let only_b: Vec<&str> = fb.difference(&fc).copied().collect();
        let only_c: Vec<&str> = fc.difference(&fb).copied().collect();
        if !only_b.is_empty() {
            out.warnings.push(format!(
                "campaigns differ: {what} only in the baseline: {}",
                only_b.join(", ")
            ));
        }
        if !only_c.is_empty() {
            out.warnings.push(format!(
                "campaigns differ: {what} only in the current results: {}",
                only_c.join(", ")
            ));
        }
    }
    let (mb, mc) = (&b.metadata, &c.metadata);
    let dev_b = format!("{} / SoC {}", mb.device(), mb.soc);
    let dev_c = format!("{} / SoC {}", mc.device(), mc.soc);
    if dev_b != dev_c {
        let msg = format!("devices differ: baseline {dev_b}, current {dev_c}");
        if rules.campaign.allow_device_change {
            out.warnings
                .push(format!("{msg} (allowed by the rules' allow_device_change)"));
        } else {
            out.cases.push(Case {
                config: "campaign".into(),
                metric: "device".into(),
                baseline: None,
                current: None,
                unit: "",
                change: None,
                limit: "same device and SoC".into(),
                test: None,
                status: Status::Fail,
                message: format!(
                    "{msg}: results of different devices are not comparable (set \
                     [campaign] allow_device_change = true to compare anyway)"
                ),
            });
        }
    }
    if mb.campaign != mc.campaign && !mb.campaign.is_empty() && !mc.campaign.is_empty() {
        out.warnings.push(format!(
            "campaign names differ: baseline {:?}, current {:?}",
            mb.campaign, mc.campaign
        ));
    }
}

/// A relative metric (latency, energy): threshold on the summary value, and the test over
/// per-run samples when both sides have `min_runs` of them.
#[allow(clippy::too_many_arguments)]
fn relative_case(
    config: &str,
    metric: &str,
    unit: &'static str,
    scale: f64,
    base: Option<f64>,
    cur: Option<f64>,
    samples: (Vec<f64>, Vec<f64>),
    limit_pct: Option<f64>,
    limits: &Limits,
) -> Case {
    let mut case = Case {
        config: config.into(),
        metric: metric.into(),
        baseline: base.map(|v| v * scale),
        current: cur.map(|v| v * scale),
        unit,
        change: None,
        limit: limit_pct.map_or("not checked".into(), |l| format!("+{l}%")),
        test: None,
        status: Status::Skipped,
        message: String::new(),
    };
    let Some(limit) = limit_pct else {
        case.message = "switched off by the rules".into();
        return case;
    };
    let (Some(b), Some(c)) = (base, cur) else {
        case.message = format!(
            "no value in the {}",
            match (base, cur) {
                (None, None) => "baseline nor the current results",
                (None, _) => "baseline",
                _ => "current results",
            }
        );
        return case;
    };
    if b <= 0.0 {
        case.message = "baseline value is not positive".into();
        return case;
    }
    let change = (c / b - 1.0) * 100.0;
    case.change = Some(change);
    let exceeded = change > limit;
    let (sb, sc) = samples;
    let enough = sb.len() >= limits.min_runs && sc.len() >= limits.min_runs;
    let test = if enough {
        mann_whitney_greater(&sb, &sc).map(|t| TestInfo {
            name: format!("Mann–Whitney U, one-sided ({})", t.method),
            p_value: t.p_value,
            alpha: limits.alpha,
            n_baseline: sb.len(),
            n_current: sc.len(),
        })
    } else {
        None
    };
    let significant = test.as_ref().map(|t| t.p_value < t.alpha);
    case.test = test.clone();
    let test_words = match &test {
        Some(t) => format!(
            "{} over {} vs {} runs: p = {:.4} (α = {})",
            t.name, t.n_baseline, t.n_current, t.p_value, t.alpha
        ),
        None => format!(
            "threshold only: too few runs for a test ({} vs {}, {} needed on each side)",
            sb.len(),
            sc.len(),
            limits.min_runs
        ),
    };
    (case.status, case.message) = match (exceeded, significant) {
        (true, Some(false)) => (
            Status::Pass,
            format!("{change:+.2}% exceeds +{limit}% but is not significant; {test_words}"),
        ),
        (true, _) => (
            Status::Fail,
            format!("regression: {change:+.2}% exceeds +{limit}%; {test_words}"),
        ),
        (false, _) => (
            Status::Pass,
            format!("{change:+.2}% within +{limit}%; {test_words}"),
        ),
    };
    case
}

fn accuracy_case(
    config: &str,
    metric: &str,
    base: Option<f64>,
    cur: Option<f64>,
    limit: Option<f64>,
) -> Case {
    let mut case = Case {
        config: config.into(),
        metric: metric.into(),
        baseline: base.map(|v| v * 100.0),
        current: cur.map(|v| v * 100.0),
        unit: "%",
        change: None,
        limit: limit.map_or("not checked".into(), |l| format!("−{l} points")),
        test: None,
        status: Status::Skipped,
        message: String::new(),
    };
    let Some(limit) = limit else {
        case.message = "switched off by the rules".into();
        return case;
    };
    let (Some(b), Some(c)) = (base, cur) else {
        case.message = "no accuracy on one side".into();
        return case;
    };
    let change = (c - b) * 100.0;
    case.change = Some(change);
    (case.status, case.message) = if -change > limit {
        (
            Status::Fail,
            format!("regression: {change:+.2} points, more than −{limit}; threshold only (one value per configuration)"),
        )
    } else {
        (
            Status::Pass,
            format!("{change:+.2} points, within −{limit}; threshold only (one value per configuration)"),
        )
    };
    case
}

/// Compares two results folders.
pub fn check(baseline_dir: &Path, current_dir: &Path, rules: &Rules) -> Result<CheckOutcome> {
    let b = Results::load(baseline_dir)?;
    let c = Results::load(current_dir)?;
    Ok(compare(&b, &c, rules))
}

/// Compares two loaded results.
pub fn compare(b: &Results, c: &Results, rules: &Rules) -> CheckOutcome {
    let mut out = CheckOutcome {
        baseline: b.dir.clone(),
        current: c.dir.clone(),
        ..CheckOutcome::default()
    };
    campaign_differences(b, c, rules, &mut out);
    for extra in c.summary.iter().filter(|r| b.config(&r.config).is_none()) {
        out.warnings.push(format!(
            "{} is only in the current results (not checked)",
            extra.config
        ));
    }
    for base in &b.summary {
        let id = base.config.as_str();
        let Some(cur) = c.config(id) else {
            out.cases.push(Case {
                config: id.into(),
                metric: "present".into(),
                baseline: None,
                current: None,
                unit: "",
                change: None,
                limit: "present in current".into(),
                test: None,
                status: Status::Fail,
                message: format!("{id} is in the baseline but missing from the current results"),
            });
            continue;
        };
        let limits = rules.limits(&base.model, &base.mechanism, &base.precision);
        out.cases.push(relative_case(
            id,
            "latency_p90",
            "ms",
            1.0,
            Some(base.latency_p90_ms),
            Some(cur.latency_p90_ms),
            (b.run_latencies(id), c.run_latencies(id)),
            limits.latency_p90_pct,
            &limits,
        ));
        out.cases.push(relative_case(
            id,
            "energy_per_inference",
            "mJ",
            1e3,
            base.energy_mean_j,
            cur.energy_mean_j,
            (b.run_energies(id), c.run_energies(id)),
            limits.energy_per_inference_pct,
            &limits,
        ));
        out.cases.push(accuracy_case(
            id,
            "top5",
            base.top5,
            cur.top5,
            limits.top5_drop_points,
        ));
        if limits.top1_drop_points.is_some() {
            out.cases.push(accuracy_case(
                id,
                "top1",
                base.top1,
                cur.top1,
                limits.top1_drop_points,
            ));
        }
    }
    out
}

/// One line per failure and warning, and a verdict, for the terminal.
pub fn summary_text(o: &CheckOutcome) -> String {
    let mut s = String::new();
    for w in &o.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    for c in &o.cases {
        let tag = match c.status {
            Status::Pass => "ok  ",
            Status::Fail => "FAIL",
            Status::Skipped => "skip",
        };
        s.push_str(&format!("{tag} {} {}: {}\n", c.config, c.metric, c.message));
    }
    let f = o.failures().len();
    s.push_str(&if f == 0 {
        format!(
            "check passed: {} checks, no regression ({} vs baseline {})\n",
            o.cases.len(),
            o.current.display(),
            o.baseline.display()
        )
    } else {
        format!(
            "check FAILED: {f} of {} checks regressed ({} vs baseline {})\n",
            o.cases.len(),
            o.current.display(),
            o.baseline.display()
        )
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Rules::default().limits("m", "cpu", "f32")
    }

    #[test]
    fn significant_slowdown_fails() {
        let b: Vec<f64> = (0..10).map(|i| 10.0 + f64::from(i) * 0.01).collect();
        let c: Vec<f64> = b.iter().map(|x| x * 1.2).collect();
        let case = relative_case(
            "m/cpu/f32",
            "latency_p90",
            "ms",
            1.0,
            Some(10.09),
            Some(12.1),
            (b, c),
            Some(5.0),
            &limits(),
        );
        assert_eq!(case.status, Status::Fail, "{}", case.message);
        assert!(case.message.contains("Mann–Whitney"), "{}", case.message);
        assert!(case.test.as_ref().is_some_and(|t| t.p_value < 0.001));
    }

    #[test]
    fn few_runs_use_the_threshold_only_and_say_so() {
        let case = relative_case(
            "x",
            "latency_p90",
            "ms",
            1.0,
            Some(10.0),
            Some(11.0),
            (vec![10.0; 2], vec![11.0; 2]),
            Some(5.0),
            &limits(),
        );
        assert_eq!(case.status, Status::Fail);
        assert!(case.message.contains("threshold only"), "{}", case.message);
        assert!(case.test.is_none());
        let ok = relative_case(
            "x",
            "latency_p90",
            "ms",
            1.0,
            Some(10.0),
            Some(10.3),
            (vec![], vec![]),
            Some(5.0),
            &limits(),
        );
        assert_eq!(ok.status, Status::Pass);
    }

    #[test]
    fn noisy_overlap_is_not_a_regression() {
        // p90 grew by 6 % but the samples overlap completely: not significant.
        let b = vec![10.0, 12.0, 9.0, 11.0, 10.5, 9.5, 12.5, 10.2, 9.8, 11.2];
        let c = vec![9.5, 12.7, 9.1, 11.0, 10.4, 9.6, 13.2, 10.1, 9.9, 11.1];
        let case = relative_case(
            "x",
            "latency_p90",
            "ms",
            1.0,
            Some(12.0),
            Some(12.72),
            (b, c),
            Some(5.0),
            &limits(),
        );
        assert_eq!(case.status, Status::Pass, "{}", case.message);
        assert!(case.message.contains("not significant"), "{}", case.message);
    }

    #[test]
    fn missing_energy_is_skipped_and_accuracy_is_in_points() {
        let case = relative_case(
            "x",
            "energy_per_inference",
            "mJ",
            1e3,
            None,
            Some(0.1),
            (vec![], vec![]),
            Some(5.0),
            &limits(),
        );
        assert_eq!(case.status, Status::Skipped);
        assert!(case.message.contains("baseline"));
        let drop = accuracy_case("x", "top5", Some(0.90), Some(0.89), Some(0.5));
        assert_eq!(drop.status, Status::Fail);
        assert!(drop.change.is_some_and(|c| (c + 1.0).abs() < 1e-9));
        let small = accuracy_case("x", "top5", Some(0.90), Some(0.898), Some(0.5));
        assert_eq!(small.status, Status::Pass);
    }
}
