//! The `profile` and `plan` subcommands (cooperative single-layer acceleration).
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use ulayer::backend::Precision;
use ulayer::coop::predict::{self, Which};
use ulayer::coop::profile::Aggregate;
use ulayer::coop::{Mechanism, Profile, ProfileOptions};

/// The arguments of `ulayer-agent profile`.
pub struct ProfileArgs {
    pub out: Option<PathBuf>,
    pub quick: bool,
    pub evaluate: bool,
    pub profile: Option<PathBuf>,
    pub repeat: Option<PathBuf>,
    pub by_variant: bool,
    pub residuals: Option<PathBuf>,
    pub rounds: Option<usize>,
    pub aggregate: Option<Aggregate>,
    pub models: Vec<String>,
    pub max_mmacs: Option<u64>,
    pub threads: usize,
    pub json: bool,
}

/// `ulayer-agent profile`.
pub fn profile(args: ProfileArgs, data_dir: &Path) -> Result<()> {
    let ProfileArgs {
        out,
        quick,
        evaluate,
        profile,
        repeat,
        by_variant,
        residuals,
        rounds,
        aggregate,
        models,
        max_mmacs,
        threads,
        json,
    } = args;
    let threads = ulayer::agent::resolve_threads(threads);
    // This device's identity (which opens the GPU), needed only to find or write its cached
    // profile: evaluating a named profile runs without a GPU.
    let identity = || -> Result<_> {
        let gpu = ulayer::backend::vulkan::VulkanBackend::new()?;
        Ok(ulayer::agent::coop::device_identity(&gpu))
    };
    let prof = if evaluate {
        let path = match profile.or_else(|| std::env::var_os("ULAYER_PROFILE").map(PathBuf::from)) {
            Some(p) => p,
            None => ulayer::agent::coop::cached_profile_path(data_dir, &identity()?),
        };
        let mut p = Profile::load(&path)?;
        if let Some(a) = aggregate {
            p.reaggregate(a)
                .with_context(|| format!("re-making {}'s times", path.display()))?;
        }
        p
    } else {
        let mut opts = if quick {
            ProfileOptions::quick()
        } else {
            ProfileOptions::full()
        };
        if !models.is_empty() {
            opts.models = models;
        }
        if let Some(m) = max_mmacs {
            opts.max_macs = m.saturating_mul(1_000_000);
        }
        if let Some(r) = rounds {
            anyhow::ensure!(r >= 1, "--rounds must be at least 1");
            opts.rounds = r;
        }
        if let Some(a) = aggregate {
            opts.aggregate = a;
        }
        let prof = ulayer::agent::coop::profile_device(&opts, threads, |line| {
            eprintln!("profile: {line}")
        })?;
        let path = match out {
            Some(p) => p,
            None => ulayer::agent::coop::cached_profile_path(data_dir, &identity()?),
        };
        prof.save(&path)?;
        eprintln!(
            "wrote {} ({} measurements, {:.1} s)",
            path.display(),
            prof.measurements.len(),
            prof.seconds
        );
        prof
    };
    let by = if by_variant {
        predict::Breakdown::Variant
    } else {
        predict::Breakdown::Target
    };
    let mut acc = match &residuals {
        Some(path) => {
            let (acc, rows) = predict::evaluate_with_residuals(&prof, by);
            write_residuals(path, &rows)?;
            acc
        }
        None => predict::evaluate_by(&prof, by),
    };
    if let Some(path) = repeat {
        let mut second = Profile::load(&path)?;
        if let Some(a) = aggregate {
            second
                .reaggregate(a)
                .with_context(|| format!("re-making {}'s times", path.display()))?;
        }
        if second.identity != prof.identity {
            anyhow::bail!(
                "{} is a profile of another device ({}), not of {}",
                path.display(),
                second.identity,
                prof.identity
            );
        }
        acc.extend(predict::repeatability_by(&prof, &second, by));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "device": prof.identity,
                "sync": prof.sync,
                "notes": prof.notes,
                "measurements": prof.measurements.len(),
                "aggregate": prof.aggregate,
                "accuracy": acc,
            }))?
        );
        return Ok(());
    }
    println!("device: {}", prof.identity);
    println!(
        "{} measurements{}, each its {}; sync: fork/join {:.1} µs, GPU dispatch {:.1} µs, {:.4} ns/byte, contention {:.2}",
        prof.measurements.len(),
        if prof.quick { " (quick)" } else { "" },
        prof.aggregate.describe(),
        prof.sync.fork_join_ns / 1e3,
        prof.sync.gpu_dispatch_ns / 1e3,
        prof.sync.gpu_ns_per_byte,
        prof.sync.contention
    );
    for n in &prof.notes {
        println!("note: {n}");
    }
    println!("held-out accuracy (a quarter of the layers held out, all their slices):");
    println!(
        "{:<14} {:<24} {:>6} {:>8} {:>8} {:>10}",
        "predictor", "target", "n", "±10%", "±20%", "median err"
    );
    for a in &acc {
        println!(
            "{:<14} {:<24} {:>6} {:>7.1}% {:>7.1}% {:>9.1}%",
            a.predictor,
            a.target,
            a.measurements,
            100.0 * a.within_10,
            100.0 * a.within_20,
            100.0 * a.median_error
        );
    }
    Ok(())
}

/// Writes `rows` to `path` as JSON lines.
fn write_residuals(path: &Path, rows: &[predict::Residual]) -> Result<()> {
    use std::io::Write;
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(r)?);
        out.push('\n');
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(out.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "wrote {} ({} held-out measurements)",
        path.display(),
        rows.len()
    );
    Ok(())
}

/// `ulayer-agent plan`.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    model: &str,
    mechanism: &str,
    precision: Precision,
    profile: Option<PathBuf>,
    predictor: Which,
    rows: bool,
    explain: bool,
    json: bool,
    threads: usize,
    of_profiled_device: bool,
    data_dir: &Path,
) -> Result<()> {
    let mech = Mechanism::parse_with(mechanism, precision)?;
    let m = ulayer::agent::load_model(model, data_dir)?;
    let plan = if of_profiled_device {
        let path = profile
            .context("--of-profiled-device plans for a named profile: give --profile FILE")?;
        ulayer::agent::coop::plan_for_profiled_device(&m, mech, precision, predictor, rows, &path)?
    } else {
        ulayer::agent::coop::plan_model(
            &m,
            mech,
            precision,
            predictor,
            rows,
            profile.as_deref(),
            ulayer::agent::resolve_threads(threads),
            data_dir,
        )?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(());
    }
    if explain {
        print!("{}", plan.explain());
    }
    let (c, g, s, b) = plan.counts();
    println!(
        "{} · {} · {}: {} stages ({c} cpu, {g} gpu, {s} split, {b} branch modules), predicted {:.3} ms",
        plan.model,
        plan.mechanism,
        plan.precision,
        plan.stages.len(),
        plan.predicted_ms
    );
    Ok(())
}
