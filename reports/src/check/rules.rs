//! Thresholds of `ulab check`, from TOML:
//!
//! ```toml
//! [defaults]                       # every key optional; these are the built-in values
//! latency_p90_pct = 5.0            # fail when p90 latency grows by more than 5 %
//! energy_per_inference_pct = 5.0   # ... or mean energy per inference by more than 5 %
//! top5_drop_points = 0.5           # ... or top-5 falls by more than 0.5 points
//! # top1_drop_points = 1.0         # off unless set
//! alpha = 0.05                     # significance of the one-sided Mann–Whitney U test
//! min_runs = 5                     # runs needed on each side for the test
//! skip = []                        # metrics not checked: latency_p90, energy_per_inference, top5, top1
//!
//! [campaign]
//! allow_device_change = false      # a different device/SoC is a failure unless true
//!
//! [[override]]                     # any of model / mechanism / precision; all given must match
//! model = "mobilenet-v1"
//! mechanism = "gpu"
//! latency_p90_pct = 10.0           # later overrides win, key by key
//! ```
use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// Metric names as rules and reports spell them.
pub const METRICS: [&str; 4] = ["latency_p90", "energy_per_inference", "top5", "top1"];

/// Threshold keys; each optional so overrides change only what they name.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub latency_p90_pct: Option<f64>,
    pub energy_per_inference_pct: Option<f64>,
    pub top5_drop_points: Option<f64>,
    pub top1_drop_points: Option<f64>,
    pub alpha: Option<f64>,
    pub min_runs: Option<usize>,
    pub skip: Option<Vec<String>>,
}

impl Thresholds {
    fn apply(&mut self, o: &Thresholds) {
        macro_rules! take {
            ($($f:ident),*) => { $( if o.$f.is_some() { self.$f = o.$f.clone(); } )* };
        }
        take!(
            latency_p90_pct,
            energy_per_inference_pct,
            top5_drop_points,
            top1_drop_points,
            alpha,
            min_runs,
            skip
        );
    }
}

/// An `[[override]]`: thresholds for matching configurations.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub model: Option<String>,
    pub mechanism: Option<String>,
    pub precision: Option<String>,
    pub latency_p90_pct: Option<f64>,
    pub energy_per_inference_pct: Option<f64>,
    pub top5_drop_points: Option<f64>,
    pub top1_drop_points: Option<f64>,
    pub alpha: Option<f64>,
    pub min_runs: Option<usize>,
    pub skip: Option<Vec<String>>,
}

impl Override {
    /// The thresholds this override sets (serde's `flatten` would lose
    /// `deny_unknown_fields`, so the keys are repeated).
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            latency_p90_pct: self.latency_p90_pct,
            energy_per_inference_pct: self.energy_per_inference_pct,
            top5_drop_points: self.top5_drop_points,
            top1_drop_points: self.top1_drop_points,
            alpha: self.alpha,
            min_runs: self.min_runs,
            skip: self.skip.clone(),
        }
    }
}

/// `[campaign]`: how strict the comparison of the two campaigns is.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CampaignRules {
    #[serde(default)]
    pub allow_device_change: bool,
}

/// A rules file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub defaults: Thresholds,
    #[serde(default, rename = "override")]
    pub overrides: Vec<Override>,
    #[serde(default)]
    pub campaign: CampaignRules,
}

/// The thresholds of one configuration, every value resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Allowed growth of p90 latency, percent (`None`: not checked).
    pub latency_p90_pct: Option<f64>,
    pub energy_per_inference_pct: Option<f64>,
    /// Allowed drop of top-5 / top-1, percentage points.
    pub top5_drop_points: Option<f64>,
    pub top1_drop_points: Option<f64>,
    pub alpha: f64,
    pub min_runs: usize,
}

impl Rules {
    /// Parses rules TOML; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Rules> {
        let rules: Rules = toml::from_str(text).map_err(|e| Error::Invalid {
            path: origin.to_path_buf(),
            msg: format!("not valid check rules: {e}"),
        })?;
        let all: Vec<Thresholds> = std::iter::once(rules.defaults.clone())
            .chain(rules.overrides.iter().map(Override::thresholds))
            .collect();
        for t in &all {
            for s in t.skip.iter().flatten() {
                if !METRICS.contains(&s.as_str()) {
                    return Err(Error::Invalid {
                        path: origin.to_path_buf(),
                        msg: format!("skip: unknown metric {s:?} (known: {})", METRICS.join(", ")),
                    });
                }
            }
            if let Some(a) = t.alpha {
                if !(a > 0.0 && a < 1.0) {
                    return Err(Error::Invalid {
                        path: origin.to_path_buf(),
                        msg: format!("alpha must be in (0, 1), not {a}"),
                    });
                }
            }
            for (k, v) in [
                ("latency_p90_pct", t.latency_p90_pct),
                ("energy_per_inference_pct", t.energy_per_inference_pct),
                ("top5_drop_points", t.top5_drop_points),
                ("top1_drop_points", t.top1_drop_points),
            ] {
                if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                    return Err(Error::Invalid {
                        path: origin.to_path_buf(),
                        msg: format!("{k} must be a non-negative number"),
                    });
                }
            }
        }
        Ok(rules)
    }

    /// Reads a rules file.
    pub fn load(path: &Path) -> Result<Rules> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Rules::parse(&text, path)
    }

    /// The limits of configuration (`model`, `mechanism`, `precision`).
    pub fn limits(&self, model: &str, mechanism: &str, precision: &str) -> Limits {
        let mut t = Thresholds {
            latency_p90_pct: Some(5.0),
            energy_per_inference_pct: Some(5.0),
            top5_drop_points: Some(0.5),
            top1_drop_points: None,
            alpha: Some(0.05),
            min_runs: Some(5),
            skip: Some(Vec::new()),
        };
        t.apply(&self.defaults);
        for o in &self.overrides {
            let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
            if ok(&o.model, model) && ok(&o.mechanism, mechanism) && ok(&o.precision, precision) {
                t.apply(&o.thresholds());
            }
        }
        let skip = t.skip.unwrap_or_default();
        let on = |name: &str, v: Option<f64>| v.filter(|_| !skip.iter().any(|s| s == name));
        Limits {
            latency_p90_pct: on("latency_p90", t.latency_p90_pct),
            energy_per_inference_pct: on("energy_per_inference", t.energy_per_inference_pct),
            top5_drop_points: on("top5", t.top5_drop_points),
            top1_drop_points: on("top1", t.top1_drop_points),
            alpha: t.alpha.unwrap_or(0.05),
            min_runs: t.min_runs.unwrap_or(5).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Rules> {
        Rules::parse(t, Path::new("rules.toml"))
    }

    #[test]
    fn defaults_without_a_file() {
        let l = Rules::default().limits("m", "cpu", "f32");
        assert_eq!(l.latency_p90_pct, Some(5.0));
        assert_eq!(l.energy_per_inference_pct, Some(5.0));
        assert_eq!(l.top5_drop_points, Some(0.5));
        assert_eq!(l.top1_drop_points, None);
        assert_eq!((l.alpha, l.min_runs), (0.05, 5));
    }

    #[test]
    fn overrides_apply_in_order_key_by_key() {
        let r = parse(
            r#"
[defaults]
latency_p90_pct = 3.0
alpha = 0.01
[[override]]
model = "mobilenet-v1"
latency_p90_pct = 10.0
[[override]]
model = "mobilenet-v1"
mechanism = "gpu"
energy_per_inference_pct = 20.0
skip = ["top5"]
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let l = r.limits("mobilenet-v1", "gpu", "f16");
        assert_eq!(l.latency_p90_pct, Some(10.0));
        assert_eq!(l.energy_per_inference_pct, Some(20.0));
        assert_eq!(l.top5_drop_points, None);
        assert_eq!(l.alpha, 0.01);
        let l = r.limits("mobilenet-v1", "cpu", "f32");
        assert_eq!(l.latency_p90_pct, Some(10.0));
        assert_eq!(l.energy_per_inference_pct, Some(5.0));
        let l = r.limits("other", "gpu", "f32");
        assert_eq!(l.latency_p90_pct, Some(3.0));
    }

    #[test]
    fn bad_rules_name_the_file_and_the_problem() {
        for (text, want) in [
            ("[defaults]\nlatency_p90 = 5\n", "latency_p90"),
            ("[defaults]\nskip = [\"speed\"]\n", "speed"),
            ("[defaults]\nalpha = 2.0\n", "alpha"),
            (
                "[[override]]\nmodel = \"m\"\ntop5_drop_points = -1\n",
                "top5_drop_points",
            ),
            ("[defaults\n", "rules.toml"),
        ] {
            let e = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                e.contains("rules.toml") && e.contains(want),
                "{text:?}: {e}"
            );
        }
    }
}
