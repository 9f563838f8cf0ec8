//! Monsoon's own CSV shape (PowerTool / Python API):
//! `Time(ms),Main(mA),USB(mA),Aux(mA),Main Voltage(V),USB Voltage(V)`.
//!
//! Export writes one row per sample, time from the index (exactly
//! `index × 0.2` ms). Our samples carry no separate USB voltage, so that
//! column is written as 0. Import maps columns by name (case and spaces
//! ignored; `Time(ms)` and `Main(mA)` are required, the others default to 0),
//! turns time into an index at 5 kHz and rejects rows whose index does not
//! increase. Gaps in an imported file are visible as index jumps only.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{SampleSink, TraceEvent, TraceSummary};
use crate::stream::StreamEvent;
use crate::{Error, Result, Sample, SAMPLE_RATE_HZ};

/// The header line Monsoon's tools write.
pub const CSV_HEADER: &str = "Time(ms),Main(mA),USB(mA),Aux(mA),Main Voltage(V),USB Voltage(V)";

/// Streams samples into a Monsoon CSV file.
#[derive(Debug)]
pub struct CsvWriter {
    path: PathBuf,
    out: BufWriter<File>,
    summary: TraceSummary,
}

impl CsvWriter {
    /// Create (or truncate) `path` and write the header.
    pub fn create(path: impl AsRef<Path>) -> Result<CsvWriter> {
        let path = path.as_ref().to_path_buf();
        let f =
            File::create(&path).map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        let mut w = CsvWriter {
            out: BufWriter::with_capacity(1 << 16, f),
            path,
            summary: TraceSummary::default(),
        };
        writeln!(w.out, "{CSV_HEADER}").map_err(|e| w.err(e))?;
        Ok(w)
    }

    fn err(&self, e: std::io::Error) -> Error {
        Error::io(format!("write {}", self.path.display()), e)
    }

    /// Append one row.
    pub fn push_sample(&mut self, s: &Sample) -> Result<()> {
        // 0.2 ms per sample at 5 kHz: print the time exactly.
        let per_ms = u64::from(SAMPLE_RATE_HZ) / 1000;
        let r = writeln!(
            self.out,
            "{}.{},{:.4},{:.4},{:.4},{:.6},0",
            s.index / per_ms,
            (s.index % per_ms) * (10 / per_ms),
            f64::from(s.main_current_a) * 1000.0,
            f64::from(s.usb_current_a) * 1000.0,
            f64::from(s.aux_current_a) * 1000.0,
            s.voltage_v
        );
        r.map_err(|e| self.err(e))?;
        self.summary.add(s);
        Ok(())
    }

    /// Flush and close.
    pub fn finish(mut self) -> Result<TraceSummary> {
        self.out.flush().map_err(|e| self.err(e))?;
        self.out.get_ref().sync_all().map_err(|e| self.err(e))?;
        Ok(self.summary)
    }
}

impl SampleSink for CsvWriter {
    fn write_event(&mut self, ev: &StreamEvent) -> Result<()> {
        match ev {
            StreamEvent::Samples(v) => v.iter().try_for_each(|s| self.push_sample(s)),
            other => {
                if let Some(e) = TraceEvent::from_stream(other) {
                    self.summary.event(&e);
                }
                Ok(())
            }
        }
    }

    fn finish(self: Box<Self>) -> Result<TraceSummary> {
        CsvWriter::finish(*self)
    }
}

/// Write `samples` as a Monsoon CSV file.
pub fn write_csv(path: impl AsRef<Path>, samples: &[Sample]) -> Result<TraceSummary> {
    let mut w = CsvWriter::create(path)?;
    samples.iter().try_for_each(|s| w.push_sample(s))?;
    w.finish()
}

fn norm(h: &str) -> String {
    h.trim()
        .trim_matches('"')
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Read a Monsoon CSV file into samples.
pub fn read_csv(path: impl AsRef<Path>) -> Result<Vec<Sample>> {
    let path = path.as_ref();
    let f = File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let bad = |line: u64, msg: String| Error::Csv {
        path: path.to_path_buf(),
        line,
        msg,
    };
    let mut lines = BufReader::new(f).lines();
    let header = match lines.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(bad(1, e.to_string())),
        None => return Err(bad(1, "empty file, expected a header".into())),
    };
    let cols: Vec<String> = header.split(',').map(norm).collect();
    let find = |name: &str| cols.iter().position(|c| c == name);
    let time =
        find("time(ms)").ok_or_else(|| bad(1, format!("no Time(ms) column in {header:?}")))?;
    let main =
        find("main(ma)").ok_or_else(|| bad(1, format!("no Main(mA) column in {header:?}")))?;
    let usb = find("usb(ma)");
    let aux = find("aux(ma)");
    let volts = find("mainvoltage(v)");
    let mut out = Vec::new();
    let mut last: Option<u64> = None;
    for (i, line) in lines.enumerate() {
        let ln = i as u64 + 2;
        let line = line.map_err(|e| bad(ln, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let num = |c: usize, name: &str| -> Result<f64> {
            let raw = fields
                .get(c)
                .ok_or_else(|| bad(ln, format!("missing {name} (column {})", c + 1)))?;
            let v: f64 = raw
                .trim()
                .trim_matches('"')
                .parse()
                .map_err(|_| bad(ln, format!("{name} {raw:?} is not a number")))?;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(bad(ln, format!("{name} {raw:?} is not finite")))
            }
        };
        let opt = |c: Option<usize>, name: &str| c.map_or(Ok(0.0), |c| num(c, name));
        let t_ms = num(time, "Time(ms)")?;
        if t_ms < 0.0 {
            return Err(bad(ln, format!("negative time {t_ms} ms")));
        }
        let index = (t_ms * f64::from(SAMPLE_RATE_HZ) / 1000.0).round() as u64;
        if let Some(l) = last {
            if index <= l {
                return Err(bad(
                    ln,
                    format!("time {t_ms} ms (sample {index}) does not follow the previous row (sample {l})"),
                ));
            }
        }
        last = Some(index);
        out.push(Sample {
            index,
            main_current_a: (num(main, "Main(mA)")? / 1000.0) as f32,
            usb_current_a: (opt(usb, "USB(mA)")? / 1000.0) as f32,
            aux_current_a: (opt(aux, "Aux(mA)")? / 1000.0) as f32,
            voltage_v: opt(volts, "Main Voltage(V)")? as f32,
        });
    }
    Ok(out)
}
