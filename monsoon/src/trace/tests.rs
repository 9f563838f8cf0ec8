//! Trace file and CSV tests.

use super::*;
use crate::stream::Gap;

fn sample(index: u64) -> Sample {
    Sample {
        index,
        main_current_a: 0.25 + (index % 100) as f32 * 1e-3,
        usb_current_a: 0.001,
        aux_current_a: -0.0005,
        voltage_v: 4.2,
    }
}

/// Samples 0..n with a gap of 7 at 1000 and one of 3 at 2500.
fn samples(n: u64) -> Vec<Sample> {
    (0..n)
        .filter(|i| !(1000..1007).contains(i) && !(2500..2503).contains(i))
        .map(sample)
        .collect()
}

fn write(path: &Path, s: &[Sample], opts: WriterOptions) -> TraceWriter {
    let mut w = TraceWriter::create_with(path, &TraceMeta::new("test"), opts).unwrap();
    for x in s {
        if x.index == 1007 {
            w.push_event(TraceEvent::Gap(Gap {
                from_index: 1000,
                lost: 7,
                seq_before: 3,
                seq_after: 6,
                lost_packets: 2,
                lost_calibration_packets: 0,
            }));
        }
        w.push_sample(x).unwrap();
    }
    w
}

#[test]
fn round_trip_with_index() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.mtrace");
    let s = samples(12_345);
    let mut w = write(&p, &s, WriterOptions::default());
    w.push_event(TraceEvent::OverCurrent { index: 12_000 });
    w.push_event(TraceEvent::Disconnected { last_index: None });
    let sum = w.finish().unwrap();
    assert_eq!(sum.samples, s.len() as u64);
    assert_eq!(sum.lost_samples, 7);
    assert!((sum.energy_j - crate::energy_j(&s)).abs() < 1e-9);
    let mut r = TraceReader::open(&p).unwrap();
    assert!(r.recovery().is_none(), "index should be used");
    assert_eq!(r.meta().source, "test");
    assert_eq!(r.chunks().len(), 3);
    assert_eq!(r.chunks()[0].first_index, 0);
    let d = r.read_all().unwrap();
    assert_eq!(d.samples, s);
    assert_eq!(d.events.len(), 3);
    assert_eq!(d.events[2], TraceEvent::Disconnected { last_index: None });
    assert_eq!(r.summary().unwrap().samples, s.len() as u64);
}

#[test]
fn a_killed_recorder_loses_at_most_the_last_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.mtrace");
    let s = samples(4_000);
    let opts = WriterOptions {
        chunk_samples: 1000,
        sync: false,
    };
    let w = write(&p, &s, opts);
    // While the recorder is still running, the file on disk already holds
    // every flushed chunk — exactly what a crash would leave.
    let mut live = TraceReader::open(&p).unwrap();
    let rec = live.recovery().cloned().unwrap();
    assert_eq!(rec.stopped, None);
    assert_eq!(live.total_samples(), 3000);
    assert_eq!(live.read_all().unwrap().samples, s[..3000].to_vec());
    w.finish().unwrap();
    let full = std::fs::read(&p).unwrap();
    let starts: Vec<u64> = TraceReader::open(&p)
        .unwrap()
        .chunks()
        .iter()
        .map(|c| c.offset)
        .collect();
    assert_eq!(starts.len(), 4);
    // Cut the file inside chunks, right before a chunk ends, and inside the
    // index: only whole chunks survive.
    let cuts = [
        (starts[1] + 7, 1),
        (starts[2] + 100, 2),
        (starts[3] - 1, 2),
        (full.len() as u64 - 3, 4),
    ];
    for (cut, whole_chunks) in cuts {
        std::fs::write(&p, &full[..cut as usize]).unwrap();
        let mut r = TraceReader::open(&p).unwrap();
        assert_eq!(r.chunks().len(), whole_chunks, "cut at {cut}");
        let got = r.read_all().unwrap().samples;
        assert_eq!(got, s[..got.len()].to_vec());
        assert!(r.recovery().is_some());
    }
}

#[test]
fn corruption_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.mtrace");
    write(
        &p,
        &samples(3000),
        WriterOptions {
            chunk_samples: 1000,
            sync: false,
        },
    )
    .finish()
    .unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let off = TraceReader::open(&p).unwrap().chunks()[1].offset;
    bytes[off as usize + 40] ^= 0xFF;
    std::fs::write(&p, &bytes).unwrap();
    let mut r = TraceReader::open(&p).unwrap();
    let e = r.read_all().unwrap_err().to_string();
    assert!(
        e.contains("t.mtrace")
            && e.contains(&format!("byte offset {off}"))
            && e.contains("checksum"),
        "{e}"
    );
    // A file that is not a trace at all.
    std::fs::write(&p, b"hello").unwrap();
    let e = TraceReader::open(&p).unwrap_err().to_string();
    assert!(e.contains("byte offset 0"), "{e}");
    // Out-of-order samples are refused by the writer.
    let mut w = TraceWriter::create(dir.path().join("u.mtrace"), &TraceMeta::new("x")).unwrap();
    w.push_sample(&sample(5)).unwrap();
    assert!(w.push_sample(&sample(5)).is_err());
}

#[test]
fn monsoon_csv_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv");
    let s = samples(3000);
    let sum = write_csv(&p, &s).unwrap();
    assert_eq!(sum.samples, s.len() as u64);
    let text = std::fs::read_to_string(&p).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    assert_eq!(lines.next(), Some("0.0,250.0000,1.0000,-0.5000,4.200000,0"));
    assert!(lines.next().is_some_and(|l| l.starts_with("0.2,251.0000,")));
    let back = read_csv(&p).unwrap();
    assert_eq!(back.len(), s.len());
    for (a, b) in back.iter().zip(&s) {
        assert_eq!(a.index, b.index);
        assert!((a.main_current_a - b.main_current_a).abs() < 1e-7);
        assert!((a.voltage_v - b.voltage_v).abs() < 1e-6);
    }
}

#[test]
fn csv_import_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.csv");
    std::fs::write(&p, "Time (ms), Main (mA)\n0,1\n0.2,x\n").unwrap();
    let e = read_csv(&p).unwrap_err().to_string();
    assert!(
        e.ends_with("bad.csv:3: Main(mA) \"x\" is not a number"),
        "{e}"
    );
    std::fs::write(&p, "Time(ms),Main(mA)\n0.4,1\n0.2,1\n").unwrap();
    assert!(read_csv(&p).unwrap_err().to_string().contains("bad.csv:3:"));
    std::fs::write(&p, "Main(mA)\n1\n").unwrap();
    assert!(read_csv(&p)
        .unwrap_err()
        .to_string()
        .contains("bad.csv:1: no Time(ms)"));
    // Columns found by name, extra columns ignored, missing ones zero.
    std::fs::write(
        &p,
        "Main Voltage(V),Extra,Time(ms),Main(mA)\n4.0,9,1.0,500\n",
    )
    .unwrap();
    let s = read_csv(&p).unwrap();
    assert_eq!(
        s,
        vec![Sample {
            index: 5,
            main_current_a: 0.5,
            usb_current_a: 0.0,
            aux_current_a: 0.0,
            voltage_v: 4.0
        }]
    );
}
