//! `ulayer-agent`: the on-device μLayer agent. Subcommands for people (models, classify,
//! bench, eval, export) and `serve`, the JSON-lines protocol the host controller speaks
//! (see the `ulayer::protocol` module).
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use ulayer::backend::Precision;
use ulayer::protocol::BenchRequest;

mod coop_cmd;

/// The μLayer on-device agent: runs neural networks layer by layer on the CPU (and, as
/// later issues land, the GPU), with per-layer CLOCK_MONOTONIC traces.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Folder of the fetched data (weights, photos, class names). Default: $ULAB_DATA_DIR,
    /// else `.cache/datasets` at the repository root.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the model zoo: name, parameters, multiply-accumulates, real or seeded weights.
    Models {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Classify images and print the top classes.
    Classify {
        /// A zoo name (see `models`) or a path to an .onnx file.
        #[arg(long)]
        model: String,
        /// Image files (PNG or JPEG); repeat or list several.
        #[arg(long, required = true, num_args = 1..)]
        image: Vec<String>,
        /// Classes to show per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,
        /// CPU threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Print the per-layer trace of each inference too.
        #[arg(long)]
        trace: bool,
        /// Where the layers run: cpu, gpu, layer-to-processor, ulayer, ulayer+branch.
        #[arg(long, default_value = "cpu")]
        mechanism: String,
        #[arg(long)]
        json: bool,
    },
    /// Time inference: latency p50/p90/p99/mean/std over measured runs, and per-layer times.
    Bench {
        /// A zoo name (see `models`) or a path to an .onnx file.
        #[arg(long)]
        model: String,
        #[arg(long, default_value_t = 50)]
        iterations: usize,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,
        /// CPU threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Where the layers run: cpu, gpu (Vulkan; ULAYER_VK_DEVICE picks the device),
        /// layer-to-processor, ulayer, ulayer+branch (cooperative: they plan from this
        /// device's profile, see `profile`; $ULAYER_PROFILE names a profile file).
        #[arg(long, default_value = "cpu")]
        mechanism: String,
        /// ulayer, ulayer+branch: time the plan as planned, without first measuring it
        /// against the CPU alone and the GPU alone and running the fastest.
        #[arg(long)]
        no_fallback: bool,
        /// layer-to-processor, ulayer, ulayer+branch: the latency predictor the plan is made
        /// from.
        #[arg(long, value_enum, default_value_t = ulayer::coop::predict::Which::Kernel)]
        predictor: ulayer::coop::predict::Which,
        #[arg(long)]
        json: bool,
    },
    /// List the Vulkan devices and the features the GPU backend uses.
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Top-1/top-5 accuracy on the bundled labeled photos.
    Eval {
        #[arg(long, default_value = "efficientnet-lite0")]
        model: String,
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,
        /// Also score the deterministic crops and flips of every photo.
        #[arg(long)]
        augment: bool,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Where the layers run: cpu, gpu, layer-to-processor, ulayer, ulayer+branch.
        #[arg(long, default_value = "cpu")]
        mechanism: String,
        #[arg(long)]
        json: bool,
    },
    /// Measure this device for the cooperative mechanisms: every layer type on each
    /// processor and precision over the zoo's layers and a grid of shapes and split
    /// fractions, plus the CPU-GPU synchronisation cost; writes a profile keyed by the
    /// device's identity.
    Profile {
        /// Where to write the profile (default: this device's cached profile in the data
        /// folder, which the cooperative mechanisms use when no profile is named).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A small profile: two small networks' layers, one repetition (under a minute).
        #[arg(long)]
        quick: bool,
        /// Instead of profiling, read a profile (--profile, else the cached one) and report
        /// every predictor's accuracy on its held-out measurements.
        #[arg(long)]
        evaluate: bool,
        /// The profile to evaluate.
        #[arg(long)]
        profile: Option<PathBuf>,
        /// With --evaluate: a second profile of the same device, scored as a predictor of the
        /// first's held-out measurements (its own measurement of each slice): the
        /// measurements' repeatability, which bounds how accurate any predictor can be shown
        /// to be on this device.
        #[arg(long, requires = "evaluate")]
        repeat: Option<PathBuf>,
        /// With --evaluate: also score each kernel variant (conv3s1, pw, dw3s1, gemm, ...) of
        /// each processor and precision on its own, to see which kernels a predictor misses.
        #[arg(long, requires = "evaluate")]
        by_variant: bool,
        /// With --evaluate: write every held-out measurement with each predictor's
        /// prediction to this file, one JSON object per line (source, processor, precision,
        /// variant, c, h, measured_ns, predicted_ns).
        #[arg(long, requires = "evaluate")]
        residuals: Option<PathBuf>,
        /// Rounds over all targets and layers (default 5, 1 with --quick): each slice keeps the
        /// aggregate of its rounds, so one slow spell of a shared machine spoils one round only.
        #[arg(long, conflicts_with = "evaluate")]
        rounds: Option<usize>,
        /// How a slice's rounds make its time: the median round or the fastest. With
        /// --evaluate, the profiles' times are re-made from their kept rounds this way first
        /// (default: as each profile was made).
        #[arg(long, value_enum)]
        aggregate: Option<ulayer::coop::profile::Aggregate>,
        /// Zoo networks whose layers are measured (comma-separated; default: all, or
        /// SqueezeNet with --quick).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Skip layers of more than this many million multiply-accumulates.
        #[arg(long)]
        max_mmacs: Option<u64>,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: bool,
    },
    /// Plan a model for a cooperative mechanism and print (--explain) why each layer went
    /// where: predicted ms on the CPU, on the GPU, and of the best split.
    Plan {
        #[arg(long)]
        model: String,
        #[arg(long, default_value = "ulayer+branch")]
        mechanism: String,
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,
        /// A profile file (default: $ULAYER_PROFILE, else this device's cached profile, else
        /// a quick profile run now).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// The latency predictor the plan is made from.
        #[arg(long, value_enum, default_value_t = ulayer::coop::predict::Which::Kernel)]
        predictor: ulayer::coop::predict::Which,
        /// Channel splits only (no output-row splits).
        #[arg(long)]
        no_rows: bool,
        /// Print the per-layer reasoning (else only the plan's summary).
        #[arg(long)]
        explain: bool,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Plan for the device the --profile was measured on, not this one: no GPU is
        /// opened and the profile's device is not checked against this one (nothing runs),
        /// so that the plans another device ran can be read here with --explain. The CPU must
        /// have the profile's instruction set.
        #[arg(long, requires = "profile")]
        of_profiled_device: bool,
    },
    /// F32 against QUInt8 on the bundled labeled photos: top-1, top-5 and agreement with F32
    /// (calibration held out by photo).
    Accuracy {
        #[arg(long, default_value = "efficientnet-lite0")]
        model: String,
        /// Also score the deterministic crops and flips of every photo (12 views per photo).
        #[arg(long)]
        augment: bool,
        /// Calibration methods to compare (comma-separated; default: the one QUInt8 uses).
        #[arg(long, value_enum, value_delimiter = ',')]
        calibration: Vec<ulayer::quant::CalibrationMethod>,
        /// Folds of the held-out calibration by photo (1: calibrate on every photo).
        #[arg(long, default_value_t = 2)]
        folds: usize,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: bool,
    },
    /// Write a model as ONNX (opset 13), so peers run exactly the same network; at quint8, as
    /// a QDQ model carrying our calibrated scales, zero points and 8-bit weights.
    Export {
        #[arg(long)]
        model: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,
        /// Calibration of a quint8 export.
        #[arg(long, value_enum, default_value_t = ulayer::quant::CalibrationMethod::default())]
        calibration: ulayer::quant::CalibrationMethod,
    },
    /// Serve the JSON-lines agent protocol on stdin/stdout (used by `ulab`).
    Serve,
}

fn main() {
    // Behave like a Unix filter when stdout closes early (`ulayer-agent bench | head`):
    // die quietly from SIGPIPE instead of panicking on a failed print.
    // SAFETY: setting a signal disposition to its default before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ULAYER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let data_dir = cli.data_dir.unwrap_or_else(datasets::default_cache_dir);
    match cli.cmd {
        Cmd::Models { json } => {
            let models = ulayer::agent::model_infos(&data_dir)?;
            if json {
                return print_json(&models);
            }
            println!(
                "{:<20} {:>12} {:>10}  {:<8} description",
                "model", "parameters", "GMACs", "weights"
            );
            for m in models {
                println!(
                    "{:<20} {:>12} {:>10.3}  {:<8} {}",
                    m.name,
                    m.parameters,
                    m.macs as f64 / 1e9,
                    format!("{:?}", m.weights).to_lowercase(),
                    m.description
                );
            }
        }
        Cmd::Classify {
            model,
            image,
            top,
            precision,
            threads,
            trace,
            mechanism,
            json,
        } => {
            let (results, traces) = ulayer::agent::classify_with(
                &model, &image, top, precision, &mechanism, threads, &data_dir,
            )?;
            if json {
                return print_json(&results);
            }
            for (r, t) in results.iter().zip(&traces) {
                println!("{}  ({:.2} ms)", r.image, r.latency_ms);
                for s in &r.top {
                    println!(
                        "  {:>5.1}%  {:>4}  {}",
                        s.probability * 100.0,
                        s.index,
                        s.name
                    );
                }
                if trace {
                    print_trace(t);
                }
            }
        }
        Cmd::Bench {
            model,
            iterations,
            warmup,
            precision,
            threads,
            mechanism,
            no_fallback,
            predictor,
            json,
        } => {
            let req = BenchRequest {
                model,
                iterations,
                warmup,
                precision,
                threads,
                traces: false,
                mechanism,
                min_duration_ms: 0,
                measured_fallback: !no_fallback,
                predictor,
            };
            let show = !json && std::io::stderr().is_terminal();
            let report = ulayer::agent::bench(&req, &data_dir, |done, total| {
                if show {
                    eprint!("\r{done}/{total} runs");
                }
            })?;
            if show {
                eprintln!();
            }
            if json {
                return print_json(&report);
            }
            let l = &report.latency;
            println!(
                "{} · {} · {} · {} threads · {} runs after {} warm-up",
                report.model,
                report.mechanism,
                report.precision,
                report.threads,
                l.runs,
                report.warmup
            );
            if let Some(e) = &report.executed {
                println!("executed: {e}");
            }
            println!(
                "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  mean {:.3}  std {:.3}",
                l.p50_ms, l.p90_ms, l.p99_ms, l.mean_ms, l.std_ms
            );
            println!(
                "{:<40} {:<18} {:>10} {:>9} {:>9}",
                "layer", "kind", "MMACs", "p50 ms", "share"
            );
            let total: f64 = report
                .layers
                .iter()
                .map(|x| x.p50_ms)
                .sum::<f64>()
                .max(1e-12);
            let transfers = report.layers.iter().any(|x| x.transfer_p50_ms > 0.0);
            for x in &report.layers {
                // Staged GPU memory: the layer's upload/download copies, outside its p50.
                let tr = if transfers {
                    format!("  transfer {:.3} ms", x.transfer_p50_ms)
                } else {
                    String::new()
                };
                println!(
                    "{:<40} {:<18} {:>10.2} {:>9.3} {:>8.1}%{tr}",
                    x.node,
                    x.kind,
                    x.macs as f64 / 1e6,
                    x.p50_ms,
                    100.0 * x.p50_ms / total
                );
            }
        }
        Cmd::Devices { json } => {
            let devices = ulayer::backend::vulkan::list_devices()?;
            if json {
                return print_json(&devices);
            }
            if devices.is_empty() {
                anyhow::bail!(
                    "the Vulkan loader found no device (install mesa-vulkan-drivers for lavapipe)"
                );
            }
            for d in &devices {
                println!(
                    "{}: {} ({}, Vulkan {}, {})",
                    d.index, d.name, d.device_type, d.api_version, d.driver
                );
                println!(
                    "   f16 arithmetic {}  f16 storage {}  int8 {}  8-bit storage {}  host-visible device-local {}",
                    d.shader_float16, d.storage_16bit, d.shader_int8, d.storage_8bit, d.host_visible_device_local
                );
                println!(
                    "   memory model {:?}  timestamps {} ns/tick  calibrated timestamps {}",
                    d.memory_model, d.timestamp_period_ns, d.calibrated_timestamps
                );
            }
        }
        Cmd::Eval {
            model,
            precision,
            augment,
            threads,
            mechanism,
            json,
        } => {
            let ev = ulayer::agent::evaluate_with(
                &model, precision, &mechanism, threads, augment, &data_dir,
            )?;
            if json {
                return print_json(&ev);
            }
            for r in &ev.results {
                println!(
                    "{:<22} {:<28} top-5 {:?}  accepted {:?}  {}",
                    r.photo,
                    r.variant,
                    r.top5,
                    r.accepted,
                    if r.top1_correct {
                        "top-1 ✓"
                    } else if r.top5_correct {
                        "top-5 ✓"
                    } else {
                        "✗"
                    }
                );
            }
            println!(
                "{} {}: top-1 {}/{} ({:.1}%), top-5 {}/{} ({:.1}%)",
                ev.model,
                ev.precision,
                ev.top1,
                ev.images,
                100.0 * ev.top1 as f64 / ev.images as f64,
                ev.top5,
                ev.images,
                100.0 * ev.top5 as f64 / ev.images as f64
            );
        }
        Cmd::Accuracy {
            model,
            augment,
            calibration,
            folds,
            threads,
            json,
        } => {
            let methods = if calibration.is_empty() {
                vec![ulayer::quant::CalibrationMethod::default()]
            } else {
                calibration
            };
            let report =
                ulayer::agent::accuracy(&model, &methods, threads, augment, folds, &data_dir)?;
            if json {
                return print_json(&report);
            }
            print!("{}", report.markdown());
        }
        Cmd::Export {
            model,
            out,
            precision,
            calibration,
        } => {
            let m = ulayer::agent::load_model(&model, &data_dir)?;
            match precision {
                Precision::Quint8 => {
                    let threads = ulayer::agent::resolve_threads(0);
                    let q = ulayer::agent::quant::quantize_model(
                        &m,
                        calibration,
                        threads,
                        &data_dir,
                        |_| true,
                    )?;
                    ulayer::onnx::export_qdq_file(&q, &out)
                }
                _ => ulayer::onnx::export_file(&m.graph, &out),
            }
            .with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote {} ({} nodes)", out.display(), m.graph.nodes.len());
        }
        Cmd::Profile {
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
        } => coop_cmd::profile(
            coop_cmd::ProfileArgs {
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
            },
            &data_dir,
        )?,
        Cmd::Plan {
            model,
            mechanism,
            precision,
            profile,
            predictor,
            no_rows,
            explain,
            json,
            threads,
            of_profiled_device,
        } => coop_cmd::plan(
            &model,
            &mechanism,
            precision,
            profile,
            predictor,
            !no_rows,
            explain,
            json,
            threads,
            of_profiled_device,
            &data_dir,
        )?,
        Cmd::Serve => {
            let stdin = std::io::stdin();
            ulayer::agent::serve::serve(stdin.lock(), std::io::stdout().lock(), &data_dir)
                .context("serving the agent protocol on stdio")?;
        }
    }
    Ok(())
}

fn print_trace(t: &ulayer::exec::trace::Trace) {
    for s in &t.layers {
        println!(
            "    {:<40} {:<18} {:?} {} {:>9.3} ms",
            s.node,
            s.kind,
            s.processor,
            s.precision,
            s.duration_ns() as f64 / 1e6
        );
    }
}
