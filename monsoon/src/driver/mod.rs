//! The serial driver: [`Monitor`].
//!
//! Connect sequence: take the port lock, open the port, send Stop, drain
//! pending input, read status and check the serial number and voltage fields.
//! Every setting is confirmed by reading status back. A reader thread owns the
//! read side from open to drop, so status can be read while sampling.

mod lock;

pub use lock::{default_lock_dir, lock_path, PortLock};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serialport::TTYPort;

use crate::protocol::{
    current_limit_to_raw, raw_to_voltage, voltage_to_raw, Command, Status, UsbPassthrough,
};
use crate::stream::reader_lock as lock_mutex;
use crate::stream::{
    spawn_reader, DecodeStats, DecoderOptions, ReaderCmd, ReaderConfig, ReaderShared, SampleStream,
};
use crate::{Error, Result};

/// USB vendor/product ids of Monsoon monitors.
pub const MONSOON_USB_IDS: [(u16, u16); 2] = [(0x04D8, 0xFE23), (0x2AB9, 0x0001)];

/// Serial ports that look like Monsoon monitors (by USB id).
pub fn find_monitors() -> Vec<PathBuf> {
    let Ok(ports) = serialport::available_ports() else {
        return Vec::new();
    };
    ports
        .into_iter()
        .filter(|p| match &p.port_type {
            serialport::SerialPortType::UsbPort(u) => MONSOON_USB_IDS.contains(&(u.vid, u.pid)),
            _ => false,
        })
        .map(|p| PathBuf::from(p.port_name))
        .collect()
}

/// Which current limit to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentLimitKind {
    /// Limit while the output powers up.
    PowerUp,
    /// Limit while running.
    Runtime,
}

/// How to open a monitor. Field docs give the default.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Directory of the lock file. Default: [`default_lock_dir`].
    pub lock_dir: Option<PathBuf>,
    /// Refuse a monitor whose serial number differs. Default: accept any
    /// non-zero serial.
    pub expected_serial: Option<u16>,
    /// Wait for one status reply. Default 500 ms.
    pub status_timeout: Duration,
    /// Status requests before giving up. Default 3.
    pub status_attempts: u32,
    /// Pause between 0.1 V steps of a voltage ramp. Default 100 ms (what
    /// the reference drivers use).
    pub ramp_step_delay: Duration,
    /// Events the stream channel holds before the reader waits. Default 1024.
    pub channel_capacity: usize,
    /// Samples per delivered batch. Default 500 (100 ms of data).
    pub batch_samples: usize,
    /// Longest a decoded sample waits before delivery. Default 50 ms.
    pub batch_latency: Duration,
    /// Silence while sampling before a `Stalled` event. Default 1 s.
    pub stall_after: Duration,
    /// How long a read on the port blocks. Default 20 ms.
    pub read_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            lock_dir: None,
            expected_serial: None,
            status_timeout: Duration::from_millis(500),
            status_attempts: 3,
            ramp_step_delay: Duration::from_millis(100),
            channel_capacity: 1024,
            batch_samples: 500,
            batch_latency: Duration::from_millis(50),
            stall_after: Duration::from_secs(1),
            read_timeout: Duration::from_millis(20),
        }
    }
}

/// A connected, exclusively held Monsoon monitor.
pub struct Monitor {
    path: PathBuf,
    port: TTYPort,
    _lock: PortLock,
    opts: OpenOptions,
    cmd_tx: Sender<ReaderCmd>,
    status_rx: Receiver<Status>,
    shared: Arc<ReaderShared>,
    reader: Option<JoinHandle<()>>,
    last_status: Status,
    streaming: bool,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("path", &self.path)
            .field("serial", &self.last_status.serial_number)
            .field("streaming", &self.streaming)
            .finish()
    }
}

impl Monitor {
    /// Open and connect with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Monitor> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Open and connect: lock, open, Stop, drain, status check.
    pub fn open_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Monitor> {
        let path = path.as_ref().to_path_buf();
        let dir = opts.lock_dir.clone().unwrap_or_else(default_lock_dir);
        let lock = PortLock::acquire(&path, &dir)?;
        let name = path.to_str().ok_or_else(|| {
            Error::InvalidArgument(format!("port path {} is not UTF-8", path.display()))
        })?;
        let port_err = |source| Error::Port {
            path: path.clone(),
            source,
        };
        let mut port = serialport::new(name, 9600)
            .timeout(opts.read_timeout)
            .open_native()
            .map_err(port_err)?;
        write_cmds(&mut port, &path, &[Command::StopSampling])?;
        drain(&mut port, &path)?;
        let reader_port = port.try_clone_native().map_err(port_err)?;
        let shared = Arc::new(ReaderShared::default());
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (status_tx, status_rx) = mpsc::channel();
        let cfg = ReaderConfig {
            batch_samples: opts.batch_samples.max(1),
            batch_latency: opts.batch_latency,
            stall_after: opts.stall_after,
        };
        let reader = spawn_reader(reader_port, cfg, shared.clone(), cmd_rx, status_tx)
            .map_err(|e| Error::io("start the reader thread", e))?;
        let mut mon = Monitor {
            path,
            port,
            _lock: lock,
            opts,
            cmd_tx,
            status_rx,
            shared,
            reader: Some(reader),
            last_status: Status::default(),
            streaming: false,
        };
        let s = mon.status()?;
        mon.check_identity(&s)?;
        tracing::info!(port = %mon.path.display(), serial = s.serial_number, fw = s.firmware_version, "monsoon connected");
        Ok(mon)
    }

    fn check_identity(&self, s: &Status) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::Connect {
                port: self.path.clone(),
                reason,
            })
        };
        if let Some(want) = self.opts.expected_serial {
            if s.serial_number != want {
                return bad(format!(
                    "serial number {} where {want} was expected",
                    s.serial_number
                ));
            }
        } else if s.serial_number == 0 {
            return bad("status reports serial number 0".into());
        }
        if s.sample_rate_khz == 0 {
            return bad("status reports a sample rate of 0 kHz".into());
        }
        if voltage_to_raw(s.output_voltage_v()).is_none() {
            return bad(format!(
                "output voltage setting {} is out of range",
                s.output_voltage_setting
            ));
        }
        Ok(())
    }

    /// The port this monitor was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The status read most recently.
    pub fn last_status(&self) -> &Status {
        &self.last_status
    }

    /// Whether a stream is open.
    pub fn is_streaming(&self) -> bool {
        self.streaming
    }

    /// Decoder counters of the current (or last) stream.
    pub fn stats(&self) -> DecodeStats {
        *lock_mutex(&self.shared.stats)
    }

    fn dead(&self) -> Option<Error> {
        lock_mutex(&self.shared.dead)
            .clone()
            .map(Error::Disconnected)
    }

    fn send(&mut self, cmds: &[Command]) -> Result<()> {
        if let Some(e) = self.dead() {
            return Err(e);
        }
        write_cmds(&mut self.port, &self.path, cmds)
    }

    /// Ask for status and wait for the reply (works while sampling too).
    pub fn status(&mut self) -> Result<Status> {
        for _ in 0..self.opts.status_attempts.max(1) {
            while self.status_rx.try_recv().is_ok() {}
            self.send(&[Command::GetStatus])?;
            match self.status_rx.recv_timeout(self.opts.status_timeout) {
                Ok(s) => {
                    self.last_status = s;
                    return Ok(s);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(e) = self.dead() {
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self
                        .dead()
                        .unwrap_or_else(|| Error::Disconnected("reader thread ended".into())))
                }
            }
        }
        Err(Error::NoStatus(
            self.opts.status_timeout * self.opts.status_attempts.max(1),
        ))
    }

    /// Read status until `ok` holds for it (a reply already in flight may
    /// predate the setting), or fail naming the setting.
    fn confirm(
        &mut self,
        setting: &'static str,
        wanted: String,
        ok: impl Fn(&Status) -> bool,
        got: impl Fn(&Status) -> String,
    ) -> Result<Status> {
        let mut last = None;
        for _ in 0..3 {
            let s = self.status()?;
            if ok(&s) {
                return Ok(s);
            }
            last = Some(s);
        }
        Err(Error::NotConfirmed {
            setting,
            wanted,
            got: last.as_ref().map_or_else(String::new, got),
        })
    }

    /// Set the output voltage (0 = off, else 2.01..=4.55 V). Rising voltage
    /// is ramped from at least 3.0 V in 0.1 V steps, as the reference drivers
    /// do; the final setting is confirmed through status.
    pub fn set_voltage(&mut self, volts: f32) -> Result<Status> {
        let target = voltage_to_raw(volts).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "output voltage {volts} V: use 0 (off) or 2.01..=4.55 V"
            ))
        })?;
        let current = self.status()?.output_voltage_setting;
        if target > current {
            // 3.0 V is raw 100; steps of 0.1 V are 10 raw.
            let mut step = current.max(100);
            while step < target {
                self.send(&[Command::SetOutputVoltage(step)])?;
                std::thread::sleep(self.opts.ramp_step_delay);
                step = step.saturating_add(10);
            }
        }
        self.send(&[Command::SetOutputVoltage(target)])?;
        self.confirm(
            "output voltage",
            format!("{:.2} V", raw_to_voltage(target)),
            |s| s.output_voltage_setting == target,
            |s| format!("{:.2} V", s.output_voltage_v()),
        )
    }

    /// Set USB passthrough, confirmed through status.
    pub fn set_usb_passthrough(&mut self, mode: UsbPassthrough) -> Result<Status> {
        self.send(&[Command::SetUsbPassthrough(mode.to_byte())])?;
        self.confirm(
            "USB passthrough",
            mode.to_string(),
            |s| s.usb_passthrough_mode == mode.to_byte(),
            |s| {
                s.usb_passthrough().map_or_else(
                    || format!("unknown ({})", s.usb_passthrough_mode),
                    |m| m.to_string(),
                )
            },
        )
    }

    /// Switch USB passthrough to `mode` until the returned guard is finished
    /// or dropped, which restores the mode found now — also on error or
    /// panic. This is how a measured window keeps USB power out.
    pub fn usb_passthrough_scope(
        &mut self,
        mode: UsbPassthrough,
    ) -> Result<UsbPassthroughGuard<'_>> {
        let before = self
            .status()?
            .usb_passthrough()
            .unwrap_or(UsbPassthrough::Auto);
        self.set_usb_passthrough(mode)?;
        Ok(UsbPassthroughGuard {
            mon: self,
            restore: Some(before),
        })
    }

    /// Set a current limit in amps (0..=8), confirmed through status.
    pub fn set_current_limit(&mut self, kind: CurrentLimitKind, amps: f32) -> Result<Status> {
        let raw = current_limit_to_raw(amps).ok_or_else(|| {
            Error::InvalidArgument(format!("current limit {amps} A: use 0..=8 A"))
        })?;
        let [hi, lo] = raw.to_be_bytes();
        let (cmds, name) = match kind {
            CurrentLimitKind::PowerUp => (
                [
                    Command::SetPowerUpLimitLo(lo),
                    Command::SetPowerUpLimitHi(hi),
                ],
                "power-up current limit",
            ),
            CurrentLimitKind::Runtime => (
                [
                    Command::SetRuntimeLimitLo(lo),
                    Command::SetRuntimeLimitHi(hi),
                ],
                "runtime current limit",
            ),
        };
        self.send(&cmds)?;
        let field = move |s: &Status| match kind {
            CurrentLimitKind::PowerUp => s.power_up_current_limit,
            CurrentLimitKind::Runtime => s.runtime_current_limit,
        };
        self.confirm(
            name,
            format!("{amps:.3} A (raw {raw})"),
            move |s| field(s) == raw,
            move |s| {
                format!(
                    "{:.3} A (raw {})",
                    crate::protocol::raw_to_current_limit(field(s)),
                    field(s)
                )
            },
        )
    }

    /// Start sampling. Samples, gaps, statuses and errors arrive on the
    /// returned stream; index 0 is the first sample after this call.
    pub fn start(&mut self) -> Result<SampleStream> {
        if self.streaming {
            return Err(Error::State("the monitor is already sampling"));
        }
        if let Some(e) = self.dead() {
            return Err(e);
        }
        let (sink, rx) = mpsc::sync_channel(self.opts.channel_capacity.max(1));
        let (ack, acked) = mpsc::channel();
        let opts = DecoderOptions {
            hardware_revision: self.last_status.hardware_revision,
            ..DecoderOptions::default()
        };
        self.cmd_tx
            .send(ReaderCmd::Begin { sink, opts, ack })
            .map_err(|_| Error::Disconnected("reader thread ended".into()))?;
        acked.recv_timeout(Duration::from_secs(2)).map_err(|_| {
            self.dead()
                .unwrap_or(Error::State("reader thread did not answer"))
        })?;
        self.send(&Command::START)?;
        self.streaming = true;
        Ok(SampleStream::new(rx))
    }

    /// Stop sampling: send Stop, wait until the data stops, deliver what
    /// was decoded and close the stream.
    pub fn stop(&mut self) -> Result<()> {
        if !self.streaming {
            return Ok(());
        }
        self.streaming = false;
        let sent = self.send(&[Command::StopSampling]);
        if sent.is_ok() {
            self.wait_quiet(Duration::from_millis(100), Duration::from_secs(2));
        }
        let (ack, acked) = mpsc::channel();
        if self.cmd_tx.send(ReaderCmd::End { ack }).is_ok() {
            let _ = acked.recv_timeout(Duration::from_secs(2));
        }
        sent
    }

    fn wait_quiet(&self, quiet: Duration, max: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < max {
            let last = *lock_mutex(&self.shared.last_data);
            if last.is_none_or(|t| t.elapsed() >= quiet) || self.dead().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.streaming {
            let _ = self.stop();
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        // serialport sets TIOCEXCL and never clears it; a pseudo-terminal
        // that outlives us (the simulator keeps its side open) would refuse
        // the next non-root open.
        let _ = self.port.set_exclusive(false);
    }
}

/// Restores USB passthrough when finished or dropped; derefs to the
/// [`Monitor`] meanwhile.
#[derive(Debug)]
pub struct UsbPassthroughGuard<'a> {
    mon: &'a mut Monitor,
    restore: Option<UsbPassthrough>,
}

impl UsbPassthroughGuard<'_> {
    /// Restore the previous mode now, reporting failure.
    pub fn finish(mut self) -> Result<Status> {
        let mode = self.restore.take().unwrap_or(UsbPassthrough::Auto);
        self.mon.set_usb_passthrough(mode)
    }
}

impl std::ops::Deref for UsbPassthroughGuard<'_> {
    type Target = Monitor;
    fn deref(&self) -> &Monitor {
        self.mon
    }
}

impl std::ops::DerefMut for UsbPassthroughGuard<'_> {
    fn deref_mut(&mut self) -> &mut Monitor {
        self.mon
    }
}

impl Drop for UsbPassthroughGuard<'_> {
    fn drop(&mut self) {
        if let Some(mode) = self.restore.take() {
            if let Err(e) = self.mon.set_usb_passthrough(mode) {
                tracing::error!(error = %e, "could not restore USB passthrough to {mode}");
            }
        }
    }
}

fn write_cmds(port: &mut TTYPort, path: &Path, cmds: &[Command]) -> Result<()> {
    let mut bytes = Vec::with_capacity(cmds.len() * 9);
    for c in cmds {
        c.encode(&mut bytes);
    }
    port.write_all(&bytes)
        .map_err(|e| Error::io(format!("write to {}", path.display()), e))
}

/// Read and discard input until 100 ms pass without any (2 s at most).
fn drain(port: &mut TTYPort, path: &Path) -> Result<u64> {
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut buf = [0u8; 4096];
    let mut total = 0u64;
    while last.elapsed() < Duration::from_millis(100) {
        if t0.elapsed() > Duration::from_secs(2) {
            return Err(Error::Connect {
                port: path.to_path_buf(),
                reason: format!("still sending after Stop ({total} bytes drained in 2 s)"),
            });
        }
        match port.read(&mut buf) {
            Ok(0) => {
                return Err(Error::Disconnected(format!(
                    "{}: end of file",
                    path.display()
                )))
            }
            Ok(n) => {
                total += n as u64;
                last = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(Error::io(format!("read from {}", path.display()), e)),
        }
    }
    Ok(total)
}
