//! JUnit XML for CI systems: one `<testcase>` per configuration × metric (classname the
//! configuration, name the metric), `<failure>` for a regression, `<skipped>` for a metric
//! not checked; warnings go to the suite's `<system-out>`.
use super::{CheckOutcome, Status};
use crate::html::escape;

/// Renders the outcome as JUnit XML.
pub fn render(o: &CheckOutcome) -> String {
    let failures = o.cases.iter().filter(|c| c.status == Status::Fail).count();
    let skipped = o
        .cases
        .iter()
        .filter(|c| c.status == Status::Skipped)
        .count();
    let n = o.cases.len();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"ulab check\" tests=\"{n}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n"
    ));
    x.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{n}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n",
        escape(&format!(
            "ulab check: {} against baseline {}",
            o.current.display(),
            o.baseline.display()
        ))
    ));
    for c in &o.cases {
        x.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"0\">",
            escape(&c.config),
            escape(&c.metric)
        ));
        let fmt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4} {}", c.unit));
        let detail = format!(
            "baseline {}, current {}, limit {}{}",
            fmt(c.baseline),
            fmt(c.current),
            c.limit,
            c.test.as_ref().map_or(String::new(), |t| format!(
                ", {} p = {:.6}",
                t.name, t.p_value
            ))
        );
        match c.status {
            Status::Pass => {
                x.push_str(&format!(
                    "<system-out>{}</system-out>",
                    escape(&format!("{}; {detail}", c.message))
                ));
            }
            Status::Fail => x.push_str(&format!(
                "<failure message=\"{}\" type=\"regression\">{}</failure>",
                escape(&c.message),
                escape(&detail)
            )),
            Status::Skipped => {
                x.push_str(&format!("<skipped message=\"{}\"/>", escape(&c.message)))
            }
        }
        x.push_str("</testcase>\n");
    }
    if !o.warnings.is_empty() {
        x.push_str(&format!(
            "    <system-out>{}</system-out>\n",
            escape(&o.warnings.join("\n"))
        ));
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}
