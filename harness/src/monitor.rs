//! The campaign's power monitor for one configuration: open (a Monsoon port, or a simulator
//! started here following the agent's pid), configure, record the job into a trace file and
//! memory, and the USB passthrough window.
use anyhow::{bail, Context, Result};
use monsoon::driver::UsbPassthroughGuard;
use monsoon::sim::{SimConfig, Simulator};
use monsoon::trace::{TraceEvent, TraceMeta, TraceWriter};
use monsoon::{
    CurrentLimitKind, Monitor, OpenOptions, Sample, SampleStream, StreamEvent, UsbPassthrough,
};
use std::path::Path;
use std::thread::JoinHandle;

use crate::campaign::{MonitorKind, MonitorSpec};
use crate::transport::MeasuredWindow;

/// An opened monitor (and the simulator behind it, if simulated).
pub struct OpenMonitor {
    // Field order: the monitor closes before the simulator stops.
    pub monitor: Monitor,
    pub sim: Option<Simulator>,
    pub serial: Option<u16>,
}

/// Test-only fault injection through `ULAB_FAULT` (see `runner`): close the simulator's pty
/// this many seconds after sampling starts.
pub struct SimFaults {
    pub disconnect_at_s: Option<f64>,
}

/// Opens the campaign's monitor; `None` for `kind = "none"`.
pub fn open(
    spec: &MonitorSpec,
    agent_pid: Option<u32>,
    faults: &SimFaults,
    base: &Path,
) -> Result<Option<OpenMonitor>> {
    let (monitor, sim) = match spec.kind {
        MonitorKind::None => return Ok(None),
        MonitorKind::Simulated => {
            let pid = agent_pid.context(
                "the simulated monitor follows the agent's process, which is not on this machine",
            )?;
            let cfg = SimConfig {
                follow_pid: Some(pid),
                offset_ns: (spec.sim_offset_ms * 1e6) as i64,
                drift_ppm: spec.sim_drift_ppm,
                seed: spec.sim_seed,
                disconnect_at_s: faults.disconnect_at_s,
                // One activity poll per sample period, so that the simulated power changes
                // when the agent's threads do, to within a sample, as a device's would.
                poll_interval: std::time::Duration::from_micros(200),
                ..SimConfig::default()
            };
            let sim = Simulator::spawn(cfg).context("start the simulated monitor")?;
            let mon = Monitor::open(sim.path())
                .with_context(|| format!("open the simulator at {}", sim.path().display()))?;
            (mon, Some(sim))
        }
        MonitorKind::Monsoon => {
            let port = spec
                .port
                .as_ref()
                .context("[monitor] kind = \"monsoon\" needs a port")?;
            let port = if port.is_absolute() {
                port.clone()
            } else {
                base.join(port)
            };
            let opts = OpenOptions {
                expected_serial: spec.serial,
                ..OpenOptions::default()
            };
            let mon = Monitor::open_with(&port, opts)
                .with_context(|| format!("open the Monsoon monitor at {}", port.display()))?;
            (mon, None)
        }
    };
    let mut m = OpenMonitor {
        serial: Some(monitor.last_status().serial_number),
        monitor,
        sim,
    };
    m.monitor
        .set_voltage(spec.voltage)
        .with_context(|| format!("set the monitor's output to {} V", spec.voltage))?;
    if let Some(a) = spec.current_limit_a {
        m.monitor
            .set_current_limit(CurrentLimitKind::Runtime, a)
            .with_context(|| format!("set the runtime current limit to {a} A"))?;
    }
    Ok(Some(m))
}

/// What a recording collected.
pub struct Recording {
    pub samples: Vec<Sample>,
    pub lost_samples: u64,
    /// Why the stream ended early, if it did (monitor disconnect, port error).
    pub error: Option<String>,
}

/// Records a stream into a trace file and memory on a thread, until the stream closes.
pub struct Recorder {
    handle: JoinHandle<Result<Recording>>,
}

impl Recorder {
    pub fn start(stream: SampleStream, trace: &Path, serial: Option<u16>) -> Result<Recorder> {
        let mut meta = TraceMeta::new("ulab run");
        meta.serial_number = serial;
        let mut writer = TraceWriter::create(trace, &meta)
            .with_context(|| format!("create the trace {}", trace.display()))?;
        let handle = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                let mut rec = Recording {
                    samples: Vec::new(),
                    lost_samples: 0,
                    error: None,
                };
                for ev in stream.iter() {
                    if let Some(te) = TraceEvent::from_stream(&ev) {
                        writer.push_event(te);
                    }
                    match ev {
                        StreamEvent::Samples(s) => {
                            writer.push_samples(&s)?;
                            rec.samples.extend_from_slice(&s);
                        }
                        StreamEvent::Gap(g) => rec.lost_samples += g.lost,
                        StreamEvent::Error(e) => {
                            rec.error = Some(e.to_string());
                            break;
                        }
                        _ => {}
                    }
                }
                writer.finish()?;
                Ok(rec)
            })
            .context("start the recorder thread")?;
        Ok(Recorder { handle })
    }

    /// Waits for the stream to close (after `Monitor::stop`, or a disconnect).
    pub fn finish(self) -> Result<Recording> {
        match self.handle.join() {
            Ok(r) => r,
            Err(_) => bail!("the recorder thread panicked"),
        }
    }
}

/// USB passthrough off from `begin` to `end` (restored also when dropped: errors, Ctrl-C).
/// With `kill_agent` set (test fault), the agent is killed shortly after `begin`.
pub struct UsbWindow<'a> {
    mon: Option<&'a mut Monitor>,
    guard: Option<UsbPassthroughGuard<'a>>,
    pub kill_agent: Option<(u32, std::time::Duration)>,
}

impl<'a> UsbWindow<'a> {
    pub fn new(mon: Option<&'a mut Monitor>) -> UsbWindow<'a> {
        UsbWindow {
            mon,
            guard: None,
            kill_agent: None,
        }
    }
}

impl MeasuredWindow for UsbWindow<'_> {
    fn begin(&mut self) -> Result<()> {
        if let Some(m) = self.mon.take() {
            self.guard = Some(
                m.usb_passthrough_scope(UsbPassthrough::Off)
                    .context("switch USB passthrough off for the measured window")?,
            );
        }
        if let Some((pid, after)) = self.kill_agent.take() {
            std::thread::spawn(move || {
                std::thread::sleep(after);
                tracing::warn!(pid, "fault injection: killing the agent");
                // SAFETY: kill(2) on a pid we started; no memory is involved.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            });
        }
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        if let Some(g) = self.guard.take() {
            g.finish()
                .context("switch USB passthrough back on after the measured window")?;
        }
        Ok(())
    }
}
