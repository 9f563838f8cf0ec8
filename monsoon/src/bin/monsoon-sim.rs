//! `monsoon-sim`: a simulated Monsoon power monitor on a pseudo-terminal.
//!
//! Prints the path to open (the pty, or `--link`) on the first line of
//! stdout and runs until SIGINT/SIGTERM, `--duration`, or the disconnect
//! fault.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use monsoon::sim::{ModelConfig, PowerModel, SimConfig, Simulator};

/// A simulated Monsoon power monitor speaking the serial protocol on a pty.
#[derive(Debug, Parser)]
#[command(name = "monsoon-sim", version)]
struct Args {
    /// Derive power from this process's threads (/proc/PID/task/*).
    #[arg(long)]
    follow_pid: Option<u32>,
    /// Make a symlink here to the pty (printed instead of the pty path).
    #[arg(long)]
    link: Option<PathBuf>,
    /// Sample 0 is this many ms after the start command (may be negative).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    offset_ms: f64,
    /// Sample clock error in ppm (positive: the monitor's clock runs fast).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    drift_ppm: f64,
    /// Write ground truth (sample index, true time, true power) here;
    /// `.csv` for CSV, else binary.
    #[arg(long)]
    ground_truth: Option<PathBuf>,
    /// Probability that a byte sent is corrupted.
    #[arg(long, default_value_t = 0.0)]
    corrupt_rate: f64,
    /// Probability that a data packet is dropped.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Stall the output at this time (s of sample clock after start).
    #[arg(long)]
    stall_at: Option<f64>,
    /// Stall length in ms.
    #[arg(long, default_value_t = 500)]
    stall_ms: u64,
    /// Close the pty at this time (s of sample clock after start).
    #[arg(long)]
    disconnect_at: Option<f64>,
    /// Trip the over-current kill at this time (s of sample clock after start).
    #[arg(long)]
    overcurrent_at: Option<f64>,
    /// Seed of all randomness (noise, faults).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Idle power of the device, W.
    #[arg(long, default_value_t = 1.2)]
    baseline_w: f64,
    /// Watts per busy CPU core of the followed process.
    #[arg(long, default_value_t = 0.9)]
    cpu_w_per_core: f64,
    /// Watts of the GPU (llvmpipe-* threads) at full utilisation.
    #[arg(long, default_value_t = 2.0)]
    gpu_w: f64,
    /// Standard deviation of per-sample power noise, W.
    #[arg(long, default_value_t = 0.02)]
    noise_w: f64,
    /// Share of power drawn through USB while passthrough is on or auto.
    #[arg(long, default_value_t = 0.5)]
    usb_share: f64,
    /// Output voltage at power-up, V (0 = off).
    #[arg(long, default_value_t = 0.0)]
    initial_voltage: f32,
    /// Serial number reported in status.
    #[arg(long, default_value_t = 20456)]
    serial: u16,
    /// Samples per measurement packet (1–31).
    #[arg(long, default_value_t = 5)]
    records_per_packet: usize,
    /// Activity poll interval in µs when following a process.
    #[arg(long, default_value_t = 1000)]
    poll_us: u64,
    /// Exit after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let rpp = a.records_per_packet.max(1);
    let cfg = SimConfig {
        follow_pid: a.follow_pid,
        link: a.link,
        offset_ns: (a.offset_ms * 1e6).round() as i64,
        drift_ppm: a.drift_ppm,
        ground_truth: a.ground_truth,
        corrupt_rate: a.corrupt_rate,
        drop_rate: a.drop_rate,
        stall_at_s: a.stall_at,
        stall_ms: a.stall_ms,
        disconnect_at_s: a.disconnect_at,
        overcurrent_at_s: a.overcurrent_at,
        seed: a.seed,
        power: PowerModel {
            baseline_w: a.baseline_w,
            cpu_w_per_core: a.cpu_w_per_core,
            gpu_w: a.gpu_w,
            noise_w: a.noise_w,
        },
        usb_share: a.usb_share,
        model: ModelConfig {
            serial_number: a.serial,
            records_per_packet: a.records_per_packet,
            // One second of samples between calibration pairs.
            calibration_every: (5000 / rpp).max(1),
            ..ModelConfig::default()
        },
        initial_voltage_v: a.initial_voltage,
        poll_interval: Duration::from_micros(a.poll_us.max(100)),
    };
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let sim = Simulator::spawn(cfg).context("start the simulator")?;
    println!("{}", sim.path().display());
    use std::io::Write;
    std::io::stdout().flush().context("write to stdout")?;
    let t0 = Instant::now();
    while !STOP.load(Ordering::Relaxed) && !sim.is_finished() {
        if a.duration.is_some_and(|d| t0.elapsed().as_secs_f64() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = sim.shutdown().context("simulator")?;
    eprintln!("monsoon-sim: {report:?}");
    Ok(())
}
