//! `ulab check` and `ulab report` on the results of real simulator campaigns (the real `ulab`
//! binary, the real agent process, the simulated monitor on a pseudo-terminal):
//! a clean rerun passes, a deliberately slowed rerun is caught, and the report of the real
//! results (predictor accuracy included) renders in headless chromium with its plots.
//!
//! The slowdown is real, not edited numbers: the slowed campaign runs the agent with
//! `ULAYER_CPU_ISA=scalar`, which forces the scalar fallback kernels (about 2.3× slower than
//! AVX2 here) — what a build that lost its SIMD kernels would do to a lab's numbers.
use crate::common::*;
use std::path::Path;

/// Thresholds for a noisy 2-core host: latency or energy up 50% fails
/// (the injected one is well over 100%); run-to-run noise of a clean rerun stays below it
/// when no other test runs beside this one ([`measuring_alone`]).
const RULES: &str = "[defaults]\nlatency_p90_pct = 50.0\nenergy_per_inference_pct = 50.0\n\
                     top5_drop_points = 0.5\nalpha = 0.05\nmin_runs = 5\n";

fn campaign_file(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        "name = \"regression\"\n\
         [device]\ntransport = \"local\"\nsoc = \"test host\"\nagent = \"{agent}\"\n\
         [monitor]\nkind = \"simulated\"\nvoltage = 4.0\nsim_offset_ms = 37.0\nsim_drift_ppm = 80.0\n\
         [matrix]\nmodels = [\"squeezenet1.1\"]\nmechanisms = [\"cpu\", \"layer-to-processor\"]\n\
         precisions = [\"f32\", \"quint8\"]\n\
         [run]\nwarmup = 2\niterations = 12\ncooldown_ms = 0\nidle_ms = 300\nthreads = 1\njob_timeout_s = 300\n\
         [accuracy]\ndataset = \"bundled\"\nlimit = 4\n",
        agent = agent_binary().display()
    );
    let path = dir.join("regression.toml");
    std::fs::write(&path, text).expect("write the campaign");
    path
}

fn check(base: &Path, cur: &Path, rules: &Path, out: &Path) -> (std::process::Output, String) {
    let md = out.with_extension("md");
    let o = ulab()
        .arg("check")
        .arg("--baseline")
        .arg(base)
        .arg("--current")
        .arg(cur)
        .arg("--rules")
        .arg(rules)
        .arg("--junit")
        .arg(out.with_extension("xml"))
        .arg("--markdown")
        .arg(&md)
        .output()
        .expect("ulab check runs");
    let summary = std::fs::read_to_string(&md).unwrap_or_default();
    (o, summary)
}

#[test]
fn clean_rerun_passes_slowed_rerun_is_caught_and_the_report_renders() {
    let _cpu = measuring_alone();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = campaign_file(tmp.path());
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, RULES).expect("rules");
    let (base, rerun, slowed) = (
        tmp.path().join("baseline"),
        tmp.path().join("rerun"),
        tmp.path().join("slowed"),
    );
    // A warm-up campaign, discarded. In one clean-clone CI run the baseline's first
    // configuration (cpu/f32) measured 53.9 ms against 35.6 ms in the clean rerun: a slow
    // first measurement (cold caches, the first agent spawn, or the host) that hid the
    // slowed rerun's real 2.2× on it below the +50% rule (+45% against that baseline).
    let warmup = tmp.path().join("warmup");
    let o = run(&path, &warmup, &[], &[]);
    assert!(o.status.success(), "warm-up: {}", text(&o));
    for (out, env) in [
        (&base, &[][..]),
        (&rerun, &[][..]),
        (&slowed, &[("ULAYER_CPU_ISA", "scalar")][..]),
    ] {
        let o = run(&path, out, &[], env);
        assert!(o.status.success(), "{}: {}", out.display(), text(&o));
        assert_eq!(checkpoint(out).finished.len(), 4, "{}", out.display());
    }

    let (o, summary) = check(&base, &rerun, &rules, &tmp.path().join("clean"));
    eprintln!("clean rerun:\n{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(o.status.code(), Some(0), "{}\n{summary}", text(&o));

    let (o, summary) = check(&base, &slowed, &rules, &tmp.path().join("slow"));
    eprintln!("slowed rerun:\n{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(o.status.code(), Some(1), "{}\n{summary}", text(&o));
    // The clean rerun is a second clean measurement: the slowed rerun must fail against it
    // too, and each configuration must be caught against at least one of the two. One
    // clean-clone CI run measured the baseline's layer-to-processor/f32 at 54.8 ms against
    // 34.1 ms for cpu/f32 (the clean rerun was 38% faster than that baseline), so the real
    // 2× of the scalar kernels showed as +44% against it.
    let (o2, summary2) = check(&rerun, &slowed, &rules, &tmp.path().join("slow2"));
    assert_eq!(o2.status.code(), Some(1), "{}\n{summary2}", text(&o2));
    let junit = std::fs::read_to_string(tmp.path().join("slow.xml")).expect("JUnit XML");
    // Every configuration is caught, by name, on latency or energy (the scalar kernels slow
    // the 8-bit ones most; the layer-to-processor executor's own overheads dilute latency).
    for cfg in [
        "cpu/f32",
        "cpu/quint8",
        "layer-to-processor/f32",
        "layer-to-processor/quint8",
    ] {
        let id = format!("squeezenet1.1/{cfg} ");
        assert!(
            [&summary, &summary2]
                .iter()
                .any(|s| s.lines().any(|l| l.contains(&id)
                    && (l.contains("latency_p90") || l.contains("energy_per_inference"))
                    && l.contains("FAIL"))),
            "{id}: regression not reported:\n{summary}\n{summary2}"
        );
    }
    assert!(junit.contains("<failure"), "{junit}");

    let report = tmp.path().join("report");
    let o = ulab()
        .arg("report")
        .arg(&base)
        .arg("--out")
        .arg(&report)
        .output()
        .expect("ulab report runs");
    assert!(o.status.success(), "{}", text(&o));
    assert!(report.join("report.md").is_file());
    // layer-to-processor planned from this host's device profile: the predictors' accuracy
    // on it came back with the job, went to predictor.json, and is drawn.
    let predictor: harness::results::PredictorFile =
        harness::results::read_json(&base.join("predictor.json")).expect("predictor.json");
    assert!(
        predictor
            .accuracy
            .iter()
            .any(|a| a.target == "all" && a.measurements > 0),
        "{predictor:?}"
    );
    let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert!(html.contains("id=\"fig-predictor\""));
    let work = tmp.path().join("browser");
    std::fs::create_dir_all(&work).expect("browser scratch folder");
    lab_tests::browser::assert_report_renders_with_plots(&report.join("report.html"), &work);
}
