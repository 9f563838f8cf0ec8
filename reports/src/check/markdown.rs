//! The check's outcome as Markdown (for CI job summaries and pull-request comments).
use super::{CheckOutcome, Status};
use crate::markdown::markdown_table;

/// Renders the outcome as Markdown.
pub fn render(o: &CheckOutcome) -> String {
    let failures = o.failures().len();
    let mut s = format!(
        "# ulab check: {}\n\nCurrent `{}` against baseline `{}`: {} checks, {} regression(s).\n\n",
        if failures == 0 { "passed" } else { "FAILED" },
        o.current.display(),
        o.baseline.display(),
        o.cases.len(),
        failures
    );
    if !o.warnings.is_empty() {
        s.push_str("## Warnings\n\n");
        for w in &o.warnings {
            s.push_str(&format!("- {w}\n"));
        }
        s.push('\n');
    }
    let fmt =
        |v: Option<f64>, unit: &str| v.map_or("–".to_string(), |v| format!("{v:.3} {unit}"));
    let rows: Vec<Vec<String>> = o
        .cases
        .iter()
        .map(|c| {
            vec![
                c.config.clone(),
                c.metric.clone(),
                fmt(c.baseline, c.unit),
                fmt(c.current, c.unit),
                c.change.map_or("–".into(), |v| {
                    if c.unit == "%" {
                        format!("{v:+.2} pt")
                    } else {
                        format!("{v:+.2}%")
                    }
                }),
                c.limit.clone(),
                c.test.as_ref().map_or("threshold only".into(), |t| {
                    format!("{}: p = {:.4} (α {})", t.name, t.p_value, t.alpha)
                }),
                match c.status {
                    Status::Pass => "pass".into(),
                    Status::Fail => "**FAIL**".into(),
                    Status::Skipped => format!("skipped: {}", c.message),
                },
            ]
        })
        .collect();
    s.push_str(&markdown_table(
        &[
            "configuration",
            "metric",
            "baseline",
            "current",
            "change",
            "limit",
            "test",
            "result",
        ],
        &rows,
    ));
    let fails = o.failures();
    if !fails.is_empty() {
        s.push_str("\n## Regressions\n\n");
        for c in fails {
            s.push_str(&format!("- `{}` {}: {}\n", c.config, c.metric, c.message));
        }
    }
    s
}
