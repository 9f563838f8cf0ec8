//! `ulab`, the μLayer Lab host controller: campaigns (`run`, `validate`, `merge`, `demo`),
//! reports, what is attached (`devices`) and the Monsoon power monitor (`monsoon`). The
//! work is in the `harness` library.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use harness::campaign::{folder_of, Campaign};
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
    /// The demo in one command: the demo campaign, then its report.
    ///
    /// The demo campaign is campaigns/demo.toml, embedded in ulab (it runs from any folder):
    /// the local agent (ulayer-agent beside ulab), the simulated Monsoon monitor on a
    /// pseudo-terminal, the bundled model and photos. It runs like `ulab run` (running it
    /// again resumes), then renders the report like `ulab report` and prints where it is.
    Demo {
        /// Results folder; the report goes to its report/ folder.
        #[arg(long, default_value = harness::demo::DEFAULT_OUT)]
        out: PathBuf,
        /// Run this campaign file instead of the embedded one.
        #[arg(long)]
        campaign: Option<PathBuf>,
    },
    /// List devices and monitors: adb devices, ssh targets, Monsoon serial ports.
    ///
    /// Android devices from `adb devices -l` (when adb is on PATH), the ssh targets of
    /// campaign files, and serial ports (/dev/ttyACM*, /dev/ttyUSB*, /dev/serial/by-id) with
    /// their USB ids, Monsoon monitors marked. Nothing is opened or changed.
    Devices {
        /// Campaign files or folders of them to take ssh targets from [default: campaigns/
        /// if present].
        #[arg(long, num_args = 1..)]
        campaigns: Vec<PathBuf>,
        /// One JSON object instead of tables.
        #[arg(long)]
        json: bool,
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

/// Runs (or resumes) a campaign and reports failures; the exit code: 0, 1 (configurations
/// failed) or 130 (interrupted).
fn run_campaign(c: &Campaign, opts: &RunOptions, origin: &str) -> Result<i32> {
    let outcome = runner::run(c, opts).with_context(|| format!("campaign {origin}"))?;
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

/// `ulab demo`: the campaign, then the report of what finished.
fn demo(out: PathBuf, campaign: Option<PathBuf>) -> Result<i32> {
    let (c, text, base) = harness::demo::campaign(campaign.as_deref())?;
    let origin = campaign
        .as_deref()
        .map_or(harness::demo::ORIGIN.to_string(), |p| {
            p.display().to_string()
        });
    eprintln!(
        "ulab demo: campaign {:?} from {origin}: {} configuration(s), results in {}",
        c.name,
        c.configurations().len(),
        out.display()
    );
    let opts = RunOptions {
        out: out.clone(),
        shard: None,
        base,
        text,
    };
    let code = run_campaign(&c, &opts, &origin)?;
    if code == 130 {
        return Ok(code);
    }
    let args = reports::cli::ReportArgs {
        results: out.clone(),
        out: None,
        config: None,
        run: 0,
        predictor: None,
        title: None,
    };
    match reports::cli::run_report(args) {
        Ok(_) => {
            let dir = out.join("report");
            println!(
                "open {} (or read {})",
                dir.join("report.html").display(),
                dir.join("report.md").display()
            );
            Ok(code)
        }
        // Some configurations failed and the report could not be made of the rest: the
        // failures were printed; say why there is no report too.
        Err(e) if code != 0 => {
            eprintln!("no report: {e:#}");
            Ok(code)
        }
        Err(e) => Err(e),
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
                base: folder_of(&campaign),
                text,
            };
            run_campaign(&c, &opts, &campaign.display().to_string())
        }
        Cmd::Demo { out, campaign } => demo(out, campaign),
        Cmd::Devices { campaigns, json } => {
            let sources = if campaigns.is_empty() {
                harness::devices::default_campaign_sources()
            } else {
                campaigns
            };
            let inv = harness::devices::inventory(sources);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&inv).context("encode the inventory")?
                );
            } else {
                print!("{}", harness::devices::render(&inv));
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
