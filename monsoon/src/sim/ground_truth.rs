//! The simulator's ground truth: for every sample it generated, the true
//! device time and the true power, so tests can check the harness's energy
//! and clock alignment against what really happened.
//!
//! # Binary format (default; all little-endian)
//! ```text
//! "MONSGT01" | u32 header_len | header JSON (GroundTruthHeader)
//! records, 24 bytes each:
//!   u64 index | i64 t_ns | f32 power_w | u16 session | u8 fate | u8 0
//! ```
//! `index` is the sample index of the sampling session (restarting at 0
//! with every start command; `session` counts starts from 1). `t_ns` is the
//! CLOCK_MONOTONIC time (of this host, which is the device here) that the
//! sample really corresponds to:
//! `t_ns = t_start + offset_ns + index × 200 000 / (1 + drift_ppm × 1e-6)`,
//! where `t_start` is when the start command arrived — so a fit of
//! `index = a + b · t_ns` recovers offset and drift. `power_w` is the
//! device's true total power (before quantisation). `fate` says what became
//! of the packet carrying it: 0 sent intact, 1 dropped, 2 sent with corrupted
//! bytes. An hour at 5 kHz is 432 MB; the file is optional.
//!
//! # CSV format (when the path ends in `.csv`)
//! A first line `# monsoon-sim ground truth {header JSON}`, then
//! `session,index,t_ns,power_w,fate` and one row per sample.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"MONSGT01";
/// Bytes per binary record.
pub const RECORD_LEN: usize = 24;

/// What became of the packet carrying a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Sent intact.
    Sent,
    /// Dropped (never sent).
    Dropped,
    /// Sent with at least one corrupted byte.
    Corrupted,
}

impl Fate {
    fn to_byte(self) -> u8 {
        match self {
            Fate::Sent => 0,
            Fate::Dropped => 1,
            Fate::Corrupted => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Fate> {
        match b {
            0 => Some(Fate::Sent),
            1 => Some(Fate::Dropped),
            2 => Some(Fate::Corrupted),
            _ => None,
        }
    }
}

/// Simulation parameters stored with the ground truth.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroundTruthHeader {
    /// Format version (1).
    pub format_version: u32,
    /// Nominal sample rate.
    pub sample_rate_hz: u32,
    /// Offset of sample 0 after the start command, ns.
    pub offset_ns: i64,
    /// Sample clock drift, ppm (positive: the monitor's clock runs fast).
    pub drift_ppm: f64,
    /// Samples per measurement packet.
    pub records_per_packet: usize,
    /// Random seed.
    pub seed: u64,
    /// Followed process, if any.
    pub follow_pid: Option<u32>,
    /// Baseline power, W.
    pub baseline_w: f64,
    /// CPU watts per busy core.
    pub cpu_w_per_core: f64,
    /// GPU watts at full utilisation.
    pub gpu_w: f64,
    /// Noise standard deviation, W.
    pub noise_w: f64,
}

/// One ground-truth record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthRecord {
    /// Sampling session (1 for the first start).
    pub session: u16,
    /// Sample index within the session.
    pub index: u64,
    /// True CLOCK_MONOTONIC time of the sample, ns.
    pub t_ns: i64,
    /// True power, W.
    pub power_w: f32,
    /// What happened to its packet.
    pub fate: Fate,
}

/// Writes ground truth as the simulator runs.
#[derive(Debug)]
pub struct GroundTruthWriter {
    path: PathBuf,
    out: BufWriter<File>,
    csv: bool,
}

impl GroundTruthWriter {
    /// Create `path` (CSV when it ends in `.csv`, else binary).
    pub fn create(path: &Path, header: &GroundTruthHeader) -> Result<GroundTruthWriter> {
        let f =
            File::create(path).map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        let mut w = GroundTruthWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, f),
            csv: crate::trace::is_csv(path),
        };
        let json =
            serde_json::to_string(header).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let r = if w.csv {
            writeln!(
                w.out,
                "# monsoon-sim ground truth {json}\nsession,index,t_ns,power_w,fate"
            )
        } else {
            w.out
                .write_all(MAGIC)
                .and_then(|_| w.out.write_all(&(json.len() as u32).to_le_bytes()))
                .and_then(|_| w.out.write_all(json.as_bytes()))
        };
        r.map_err(|e| w.err(e))?;
        Ok(w)
    }

    fn err(&self, e: std::io::Error) -> Error {
        Error::io(format!("write {}", self.path.display()), e)
    }

    /// Append a record.
    pub fn push(&mut self, r: &TruthRecord) -> Result<()> {
        let res = if self.csv {
            writeln!(
                self.out,
                "{},{},{},{},{}",
                r.session,
                r.index,
                r.t_ns,
                r.power_w,
                r.fate.to_byte()
            )
        } else {
            let mut b = [0u8; RECORD_LEN];
            b[0..8].copy_from_slice(&r.index.to_le_bytes());
            b[8..16].copy_from_slice(&r.t_ns.to_le_bytes());
            b[16..20].copy_from_slice(&r.power_w.to_le_bytes());
            b[20..22].copy_from_slice(&r.session.to_le_bytes());
            b[22] = r.fate.to_byte();
            self.out.write_all(&b)
        };
        res.map_err(|e| self.err(e))
    }

    /// Push buffered records to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| self.err(e))
    }
}

/// A ground-truth file read back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroundTruth {
    /// Simulation parameters.
    pub header: GroundTruthHeader,
    /// Every generated sample, in order.
    pub records: Vec<TruthRecord>,
    /// Bytes of a partial last record that were ignored (the simulator was
    /// killed mid-write).
    pub truncated_bytes: usize,
}

impl GroundTruth {
    /// Read a ground-truth file (binary or CSV, by content).
    pub fn read(path: impl AsRef<Path>) -> Result<GroundTruth> {
        let path = path.as_ref();
        let mut f =
            File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let mut data = Vec::new();
        f.read_to_end(&mut data)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let fmt = |offset: usize, msg: String| Error::Format {
            path: path.to_path_buf(),
            offset: offset as u64,
            msg,
        };
        if data.starts_with(b"#") {
            return Self::parse_csv(path, &data);
        }
        if data.len() < 12 || &data[..8] != MAGIC {
            return Err(fmt(
                0,
                "not a monsoon-sim ground-truth file (bad magic)".into(),
            ));
        }
        let hlen = u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize;
        let body = 12usize
            .checked_add(hlen)
            .filter(|&b| b <= data.len())
            .ok_or_else(|| fmt(8, format!("header length {hlen} runs past the end")))?;
        let header: GroundTruthHeader =
            serde_json::from_slice(&data[12..body]).map_err(|e| fmt(12, format!("header: {e}")))?;
        let recs = &data[body..];
        let mut records = Vec::with_capacity(recs.len() / RECORD_LEN);
        for (k, b) in recs.chunks_exact(RECORD_LEN).enumerate() {
            let at = body + k * RECORD_LEN;
            let le8 = |o: usize| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[o..o + 8]);
                a
            };
            records.push(TruthRecord {
                index: u64::from_le_bytes(le8(0)),
                t_ns: i64::from_le_bytes(le8(8)),
                power_w: f32::from_le_bytes([b[16], b[17], b[18], b[19]]),
                session: u16::from_le_bytes([b[20], b[21]]),
                fate: Fate::from_byte(b[22])
                    .ok_or_else(|| fmt(at + 22, format!("unknown fate {}", b[22])))?,
            });
        }
        Ok(GroundTruth {
            header,
            records,
            truncated_bytes: recs.len() % RECORD_LEN,
        })
    }

    fn parse_csv(path: &Path, data: &[u8]) -> Result<GroundTruth> {
        let bad = |line: u64, msg: String| Error::Csv {
            path: path.to_path_buf(),
            line,
            msg,
        };
        let mut lines = BufReader::new(data).lines();
        let first = lines
            .next()
            .and_then(|l| l.ok())
            .ok_or_else(|| bad(1, "missing header".into()))?;
        let json = first
            .strip_prefix("# monsoon-sim ground truth ")
            .ok_or_else(|| bad(1, "not a monsoon-sim ground-truth CSV".into()))?;
        let header: GroundTruthHeader =
            serde_json::from_str(json).map_err(|e| bad(1, format!("header: {e}")))?;
        let mut records = Vec::new();
        for (i, line) in lines.enumerate().skip(1) {
            let ln = i as u64 + 2;
            let line = line.map_err(|e| bad(ln, e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').collect();
            let [s, idx, t, p, fate] = f[..] else {
                return Err(bad(ln, format!("expected 5 fields, got {}", f.len())));
            };
            let num = |v: &str, what: &str| bad(ln, format!("{what} {v:?} is not a number"));
            records.push(TruthRecord {
                session: s.parse().map_err(|_| num(s, "session"))?,
                index: idx.parse().map_err(|_| num(idx, "index"))?,
                t_ns: t.parse().map_err(|_| num(t, "t_ns"))?,
                power_w: p.parse().map_err(|_| num(p, "power_w"))?,
                fate: fate
                    .parse()
                    .ok()
                    .and_then(Fate::from_byte)
                    .ok_or_else(|| bad(ln, format!("unknown fate {fate:?}")))?,
            });
        }
        Ok(GroundTruth {
            header,
            records,
            truncated_bytes: 0,
        })
    }

    /// Records of one session.
    pub fn session(&self, session: u16) -> impl Iterator<Item = &TruthRecord> {
        self.records.iter().filter(move |r| r.session == session)
    }

    /// True energy in joules of `session` over sample indices `range`.
    pub fn energy_j(&self, session: u16, range: std::ops::Range<u64>) -> f64 {
        let rate = f64::from(self.header.sample_rate_hz.max(1));
        self.session(session)
            .filter(|r| range.contains(&r.index))
            .map(|r| f64::from(r.power_w))
            .sum::<f64>()
            / rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_csv_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let header = GroundTruthHeader {
            format_version: 1,
            sample_rate_hz: 5000,
            offset_ns: 37_000_000,
            drift_ppm: 80.0,
            records_per_packet: 5,
            seed: 9,
            ..Default::default()
        };
        let recs: Vec<TruthRecord> = (0..10)
            .map(|i| TruthRecord {
                session: 1,
                index: i,
                t_ns: 1_000 + i as i64 * 200_000,
                power_w: 1.5 + i as f32 * 0.25,
                fate: [Fate::Sent, Fate::Dropped, Fate::Corrupted][i as usize % 3],
            })
            .collect();
        for name in ["gt.bin", "gt.csv"] {
            let p = dir.path().join(name);
            let mut w = GroundTruthWriter::create(&p, &header).unwrap();
            recs.iter().for_each(|r| w.push(r).unwrap());
            w.flush().unwrap();
            drop(w);
            let g = GroundTruth::read(&p).unwrap();
            assert_eq!(g.header, header);
            assert_eq!(g.records, recs, "{name}");
            assert!((g.energy_j(1, 0..4) - (1.5 + 1.75 + 2.0 + 2.25) / 5000.0).abs() < 1e-9);
        }
        // A torn last record is reported, not misread.
        let p = dir.path().join("gt.bin");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 5);
        std::fs::write(&p, &bytes).unwrap();
        let g = GroundTruth::read(&p).unwrap();
        assert_eq!((g.records.len(), g.truncated_bytes), (9, 19));
        std::fs::write(&p, b"garbage").unwrap();
        assert!(GroundTruth::read(&p)
            .unwrap_err()
            .to_string()
            .contains("byte offset 0"));
    }
}
