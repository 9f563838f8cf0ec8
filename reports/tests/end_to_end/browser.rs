//! The HTML report of fixture results renders in a real headless browser (Debian's chromium,
//! installed by `./lab test`'s setup) with no console errors, and its screenshot shows plots.
//! Skipped, saying so, only when no chromium binary can be found. The same check on a real
//! simulator campaign's results is in `harness/tests/end_to_end/regression_check.rs`.

#[test]
fn html_report_renders_in_headless_chromium_with_plots() {
    let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let res = t.path().join("results");
    crate::common::write(&res, &crate::common::Fixture::default());
    let files = reports::render_report(
        &res,
        &t.path().join("out"),
        &reports::RenderOptions::default(),
    )
    .unwrap_or_else(|e| panic!("render: {e}"));
    lab_tests::browser::assert_report_renders_with_plots(&files.html, t.path());
}
