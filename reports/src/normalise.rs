//! The paper's Figure 16/17 form: every mechanism of a network relative to that network's
//! layer-to-processor configuration (or, without one, its best single-processor one).
use crate::load::SummaryRow;

/// The mechanism every other one is normalised to.
pub const BASELINE_MECHANISM: &str = "layer-to-processor";
/// Mechanisms that run a whole network on one processor.
pub const SINGLE_PROCESSOR: [&str; 2] = ["cpu", "gpu"];

/// The configuration a network's bars are divided by, and why it was chosen when it is not
/// layer-to-processor.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline<'a> {
    pub row: &'a SummaryRow,
    /// Set when the baseline is not layer-to-processor.
    pub note: Option<String>,
}

/// The baseline of `model` among `rows`: its layer-to-processor configuration (f32 when
/// there are several precisions), else the fastest (p50) single-processor one, else the
/// fastest of any.
pub fn baseline<'a>(model: &str, rows: &'a [SummaryRow]) -> Option<Baseline<'a>> {
    let of_model: Vec<&SummaryRow> = rows.iter().filter(|r| r.model == model).collect();
    let l2p: Vec<&&SummaryRow> = of_model
        .iter()
        .filter(|r| r.mechanism == BASELINE_MECHANISM)
        .collect();
    if let Some(r) = l2p
        .iter()
        .find(|r| r.precision == "f32")
        .or_else(|| l2p.first())
    {
        return Some(Baseline { row: r, note: None });
    }
    let fastest = |it: &mut dyn Iterator<Item = &&'a SummaryRow>| -> Option<&'a SummaryRow> {
        it.min_by(|a, b| a.latency_p50_ms.total_cmp(&b.latency_p50_ms))
            .copied()
    };
    if let Some(r) = fastest(
        &mut of_model
            .iter()
            .filter(|r| SINGLE_PROCESSOR.contains(&r.mechanism.as_str())),
    ) {
        return Some(Baseline {
            row: r,
            note: Some(format!(
                "{model} has no {BASELINE_MECHANISM} configuration: normalised to its best \
                 single-processor one, {}",
                r.config
            )),
        });
    }
    fastest(&mut of_model.iter()).map(|r| Baseline {
        row: r,
        note: Some(format!(
            "{model} has neither a {BASELINE_MECHANISM} nor a single-processor configuration: \
             normalised to its fastest one, {}",
            r.config
        )),
    })
}

/// `value / base` when both are positive and finite.
pub fn ratio(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (value, base) {
        (Some(v), Some(b)) if v.is_finite() && b.is_finite() && b > 0.0 && v >= 0.0 => Some(v / b),
        _ => None,
    }
}

/// A bar series label: "mechanism precision".
pub fn series_label(r: &SummaryRow) -> String {
    format!("{} {}", r.mechanism, r.precision)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, mech: &str, prec: &str, p50: f64) -> SummaryRow {
        SummaryRow {
            config: format!("{model}/{mech}/{prec}"),
            model: model.into(),
            mechanism: mech.into(),
            precision: prec.into(),
            latency_p50_ms: p50,
            ..SummaryRow::default()
        }
    }

    #[test]
    fn layer_to_processor_f32_is_the_baseline() {
        let rows = vec![
            row("m", "cpu", "f32", 10.0),
            row("m", "layer-to-processor", "quint8", 4.0),
            row("m", "layer-to-processor", "f32", 8.0),
            row("m", "ulayer", "quint8", 3.0),
        ];
        let b = baseline("m", &rows).unwrap_or_else(|| unreachable!());
        assert_eq!(b.row.config, "m/layer-to-processor/f32");
        assert_eq!(b.note, None);
        assert_eq!(
            ratio(Some(rows[3].latency_p50_ms), Some(b.row.latency_p50_ms)),
            Some(0.375)
        );
    }

    #[test]
    fn without_layer_to_processor_the_best_single_processor_is_used_and_said() {
        let rows = vec![
            row("m", "cpu", "f32", 10.0),
            row("m", "gpu", "f16", 6.0),
            row("m", "ulayer", "quint8", 3.0),
            row("other", "layer-to-processor", "f32", 1.0),
        ];
        let b = baseline("m", &rows).unwrap_or_else(|| unreachable!());
        assert_eq!(b.row.config, "m/gpu/f16");
        let note = b.note.unwrap_or_default();
        assert!(note.contains("no layer-to-processor"), "{note}");
        assert!(note.contains("m/gpu/f16"), "{note}");
    }

    #[test]
    fn only_cooperative_configurations_fall_back_to_the_fastest() {
        let rows = vec![
            row("m", "ulayer", "f32", 5.0),
            row("m", "ulayer", "quint8", 3.0),
        ];
        let b = baseline("m", &rows).unwrap_or_else(|| unreachable!());
        assert_eq!(b.row.config, "m/ulayer/quint8");
        assert!(b.note.is_some());
        assert!(baseline("absent", &rows).is_none());
    }

    #[test]
    fn ratio_refuses_missing_and_zero() {
        assert_eq!(ratio(Some(2.0), Some(4.0)), Some(0.5));
        assert_eq!(ratio(None, Some(4.0)), None);
        assert_eq!(ratio(Some(2.0), Some(0.0)), None);
        assert_eq!(ratio(Some(f64::NAN), Some(1.0)), None);
    }
}
