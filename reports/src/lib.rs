//! Report rendering and regression checks for μLayer Lab results folders (the harness's
//! `results.rs`: `summary`, `runs` and `layers` tables, `metadata.json`, per-configuration
//! `configs/<slug>/`).
//!
//! - [`render_report`]: a self-contained HTML file (inline CSS and SVG plots drawn with
//!   plotters, no scripts, no network, printable) and a Markdown summary: latency
//!   normalised to layer-to-processor (the paper's Figure 16 form), energy per inference and
//!   efficiency (Figure 17), a per-layer breakdown with CPU and GPU side by side, a power
//!   trace excerpt with sync pulses and layer boundaries, accuracy, and predictor accuracy.
//! - [`check()`]: thresholds and a Mann–Whitney U test between a baseline and a current
//!   folder, with JUnit XML and Markdown outputs.
//! - [`cli`]: `ulab report` and `ulab check` arguments and entry points.
pub mod check;
pub mod cli;
mod error;
pub mod figures;
pub mod html;
pub mod job;
pub mod load;
pub mod markdown;
pub mod normalise;
pub mod report;
pub mod stats;

pub use check::{check, CheckOutcome, Rules};
pub use error::{Error, Result};
pub use load::Results;
pub use markdown::markdown_table;
pub use report::RenderOptions;

use std::path::{Path, PathBuf};

/// The files `render_report` wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportFiles {
    pub html: PathBuf,
    pub markdown: PathBuf,
}

/// Renders `results_dir` into `out_dir/report.html` and `out_dir/report.md`.
pub fn render_report(
    results_dir: &Path,
    out_dir: &Path,
    options: &RenderOptions,
) -> Result<ReportFiles> {
    let results = Results::load(results_dir)?;
    let report = report::build(&results, options)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let html = out_dir.join("report.html");
    let md = out_dir.join("report.md");
    std::fs::write(&html, html::render(&report)).map_err(|e| Error::io(&html, e))?;
    std::fs::write(&md, markdown::render(&report, "report.html")).map_err(|e| Error::io(&md, e))?;
    Ok(ReportFiles { html, markdown: md })
}
