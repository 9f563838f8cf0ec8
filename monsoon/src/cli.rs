//! The `monsoon` subcommands, for the host tool to embed:
//!
//! ```ignore
//! #[derive(clap::Subcommand)]
//! enum Cmd {
//!     /// Drive a Monsoon power monitor.
//!     Monsoon(monsoon::cli::MonsoonArgs),
//! }
//! // ...
//! Cmd::Monsoon(args) => monsoon::cli::run(args)?,
//! ```
//!
//! giving `ulab monsoon [--port P] status | voltage V | usb on|off|auto |
//! current-limit A | record --seconds N --out FILE | decode RAW --out FILE |
//! convert IN OUT | info FILE`. An output path ending in `.csv` gets
//! Monsoon's own CSV shape; anything else a chunked trace file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::driver::{find_monitors, CurrentLimitKind, Monitor};
use crate::protocol::UsbPassthrough;
use crate::stream::{DecodeStats, DecoderOptions, StreamDecoder, StreamEvent};
use crate::trace::{
    create_sink, is_csv, read_csv, SampleSink, TraceMeta, TraceReader, TraceSummary,
};
use crate::{Error, Result, SAMPLE_RATE_HZ};

/// `monsoon` arguments: the port and a subcommand.
#[derive(Debug, clap::Args)]
pub struct MonsoonArgs {
    /// Serial port of the monitor [default: $MONSOON_PORT, else the one port
    /// with Monsoon USB ids].
    #[arg(long, global = true)]
    pub port: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: MonsoonCmd,
}

/// The `monsoon` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MonsoonCmd {
    /// Print the monitor's status.
    Status,
    /// Set the output voltage (0 = off, else 2.01–4.55 V; ramped when rising).
    Voltage {
        /// Volts.
        volts: f32,
    },
    /// Set USB passthrough.
    Usb {
        /// on, off or auto.
        #[arg(value_parser = parse_usb)]
        mode: UsbPassthrough,
    },
    /// Set the runtime (or power-up) current limit.
    CurrentLimit {
        /// Amps, 0–8.
        amps: f32,
        /// Set the power-up limit instead of the runtime limit.
        #[arg(long)]
        power_up: bool,
    },
    /// Record samples to a file (`.csv`: Monsoon's CSV, else a trace).
    Record {
        /// Seconds of samples to record (counted by sample index).
        #[arg(long)]
        seconds: f64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Set this output voltage first.
        #[arg(long)]
        voltage: Option<f32>,
        /// USB passthrough while recording (restored afterwards).
        #[arg(long, value_parser = parse_usb)]
        usb: Option<UsbPassthrough>,
    },
    /// Decode a captured raw byte stream into a file (`.csv` or trace).
    Decode {
        /// Raw bytes as read from the port.
        raw: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Hardware revision of the monitor (1 halves the voltage LSB);
        /// status packets in the capture override it.
        #[arg(long, default_value_t = 0)]
        hardware_revision: u8,
    },
    /// Convert a trace to CSV or a CSV to a trace (by extension).
    Convert {
        /// Input file.
        input: PathBuf,
        /// Output file.
        output: PathBuf,
    },
    /// Summarise a trace or CSV file.
    Info {
        /// The file.
        file: PathBuf,
    },
}

fn parse_usb(s: &str) -> std::result::Result<UsbPassthrough, String> {
    s.parse()
}

/// Run a `monsoon` subcommand, printing to stdout.
pub fn run(args: MonsoonArgs) -> anyhow::Result<()> {
    match args.cmd {
        MonsoonCmd::Status => {
            let mut m = open(args.port)?;
            let s = m.status()?;
            println!("{}\n{s}", m.path().display());
        }
        MonsoonCmd::Voltage { volts } => {
            let s = open(args.port)?.set_voltage(volts)?;
            println!("output voltage {:.2} V", s.output_voltage_v());
        }
        MonsoonCmd::Usb { mode } => {
            open(args.port)?.set_usb_passthrough(mode)?;
            println!("USB passthrough {mode}");
        }
        MonsoonCmd::CurrentLimit { amps, power_up } => {
            let kind = if power_up {
                CurrentLimitKind::PowerUp
            } else {
                CurrentLimitKind::Runtime
            };
            let s = open(args.port)?.set_current_limit(kind, amps)?;
            println!(
                "current limit {:.3} A (power-up {:.3} A)",
                s.runtime_current_limit_a(),
                s.power_up_current_limit_a()
            );
        }
        MonsoonCmd::Record {
            seconds,
            out,
            voltage,
            usb,
        } => {
            let mut m = open(args.port)?;
            if let Some(v) = voltage {
                m.set_voltage(v)?;
            }
            let mut meta = TraceMeta::new(format!("monsoon {}", m.path().display()));
            meta.serial_number = Some(m.last_status().serial_number);
            meta.output_voltage_v = Some(m.last_status().output_voltage_v());
            let mut sink = create_sink(&out, &meta)?;
            let outcome = match usb {
                Some(mode) => {
                    let mut g = m.usb_passthrough_scope(mode)?;
                    let r = record(&mut g, seconds, sink.as_mut());
                    g.finish()?;
                    r
                }
                None => record(&mut m, seconds, sink.as_mut()),
            };
            let summary = sink
                .finish()
                .with_context(|| format!("finish {}", out.display()))?;
            println!("{}: {summary}", out.display());
            let stats = outcome?;
            if stats.lost_samples > 0 || stats.frames.garbage_bytes > 0 {
                println!(
                    "transport: {} samples lost in {} gaps, {} garbage bytes skipped in {} resyncs",
                    stats.lost_samples,
                    stats.gaps,
                    stats.frames.garbage_bytes,
                    stats.frames.resyncs
                );
            }
        }
        MonsoonCmd::Decode {
            raw,
            out,
            hardware_revision,
        } => {
            let meta = TraceMeta::new(format!("decode {}", raw.display()));
            let mut sink = create_sink(&out, &meta)?;
            let stats = decode_file(&raw, hardware_revision, sink.as_mut())?;
            let summary = sink.finish()?;
            println!("{}: {summary}", out.display());
            print_decode_stats(&raw, &stats);
        }
        MonsoonCmd::Convert { input, output } => {
            let summary = convert(&input, &output)?;
            println!("{}: {summary}", output.display());
        }
        MonsoonCmd::Info { file } => {
            if is_csv(&file) {
                let samples = read_csv(&file)?;
                println!("{}: Monsoon CSV, {}", file.display(), summarise(&samples));
            } else {
                let mut r = TraceReader::open(&file)?;
                println!(
                    "{}: trace from {:?}, {} chunks",
                    file.display(),
                    r.meta().source,
                    r.chunks().len()
                );
                if let Some(rec) = r.recovery() {
                    println!(
                        "no index (recording did not finish): {} of {} bytes readable{}",
                        rec.valid_bytes,
                        rec.file_bytes,
                        rec.stopped
                            .as_ref()
                            .map_or(String::new(), |s| format!("; stopped at: {s}"))
                    );
                }
                println!("{}", r.summary()?);
            }
        }
    }
    Ok(())
}

/// Open the monitor at `port`, else `$MONSOON_PORT`, else
/// the only port with Monsoon USB ids.
pub fn open(port: Option<PathBuf>) -> anyhow::Result<Monitor> {
    let port = match port.or_else(|| std::env::var_os("MONSOON_PORT").map(PathBuf::from)) {
        Some(p) => p,
        None => {
            let found = find_monitors();
            match found.as_slice() {
                [one] => one.clone(),
                [] => bail!(
                    "no Monsoon monitor found (USB ids 04D8:FE23, 2AB9:0001); pass --port PATH"
                ),
                many => bail!("several Monsoon monitors found ({many:?}); pass --port PATH"),
            }
        }
    };
    Monitor::open(&port).with_context(|| format!("open monitor at {}", port.display()))
}

/// Record `seconds` of samples (by index: `seconds × 5000` samples after
/// start) into `sink`. Gaps and other events are stored as they come. On a
/// disconnect everything received up to it is in the sink and the error is
/// returned; the caller still finishes the sink.
pub fn record(mon: &mut Monitor, seconds: f64, sink: &mut dyn SampleSink) -> Result<DecodeStats> {
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(Error::InvalidArgument(format!("--seconds {seconds}")));
    }
    let end = (seconds * f64::from(SAMPLE_RATE_HZ)).round() as u64;
    let stream = mon.start()?;
    let mut result = Ok(());
    let mut last_data = Instant::now();
    loop {
        match stream.recv_timeout(Duration::from_millis(500)) {
            Ok(StreamEvent::Samples(mut v)) => {
                last_data = Instant::now();
                let done = v.last().is_some_and(|s| s.index + 1 >= end);
                v.retain(|s| s.index < end);
                sink.write_event(&StreamEvent::Samples(v))?;
                if done {
                    break;
                }
            }
            Ok(StreamEvent::Error(e)) => {
                sink.write_event(&StreamEvent::Error(e.clone()))?;
                result = Err(Error::Disconnected(e.to_string()));
                break;
            }
            Ok(ev) => sink.write_event(&ev)?,
            Err(RecvTimeoutError::Timeout) => {
                if last_data.elapsed() > Duration::from_secs(10) {
                    result = Err(Error::Disconnected(
                        "no data from the monitor for 10 s".into(),
                    ));
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                result = Err(Error::Disconnected("the stream ended".into()));
                break;
            }
        }
    }
    let stop = mon.stop();
    // Deliver what arrived before the stop took effect, up to the end index.
    for ev in stream {
        match ev {
            StreamEvent::Samples(mut v) => {
                v.retain(|s| s.index < end);
                if !v.is_empty() {
                    sink.write_event(&StreamEvent::Samples(v))?;
                }
            }
            StreamEvent::Gap(g) if g.from_index >= end => {}
            other => sink.write_event(&other)?,
        }
    }
    result?;
    stop?;
    Ok(mon.stats())
}

/// Decode a captured raw byte stream into `sink`.
pub fn decode_file(
    raw: &Path,
    hardware_revision: u8,
    sink: &mut dyn SampleSink,
) -> Result<DecodeStats> {
    let mut f =
        std::fs::File::open(raw).map_err(|e| Error::io(format!("open {}", raw.display()), e))?;
    let mut dec = StreamDecoder::new(DecoderOptions {
        hardware_revision,
        ..DecoderOptions::default()
    });
    let mut buf = vec![0u8; 1 << 16];
    let mut events = Vec::new();
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("read {}", raw.display()), e))?;
        if n == 0 {
            break;
        }
        dec.push(&buf[..n], &mut events);
        events.drain(..).try_for_each(|e| sink.write_event(&e))?;
    }
    let tail = dec.pending_bytes() as u64;
    let tail_at = dec.offset();
    dec.finish(&mut events);
    events.drain(..).try_for_each(|e| sink.write_event(&e))?;
    let stats = dec.stats();
    if stats.frames.frames == 0 {
        return Err(Error::Format {
            path: raw.to_path_buf(),
            offset: 0,
            msg: format!("no Monsoon frame found in {} bytes", stats.frames.bytes),
        });
    }
    if tail > 0 {
        tracing::warn!(
            "{}: last {tail} bytes (from byte offset {tail_at}) are an incomplete frame",
            raw.display()
        );
    }
    Ok(stats)
}

fn print_decode_stats(raw: &Path, s: &DecodeStats) {
    println!(
        "{}: {} bytes, {} frames ({} status, {} calibration, {} measurement), {} samples",
        raw.display(),
        s.frames.bytes,
        s.frames.frames,
        s.status_packets,
        s.calibration_packets,
        s.measurement_packets,
        s.samples
    );
    if s.frames.garbage_bytes > 0 {
        println!(
            "skipped {} garbage bytes in {} resyncs (first at byte offset {}, last at {})",
            s.frames.garbage_bytes,
            s.frames.resyncs,
            s.frames.first_garbage_offset.unwrap_or(0),
            s.frames.last_garbage_offset.unwrap_or(0)
        );
    }
    if s.lost_packets > 0 || s.uncalibrated_samples > 0 {
        println!(
            "{} packets missing ({} predicted calibration): {} samples lost in {} gaps; {} dropped before calibration",
            s.lost_packets, s.lost_calibration_packets, s.lost_samples, s.gaps, s.uncalibrated_samples
        );
    }
}

/// Convert trace ↔ CSV by extension.
pub fn convert(input: &Path, output: &Path) -> Result<TraceSummary> {
    let meta = TraceMeta::new(format!("convert {}", input.display()));
    let mut sink = create_sink(output, &meta)?;
    if is_csv(input) {
        let samples = read_csv(input)?;
        sink.write_event(&StreamEvent::Samples(samples))?;
    } else {
        let mut r = TraceReader::open(input)?;
        for i in 0..r.chunks().len() {
            let c = r.chunk(i)?;
            sink.write_event(&StreamEvent::Samples(c.samples))?;
            for e in c.events {
                if let crate::trace::TraceEvent::Gap(g) = e {
                    sink.write_event(&StreamEvent::Gap(g))?;
                }
            }
        }
    }
    sink.finish()
}

fn summarise(samples: &[crate::Sample]) -> String {
    let secs = samples.len() as f64 / f64::from(SAMPLE_RATE_HZ);
    let e = crate::energy_j(samples);
    format!(
        "{} samples ({secs:.3} s), energy {e:.6} J, charge {:.6} mAh, mean power {:.4} W",
        samples.len(),
        crate::charge_mah(samples),
        if secs > 0.0 { e / secs } else { 0.0 }
    )
}
