//! A campaign end to end: the real `ulab` binary, the real agent process, the simulated
//! Monsoon monitor on a real pseudo-terminal following the agent's pid, real files.
use crate::common::*;

#[test]
fn local_campaign_with_the_simulated_monitor_writes_tables_polars_reads_back() {
    let _cpu = sharing_the_cpu();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = campaign(
        tmp.path(),
        "e2e",
        "models = [\"efficientnet-lite0\"]\nmechanisms = [\"cpu\"]\nprecisions = [\"f32\", \"quint8\"]",
        "kind = \"simulated\"\nvoltage = 4.0\nsim_offset_ms = 37.0\nsim_drift_ppm = 80.0",
        "[accuracy]\ndataset = \"bundled\"\nlimit = 4\n",
    );
    let out = tmp.path().join("results");
    let o = run(&path, &out, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));

    let cp = checkpoint(&out);
    assert_eq!(cp.finished.len(), 2, "{cp:?}");
    for name in ["runs", "layers", "summary"] {
        let pq = harness::results::read_parquet(&out.join(format!("{name}.parquet")))
            .expect("parquet reads back");
        let csv =
            harness::results::read_csv(&out.join(format!("{name}.csv"))).expect("csv reads back");
        assert_eq!(pq.height(), csv.height(), "{name}");
        assert_eq!(pq.width(), csv.width(), "{name}");
        assert_eq!(
            configs_in(&pq),
            [
                "efficientnet-lite0/cpu/f32",
                "efficientnet-lite0/cpu/quint8"
            ],
            "{name}"
        );
    }
    let runs = harness::results::read_parquet(&out.join("runs.parquet")).expect("runs");
    assert_eq!(runs.height(), 8, "4 measured runs × 2 configurations");
    let summary = harness::results::read_parquet(&out.join("summary.parquet")).expect("summary");
    let energy = summary
        .column("energy_mean_j")
        .and_then(|c| c.f64().cloned())
        .expect("energy column");
    let residual = summary
        .column("clock_residual_samples")
        .and_then(|c| c.f64().cloned())
        .expect("residual column");
    for i in 0..energy.len() {
        let e = energy.get(i);
        let r = residual.get(i);
        let slug = [
            "efficientnet-lite0__cpu__f32",
            "efficientnet-lite0__cpu__quint8",
        ][i];
        let power = result(&out, slug).power;
        assert!(power.samples > 1000, "{slug}: {power:?}");
        match e {
            Some(e) => {
                assert!(e > 0.0, "{slug}: energy {e}");
                // An accepted fit is within the aligner's own limits, and says so.
                assert!(
                    r.is_some_and(|r| r <= harness::align::MAX_RESIDUAL_RMS_SAMPLES),
                    "{slug}: residual {r:?}"
                );
                assert!(
                    power
                        .mapping_error_samples
                        .is_some_and(|m| m <= harness::align::MAX_MAPPING_ERROR_SAMPLES),
                    "{slug}: {power:?}"
                );
                assert!(power.energy_method.is_some(), "{power:?}");
            }
            // The simulator follows the agent by polling its CPU time every millisecond; on
            // an overloaded host the pulse edges blur and the aligner rightly refuses the
            // fit. The configuration must then say so instead of carrying numbers.
            None => {
                let note = power.note.clone().unwrap_or_default();
                assert!(note.contains("clock alignment failed"), "{slug}: {power:?}");
                eprintln!("WARNING: {slug}: no energy on this host: {note}");
            }
        }
    }
    let f32 = result(&out, "efficientnet-lite0__cpu__f32");
    let acc = f32.accuracy.expect("real weights: accuracy scored");
    assert_eq!(acc.images, 4);
    assert!(acc.top5 > 0.5, "{acc:?}");
    let q8 = result(&out, "efficientnet-lite0__cpu__quint8");
    let q8acc = q8.accuracy.expect("accuracy for quint8");
    assert!(q8acc.top1_agreement.is_some(), "agreement with f32");
    assert!(out
        .join("configs/efficientnet-lite0__cpu__f32/trace.mtr")
        .is_file());
    let trace = monsoon::trace::TraceReader::open(
        out.join("configs/efficientnet-lite0__cpu__f32/trace.mtr"),
    )
    .and_then(|mut r| r.summary())
    .expect("the trace reads back");
    assert!(trace.samples > 1000, "{trace}");

    let meta: harness::results::Metadata =
        harness::results::read_json(&out.join("metadata.json")).expect("metadata");
    assert_eq!(meta.soc, "test host");
    assert!(meta.agent_version.is_some() && meta.monitor_serial.is_some());
    assert!(meta
        .finished_unix_ms
        .is_some_and(|t| t >= meta.started_unix_ms));
    assert_eq!(
        meta.weights.get("efficientnet-lite0").map(String::as_str),
        Some("real")
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("efficientnet-lite0/cpu/quint8"),
        "summary table: {stdout}"
    );

    // Running again finishes nothing new.
    let before = result(&out, "efficientnet-lite0__cpu__f32");
    let again = run(&path, &out, &[], &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(before, result(&out, "efficientnet-lite0__cpu__f32"));
    assert!(String::from_utf8_lossy(&again.stderr).contains("2 configuration(s) already finished"));
}

#[test]
fn another_campaign_in_the_results_folder_is_refused() {
    let _cpu = sharing_the_cpu();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("results");
    let a = campaign(
        tmp.path(),
        "a",
        "models = [\"mobilenet-v1\"]",
        "kind = \"none\"",
        "",
    );
    let o = run(&a, &out, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let b = campaign(
        tmp.path(),
        "b",
        "models = [\"mobilenet-v1\"]\nprecisions = [\"quint8\"]",
        "kind = \"none\"",
        "",
    );
    let o = run(&b, &out, &[], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("another campaign"), "{err}");
}

#[test]
fn validate_names_line_and_column_of_bad_campaigns() {
    let _cpu = sharing_the_cpu();
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\n[device]\ntransport = \"local\"\n[matrix]\nmodels = [\"m\"]\nprecisions = [\"f64\"]\n",
    )
    .expect("write");
    let o = ulab().arg("validate").arg(&bad).output().expect("runs");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml:6:"), "{err}");
    assert!(err.contains("f64"), "{err}");

    std::fs::write(
        &bad,
        "name = \"x\"\n[device]\ntransport = \"telnet\"\n[matrix]\nmodels = [\"m\"]\n",
    )
    .expect("write");
    let o = ulab().arg("validate").arg(&bad).output().expect("runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml:3:13"), "{err}");

    for demo in ["demo.toml", "phone.toml"] {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../campaigns")
            .join(demo);
        let o = ulab().arg("validate").arg(&p).output().expect("runs");
        assert!(o.status.success(), "{demo}: {}", text(&o));
    }
}

/// A configuration whose clock fit is refused is measured again, once, and says so.
#[test]
fn a_refused_clock_fit_is_measured_again_once() {
    let _cpu = sharing_the_cpu();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = campaign(
        tmp.path(),
        "again",
        "models = [\"squeezenet1.1\"]\nmechanisms = [\"cpu\"]\nprecisions = [\"f32\"]",
        "kind = \"simulated\"\nvoltage = 4.0",
        "",
    );
    let out = tmp.path().join("results");
    let o = run(
        &path,
        &out,
        &[],
        &[("ULAB_FAULT", "refuse-fit=squeezenet1.1/cpu/f32")],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("measuring again (attempt 2)"),
        "{}",
        text(&o)
    );
    let power = result(&out, "squeezenet1.1__cpu__f32").power;
    let note = power.note.clone().unwrap_or_default();
    assert!(note.contains("measured 2 times"), "{power:?}");
    assert!(power.samples > 1000, "{power:?}");
    assert_eq!(checkpoint(&out).finished.len(), 1);
}
