//! Helpers shared by the end-to-end tests of several crates: rendering the HTML report in a
//! real headless browser (Debian's chromium, installed by `./lab test`'s setup) and looking at
//! the screenshot. Used by `reports/tests/end_to_end/browser.rs` (fixture results) and
//! `harness/tests/end_to_end/regression_check.rs` (results of a real simulator campaign).
pub mod browser;
