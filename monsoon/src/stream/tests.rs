//! Decoder tests against exact wire bytes from the simulator's model.

use super::*;
use crate::calibration::CalKind;
use crate::sim::{ModelConfig, MonitorModel, Rng, TrueSample};

/// One frame of a generated stream and the measurement indices it carries.
struct Frame {
    bytes: Vec<u8>,
    samples: Option<(u64, u64)>,
}

fn stream(packets: usize, cal_every: usize) -> Vec<Frame> {
    let mut m = MonitorModel::new(
        ModelConfig {
            calibration_every: cal_every,
            ..Default::default()
        },
        5,
    );
    m.apply(crate::protocol::Command::SetOutputVoltage(220));
    m.apply(crate::protocol::Command::START[1]);
    let mut frames = Vec::new();
    let mut index = 0;
    for p in 0..packets {
        if m.calibration_due() {
            for k in [CalKind::Zero, CalKind::Reference] {
                let mut b = Vec::new();
                m.encode_calibration(k, &mut b);
                frames.push(Frame {
                    bytes: b,
                    samples: None,
                });
            }
        }
        let s: Vec<TrueSample> = (0..5)
            .map(|k| TrueSample {
                main_a: 0.1 + ((index + k) % 1000) as f32 * 1e-4,
                volts: 4.2,
                ..Default::default()
            })
            .collect();
        let mut b = Vec::new();
        m.encode_measurement(&s, &mut b);
        frames.push(Frame {
            bytes: b,
            samples: Some((index, 5)),
        });
        index += 5;
        let _ = p;
    }
    frames
}

fn decode(bytes: &[u8]) -> (Vec<StreamEvent>, DecodeStats) {
    decode_with(bytes, 37)
}

fn decode_with(bytes: &[u8], cal_every: u64) -> (Vec<StreamEvent>, DecodeStats) {
    let mut d = StreamDecoder::new(DecoderOptions {
        calibration_interval_samples: Some(cal_every * 5),
        ..DecoderOptions::default()
    });
    let mut ev = Vec::new();
    d.push(bytes, &mut ev);
    d.finish(&mut ev);
    (ev, d.stats())
}

fn samples(ev: &[StreamEvent]) -> Vec<crate::Sample> {
    ev.iter()
        .filter_map(|e| match e {
            StreamEvent::Samples(v) => Some(v.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Within resolution plus the scale error of averaging noisy calibrations.
fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 5e-5 + 2e-3 * b.abs()
}

fn expected_main(index: u64) -> f32 {
    0.1 + (index % 1000) as f32 * 1e-4
}

#[test]
fn clean_stream_has_exact_consecutive_indices() {
    let frames = stream(3000, 1000);
    let bytes: Vec<u8> = frames.iter().flat_map(|f| f.bytes.clone()).collect();
    let (ev, st) = decode(&bytes);
    let s = samples(&ev);
    assert_eq!(s.len(), 15_000);
    assert!(s.iter().enumerate().all(|(i, x)| x.index == i as u64));
    assert!(s
        .iter()
        .all(|x| close(x.main_current_a, expected_main(x.index))));
    assert_eq!(
        (st.lost_packets, st.gaps, st.frames.garbage_bytes),
        (0, 0, 0)
    );
    assert_eq!(st.calibration_packets, 6);
}

#[test]
fn byte_by_byte_input_decodes_the_same() {
    let frames = stream(200, 50);
    let bytes: Vec<u8> = frames.iter().flat_map(|f| f.bytes.clone()).collect();
    let (whole, _) = decode(&bytes);
    let mut d = StreamDecoder::new(DecoderOptions::default());
    let mut ev = Vec::new();
    for b in &bytes {
        d.push(std::slice::from_ref(b), &mut ev);
    }
    d.finish(&mut ev);
    assert!(
        samples(&ev) == samples(&whole),
        "split input decodes differently"
    );
}

/// Drop frames at random — calibration frames included, the opening pair
/// included — and check every lost sample is reported exactly where it was.
#[test]
fn dropped_packets_are_accounted_exactly_including_calibration() {
    for seed in 0..40u64 {
        let frames = stream(800, 37);
        let mut rng = Rng::new(seed);
        let mut run = 0;
        let mut kept = Vec::new();
        let mut delivered = std::collections::BTreeSet::new();
        let mut total = 0;
        for (i, f) in frames.iter().enumerate() {
            if let Some((_, n)) = f.samples {
                total += n;
            }
            // Runs of 16 or more lost packets alias; keep them shorter.
            let drop = run < 12 && (rng.chance(0.2) || (seed % 4 == 0 && i < 2));
            if drop {
                run += 1;
                continue;
            }
            run = 0;
            kept.extend_from_slice(&f.bytes);
            if let Some((first, n)) = f.samples {
                delivered.extend(first..first + n);
            }
        }
        let (ev, st) = decode(&kept);
        let got = samples(&ev);
        let lost: u64 = ev
            .iter()
            .map(|e| match e {
                StreamEvent::Gap(g) => g.lost,
                _ => 0,
            })
            .sum();
        let uncal: u64 = ev
            .iter()
            .map(|e| match e {
                StreamEvent::Uncalibrated { count, .. } => *count,
                _ => 0,
            })
            .sum();
        // Every delivered index that was calibrated arrives with its value.
        for s in &got {
            assert!(
                delivered.contains(&s.index),
                "seed {seed}: phantom index {}",
                s.index
            );
            assert!(
                close(s.main_current_a, expected_main(s.index)),
                "seed {seed}: {s:?}"
            );
        }
        // Received, lost and uncalibrated indices are disjoint and together
        // cover everything up to the last received measurement packet.
        let mut covered = vec![0u8; total as usize];
        for s in &got {
            covered[s.index as usize] += 1;
        }
        for e in &ev {
            let (from, n) = match e {
                StreamEvent::Gap(g) => (g.from_index, g.lost),
                StreamEvent::Uncalibrated { from_index, count } => (*from_index, *count),
                _ => continue,
            };
            for i in from..from + n {
                covered[i as usize] += 1;
            }
        }
        let last_delivered = delivered.iter().next_back().copied().unwrap_or(0) as usize;
        let bad = covered[..=last_delivered].iter().position(|&c| c != 1);
        assert!(
            bad.is_none(),
            "seed {seed}: index {bad:?} covered {:?} times; {st:?}\n{:?}",
            bad.map(|b| covered[b]),
            ev.iter()
                .filter(|e| !matches!(e, StreamEvent::Samples(_)))
                .collect::<Vec<_>>()
        );
        assert!(
            covered[last_delivered + 1..].iter().all(|&c| c == 0),
            "seed {seed}"
        );
        assert_eq!(st.lost_samples, lost);
        assert_eq!(st.uncalibrated_samples, uncal);
    }
}

#[test]
fn garbage_between_frames_is_skipped_and_counted() {
    let frames = stream(300, 100);
    let mut bytes = Vec::new();
    let mut rng = Rng::new(11);
    let mut junk = 0;
    for f in &frames {
        if rng.chance(0.3) {
            let n = rng.range_i32(1, 40) as usize;
            // Junk that never looks like a frame start of a plausible length.
            bytes.extend(std::iter::repeat_n(0u8, n));
            junk += n as u64;
        }
        bytes.extend_from_slice(&f.bytes);
    }
    let (ev, st) = decode(&bytes);
    assert_eq!(samples(&ev).len(), 1500);
    assert_eq!(st.frames.garbage_bytes, junk);
    assert_eq!(st.lost_packets, 0);
}

#[test]
fn over_current_status_and_uncalibrated_events() {
    let mut m = MonitorModel::new(ModelConfig::default(), 2);
    m.apply(crate::protocol::Command::SetOutputVoltage(220));
    m.apply(crate::protocol::Command::START[1]);
    let mut b = Vec::new();
    let s = [TrueSample {
        main_a: 0.2,
        volts: 4.2,
        ..Default::default()
    }; 5];
    // Measurements before calibration, a status packet, then calibration.
    m.encode_measurement(&s, &mut b);
    m.encode_status(&mut b);
    m.encode_calibration(CalKind::Zero, &mut b);
    m.encode_calibration(CalKind::Reference, &mut b);
    m.encode_measurement(&s, &mut b);
    m.trip_over_current();
    m.encode_measurement(&s, &mut b);
    m.encode_measurement(&s, &mut b);
    let mut d = StreamDecoder::new(DecoderOptions {
        first_seq: Some(0),
        initial_calibration: false,
        hardware_revision: 0,
        calibration_interval_samples: None,
    });
    let mut ev = Vec::new();
    d.push(&b, &mut ev);
    d.finish(&mut ev);
    let kinds: Vec<&str> = ev
        .iter()
        .map(|e| match e {
            StreamEvent::Samples(_) => "samples",
            StreamEvent::Status(_) => "status",
            StreamEvent::Uncalibrated { .. } => "uncal",
            StreamEvent::OverCurrent { .. } => "overcurrent",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["status", "uncal", "samples", "overcurrent", "samples"]
    );
    assert_eq!(
        ev[1],
        StreamEvent::Uncalibrated {
            from_index: 0,
            count: 5
        }
    );
    assert_eq!(ev[3], StreamEvent::OverCurrent { index: 10 });
    assert_eq!(d.stats().over_current_events, 1);
    let s = samples(&ev);
    assert_eq!(
        s.iter().map(|x| x.index).collect::<Vec<_>>(),
        (5..20).collect::<Vec<_>>()
    );
}

#[test]
fn calibration_schedule_prediction() {
    let mut c = CalSchedule::default();
    c.observe(0, 0);
    c.observe(0, 10);
    assert_eq!(c.learned, Some(10));
    assert_eq!(c.predicted(11, 20, None), 0);
    assert_eq!(c.predicted(11, 21, None), 1);
    assert_eq!(c.predicted(19, 41, None), 3);
    assert_eq!(c.predicted(19, 40, None), 2);
    c.observe(0, 30); // one missed in between: the period stays 10
    assert_eq!(c.learned, Some(10));
    // The reference kind shares the period once it has a position.
    c.observe(1, 31);
    assert_eq!(c.predicted(35, 42, None), 2);
    // Before anything is learned, the prior decides.
    let mut p = CalSchedule {
        anchor: [Some(0), Some(1)],
        ..Default::default()
    };
    assert_eq!(p.predicted(1, 2, None), 1, "the opening reference packet");
    p.observe(0, 0);
    assert_eq!(p.predicted(2, 100, None), 0);
    assert_eq!(p.predicted(1, 100, Some(39)), 5);
    p.observe(1, 40); // the opening reference was lost: period from its expected place
    assert_eq!(p.learned, Some(39));
}

/// Byte corruption at 1% of every byte, decoded offline: reproducible.
#[test]
fn one_percent_corruption_offline() {
    let frames = stream(10_000, 1000);
    let mut rng = Rng::new(7);
    let mut bytes = Vec::new();
    let mut intact = std::collections::BTreeSet::new();
    for f in &frames {
        let mut b = f.bytes.clone();
        let mut bad = false;
        for x in b.iter_mut() {
            if rng.chance(0.01) {
                *x ^= rng.range_i32(1, 255) as u8;
                bad = true;
            }
        }
        if !bad {
            if let Some((first, n)) = f.samples {
                intact.extend(first..first + n);
            }
        }
        bytes.extend_from_slice(&b);
    }
    let (ev, st) = decode_with(&bytes, 1000);
    let got = samples(&ev);
    // Intact packets decode, except those that came before calibration.
    let uncal: Vec<(u64, u64)> = ev
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Uncalibrated { from_index, count } => Some((*from_index, *count)),
            _ => None,
        })
        .collect();
    let usable = intact
        .iter()
        .filter(|&&i| !uncal.iter().any(|&(f, n)| (f..f + n).contains(&i)))
        .count();
    let ok = got.iter().filter(|s| intact.contains(&s.index)).count();
    assert!(
        ok as f64 >= 0.99 * usable as f64,
        "{ok} of {usable} intact; {st:?}"
    );
    assert!(st.frames.resyncs > 1000 && st.frames.rejected > 0);
}

/// 1% of all bytes corrupted, many seeds: what the 8-bit checksum lets
/// through (two compensating bad bytes in one packet) may carry wrong values,
/// but the sample indices stay right — false frames are refused, corrupted
/// sequence numbers repaired, and runs of 16+ corrupted packets recounted
/// from the garbage they leave.
#[test]
fn heavy_corruption_keeps_indices_right_across_seeds() {
    let frames = stream(10_000, 1000);
    for seed in 0..16u64 {
        let mut rng = Rng::new(seed);
        let mut bytes = Vec::new();
        for f in &frames {
            let mut b = f.bytes.clone();
            for x in b.iter_mut() {
                if rng.chance(0.01) {
                    *x ^= rng.range_i32(1, 255) as u8;
                }
            }
            bytes.extend_from_slice(&b);
        }
        let (ev, st) = decode_with(&bytes, 1000);
        let got = samples(&ev);
        let bad = got
            .iter()
            .filter(|s| !close(s.main_current_a, expected_main(s.index)))
            .count();
        assert!(
            bad < 50,
            "seed {seed}: {bad} wrong values of {}; {st:?}",
            got.len()
        );
        // Only the packets lost after the last one received go uncounted.
        assert!(
            (49_850..=50_000).contains(&st.next_index),
            "seed {seed}: {st:?}"
        );
    }
}
