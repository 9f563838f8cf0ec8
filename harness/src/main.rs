//! `ulab`, the μLayer Lab host controller: campaigns (`run`, `validate`, `merge`) and the
//! Monsoon power monitor (`monsoon`). The work is in the `harness` library.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use harness::campaign::Campaign;
use harness::runner::{self, RunOptions};
use harness::shard::Shard;
use std::path::{Path, PathBuf};

/// μLayer Lab host controller: runs measurement campaigns (models × mechanisms × precisions)
/// through the on-device agent while a power monitor records, and turns power samples and
/// per-layer timestamps into latency, energy and accuracy tables.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a campaign (or resume it: finished configurations in the results folder are
    /// skipped, an interrupted one is redone).
    ///
    /// For each configuration the whole job goes to the agent at once; the monitor's USB
    /// passthrough is off for the measured window (restored afterwards, also on errors and
    /// Ctrl-C); the raw samples go to configs/<config>/trace.mtr; the agent's sync pulses
    /// align its clock to the trace; energy is attributed per inference and per layer.
    /// Results: runs, layers and summary tables (Parquet and CSV) and metadata.json.
    Run {
        /// The campaign file (see campaigns/demo.toml).
        campaign: PathBuf,
        /// Results folder. Default: results/<campaign name>.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run only shard i of n (1-based): configurations whose matrix position is i-1
        /// modulo n. Give each lab host its own i with the same n, then `ulab merge`.
        #[arg(long, value_name = "i/n")]
        shard: Option<Shard>,
        /// Accepted for clarity: resuming is automatic when the results folder holds a
        /// checkpoint of the same campaign (a different campaign there is refused).
        #[arg(long)]
        resume: bool,
    },
    /// Check a campaign file: errors name the line and column; prints the configurations.
    Validate { campaign: PathBuf },
    /// Combine results folders of one campaign (shards) into one folder; refuses folders
    /// of different campaigns and configurations present twice.
    Merge {
        /// The shards' results folders.
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        /// The merged results folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Drive a Monsoon power monitor (or the simulator's pseudo-terminal): status, voltage,
    /// USB passthrough, current limits, recording and decoding traces.
    Monsoon(monsoon::cli::MonsoonArgs),
    /// Render a results folder as a self-contained HTML report (inline SVG, offline,
    /// printable) and a Markdown summary.
    Report(reports::cli::ReportArgs),
    /// Compare a campaign's results with a baseline's: thresholds per metric, a statistical
    /// test over runs, JUnit XML and Markdown for CI; exits 1 on a regression.
    Check(reports::cli::CheckArgs),
}

fn base_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn run(cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Monsoon(args) => monsoon::cli::run(args).map(|_| 0),
        Cmd::Report(args) => reports::cli::run_report(args),
        Cmd::Check(args) => reports::cli::run_check(args),
        Cmd::Validate { campaign } => {
            let (c, _) = Campaign::load(&campaign)?;
            let cfgs = c.configurations();
            println!(
                "{}: campaign {:?} is valid: {} configuration(s), transport {:?}, monitor {:?}",
                campaign.display(),
                c.name,
                cfgs.len(),
                c.device.transport,
                c.monitor.kind
            );
            for (i, cfg) in cfgs.iter().enumerate() {
                println!("  {:>3}  {}", i + 1, cfg.id());
            }
            Ok(0)
        }
        Cmd::Run {
            campaign,
            out,
            shard,
            resume: _,
        } => {
            let (c, text) = Campaign::load(&campaign)?;
            let out = out.unwrap_or_else(|| PathBuf::from("results").join(&c.name));
            let opts = RunOptions {
                out,
                shard,
                base: base_of(&campaign),
                text,
            };
            let outcome = runner::run(&c, &opts)
                .with_context(|| format!("campaign {}", campaign.display()))?;
            for (id, why) in &outcome.failed {
                eprintln!("failed: {id}: {why}");
            }
            if outcome.interrupted {
                eprintln!("interrupted: run the same command again to resume");
                return Ok(130);
            }
            if !outcome.failed.is_empty() {
                eprintln!(
                    "{} configuration(s) failed: run the same command again to redo them",
                    outcome.failed.len()
                );
                return Ok(1);
            }
            Ok(0)
        }
        Cmd::Merge { parts, out } => {
            let refs: Vec<&Path> = parts.iter().map(PathBuf::as_path).collect();
            let cp = harness::shard::merge(&refs, &out)?;
            println!(
                "merged {} configuration(s) of campaign {:?} into {}",
                cp.finished.len(),
                cp.campaign,
                out.display()
            );
            Ok(0)
        }
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ULAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().cmd) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
