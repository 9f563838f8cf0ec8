//! `ulab demo --campaign FILE`: the demo's path (the runner, then the report) on a tiny
//! campaign — one model, mechanism and precision, a few runs, the simulated monitor —
//! instead of the embedded demo campaign, which takes minutes.
use crate::common::*;

#[test]
fn demo_with_a_tiny_campaign_writes_results_and_the_report_and_resumes() {
    let _cpu = sharing_the_cpu();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = campaign(
        tmp.path(),
        "tiny-demo",
        "models = [\"efficientnet-lite0\"]\nmechanisms = [\"cpu\"]\nprecisions = [\"f32\"]",
        "kind = \"simulated\"\nvoltage = 4.0",
        "[accuracy]\ndataset = \"bundled\"\nlimit = 2\n",
    );
    let out = tmp.path().join("results");
    let demo = || {
        ulab()
            .arg("demo")
            .arg("--campaign")
            .arg(&path)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("ulab runs")
    };
    let o = demo();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(checkpoint(&out).finished.len(), 1);
    let report = out.join("report");
    for f in ["report.html", "report.md"] {
        assert!(report.join(f).is_file(), "{f}: {}", text(&o));
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("open {}", report.join("report.html").display())),
        "{stdout}"
    );

    // Again: the same runner resumes (nothing to run), and the report is rendered again.
    std::fs::remove_file(report.join("report.md")).expect("remove");
    let again = demo();
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("1 configuration(s) already finished"),
        "{}",
        text(&again)
    );
    assert!(report.join("report.md").is_file());
}
