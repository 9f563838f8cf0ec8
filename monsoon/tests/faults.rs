//! Fault injection through a real pseudo-terminal: corrupted bytes, dropped
//! packets, a stall, an over-current kill and a disconnect.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{collect_until, Collected, Rig};
use monsoon::sim::{event_code, Fate, GroundTruth, SimConfig};
use monsoon::stream::{StreamError, StreamEvent};
use monsoon::trace::{TraceEvent, TraceMeta, TraceReader, TraceWriter};
use monsoon::{Error, UsbPassthrough};

/// Start, collect `seconds` of sample clock, stop, drain.
fn run(rig: &mut Rig, seconds: u64) -> (Collected, monsoon::stream::DecodeStats, GroundTruth) {
    // At 1% byte corruption 45% of status replies are damaged: allow retries.
    let opts = monsoon::OpenOptions {
        status_attempts: 10,
        ..rig.opts()
    };
    let mut m = monsoon::Monitor::open_with(rig.sim.as_ref().unwrap().path(), opts).unwrap();
    m.set_voltage(4.2).unwrap();
    m.set_usb_passthrough(UsbPassthrough::Off).unwrap();
    let stream = m.start().unwrap();
    let mut c = collect_until(
        &stream,
        seconds * 5000,
        Duration::from_secs(seconds * 3 + 10),
    );
    m.stop().unwrap();
    for ev in stream {
        c.push(ev);
    }
    let stats = m.stats();
    drop(m);
    (c, stats, rig.truth())
}

/// Every index up to the last sample received is exactly one of: received,
/// lost in a reported gap, dropped before calibration.
fn assert_accounted(c: &Collected, truth: &GroundTruth) -> u64 {
    let last = c.samples.last().unwrap().index;
    let mut seen = vec![0u8; last as usize + 1];
    for s in &c.samples {
        seen[s.index as usize] += 1;
    }
    for e in &c.events {
        let (from, n) = match e {
            StreamEvent::Gap(g) => (g.from_index, g.lost),
            StreamEvent::Uncalibrated { from_index, count } => (*from_index, *count),
            _ => continue,
        };
        for i in from..(from + n).min(last + 1) {
            seen[i as usize] += 1;
        }
    }
    if let Some(i) = seen.iter().position(|&k| k != 1) {
        panic!("index {i} accounted {} times", seen[i]);
    }
    let generated = truth.session(1).filter(|r| r.index <= last).count() as u64;
    assert_eq!(
        generated,
        last + 1,
        "the simulator generated every index up to {last}"
    );
    c.lost()
}

#[test]
fn one_percent_corrupted_bytes_recover_and_account_for_every_lost_sample() {
    let mut rig = Rig::new(SimConfig {
        corrupt_rate: 0.01,
        seed: 7,
        ..SimConfig::default()
    });
    let (c, stats, truth) = run(&mut rig, 10);
    assert!(
        c.samples.len() > 25_000,
        "the stream keeps going: {} samples",
        c.samples.len()
    );
    assert!(
        stats.frames.resyncs > 100 && stats.frames.garbage_bytes > 1000,
        "{stats:?}"
    );
    let lost = assert_accounted(&c, &truth);
    assert!(lost > 0);
    // What arrived is right: each received sample carries its own power.
    let by_index: HashMap<u64, _> = truth.session(1).map(|r| (r.index, *r)).collect();
    let mut intact = 0;
    for s in &c.samples {
        let r = by_index[&s.index];
        if r.fate == Fate::Sent {
            intact += 1;
            assert!(
                (s.main_power_w() - f64::from(r.power_w)).abs() < 0.006,
                "{s:?} vs {r:?}"
            );
        }
    }
    // Packets that were sent intact got through (unless they came before
    // calibration was complete); the loss is what was corrupted.
    let uncal: Vec<(u64, u64)> = c
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Uncalibrated { from_index, count } => Some((*from_index, *count)),
            _ => None,
        })
        .collect();
    let sent_intact = truth
        .session(1)
        .filter(|r| r.index <= c.samples.last().unwrap().index && r.fate == Fate::Sent)
        .filter(|r| !uncal.iter().any(|&(f, n)| (f..f + n).contains(&r.index)))
        .count();
    assert!(
        intact as f64 >= 0.98 * sent_intact as f64,
        "{intact} of {sent_intact} intact samples decoded"
    );
    eprintln!(
        "1% corruption: {} samples, {} lost in {} gaps, {} uncalibrated, {} garbage bytes in {} resyncs, {} false frames refused",
        c.samples.len(),
        lost,
        stats.gaps,
        c.uncalibrated(),
        stats.frames.garbage_bytes,
        stats.frames.resyncs,
        stats.frames.rejected
    );
}

#[test]
fn dropped_packets_are_exactly_the_reported_gaps() {
    let mut rig = Rig::new(SimConfig {
        drop_rate: 0.02,
        seed: 3,
        ..SimConfig::default()
    });
    let (c, stats, truth) = run(&mut rig, 6);
    assert_accounted(&c, &truth);
    let last = c.samples.last().unwrap().index;
    // The gaps name exactly the samples whose packets were dropped.
    let mut gap_idx: Vec<u64> = c
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Gap(g) => Some(g.from_index..g.from_index + g.lost),
            _ => None,
        })
        .flatten()
        .collect();
    gap_idx.sort_unstable();
    let dropped: Vec<u64> = truth
        .session(1)
        .filter(|r| r.index <= last && r.fate == Fate::Dropped)
        .map(|r| r.index)
        .collect();
    assert!(!dropped.is_empty());
    assert_eq!(gap_idx, dropped);
    // Gap events carry the sequence numbers around them.
    for e in &c.events {
        if let StreamEvent::Gap(g) = e {
            assert_eq!(
                u32::from(g.seq_after.wrapping_sub(g.seq_before).wrapping_sub(1) & 15),
                g.lost_packets
            );
        }
    }
    assert_eq!(stats.frames.garbage_bytes, 0);
}

#[test]
fn a_stall_is_reported_and_nothing_is_lost() {
    let mut rig = Rig::new(SimConfig {
        stall_at_s: Some(1.0),
        stall_ms: 1600,
        ..SimConfig::default()
    });
    let (c, _, truth) = run(&mut rig, 3);
    let stalled: Vec<_> = c
        .events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Stalled { .. }))
        .collect();
    assert_eq!(stalled.len(), 1, "{:?}", c.events);
    if let StreamEvent::Stalled {
        at_index,
        silent_ms,
    } = stalled[0]
    {
        assert!((5000..5010).contains(at_index), "{at_index}");
        assert!(*silent_ms >= 1000);
    }
    assert_eq!(c.lost(), 0);
    assert_accounted(&c, &truth);
    assert!(c.samples.len() >= 15_000);
}

#[test]
fn over_current_kill_is_reported() {
    let mut rig = Rig::new(SimConfig {
        overcurrent_at_s: Some(1.0),
        ..SimConfig::default()
    });
    let mut m = rig.open();
    m.set_voltage(4.0).unwrap();
    let stream = m.start().unwrap();
    let c = collect_until(&stream, 10_000, Duration::from_secs(10));
    let s = m.status().unwrap();
    assert_eq!(s.event_code, event_code::OVER_CURRENT);
    assert_eq!(s.output_voltage_setting, 0, "output switched off");
    m.stop().unwrap();
    let oc: Vec<_> = c
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::OverCurrent { index } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(oc, vec![5000]);
    // Before: powered. After: 0 V, 0 A — and still sampled.
    let v = |i: u64| c.samples.iter().find(|s| s.index == i).unwrap().voltage_v;
    assert_eq!((v(4999), v(5000), v(9000)), (4.0, 0.0, 0.0));
    drop(rig.truth());
}

#[test]
fn disconnect_mid_stream_gives_a_clear_error_and_an_intact_trace() {
    let mut rig = Rig::new(SimConfig {
        disconnect_at_s: Some(3.0),
        ..SimConfig::default()
    });
    let trace_path = rig.dir.path().join("rec.mtrace");
    let mut m = rig.open();
    m.set_voltage(4.2).unwrap();
    m.set_usb_passthrough(UsbPassthrough::Off).unwrap();
    let mut w = TraceWriter::create(&trace_path, &TraceMeta::new("disconnect test")).unwrap();
    // The CLI's recorder: asks for 10 s, gets 3.
    let err = monsoon::cli::record(&mut m, 10.0, &mut w).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Disconnected(_)), "{msg}");
    assert!(
        msg.contains("monitor disconnected after sample 14999"),
        "{msg}"
    );
    // The monitor says so from now on instead of hanging.
    let again = m.status().unwrap_err();
    assert!(matches!(again, Error::Disconnected(_)), "{again}");
    let summary = w.finish().unwrap();
    drop(m);

    let truth = rig.truth();
    let mut r = TraceReader::open(&trace_path).unwrap();
    assert!(r.recovery().is_none());
    let d = r.read_all().unwrap();
    let recs: Vec<_> = truth.session(1).collect();
    assert_eq!(recs.len(), 15_000, "generated up to the fault");
    assert_eq!(
        d.samples.len(),
        15_000,
        "every sample up to the fault is on disk"
    );
    assert_eq!(summary.samples, 15_000);
    for (s, r) in d.samples.iter().zip(&recs) {
        assert_eq!(s.index, r.index);
        assert!((s.main_power_w() - f64::from(r.power_w)).abs() < 0.006);
    }
    assert_eq!(
        d.events.last(),
        Some(&TraceEvent::Disconnected {
            last_index: Some(14_999)
        })
    );
}

#[test]
fn disconnect_event_names_the_last_sample() {
    let rig = Rig::new(SimConfig {
        disconnect_at_s: Some(0.5),
        ..SimConfig::default()
    });
    let mut m = rig.open();
    m.set_voltage(4.2).unwrap();
    let stream = m.start().unwrap();
    let c = collect_until(&stream, 1_000_000, Duration::from_secs(10));
    match c.events.last() {
        Some(StreamEvent::Error(StreamError::Disconnected { last_index, .. })) => {
            assert_eq!(*last_index, Some(2499))
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert_eq!(c.samples.len(), 2500);
    // The stream is over.
    assert!(stream.recv_timeout(Duration::from_millis(200)).is_err());
}
