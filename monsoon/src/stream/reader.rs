//! The reader thread: owns the read side of the port for the monitor's
//! lifetime, decodes everything, answers status requests and, while a stream
//! is open, hands events to the caller through a bounded channel.
//!
//! The caller is never blocked by the reader. When the caller falls behind
//! and the channel is full, the reader waits (and stops reading the port), so
//! back-pressure reaches the monitor, whose lost packets then show up as
//! sequence gaps — loss is always accounted, never silent.

use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{
    self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{DecodeStats, DecoderOptions, StreamDecoder, StreamError, StreamEvent};
use crate::protocol::Status;

/// The caller's end of a sampling stream. Events arrive in order; the
/// stream ends (`recv` returns `None`) after `Monitor::stop` has flushed the
/// last samples, or after a [`StreamEvent::Error`].
#[derive(Debug)]
pub struct SampleStream {
    rx: Receiver<StreamEvent>,
}

impl SampleStream {
    pub(crate) fn new(rx: Receiver<StreamEvent>) -> Self {
        SampleStream { rx }
    }

    /// Wait for the next event; `None` when the stream has ended.
    pub fn recv(&self) -> Option<StreamEvent> {
        self.rx.recv().ok()
    }

    /// Wait at most `timeout`. `Err(Timeout)` means nothing yet,
    /// `Err(Disconnected)` that the stream has ended.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<StreamEvent, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// Take an event if one is ready.
    pub fn try_recv(&self) -> Result<StreamEvent, TryRecvError> {
        self.rx.try_recv()
    }

    /// Blocking iterator over the remaining events.
    pub fn iter(&self) -> impl Iterator<Item = StreamEvent> + '_ {
        self.rx.iter()
    }
}

impl IntoIterator for SampleStream {
    type Item = StreamEvent;
    type IntoIter = mpsc::IntoIter<StreamEvent>;
    fn into_iter(self) -> Self::IntoIter {
        self.rx.into_iter()
    }
}

/// Requests from the monitor to its reader.
pub(crate) enum ReaderCmd {
    /// Open a stream: decode from a fresh session into `sink`.
    Begin {
        sink: SyncSender<StreamEvent>,
        opts: DecoderOptions,
        ack: Sender<()>,
    },
    /// Flush and close the open stream.
    End { ack: Sender<()> },
}

/// Tunables of the reader thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReaderConfig {
    pub batch_samples: usize,
    pub batch_latency: Duration,
    pub stall_after: Duration,
}

/// State shared between the monitor and its reader.
#[derive(Debug, Default)]
pub(crate) struct ReaderShared {
    pub stop: AtomicBool,
    pub last_data: Mutex<Option<Instant>>,
    pub dead: Mutex<Option<String>>,
    pub stats: Mutex<DecodeStats>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Reader<R> {
    port: R,
    cfg: ReaderConfig,
    shared: Arc<ReaderShared>,
    cmds: Receiver<ReaderCmd>,
    status_tx: Sender<Status>,
    decoder: StreamDecoder,
    sink: Option<SyncSender<StreamEvent>>,
    /// Events decoded but not yet handed over.
    pending: Vec<StreamEvent>,
    pending_since: Option<Instant>,
    last_data: Instant,
    stall_reported: bool,
}

/// Start the reader thread on `port` (a clone of the monitor's port).
pub(crate) fn spawn_reader<R: Read + Send + 'static>(
    port: R,
    cfg: ReaderConfig,
    shared: Arc<ReaderShared>,
    cmds: Receiver<ReaderCmd>,
    status_tx: Sender<Status>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("monsoon-reader".into())
        .spawn(move || {
            let mut r = Reader {
                port,
                cfg,
                shared,
                cmds,
                status_tx,
                decoder: StreamDecoder::new(DecoderOptions::default()),
                sink: None,
                pending: Vec::new(),
                pending_since: None,
                last_data: Instant::now(),
                stall_reported: false,
            };
            r.run();
        })
}

impl<R: Read> Reader<R> {
    fn run(&mut self) {
        let mut buf = vec![0u8; 16 * 1024];
        let mut events = Vec::new();
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.commands();
            match self.port.read(&mut buf) {
                Ok(0) => return self.die("end of file on the port".into()),
                Ok(n) => {
                    self.decoder.push(&buf[..n], &mut events);
                    self.route(&mut events);
                }
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                    // A read timeout: the line is quiet, nothing is in flight.
                    self.decoder.idle(&mut events);
                    self.route(&mut events);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.die(e.to_string()),
            }
            self.check_stall();
            self.flush(false);
            *lock(&self.shared.stats) = self.decoder.stats();
        }
        self.flush(true);
    }

    fn commands(&mut self) {
        loop {
            match self.cmds.try_recv() {
                Ok(ReaderCmd::Begin { sink, opts, ack }) => {
                    self.flush(true);
                    self.decoder.restart(opts);
                    self.sink = Some(sink);
                    self.last_data = Instant::now();
                    self.stall_reported = false;
                    let _ = ack.send(());
                }
                Ok(ReaderCmd::End { ack }) => {
                    let mut tail = Vec::new();
                    self.decoder.finish(&mut tail);
                    self.route(&mut tail);
                    self.flush(true);
                    self.sink = None;
                    let _ = ack.send(());
                }
                Err(_) => return,
            }
        }
    }

    /// Sort decoded events: statuses to the control side, the rest to the
    /// pending batch while a stream is open.
    fn route(&mut self, events: &mut Vec<StreamEvent>) {
        for ev in events.drain(..) {
            match &ev {
                StreamEvent::Status(s) => {
                    let _ = self.status_tx.send(*s);
                }
                _ => {
                    let now = Instant::now();
                    self.last_data = now;
                    self.stall_reported = false;
                    *lock(&self.shared.last_data) = Some(now);
                }
            }
            if self.sink.is_none() {
                continue;
            }
            if self.pending_since.is_none() {
                self.pending_since = Some(Instant::now());
            }
            match (self.pending.last_mut(), ev) {
                (Some(StreamEvent::Samples(prev)), StreamEvent::Samples(mut more)) => {
                    prev.append(&mut more)
                }
                (_, ev) => self.pending.push(ev),
            }
        }
    }

    fn check_stall(&mut self) {
        if self.sink.is_none() || self.stall_reported {
            return;
        }
        let silent = self.last_data.elapsed();
        if silent >= self.cfg.stall_after {
            self.stall_reported = true;
            self.pending.push(StreamEvent::Stalled {
                at_index: self.decoder.next_index(),
                silent_ms: silent.as_millis() as u64,
            });
            self.pending_since.get_or_insert_with(Instant::now);
        }
    }

    /// Hand pending events over when the batch is big or old enough, or
    /// holds something other than samples (or when `force`d).
    fn flush(&mut self, force: bool) {
        if self.pending.is_empty() {
            return;
        }
        let due = force
            || self.pending.len() > 1
            || !matches!(self.pending.first(), Some(StreamEvent::Samples(_)))
            || matches!(self.pending.first(), Some(StreamEvent::Samples(v)) if v.len() >= self.cfg.batch_samples)
            || self
                .pending_since
                .is_some_and(|t| t.elapsed() >= self.cfg.batch_latency);
        if !due {
            return;
        }
        self.pending_since = None;
        let events = std::mem::take(&mut self.pending);
        for ev in events {
            if !self.send(ev) {
                break;
            }
        }
    }

    /// Blocking send that gives up when the caller hung up or the monitor is
    /// closing.
    fn send(&mut self, mut ev: StreamEvent) -> bool {
        let Some(sink) = &self.sink else {
            return false;
        };
        loop {
            match sink.try_send(ev) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) => {
                    if self.shared.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    ev = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Disconnected(_)) => {
                    // The caller dropped its stream: keep decoding, stop delivering.
                    self.sink = None;
                    return false;
                }
            }
        }
    }

    fn die(&mut self, reason: String) {
        let mut tail = Vec::new();
        self.decoder.finish(&mut tail);
        self.route(&mut tail);
        let stats = self.decoder.stats();
        let last_index = stats.next_index.checked_sub(1);
        tracing::warn!(%reason, ?last_index, "monsoon reader: port closed");
        self.pending
            .push(StreamEvent::Error(StreamError::Disconnected {
                last_index,
                reason: reason.clone(),
            }));
        self.flush(true);
        *lock(&self.shared.stats) = stats;
        *lock(&self.shared.dead) = Some(reason);
        self.sink = None;
    }
}
