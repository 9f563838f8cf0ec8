//! The `report` and `check` subcommands, for the host tool to embed (like `monsoon::cli`):
//!
//! ```ignore
//! #[derive(clap::Subcommand)]
//! enum Cmd {
//!     Report(reports::cli::ReportArgs),
//!     Check(reports::cli::CheckArgs),
//! }
//! // ...
//! Cmd::Report(args) => reports::cli::run_report(args),
//! Cmd::Check(args) => reports::cli::run_check(args),
//! ```
//!
//! Both return the process exit code: `check` gives 1 on a regression (errors such as an
//! unreadable folder are `Err`, which the host tool reports and exits 1 on as well).
use crate::check::{self, Rules};
use crate::report::RenderOptions;
use anyhow::Context;
use std::path::PathBuf;

/// `ulab report RESULTS_DIR [--out DIR]`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Render a results folder as a self-contained HTML report (inline SVG plots) and a Markdown summary",
    long_about = None
)]
pub struct ReportArgs {
    /// The results folder written by `ulab run`.
    pub results: PathBuf,
    /// Where report.html and report.md go [default: RESULTS/report].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Configuration (model/mechanism/precision) of the per-layer breakdown and power
    /// trace [default: the first ulayer one, else the first].
    #[arg(long)]
    pub config: Option<String>,
    /// Measured run shown in the trace zoom.
    #[arg(long, default_value_t = 0)]
    pub run: usize,
    /// Predictor accuracy JSON [default: RESULTS/predictor.json when present].
    #[arg(long)]
    pub predictor: Option<PathBuf>,
    /// Report title.
    #[arg(long)]
    pub title: Option<String>,
}

/// `ulab check --baseline A --current B [--rules rules.toml] [--junit FILE] [--markdown FILE]`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Compare a results folder with a baseline: thresholds per metric plus a Mann–Whitney U test; exit 1 on regression",
    long_about = None
)]
pub struct CheckArgs {
    /// The baseline results folder.
    #[arg(long)]
    pub baseline: PathBuf,
    /// The results folder to check.
    #[arg(long)]
    pub current: PathBuf,
    /// Thresholds (TOML; see the reports crate's check::rules) [default: latency p90 +5%,
    /// energy per inference +5%, top-5 −0.5 points, α = 0.05, 5 runs for the test].
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Write JUnit XML here (one testcase per configuration × metric).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write a Markdown summary here.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Print only failures, warnings and the verdict.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `report`; prints where the files went. Exit code 0.
pub fn run_report(args: ReportArgs) -> anyhow::Result<i32> {
    let out = args.out.unwrap_or_else(|| args.results.join("report"));
    let options = RenderOptions {
        config: args.config,
        run: args.run,
        predictor: args.predictor,
        title: args.title,
    };
    let files = crate::render_report(&args.results, &out, &options)
        .with_context(|| format!("report of {}", args.results.display()))?;
    println!("{}\n{}", files.html.display(), files.markdown.display());
    Ok(0)
}

/// Runs `check`; prints each check and the verdict. Exit code 0 (passed) or 1 (regression).
pub fn run_check(args: CheckArgs) -> anyhow::Result<i32> {
    let rules = match &args.rules {
        Some(p) => Rules::load(p)?,
        None => Rules::default(),
    };
    let outcome = check::check(&args.baseline, &args.current, &rules)?;
    if let Some(p) = &args.junit {
        std::fs::write(p, check::junit::render(&outcome))
            .with_context(|| format!("write {}", p.display()))?;
    }
    if let Some(p) = &args.markdown {
        std::fs::write(p, check::markdown::render(&outcome))
            .with_context(|| format!("write {}", p.display()))?;
    }
    let text = check::summary_text(&outcome);
    for line in text.lines() {
        let quiet_ok = args.quiet && (line.starts_with("ok ") || line.starts_with("skip "));
        if !quiet_ok {
            println!("{line}");
        }
    }
    Ok(outcome.exit_code())
}
