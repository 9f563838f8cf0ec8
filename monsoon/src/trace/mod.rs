//! Trace files: samples on disk as they arrive, and Monsoon's own CSV.
//!
//! # Why a format of our own
//! The issue allows Arrow IPC / Parquet through polars or a compact binary
//! with an index. Polars would be the largest dependency in the workspace and
//! builds for many minutes on the two-core machines this lab runs on, while
//! what a trace needs is small: append-only, every chunk self-checking so a
//! crash loses at most the chunk being written, an index for random access,
//! and a reader that needs nothing but std. A results table for analysis is
//! the harness's business; it can read these with [`TraceReader`].
//!
//! # Layout (`.mtrace`; all integers little-endian)
//! ```text
//! header   "MSNTRACE" | u16 version=1 | u16 0 | u32 meta_len | meta JSON | u32 crc32(meta)
//! chunk*   "CHNK" | u32 body_len | u32 crc32(body) | u32 0 | body
//!   body   u64 first_index | u32 n_samples | u32 n_runs | u32 n_events | u32 0
//!          runs:   n_runs   × (u64 start_index, u32 len, u32 0)      samples are runs of
//!          events: n_events × 32 bytes (see TraceEvent)             consecutive indices
//!          columns: f32 main_A[n] | f32 usb_A[n] | f32 aux_A[n] | f32 volts[n]
//! index    "INDX" | u32 n_chunks | u32 crc32(entries) | u32 0
//!          entries: n × (u64 chunk_offset, u64 first_index, u64 end_index, u32 n_samples, u32 n_events)
//! footer   u64 index_offset | u64 total_samples | "MSNTEND1"
//! ```
//! A chunk (default 5000 samples, one second) is written with one `write`
//! and, by default, `fdatasync`ed. The index and footer are written by
//! [`TraceWriter::finish`] (or on drop). A file without them — the recorder
//! was killed — is read by scanning the chunks and stopping at the first
//! incomplete or corrupt one; [`TraceReader::recovery`] says what was cut.
//! 16 bytes per sample: an hour at 5 kHz is 288 MB.

mod crc32;
mod csv;

pub use self::csv::{read_csv, write_csv, CsvWriter, CSV_HEADER};
pub use crc32::crc32;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::stream::{Gap, StreamError, StreamEvent};
use crate::{Error, Result, Sample, SAMPLE_RATE_HZ};

const FILE_MAGIC: &[u8; 8] = b"MSNTRACE";
const FOOTER_MAGIC: &[u8; 8] = b"MSNTEND1";
const CHUNK_MAGIC: &[u8; 4] = b"CHNK";
const INDEX_MAGIC: &[u8; 4] = b"INDX";
const VERSION: u16 = 1;
const CHUNK_HEADER_LEN: usize = 16;
const EVENT_LEN: usize = 32;
const RUN_LEN: usize = 16;
const INDEX_ENTRY_LEN: usize = 32;
const FOOTER_LEN: u64 = 24;
/// Largest chunk body a reader accepts (guards allocations on corrupt input).
const MAX_BODY: usize = 1 << 30;

/// Free-form description stored in the header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceMeta {
    /// Samples per second (5000).
    pub sample_rate_hz: u32,
    /// Where the samples came from ("monsoon /dev/ttyACM0", "decode raw.bin", ...).
    pub source: String,
    /// Monitor serial number, when known.
    pub serial_number: Option<u16>,
    /// Output voltage setting, when known.
    pub output_voltage_v: Option<f32>,
    /// Wall-clock time the recording began (Unix ms) — a label, never a timestamp of samples.
    pub created_unix_ms: u64,
    /// Anything else worth keeping (campaign, configuration, ...).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

impl TraceMeta {
    /// Metadata with the native rate, a source and the current time.
    pub fn new(source: impl Into<String>) -> Self {
        TraceMeta {
            sample_rate_hz: SAMPLE_RATE_HZ,
            source: source.into(),
            created_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            ..Default::default()
        }
    }
}

/// Non-sample events kept in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceEvent {
    /// Samples lost in transport.
    Gap(Gap),
    /// Over-current / thermal kill flagged at this index.
    OverCurrent {
        /// First flagged index.
        index: u64,
    },
    /// Samples dropped before calibration.
    Uncalibrated {
        /// First dropped index.
        from_index: u64,
        /// Number dropped.
        count: u64,
    },
    /// Data stopped arriving for a while.
    Stalled {
        /// Next index expected.
        at_index: u64,
        /// Milliseconds of silence.
        silent_ms: u64,
    },
    /// The monitor disconnected; the trace ends here.
    Disconnected {
        /// Last index decoded, if any.
        last_index: Option<u64>,
    },
}

impl TraceEvent {
    /// The event a stream event is stored as, if any.
    pub fn from_stream(ev: &StreamEvent) -> Option<TraceEvent> {
        Some(match ev {
            StreamEvent::Gap(g) => TraceEvent::Gap(*g),
            StreamEvent::OverCurrent { index } => TraceEvent::OverCurrent { index: *index },
            StreamEvent::Uncalibrated { from_index, count } => TraceEvent::Uncalibrated {
                from_index: *from_index,
                count: *count,
            },
            StreamEvent::Stalled {
                at_index,
                silent_ms,
            } => TraceEvent::Stalled {
                at_index: *at_index,
                silent_ms: *silent_ms,
            },
            StreamEvent::Error(StreamError::Disconnected { last_index, .. }) => {
                TraceEvent::Disconnected {
                    last_index: *last_index,
                }
            }
            StreamEvent::Samples(_) | StreamEvent::Status(_) => return None,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        // kind u8 | b1 u8 | b2 u8 | 0 u8 | a u32 | x u64 | y u64 | c u32 | 0 u32
        let (kind, b1, b2, a, x, y, c) = match *self {
            TraceEvent::Gap(g) => (
                1u8,
                g.seq_before,
                g.seq_after,
                g.lost_packets,
                g.from_index,
                g.lost,
                g.lost_calibration_packets,
            ),
            TraceEvent::OverCurrent { index } => (2, 0, 0, 0, index, 0, 0),
            TraceEvent::Uncalibrated { from_index, count } => (3, 0, 0, 0, from_index, count, 0),
            TraceEvent::Stalled {
                at_index,
                silent_ms,
            } => (4, 0, 0, 0, at_index, silent_ms, 0),
            TraceEvent::Disconnected { last_index } => {
                (5, 0, 0, 0, last_index.unwrap_or(u64::MAX), 0, 0)
            }
        };
        out.extend_from_slice(&[kind, b1, b2, 0]);
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&x.to_le_bytes());
        out.extend_from_slice(&y.to_le_bytes());
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Option<TraceEvent> {
        let a = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?);
        let x = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
        let y = u64::from_le_bytes(b.get(16..24)?.try_into().ok()?);
        let c = u32::from_le_bytes(b.get(24..28)?.try_into().ok()?);
        Some(match b[0] {
            1 => TraceEvent::Gap(Gap {
                from_index: x,
                lost: y,
                seq_before: b[1],
                seq_after: b[2],
                lost_packets: a,
                lost_calibration_packets: c,
            }),
            2 => TraceEvent::OverCurrent { index: x },
            3 => TraceEvent::Uncalibrated {
                from_index: x,
                count: y,
            },
            4 => TraceEvent::Stalled {
                at_index: x,
                silent_ms: y,
            },
            5 => TraceEvent::Disconnected {
                last_index: (x != u64::MAX).then_some(x),
            },
            _ => return None,
        })
    }
}

/// What a finished recording holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceSummary {
    /// Samples written.
    pub samples: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Events written.
    pub events: u64,
    /// Samples lost in gaps.
    pub lost_samples: u64,
    /// First sample index.
    pub first_index: Option<u64>,
    /// One past the last sample index.
    pub end_index: u64,
    /// Main-channel energy, `Σ V·I / rate`, in joules.
    pub energy_j: f64,
    /// Main-channel charge in mAh.
    pub charge_mah: f64,
}

impl TraceSummary {
    fn add(&mut self, s: &Sample) {
        self.samples += 1;
        self.first_index.get_or_insert(s.index);
        self.end_index = s.index + 1;
        self.energy_j += s.main_power_w() / f64::from(SAMPLE_RATE_HZ);
        self.charge_mah += f64::from(s.main_current_a) / f64::from(SAMPLE_RATE_HZ) / 3.6;
    }

    fn event(&mut self, e: &TraceEvent) {
        self.events += 1;
        if let TraceEvent::Gap(g) = e {
            self.lost_samples += g.lost;
        }
    }
}

impl std::fmt::Display for TraceSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.samples as f64 / f64::from(SAMPLE_RATE_HZ);
        write!(
            f,
            "{} samples ({secs:.3} s), {} lost in gaps, {} events, energy {:.6} J, charge {:.6} mAh, mean power {:.4} W",
            self.samples,
            self.lost_samples,
            self.events,
            self.energy_j,
            self.charge_mah,
            if secs > 0.0 { self.energy_j / secs } else { 0.0 }
        )
    }
}

/// Where stream events go when recording: a trace file or a CSV file.
pub trait SampleSink {
    /// Store one stream event (samples and the events a trace keeps).
    fn write_event(&mut self, ev: &StreamEvent) -> Result<()>;
    /// Flush everything and close.
    fn finish(self: Box<Self>) -> Result<TraceSummary>;
}

/// A sink chosen by extension: `.csv` → Monsoon's CSV, anything else → trace.
pub fn create_sink(path: &Path, meta: &TraceMeta) -> Result<Box<dyn SampleSink>> {
    if is_csv(path) {
        Ok(Box::new(CsvWriter::create(path)?))
    } else {
        Ok(Box::new(TraceWriter::create(path, meta)?))
    }
}

/// Whether a path names a CSV file.
pub fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// How a [`TraceWriter`] writes.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Samples per chunk (what a crash can lose). Default 5000.
    pub chunk_samples: usize,
    /// `fdatasync` after every chunk, so a host crash loses at most the
    /// chunk being written. Default true.
    pub sync: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            chunk_samples: 5000,
            sync: true,
        }
    }
}

#[derive(Debug, Default)]
struct ChunkBuf {
    runs: Vec<(u64, u32)>,
    events: Vec<TraceEvent>,
    main: Vec<f32>,
    usb: Vec<f32>,
    aux: Vec<f32>,
    volts: Vec<f32>,
}

impl ChunkBuf {
    fn is_empty(&self) -> bool {
        self.main.is_empty() && self.events.is_empty()
    }

    fn encode(&self) -> Vec<u8> {
        let n = self.main.len();
        let mut b = Vec::with_capacity(
            24 + self.runs.len() * RUN_LEN + self.events.len() * EVENT_LEN + n * 16,
        );
        let first = self.runs.first().map_or(u64::MAX, |r| r.0);
        b.extend_from_slice(&first.to_le_bytes());
        for v in [n, self.runs.len(), self.events.len(), 0] {
            b.extend_from_slice(&(v as u32).to_le_bytes());
        }
        for &(start, len) in &self.runs {
            b.extend_from_slice(&start.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        for e in &self.events {
            e.encode(&mut b);
        }
        for col in [&self.main, &self.usb, &self.aux, &self.volts] {
            for v in col.iter() {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    fn clear(&mut self) {
        self.runs.clear();
        self.events.clear();
        self.main.clear();
        self.usb.clear();
        self.aux.clear();
        self.volts.clear();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    offset: u64,
    first_index: u64,
    end_index: u64,
    samples: u32,
    events: u32,
}

/// Writes a trace file chunk by chunk.
#[derive(Debug)]
pub struct TraceWriter {
    path: PathBuf,
    file: File,
    opts: WriterOptions,
    offset: u64,
    index: Vec<IndexEntry>,
    cur: ChunkBuf,
    last_index: Option<u64>,
    summary: TraceSummary,
    finished: bool,
}

impl TraceWriter {
    /// Create (or truncate) a trace file with default options.
    pub fn create(path: impl AsRef<Path>, meta: &TraceMeta) -> Result<TraceWriter> {
        Self::create_with(path, meta, WriterOptions::default())
    }

    /// Create (or truncate) a trace file.
    pub fn create_with(
        path: impl AsRef<Path>,
        meta: &TraceMeta,
        opts: WriterOptions,
    ) -> Result<TraceWriter> {
        let path = path.as_ref().to_path_buf();
        let mut file =
            File::create(&path).map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        let meta_json = serde_json::to_vec(meta)
            .map_err(|e| Error::InvalidArgument(format!("trace metadata: {e}")))?;
        let mut h = Vec::with_capacity(20 + meta_json.len());
        h.extend_from_slice(FILE_MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&(meta_json.len() as u32).to_le_bytes());
        h.extend_from_slice(&meta_json);
        h.extend_from_slice(&crc32(&meta_json).to_le_bytes());
        file.write_all(&h)
            .and_then(|_| if opts.sync { file.sync_data() } else { Ok(()) })
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Ok(TraceWriter {
            path,
            file,
            opts: WriterOptions {
                chunk_samples: opts.chunk_samples.clamp(1, 1 << 24),
                ..opts
            },
            offset: h.len() as u64,
            index: Vec::new(),
            cur: ChunkBuf::default(),
            last_index: None,
            summary: TraceSummary::default(),
            finished: false,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one sample; indices must increase.
    pub fn push_sample(&mut self, s: &Sample) -> Result<()> {
        if let Some(last) = self.last_index {
            if s.index <= last {
                return Err(Error::InvalidArgument(format!(
                    "{}: sample index {} does not follow {last}",
                    self.path.display(),
                    s.index
                )));
            }
        }
        self.last_index = Some(s.index);
        match self.cur.runs.last_mut() {
            Some((start, len)) if *start + u64::from(*len) == s.index => *len += 1,
            _ => self.cur.runs.push((s.index, 1)),
        }
        self.cur.main.push(s.main_current_a);
        self.cur.usb.push(s.usb_current_a);
        self.cur.aux.push(s.aux_current_a);
        self.cur.volts.push(s.voltage_v);
        self.summary.add(s);
        if self.cur.main.len() >= self.opts.chunk_samples {
            self.flush_chunk()?;
        }
        Ok(())
    }

    /// Append samples.
    pub fn push_samples(&mut self, samples: &[Sample]) -> Result<()> {
        samples.iter().try_for_each(|s| self.push_sample(s))
    }

    /// Append an event (kept in the chunk being built).
    pub fn push_event(&mut self, e: TraceEvent) {
        self.summary.event(&e);
        self.cur.events.push(e);
    }

    /// Write the chunk being built now, even if not full.
    pub fn flush_chunk(&mut self) -> Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let body = self.cur.encode();
        let mut frame = Vec::with_capacity(CHUNK_HEADER_LEN + body.len());
        frame.extend_from_slice(CHUNK_MAGIC);
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32(&body).to_le_bytes());
        frame.extend_from_slice(&0u32.to_le_bytes());
        frame.extend_from_slice(&body);
        self.file
            .write_all(&frame)
            .and_then(|_| {
                if self.opts.sync {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| Error::io(format!("write {}", self.path.display()), e))?;
        let first = self.cur.runs.first().map_or(u64::MAX, |r| r.0);
        let end = self
            .cur
            .runs
            .last()
            .map_or(u64::MAX, |r| r.0 + u64::from(r.1));
        self.index.push(IndexEntry {
            offset: self.offset,
            first_index: first,
            end_index: end,
            samples: self.cur.main.len() as u32,
            events: self.cur.events.len() as u32,
        });
        self.offset += frame.len() as u64;
        self.summary.chunks += 1;
        self.cur.clear();
        Ok(())
    }

    fn write_index(&mut self) -> Result<()> {
        self.flush_chunk()?;
        let mut entries = Vec::with_capacity(self.index.len() * INDEX_ENTRY_LEN);
        for e in &self.index {
            entries.extend_from_slice(&e.offset.to_le_bytes());
            entries.extend_from_slice(&e.first_index.to_le_bytes());
            entries.extend_from_slice(&e.end_index.to_le_bytes());
            entries.extend_from_slice(&e.samples.to_le_bytes());
            entries.extend_from_slice(&e.events.to_le_bytes());
        }
        let mut b = Vec::with_capacity(16 + entries.len() + FOOTER_LEN as usize);
        b.extend_from_slice(INDEX_MAGIC);
        b.extend_from_slice(&(self.index.len() as u32).to_le_bytes());
        b.extend_from_slice(&crc32(&entries).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&entries);
        b.extend_from_slice(&self.offset.to_le_bytes());
        b.extend_from_slice(&self.summary.samples.to_le_bytes());
        b.extend_from_slice(FOOTER_MAGIC);
        self.file
            .write_all(&b)
            .and_then(|_| self.file.sync_all())
            .map_err(|e| Error::io(format!("write {}", self.path.display()), e))
    }

    /// Write the last chunk, the index and the footer.
    pub fn finish(mut self) -> Result<TraceSummary> {
        self.finished = true;
        self.write_index()?;
        Ok(self.summary.clone())
    }

    /// Summary of what was pushed so far.
    pub fn summary(&self) -> &TraceSummary {
        &self.summary
    }
}

impl SampleSink for TraceWriter {
    fn write_event(&mut self, ev: &StreamEvent) -> Result<()> {
        match ev {
            StreamEvent::Samples(v) => self.push_samples(v),
            other => {
                if let Some(e) = TraceEvent::from_stream(other) {
                    self.push_event(e);
                    if matches!(e, TraceEvent::Disconnected { .. }) {
                        self.flush_chunk()?;
                    }
                }
                Ok(())
            }
        }
    }

    fn finish(self: Box<Self>) -> Result<TraceSummary> {
        TraceWriter::finish(*self)
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(e) = self.write_index() {
                tracing::error!(error = %e, "trace {} left without index", self.path.display());
            }
        }
    }
}

/// One chunk's contents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    /// Samples in index order.
    pub samples: Vec<Sample>,
    /// Events stored with them.
    pub events: Vec<TraceEvent>,
}

/// Location and extent of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Byte offset of the chunk header.
    pub offset: u64,
    /// First sample index (`u64::MAX` for a chunk of events only).
    pub first_index: u64,
    /// One past the last sample index.
    pub end_index: u64,
    /// Samples in the chunk.
    pub samples: u32,
    /// Events in the chunk.
    pub events: u32,
}

/// What was cut from a file that had no valid index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of whole, valid chunks (everything readable ends here).
    pub valid_bytes: u64,
    /// Size of the file.
    pub file_bytes: u64,
    /// Why the scan stopped before the end, if it did.
    pub stopped: Option<String>,
}

/// Everything in a trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceData {
    /// Header metadata.
    pub meta: TraceMeta,
    /// All samples.
    pub samples: Vec<Sample>,
    /// All events.
    pub events: Vec<TraceEvent>,
}

/// Reads a trace file, with or without its index.
#[derive(Debug)]
pub struct TraceReader {
    path: PathBuf,
    file: File,
    meta: TraceMeta,
    chunks: Vec<ChunkInfo>,
    recovery: Option<Recovery>,
}

impl TraceReader {
    /// Open a trace: use the index if the footer is intact, else scan.
    pub fn open(path: impl AsRef<Path>) -> Result<TraceReader> {
        let path = path.as_ref().to_path_buf();
        let mut file =
            File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        let fmt = |offset: u64, msg: String| Error::Format {
            path: path.clone(),
            offset,
            msg,
        };
        let mut head = [0u8; 16];
        read_exact_at(&mut file, 0, &mut head)
            .map_err(|_| fmt(0, "too short for a trace header".into()))?;
        if &head[..8] != FILE_MAGIC {
            return Err(fmt(0, "not a monsoon trace (bad magic)".into()));
        }
        let version = u16::from_le_bytes([head[8], head[9]]);
        if version != VERSION {
            return Err(fmt(8, format!("unsupported trace version {version}")));
        }
        let meta_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as u64;
        if 16 + meta_len + 4 > len {
            return Err(fmt(
                12,
                format!("metadata length {meta_len} runs past the end of the file"),
            ));
        }
        let mut meta_buf = vec![0u8; meta_len as usize + 4];
        read_exact_at(&mut file, 16, &mut meta_buf).map_err(|e| fmt(16, e.to_string()))?;
        let (meta_json, crc) = meta_buf.split_at(meta_len as usize);
        if crc32(meta_json).to_le_bytes() != crc {
            return Err(fmt(16, "metadata checksum mismatch".into()));
        }
        let meta: TraceMeta =
            serde_json::from_slice(meta_json).map_err(|e| fmt(16, format!("metadata: {e}")))?;
        let data_start = 16 + meta_len + 4;
        let mut r = TraceReader {
            path: path.clone(),
            file,
            meta,
            chunks: Vec::new(),
            recovery: None,
        };
        if let Some(chunks) = r.read_index(data_start, len) {
            r.chunks = chunks;
        } else {
            r.scan(data_start, len);
        }
        Ok(r)
    }

    /// The index, if the footer and index block are intact.
    fn read_index(&mut self, data_start: u64, len: u64) -> Option<Vec<ChunkInfo>> {
        if len < data_start + FOOTER_LEN + 16 {
            return None;
        }
        let mut foot = [0u8; FOOTER_LEN as usize];
        read_exact_at(&mut self.file, len - FOOTER_LEN, &mut foot).ok()?;
        if &foot[16..] != FOOTER_MAGIC {
            return None;
        }
        let index_off = u64::from_le_bytes(foot[..8].try_into().ok()?);
        if index_off < data_start || index_off + 16 > len - FOOTER_LEN {
            return None;
        }
        let mut ih = [0u8; 16];
        read_exact_at(&mut self.file, index_off, &mut ih).ok()?;
        if &ih[..4] != INDEX_MAGIC {
            return None;
        }
        let n = u32::from_le_bytes(ih[4..8].try_into().ok()?) as u64;
        if index_off + 16 + n * INDEX_ENTRY_LEN as u64 != len - FOOTER_LEN {
            return None;
        }
        let mut entries = vec![0u8; (n as usize) * INDEX_ENTRY_LEN];
        read_exact_at(&mut self.file, index_off + 16, &mut entries).ok()?;
        if crc32(&entries).to_le_bytes() != ih[8..12] {
            return None;
        }
        entries
            .chunks_exact(INDEX_ENTRY_LEN)
            .map(|e| {
                Some(ChunkInfo {
                    offset: u64::from_le_bytes(e[0..8].try_into().ok()?),
                    first_index: u64::from_le_bytes(e[8..16].try_into().ok()?),
                    end_index: u64::from_le_bytes(e[16..24].try_into().ok()?),
                    samples: u32::from_le_bytes(e[24..28].try_into().ok()?),
                    events: u32::from_le_bytes(e[28..32].try_into().ok()?),
                })
            })
            .collect()
    }

    /// Walk the chunks from the start, keeping every complete, valid one.
    fn scan(&mut self, data_start: u64, len: u64) {
        let mut off = data_start;
        let mut stopped = None;
        while off < len {
            match self.load(off, len) {
                Ok((info, _)) => {
                    off += CHUNK_HEADER_LEN as u64 + self.body_len_at(off).unwrap_or(0);
                    self.chunks.push(info);
                }
                Err(e) => {
                    // The index block of a file whose footer was torn off is
                    // not a loss; anything else is.
                    let mut tag = [0u8; 4];
                    let at_index =
                        read_exact_at(&mut self.file, off, &mut tag).is_ok() && &tag == INDEX_MAGIC;
                    if !at_index {
                        stopped = Some(e.to_string());
                    }
                    break;
                }
            }
        }
        self.recovery = Some(Recovery {
            valid_bytes: off,
            file_bytes: len,
            stopped,
        });
    }

    fn body_len_at(&mut self, off: u64) -> Option<u64> {
        let mut h = [0u8; 8];
        read_exact_at(&mut self.file, off, &mut h).ok()?;
        Some(u64::from(u32::from_le_bytes(h[4..8].try_into().ok()?)))
    }

    /// Read and check the chunk at `off`.
    fn load(&mut self, off: u64, len: u64) -> Result<(ChunkInfo, Chunk)> {
        let fmt = |offset: u64, msg: String| Error::Format {
            path: self.path.clone(),
            offset,
            msg,
        };
        let mut h = [0u8; CHUNK_HEADER_LEN];
        read_exact_at(&mut self.file, off, &mut h)
            .map_err(|_| fmt(off, "truncated chunk header".into()))?;
        if &h[..4] != CHUNK_MAGIC {
            return Err(fmt(off, "no chunk starts here (bad chunk magic)".into()));
        }
        let body_len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if body_len > MAX_BODY || off + (CHUNK_HEADER_LEN + body_len) as u64 > len {
            return Err(fmt(
                off,
                format!("chunk of {body_len} bytes runs past the end of the file (truncated)"),
            ));
        }
        let mut body = vec![0u8; body_len];
        read_exact_at(&mut self.file, off + CHUNK_HEADER_LEN as u64, &mut body)
            .map_err(|e| fmt(off, e.to_string()))?;
        if crc32(&body).to_le_bytes() != h[8..12] {
            return Err(fmt(off, "chunk checksum mismatch".into()));
        }
        let chunk = parse_body(&body)
            .map_err(|(rel, msg)| fmt(off + CHUNK_HEADER_LEN as u64 + rel as u64, msg))?;
        let info = ChunkInfo {
            offset: off,
            first_index: chunk.samples.first().map_or(u64::MAX, |s| s.index),
            end_index: chunk.samples.last().map_or(u64::MAX, |s| s.index + 1),
            samples: chunk.samples.len() as u32,
            events: chunk.events.len() as u32,
        };
        Ok((info, chunk))
    }

    /// Header metadata.
    pub fn meta(&self) -> &TraceMeta {
        &self.meta
    }

    /// The chunks, in file order.
    pub fn chunks(&self) -> &[ChunkInfo] {
        &self.chunks
    }

    /// `Some` when the file had no valid index and was recovered by scanning.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// Total samples in the readable chunks.
    pub fn total_samples(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.samples)).sum()
    }

    /// Read chunk `i`.
    pub fn chunk(&mut self, i: usize) -> Result<Chunk> {
        let info = *self.chunks.get(i).ok_or_else(|| {
            Error::InvalidArgument(format!("{}: no chunk {i}", self.path.display()))
        })?;
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", self.path.display()), e))?
            .len();
        Ok(self.load(info.offset, len)?.1)
    }

    /// Read everything.
    pub fn read_all(&mut self) -> Result<TraceData> {
        let mut d = TraceData {
            meta: self.meta.clone(),
            samples: Vec::with_capacity(self.total_samples() as usize),
            events: Vec::new(),
        };
        for i in 0..self.chunks.len() {
            let mut c = self.chunk(i)?;
            d.samples.append(&mut c.samples);
            d.events.append(&mut c.events);
        }
        Ok(d)
    }

    /// Summary computed from the samples and events.
    pub fn summary(&mut self) -> Result<TraceSummary> {
        let mut s = TraceSummary::default();
        for i in 0..self.chunks.len() {
            let c = self.chunk(i)?;
            c.samples.iter().for_each(|x| s.add(x));
            c.events.iter().for_each(|e| s.event(e));
            s.chunks += 1;
        }
        Ok(s)
    }
}

fn read_exact_at(f: &mut File, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
    f.seek(SeekFrom::Start(off))?;
    f.read_exact(buf)
}

/// Parse a chunk body; errors carry the offset inside the body.
fn parse_body(b: &[u8]) -> std::result::Result<Chunk, (usize, String)> {
    let u32at = |o: usize| -> std::result::Result<usize, (usize, String)> {
        b.get(o..o + 4)
            .and_then(|s| s.try_into().ok())
            .map(|a| u32::from_le_bytes(a) as usize)
            .ok_or((o, "chunk body too short".to_string()))
    };
    let u64at = |o: usize| -> std::result::Result<u64, (usize, String)> {
        b.get(o..o + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or((o, "chunk body too short".to_string()))
    };
    let n = u32at(8)?;
    let n_runs = u32at(12)?;
    let n_events = u32at(16)?;
    let runs_at = 24usize;
    let events_at = runs_at
        + n_runs
            .checked_mul(RUN_LEN)
            .ok_or((12, "run count overflows".to_string()))?;
    let cols_at = events_at
        + n_events
            .checked_mul(EVENT_LEN)
            .ok_or((16, "event count overflows".to_string()))?;
    let need = n.checked_mul(16).and_then(|c| c.checked_add(cols_at));
    if need != Some(b.len()) {
        return Err((8, format!("counts ({n} samples, {n_runs} runs, {n_events} events) do not match the chunk size {}", b.len())));
    }
    let mut indices = Vec::with_capacity(n);
    for r in 0..n_runs {
        let o = runs_at + r * RUN_LEN;
        let start = u64at(o)?;
        let len = u32at(o + 8)?;
        if indices.len() + len > n {
            return Err((o, format!("runs cover more than the {n} samples stored")));
        }
        indices.extend((0..len as u64).map(|k| start.saturating_add(k)));
    }
    if indices.len() != n || indices.windows(2).any(|w| w[1] <= w[0]) {
        return Err((
            runs_at,
            "runs do not describe increasing indices for every sample".into(),
        ));
    }
    let mut events = Vec::with_capacity(n_events);
    for k in 0..n_events {
        let o = events_at + k * EVENT_LEN;
        let e = TraceEvent::decode(&b[o..o + EVENT_LEN])
            .ok_or((o, format!("unknown event kind {}", b[o])))?;
        events.push(e);
    }
    let col = |c: usize, i: usize| {
        let o = cols_at + (c * n + i) * 4;
        f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
    };
    let samples = indices
        .into_iter()
        .enumerate()
        .map(|(i, index)| Sample {
            index,
            main_current_a: col(0, i),
            usb_current_a: col(1, i),
            aux_current_a: col(2, i),
            voltage_v: col(3, i),
        })
        .collect();
    Ok(Chunk { samples, events })
}

#[cfg(test)]
mod tests;
