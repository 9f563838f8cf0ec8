//! The simulated monitor (`monsoon-sim`): speaks the protocol on a
//! pseudo-terminal so the driver code path is the real one.
//!
//! - Its own sample clock: sample `i` of a session is the device's power at
//!   `t_start + offset + i × 200 µs / (1 + drift_ppm·1e-6)` on CLOCK_MONOTONIC
//!   (`t_start` = arrival of the start command), and is sent once that time
//!   has passed (and, when following a process, once the activity poll
//!   covering it has run) — so the stream is paced at 5000 Hz of the
//!   simulated crystal, not of the host.
//! - Power: see [`power`]; noise per sample; ground truth to a side file
//!   ([`ground_truth`]).
//! - Calibration: a zero and a reference packet at the start of each session
//!   and after every `calibration_every` measurement packets (one second of
//!   samples by default).
//! - Faults, all reproducible from the seed: bytes corrupted at a rate,
//!   packets dropped at a rate, a stall (output held back for a while, then
//!   sent late — nothing lost), a disconnect (the pty closes), an over-current
//!   kill (flag set, output off). Fault times are seconds of the sample clock
//!   from the start of sampling.

pub mod ground_truth;
mod model;
pub mod power;
mod pty;
mod rng;

pub use ground_truth::{Fate, GroundTruth, GroundTruthHeader, GroundTruthWriter, TruthRecord};
pub use model::{event_code, Effect, ModelConfig, MonitorModel, TrueSample};
pub use power::{Activity, ActivityProbe, PowerModel};
pub use pty::Pty;
pub use rng::Rng;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::calibration::CalKind;
use crate::protocol::{Command, FrameDecoder};
use crate::{Error, Result, SAMPLE_RATE_HZ};

/// CLOCK_MONOTONIC in nanoseconds.
pub fn mono_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Simulator settings. Field docs give the defaults.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Process whose threads drive the power model. Default: none (baseline
    /// and noise only).
    pub follow_pid: Option<u32>,
    /// Also make a symlink at this path to the pty. Default: none.
    pub link: Option<PathBuf>,
    /// Offset of sample 0 after the start command, ns. Default 0.
    pub offset_ns: i64,
    /// Sample clock error in ppm (positive = fast). Default 0.
    pub drift_ppm: f64,
    /// Ground-truth side file (`.csv` for CSV). Default: none.
    pub ground_truth: Option<PathBuf>,
    /// Probability that any byte sent is corrupted. Default 0.
    pub corrupt_rate: f64,
    /// Probability that a data packet is dropped. Default 0.
    pub drop_rate: f64,
    /// Hold output back at this time (s of sample clock). Default: never.
    pub stall_at_s: Option<f64>,
    /// How long a stall lasts (wall time). Default 500 ms.
    pub stall_ms: u64,
    /// Close the pty at this time (s of sample clock). Default: never.
    pub disconnect_at_s: Option<f64>,
    /// Trip the over-current kill at this time (s). Default: never.
    pub overcurrent_at_s: Option<f64>,
    /// Seed of all randomness. Default 1.
    pub seed: u64,
    /// Power model.
    pub power: PowerModel,
    /// Share of the device's power drawn through USB while passthrough is
    /// on or auto (it shows on the USB channel, not on main). Default 0.5.
    pub usb_share: f64,
    /// Monitor properties (serial, samples per packet, calibration period).
    pub model: ModelConfig,
    /// Output voltage at power-up, V (0 = off, as a real monitor). Default 0.
    pub initial_voltage_v: f32,
    /// Activity poll interval when following a process. Default 1 ms.
    pub poll_interval: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            follow_pid: None,
            link: None,
            offset_ns: 0,
            drift_ppm: 0.0,
            ground_truth: None,
            corrupt_rate: 0.0,
            drop_rate: 0.0,
            stall_at_s: None,
            stall_ms: 500,
            disconnect_at_s: None,
            overcurrent_at_s: None,
            seed: 1,
            power: PowerModel::default(),
            usb_share: 0.5,
            model: ModelConfig::default(),
            initial_voltage_v: 0.0,
            poll_interval: Duration::from_millis(1),
        }
    }
}

impl SimConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if !(1..=31).contains(&self.model.records_per_packet) {
            return bad(format!(
                "records per packet {} (1..=31)",
                self.model.records_per_packet
            ));
        }
        if self.model.calibration_every == 0 {
            return bad("calibration period of 0 packets".into());
        }
        for (name, r) in [
            ("corrupt rate", self.corrupt_rate),
            ("drop rate", self.drop_rate),
            ("usb share", self.usb_share),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return bad(format!("{name} {r} is not in 0..=1"));
            }
        }
        if !self.drift_ppm.is_finite() || self.drift_ppm.abs() >= 1e5 {
            return bad(format!("drift {} ppm", self.drift_ppm));
        }
        if crate::protocol::voltage_to_raw(self.initial_voltage_v).is_none() {
            return bad(format!("initial voltage {} V", self.initial_voltage_v));
        }
        Ok(())
    }
}

/// What a simulator run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimReport {
    /// Sampling sessions started.
    pub sessions: u16,
    /// Samples generated (all sessions).
    pub samples: u64,
    /// Data packets generated (calibration included).
    pub packets: u64,
    /// Data packets dropped by fault injection.
    pub dropped_packets: u64,
    /// Packets of any kind with corrupted bytes.
    pub corrupted_packets: u64,
    /// Bytes corrupted.
    pub corrupted_bytes: u64,
    /// Host commands received.
    pub commands: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Whether the run ended by the disconnect fault.
    pub disconnected: bool,
    /// Why following the process stopped, if it did.
    pub follow_error: Option<String>,
    /// Whether the simulator's thread ran at real-time priority while following a process
    /// (see [`raise_to_realtime`]); `false` where the host did not allow it.
    pub realtime: bool,
}

/// A simulator running on its own thread.
#[derive(Debug)]
pub struct Simulator {
    pty_path: PathBuf,
    link: Option<PathBuf>,
    shutdown: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<SimReport>>>,
}

impl Simulator {
    /// Create the pty (and link) and start simulating.
    pub fn spawn(cfg: SimConfig) -> Result<Simulator> {
        cfg.validate()?;
        let pty = Pty::open().map_err(|e| Error::io("create a pseudo-terminal", e))?;
        let pty_path = pty.path().to_path_buf();
        if let Some(link) = &cfg.link {
            let _ = std::fs::remove_file(link);
            std::os::unix::fs::symlink(&pty_path, link).map_err(|e| {
                Error::io(
                    format!("symlink {} -> {}", link.display(), pty_path.display()),
                    e,
                )
            })?;
        }
        let gt = match &cfg.ground_truth {
            Some(p) => Some(GroundTruthWriter::create(p, &header(&cfg))?),
            None => None,
        };
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = shutdown.clone();
        let link = cfg.link.clone();
        let handle = std::thread::Builder::new()
            .name("monsoon-sim".into())
            .spawn(move || Engine::new(cfg, pty, gt).run(&flag))
            .map_err(|e| Error::io("start the simulator thread", e))?;
        tracing::info!(pty = %pty_path.display(), "monsoon-sim ready");
        Ok(Simulator {
            pty_path,
            link,
            shutdown,
            handle: Some(handle),
        })
    }

    /// Path a driver opens: the link if one was asked for, else the pty.
    pub fn path(&self) -> &Path {
        self.link.as_deref().unwrap_or(&self.pty_path)
    }

    /// The pty's own path (`/dev/pts/N`).
    pub fn pty_path(&self) -> &Path {
        &self.pty_path
    }

    /// Whether the simulator has stopped by itself (disconnect fault, error).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stop and collect the report.
    pub fn shutdown(mut self) -> Result<SimReport> {
        self.stop()
    }

    fn stop(&mut self) -> Result<SimReport> {
        self.shutdown.store(true, Ordering::Relaxed);
        let r = match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or(Err(Error::State("the simulator thread panicked"))),
            None => Ok(SimReport::default()),
        };
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
        r
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn header(cfg: &SimConfig) -> GroundTruthHeader {
    GroundTruthHeader {
        format_version: 1,
        sample_rate_hz: SAMPLE_RATE_HZ,
        offset_ns: cfg.offset_ns,
        drift_ppm: cfg.drift_ppm,
        records_per_packet: cfg.model.records_per_packet,
        seed: cfg.seed,
        follow_pid: cfg.follow_pid,
        baseline_w: cfg.power.baseline_w,
        cpu_w_per_core: cfg.power.cpu_w_per_core,
        gpu_w: cfg.power.gpu_w,
        noise_w: cfg.power.noise_w,
    }
}

/// Puts the calling thread (the simulator's) at the lowest real-time priority, as the
/// monitor is an instrument of its own: its activity polls (every 200 µs) must not wait for a
/// core behind the followed process, whose sync pulses load every core of the host. The
/// thread sleeps between polls, so it takes a few percent of one core. Returns whether the
/// host allowed it.
fn raise_to_realtime() -> bool {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: pid 0 is the calling thread on Linux; `param` is a valid sched_param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}

/// Output held back beyond this pauses sample generation (the clock runs on;
/// the backlog is sent when the host reads again).
const OUT_CAP: usize = 1 << 20;

struct Session {
    t_start: i64,
    next_index: u64,
}

struct Engine {
    cfg: SimConfig,
    pty: Option<Pty>,
    model: MonitorModel,
    cmds: FrameDecoder,
    out: Vec<u8>,
    /// Faults on data packets; a stream of its own so that the bytes of the
    /// data stream depend on the seed only, not on when status was asked.
    faults: Rng,
    /// Faults on status replies.
    status_faults: Rng,
    /// Power noise.
    noise: Rng,
    probe: Option<ActivityProbe>,
    /// Activity power over poll intervals: `(end_ns, watts above baseline)`.
    segments: VecDeque<(i64, f64)>,
    last_poll: i64,
    session: Option<Session>,
    session_no: u16,
    gt: Option<GroundTruthWriter>,
    last_gt_flush: i64,
    stall_done: bool,
    stalled_until: Option<i64>,
    report: SimReport,
}

impl Engine {
    fn new(cfg: SimConfig, pty: Pty, gt: Option<GroundTruthWriter>) -> Engine {
        let mut model = MonitorModel::new(cfg.model, cfg.seed);
        if let Some(raw) = crate::protocol::voltage_to_raw(cfg.initial_voltage_v) {
            model.apply(Command::SetOutputVoltage(raw));
        }
        Engine {
            probe: cfg.follow_pid.map(ActivityProbe::new),
            faults: Rng::new(cfg.seed),
            status_faults: Rng::new(cfg.seed ^ 0x5747_0000),
            noise: Rng::new(cfg.seed ^ 0x4E01_5E00),
            cfg,
            pty: Some(pty),
            model,
            cmds: FrameDecoder::new(),
            out: Vec::with_capacity(1 << 16),
            segments: VecDeque::new(),
            last_poll: mono_ns(),
            session: None,
            session_no: 0,
            gt,
            last_gt_flush: 0,
            stall_done: false,
            stalled_until: None,
            report: SimReport::default(),
        }
    }

    fn run(mut self, shutdown: &AtomicBool) -> Result<SimReport> {
        if self.probe.is_some() {
            self.report.realtime = raise_to_realtime();
            if !self.report.realtime {
                tracing::warn!(
                    "monsoon-sim: no real-time priority (needs CAP_SYS_NICE); activity polls \
                     may come late while the followed process loads every core"
                );
            }
        }
        if let Some(p) = self.probe.as_mut() {
            // Prime the per-thread counters.
            let now = mono_ns();
            if let Err(e) = p.poll(now) {
                self.report.follow_error = Some(e.to_string());
                self.probe = None;
            }
            self.last_poll = now;
        }
        let mut buf = [0u8; 4096];
        while !shutdown.load(Ordering::Relaxed) {
            let now = mono_ns();
            self.poll_activity(now);
            if self.generate(now)? {
                break;
            }
            let Some(pty) = self.pty.as_ref() else { break };
            let n = pty
                .write(&self.out)
                .map_err(|e| Error::io("write to the pty", e))?;
            self.out.drain(..n);
            self.report.bytes_sent += n as u64;
            let (readable, _) = pty
                .wait(self.timeout(mono_ns()), !self.out.is_empty())
                .map_err(|e| Error::io("poll the pty", e))?;
            if readable {
                let n = pty
                    .read(&mut buf)
                    .map_err(|e| Error::io("read the pty", e))?;
                self.commands(&buf[..n]);
            }
            if let Some(gt) = self.gt.as_mut() {
                if now - self.last_gt_flush > 100_000_000 {
                    gt.flush()?;
                    self.last_gt_flush = now;
                }
            }
        }
        if let Some(gt) = self.gt.as_mut() {
            gt.flush()?;
        }
        if let Some(pty) = self.pty.take() {
            pty.close();
        }
        Ok(self.report)
    }

    /// How long the loop may wait for the host: until the next activity poll is due when
    /// following a process, 1 ms while sampling, 20 ms when idle.
    fn timeout(&self, now: i64) -> Duration {
        if self.probe.is_some() {
            let due = self.last_poll + self.cfg.poll_interval.as_nanos() as i64;
            Duration::from_nanos((due - now).clamp(0, 1_000_000) as u64)
        } else if self.session.is_some() {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(20)
        }
    }

    fn commands(&mut self, bytes: &[u8]) {
        self.cmds.push(bytes);
        let mut cmds = Vec::new();
        while let Some((_, p)) = self.cmds.next_frame(|p| Command::decode(p).is_ok()) {
            if let Ok(c) = Command::decode(p) {
                cmds.push(c);
            }
        }
        for c in cmds {
            self.report.commands += 1;
            match self.model.apply(c) {
                Effect::None => {}
                Effect::SendStatus => {
                    let mut frame = Vec::with_capacity(60);
                    self.model.encode_status(&mut frame);
                    self.send(frame, false);
                }
                Effect::Start => {
                    self.session_no = self.session_no.wrapping_add(1);
                    self.report.sessions = self.session_no;
                    self.session = Some(Session {
                        t_start: mono_ns(),
                        next_index: 0,
                    });
                    tracing::debug!(session = self.session_no, "monsoon-sim: sampling");
                }
                Effect::Stop => self.session = None,
            }
        }
    }

    /// Queue one frame, with fault injection; returns what happened to it.
    /// Data packets may be dropped; any frame may be corrupted.
    fn send(&mut self, mut frame: Vec<u8>, data: bool) -> Fate {
        let (drop_rate, corrupt_rate) = (self.cfg.drop_rate, self.cfg.corrupt_rate);
        let rng = if data {
            &mut self.faults
        } else {
            &mut self.status_faults
        };
        if data && rng.chance(drop_rate) {
            self.report.dropped_packets += 1;
            return Fate::Dropped;
        }
        let mut fate = Fate::Sent;
        if corrupt_rate > 0.0 {
            for b in frame.iter_mut() {
                if rng.chance(corrupt_rate) {
                    *b ^= rng.range_i32(1, 255) as u8;
                    self.report.corrupted_bytes += 1;
                    fate = Fate::Corrupted;
                }
            }
            if fate == Fate::Corrupted {
                self.report.corrupted_packets += 1;
            }
        }
        self.out.extend_from_slice(&frame);
        fate
    }

    fn poll_activity(&mut self, now: i64) {
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        if now - self.last_poll < self.cfg.poll_interval.as_nanos() as i64 {
            return;
        }
        let t0 = mono_ns();
        let watts = match probe.poll(t0) {
            Ok(a) => self.cfg.power.activity_w(&a),
            Err(e) => {
                tracing::warn!(pid = probe.pid(), error = %e, "monsoon-sim: followed process gone; baseline only");
                self.report.follow_error = Some(e.to_string());
                self.probe = None;
                0.0
            }
        };
        let t = (t0 + mono_ns()) / 2;
        self.segments.push_back((t, watts));
        self.last_poll = t;
    }

    /// Activity watts at device time `t` (the poll interval containing it).
    fn activity_at(&mut self, t: i64) -> f64 {
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.0 < t) {
            self.segments.pop_front();
        }
        self.segments.front().map_or(0.0, |s| s.1)
    }

    fn t_of(&self, s: &Session, index: u64) -> i64 {
        let per = 1e9 / f64::from(SAMPLE_RATE_HZ) / (1.0 + self.cfg.drift_ppm * 1e-6);
        s.t_start + self.cfg.offset_ns + (index as f64 * per).round() as i64
    }

    fn at_index(t_s: Option<f64>) -> Option<u64> {
        t_s.map(|t| (t.max(0.0) * f64::from(SAMPLE_RATE_HZ)).round() as u64)
    }

    /// Generate every packet that is due. Returns true when the disconnect
    /// fault has closed the pty.
    fn generate(&mut self, now: i64) -> Result<bool> {
        let Some(mut s) = self.session.take() else {
            return Ok(false);
        };
        let r = self.generate_session(&mut s, now);
        if !matches!(r, Ok(true)) {
            self.session = Some(s);
        }
        r
    }

    fn generate_session(&mut self, s: &mut Session, now: i64) -> Result<bool> {
        if let Some(until) = self.stalled_until {
            if now < until {
                return Ok(false);
            }
            self.stalled_until = None;
        }
        let n = self.cfg.model.records_per_packet as u64;
        let limit = if self.probe.is_some() {
            self.last_poll
        } else {
            now
        };
        let stall_at = Self::at_index(self.cfg.stall_at_s);
        let disconnect_at = Self::at_index(self.cfg.disconnect_at_s);
        let overcurrent_at = Self::at_index(self.cfg.overcurrent_at_s);
        while self.out.len() < OUT_CAP {
            let i = s.next_index;
            if self.t_of(s, i + n - 1) > limit {
                break;
            }
            if disconnect_at.is_some_and(|d| i >= d) {
                self.disconnect()?;
                return Ok(true);
            }
            if !self.stall_done && stall_at.is_some_and(|x| i >= x) {
                self.stall_done = true;
                self.stalled_until = Some(now + self.cfg.stall_ms as i64 * 1_000_000);
                tracing::debug!(index = i, ms = self.cfg.stall_ms, "monsoon-sim: stall");
                break;
            }
            if overcurrent_at.is_some_and(|x| i >= x)
                && !self.model.over_current()
                && self.model.output_v() > 0.0
            {
                self.model.trip_over_current();
                self.cfg.overcurrent_at_s = None;
            }
            if self.model.calibration_due() {
                for kind in [CalKind::Zero, CalKind::Reference] {
                    let mut f = Vec::with_capacity(24);
                    self.model.encode_calibration(kind, &mut f);
                    self.send(f, true);
                    self.report.packets += 1;
                }
            }
            let mut truth = Vec::with_capacity(n as usize);
            let mut power = Vec::with_capacity(n as usize);
            for k in 0..n {
                let t = self.t_of(s, i + k);
                let (ts, p) = self.sample_at(t);
                truth.push(ts);
                power.push((t, p));
            }
            let mut f = Vec::with_capacity(64);
            self.model.encode_measurement(&truth, &mut f);
            let fate = self.send(f, true);
            self.report.packets += 1;
            self.report.samples += n;
            if let Some(gt) = self.gt.as_mut() {
                for (k, (t, p)) in power.into_iter().enumerate() {
                    gt.push(&TruthRecord {
                        session: self.session_no,
                        index: i + k as u64,
                        t_ns: t,
                        power_w: p as f32,
                        fate,
                    })?;
                }
            }
            s.next_index += n;
        }
        Ok(false)
    }

    /// True currents and total power of the device at time `t`.
    fn sample_at(&mut self, t: i64) -> (TrueSample, f64) {
        let v = self.model.output_v();
        if v <= 0.0 {
            return (TrueSample::default(), 0.0);
        }
        let activity = self.activity_at(t);
        let p =
            (self.cfg.power.baseline_w + activity + self.cfg.power.noise_w * self.noise.normal())
                .max(0.0);
        let usb = if self.model.usb_mode() == 0 {
            0.0
        } else {
            self.cfg.usb_share
        };
        let ts = TrueSample {
            main_a: (p * (1.0 - usb) / f64::from(v)) as f32,
            usb_a: (p * usb / 5.0) as f32,
            aux_a: 0.0,
            volts: v,
        };
        (ts, p)
    }

    /// Send what is queued (up to 2 s), then close the pty.
    fn disconnect(&mut self) -> Result<()> {
        if let Some(pty) = self.pty.take() {
            let t0 = mono_ns();
            while !self.out.is_empty() && mono_ns() - t0 < 2_000_000_000 {
                let n = pty
                    .write(&self.out)
                    .map_err(|e| Error::io("write to the pty", e))?;
                self.out.drain(..n);
                self.report.bytes_sent += n as u64;
                if n == 0 {
                    let _ = pty.wait(Duration::from_millis(5), true);
                }
            }
            // A hang-up flushes the host's unread input: let it read first.
            let t0 = mono_ns();
            let mut quiet = 0;
            while quiet < 3 && mono_ns() - t0 < 2_000_000_000 {
                quiet = if pty.pending_input() == 0 {
                    quiet + 1
                } else {
                    0
                };
                std::thread::sleep(Duration::from_millis(5));
            }
            pty.close();
        }
        self.report.disconnected = true;
        tracing::info!("monsoon-sim: disconnected (fault injection)");
        Ok(())
    }
}
