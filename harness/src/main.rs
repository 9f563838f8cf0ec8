//! `ulab`, the μLayer Lab host controller. Today it drives the Monsoon power monitor
//! (`ulab monsoon ...`); campaigns arrive with the harness issue.
use clap::{Parser, Subcommand};

/// μLayer Lab host controller: drives the power monitor and (with the harness issue)
/// runs measurement campaigns through the on-device agent.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Drive a Monsoon power monitor (or the simulator's pseudo-terminal): status, voltage,
    /// USB passthrough, current limits, recording and decoding traces.
    Monsoon(monsoon::cli::MonsoonArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ULAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().cmd {
        Cmd::Monsoon(args) => monsoon::cli::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
