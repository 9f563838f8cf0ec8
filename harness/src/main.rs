//! `ulab`, the μLayer Lab host controller. Campaigns arrive with the harness issue; until
//! then it only reports its version.
use clap::Parser;

/// μLayer Lab host controller (campaigns arrive with the harness issue).
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    println!("ulab {}: campaigns are not implemented yet (see issue [harness])", env!("CARGO_PKG_VERSION"));
    Ok(())
}
