//! End to end on a results folder. The harness's simulator campaign (`ulab run
//! campaigns/demo.toml`) was not available when these tests were written, so the folder is
//! a fixture written with polars in exactly the harness's schema (common.rs), including
//! per-configuration job.json spans and monitor traces.

use crate::common::Fixture;
use reports::check::{self, Rules, Status};
use reports::RenderOptions;
use std::path::{Path, PathBuf};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn fixture(dir: &Path, fx: &Fixture) -> PathBuf {
    crate::common::write(dir, fx);
    dir.to_path_buf()
}

#[test]
fn report_has_every_section_and_states_its_provenance() {
    let t = tmp();
    let res = fixture(&t.path().join("results"), &Fixture::default());
    let out = t.path().join("out");
    let files = reports::render_report(&res, &out, &RenderOptions::default())
        .unwrap_or_else(|e| panic!("render: {e}"));
    let html = std::fs::read_to_string(&files.html).unwrap_or_default();
    let md = std::fs::read_to_string(&files.markdown).unwrap_or_default();
    for id in [
        "fig-latency",
        "fig-energy",
        "fig-efficiency",
        "fig-layer-latency",
        "fig-layer-energy",
        "fig-trace",
        "fig-accuracy",
    ] {
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "figure {id} missing"
        );
    }
    // Every figure states device, SoC, runs, date and weights.
    let figures = html.matches("<figure ").count();
    let stamps = html.matches("SoC: Simulated SoC").count();
    assert!(
        stamps >= 2 * figures,
        "{stamps} stamps for {figures} figures"
    );
    assert!(html.contains("12 runs per configuration"));
    assert!(html.contains("2026-12-31"));
    assert!(html.contains("weights: mixed (real, seeded)"));
    assert!(html.contains("weights: real"));
    // tinynet has no layer-to-processor configuration: said so.
    assert!(html.contains("tinynet has no layer-to-processor configuration"));
    // The chosen configuration is the first ulayer one; CPU and GPU both drawn.
    assert!(html.contains("Per-layer breakdown: mobilenet-v1/ulayer/quint8"));
    assert!(html.contains("layer start on CPU") && html.contains("layer start on GPU"));
    // Self-contained: no scripts, no external resources.
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(html.contains("@media print"));
    assert!(md.contains("| mobilenet-v1/ulayer/quint8 |"));
    assert!(md.contains("Predictor") || md.contains("predictor"));
    // mobilenet ulayer quint8 is 8 ms against 16 ms layer-to-processor: ~0.5.
    assert!(md.contains("| ulayer quint8 | 0.5"), "{md}");
}

#[test]
fn predictor_accuracy_is_drawn_when_present() {
    let t = tmp();
    let res = fixture(&t.path().join("results"), &Fixture::default());
    std::fs::write(
        res.join("predictor.json"),
        r#"[{"predictor":"paper","target":"all","measurements":40,"within_10":0.09,"within_20":0.2,"median_error":0.4},
            {"predictor":"kernel","target":"all","measurements":40,"within_10":0.85,"within_20":0.95,"median_error":0.05}]"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = t.path().join("out");
    let files = reports::render_report(&res, &out, &RenderOptions::default())
        .unwrap_or_else(|e| panic!("render: {e}"));
    let html = std::fs::read_to_string(&files.html).unwrap_or_default();
    assert!(html.contains("id=\"fig-predictor\""));
    assert!(html.contains("85.0%"));
}

#[test]
fn chosen_configuration_and_unknown_one() {
    let t = tmp();
    let res = fixture(&t.path().join("results"), &Fixture::default());
    let opts = RenderOptions {
        config: Some("tinynet/gpu/f32".into()),
        ..RenderOptions::default()
    };
    let files = reports::render_report(&res, &t.path().join("o"), &opts)
        .unwrap_or_else(|e| panic!("render: {e}"));
    let html = std::fs::read_to_string(files.html).unwrap_or_default();
    assert!(html.contains("Per-layer breakdown: tinynet/gpu/f32"));
    let bad = RenderOptions {
        config: Some("nope/cpu/f32".into()),
        ..RenderOptions::default()
    };
    let e = reports::render_report(&res, &t.path().join("o2"), &bad)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("nope/cpu/f32") && e.contains("tinynet/gpu/f32"),
        "{e}"
    );
}

#[test]
fn missing_column_names_file_and_column() {
    use polars::prelude::*;
    let t = tmp();
    let res = fixture(&t.path().join("results"), &Fixture::default());
    let path = res.join("summary.parquet");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let df = ParquetReader::new(file)
        .finish()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut df = df.drop("latency_p90_ms").unwrap_or_else(|e| panic!("{e}"));
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    ParquetWriter::new(file)
        .finish(&mut df)
        .unwrap_or_else(|e| panic!("{e}"));
    let e = reports::render_report(&res, &t.path().join("o"), &RenderOptions::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("summary.parquet") && e.contains("latency_p90_ms"),
        "{e}"
    );
    // CSV only (no Parquet) is read too.
    std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
    reports::render_report(&res, &t.path().join("o3"), &RenderOptions::default())
        .unwrap_or_else(|e| panic!("CSV fallback: {e}"));
    let e = reports::render_report(
        &t.path().join("absent"),
        &t.path().join("o4"),
        &RenderOptions::default(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("absent"), "{e}");
}

#[test]
fn injected_regression_is_caught() {
    let t = tmp();
    let base = fixture(&t.path().join("base"), &Fixture::default());
    let slow = "mobilenet-v1/gpu/f16".to_string();
    let cur = fixture(
        &t.path().join("cur"),
        &Fixture {
            seed: 7,
            slow: Some((slow.clone(), 1.2)),
            ..Fixture::default()
        },
    );
    let o = check::check(&base, &cur, &Rules::default()).unwrap_or_else(|e| panic!("check: {e}"));
    let fails: Vec<(String, String)> = o
        .failures()
        .iter()
        .map(|c| (c.config.clone(), c.metric.clone()))
        .collect();
    assert_eq!(
        fails,
        vec![
            (slow.clone(), "latency_p90".to_string()),
            (slow.clone(), "energy_per_inference".to_string())
        ],
        "{}",
        check::summary_text(&o)
    );
    assert_eq!(o.exit_code(), 1);
    let lat = o.failures()[0].clone();
    let test = lat
        .test
        .unwrap_or_else(|| panic!("a test was expected: {}", lat.message));
    assert!(test.name.contains("Mann–Whitney"));
    assert!(test.p_value < 0.001, "p = {}", test.p_value);
    assert!(lat.message.contains("p = "), "{}", lat.message);
    let junit = check::junit::render(&o);
    assert!(junit.contains("failures=\"2\""), "{junit}");
    assert!(junit.contains(&format!(
        "<testcase classname=\"{slow}\" name=\"latency_p90\" time=\"0\"><failure"
    )));
    let n_cases = junit.matches("<testcase ").count();
    assert_eq!(n_cases, 7 * 3, "one testcase per configuration × metric");
    let md = check::markdown::render(&o);
    assert!(md.contains("FAILED") && md.contains("**FAIL**"), "{md}");
}

#[test]
fn clean_rerun_passes() {
    let t = tmp();
    let base = fixture(&t.path().join("base"), &Fixture::default());
    let cur = fixture(
        &t.path().join("cur"),
        &Fixture {
            seed: 3,
            ..Fixture::default()
        },
    );
    let o = check::check(&base, &cur, &Rules::default()).unwrap_or_else(|e| panic!("check: {e}"));
    assert!(o.passed(), "{}", check::summary_text(&o));
    assert_eq!(o.exit_code(), 0);
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    assert!(o.cases.iter().all(|c| c.status == Status::Pass));
}

#[test]
fn rules_override_lets_a_known_slowdown_through() {
    let t = tmp();
    let base = fixture(&t.path().join("base"), &Fixture::default());
    let cur = fixture(
        &t.path().join("cur"),
        &Fixture {
            seed: 7,
            slow: Some(("mobilenet-v1/gpu/f16".into(), 1.2)),
            ..Fixture::default()
        },
    );
    let rules_path = t.path().join("rules.toml");
    std::fs::write(
        &rules_path,
        "[[override]]\nmodel = \"mobilenet-v1\"\nmechanism = \"gpu\"\nlatency_p90_pct = 25\nenergy_per_inference_pct = 25\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rules = Rules::load(&rules_path).unwrap_or_else(|e| panic!("{e}"));
    let o = check::check(&base, &cur, &rules).unwrap_or_else(|e| panic!("check: {e}"));
    assert!(o.passed(), "{}", check::summary_text(&o));
}

#[test]
fn mismatched_campaigns_are_explained() {
    let t = tmp();
    let base = fixture(&t.path().join("base"), &Fixture::default());
    let cur = fixture(
        &t.path().join("cur"),
        &Fixture {
            drop: vec!["tinynet/ulayer/f32".into()],
            extra_model: Some("resnet-x"),
            ..Fixture::default()
        },
    );
    let o = check::check(&base, &cur, &Rules::default()).unwrap_or_else(|e| panic!("check: {e}"));
    let text = check::summary_text(&o);
    assert!(!o.passed());
    let missing = o
        .failures()
        .iter()
        .map(|c| (c.config.clone(), c.metric.clone()))
        .collect::<Vec<_>>();
    assert_eq!(
        missing,
        vec![("tinynet/ulayer/f32".to_string(), "present".to_string())],
        "{text}"
    );
    assert!(
        text.contains("models only in the current results: resnet-x"),
        "{text}"
    );
    assert!(
        text.contains("resnet-x/cpu/f32 is only in the current results"),
        "{text}"
    );

    let other = fixture(
        &t.path().join("other"),
        &Fixture {
            soc: Some("Exynos 7420"),
            ..Fixture::default()
        },
    );
    let o = check::check(&base, &other, &Rules::default()).unwrap_or_else(|e| panic!("check: {e}"));
    let text = check::summary_text(&o);
    assert!(
        !o.passed() && text.contains("devices differ") && text.contains("Exynos 7420"),
        "{text}"
    );
}

#[test]
fn cli_check_writes_junit_and_markdown_and_exits_nonzero() {
    let t = tmp();
    let base = fixture(&t.path().join("base"), &Fixture::default());
    let cur = fixture(
        &t.path().join("cur"),
        &Fixture {
            seed: 9,
            slow: Some(("tinynet/cpu/f32".into(), 1.3)),
            ..Fixture::default()
        },
    );
    let junit = t.path().join("junit.xml");
    let md = t.path().join("check.md");
    let code = reports::cli::run_check(reports::cli::CheckArgs {
        baseline: base.clone(),
        current: cur,
        rules: None,
        junit: Some(junit.clone()),
        markdown: Some(md.clone()),
        quiet: true,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 1);
    assert!(std::fs::read_to_string(&junit)
        .unwrap_or_default()
        .contains("<failure"));
    assert!(std::fs::read_to_string(&md)
        .unwrap_or_default()
        .contains("tinynet/cpu/f32"));
    let code = reports::cli::run_report(reports::cli::ReportArgs {
        results: base.clone(),
        out: None,
        config: None,
        run: 1,
        predictor: None,
        title: Some("CLI report".into()),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 0);
    assert!(base.join("report/report.html").is_file());
}

/// On a real campaign's results (e.g. `ulab run campaigns/demo.toml --out DIR`), named by
/// `ULAB_RESULTS_DIR`: the report renders and the folder checked against itself passes.
/// Without the variable the test says it did nothing.
#[test]
fn real_campaign_results_when_given() {
    let Some(dir) = std::env::var_os("ULAB_RESULTS_DIR").map(PathBuf::from) else {
        eprintln!("SKIPPED: set ULAB_RESULTS_DIR to a `ulab run` results folder to test on it");
        return;
    };
    let t = tmp();
    let files = reports::render_report(&dir, t.path(), &RenderOptions::default())
        .unwrap_or_else(|e| panic!("render {}: {e}", dir.display()));
    let html = std::fs::read_to_string(&files.html).unwrap_or_default();
    assert!(html.contains("id=\"fig-latency\""));
    let o = check::check(&dir, &dir, &Rules::default()).unwrap_or_else(|e| panic!("check: {e}"));
    assert!(o.passed(), "{}", check::summary_text(&o));
}
