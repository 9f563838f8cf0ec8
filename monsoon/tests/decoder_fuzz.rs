//! Property tests of everything that parses input, on random and mutated
//! bytes from a seeded generator: never panics, always terminates, and the
//! decoder's output keeps its invariants.

use std::time::{Duration, Instant};

use monsoon::calibration::CalKind;
use monsoon::protocol::{Command, FrameDecoder, Status};
use monsoon::sim::{ModelConfig, MonitorModel, Rng, TrueSample};
use monsoon::stream::{DecoderOptions, StreamDecoder, StreamEvent};

/// A valid wire stream of `packets` measurement packets.
fn valid_stream(packets: usize, seed: u64) -> Vec<u8> {
    let mut m = MonitorModel::new(
        ModelConfig {
            calibration_every: 50,
            ..Default::default()
        },
        seed,
    );
    m.apply(Command::SetOutputVoltage(200));
    m.apply(Command::START[1]);
    let mut out = Vec::new();
    for p in 0..packets {
        if m.calibration_due() {
            m.encode_calibration(CalKind::Zero, &mut out);
            m.encode_calibration(CalKind::Reference, &mut out);
        }
        if p % 97 == 0 {
            m.encode_status(&mut out);
        }
        let s = [TrueSample {
            main_a: 0.3 + (p % 7) as f32 * 0.2,
            volts: 4.0,
            ..Default::default()
        }; 5];
        m.encode_measurement(&s, &mut out);
    }
    out
}

fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    let edits = rng.range_i32(1, 40);
    for _ in 0..edits {
        if b.is_empty() {
            break;
        }
        let at = (rng.next_u64() % b.len() as u64) as usize;
        match rng.range_i32(0, 5) {
            0 => b[at] ^= 1 << rng.range_i32(0, 7),
            1 => b[at] = rng.next_u64() as u8,
            2 => {
                b.remove(at);
            }
            3 => b.insert(at, rng.next_u64() as u8),
            4 => {
                let end = (at + rng.range_i32(1, 300) as usize).min(b.len());
                let chunk = b[at..end].to_vec();
                let to = (rng.next_u64() % b.len() as u64) as usize;
                b.splice(to..to, chunk);
            }
            _ => b.truncate(at),
        }
    }
    b
}

/// Decode in random pieces with random idle calls; check invariants.
fn check(rng: &mut Rng, bytes: &[u8]) {
    let t0 = Instant::now();
    let mut d = StreamDecoder::new(DecoderOptions::default());
    let mut ev = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let n = (rng.range_i32(1, 700) as usize).min(bytes.len() - pos);
        d.push(&bytes[pos..pos + n], &mut ev);
        if rng.chance(0.05) {
            d.idle(&mut ev);
        }
        pos += n;
    }
    d.finish(&mut ev);
    // A hang guard, not a speed claim (the suite shares two noisy cores): resynchronising
    // after garbage must stay linear, and a quadratic rescan of these inputs takes minutes.
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "decode of {} bytes took {:?}",
        bytes.len(),
        t0.elapsed()
    );
    assert_eq!(d.pending_bytes(), 0);
    let st = d.stats();
    assert_eq!(st.frames.bytes, bytes.len() as u64);
    // Indices only go forward; gaps and uncalibrated runs sit in order.
    let mut next = 0u64;
    for e in &ev {
        match e {
            StreamEvent::Samples(v) => {
                for s in v {
                    assert!(s.index >= next, "index {} after {next}", s.index);
                    assert!(s.main_current_a.is_finite() && s.voltage_v.is_finite());
                    next = s.index + 1;
                }
            }
            StreamEvent::Gap(g) => {
                assert!(g.from_index >= next && g.lost > 0);
                next = g.from_index + g.lost;
            }
            StreamEvent::Uncalibrated { from_index, count } => {
                assert!(*count > 0 && from_index + count <= st.next_index);
            }
            _ => {}
        }
    }
    assert!(next <= st.next_index);
}

#[test]
fn decoder_survives_random_bytes() {
    let mut rng = Rng::new(0xF022);
    for case in 0..3000 {
        let len = rng.range_i32(0, 4000) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        // Bias some cases towards plausible frame starts.
        if case % 3 == 0 {
            for x in b.iter_mut().step_by(7) {
                *x = [0x2E, 0x3B, 0x20, 0x10, 0x00][rng.range_i32(0, 4) as usize];
            }
        }
        check(&mut rng, &b);
    }
}

#[test]
fn decoder_survives_mutated_streams() {
    let mut rng = Rng::new(0xB17E);
    for case in 0..600 {
        let clean = valid_stream(rng.range_i32(1, 400) as usize, case);
        let b = mutate(&mut rng, clean);
        check(&mut rng, &b);
    }
}

#[test]
fn frame_decoder_and_payload_parsers_survive_random_input() {
    let mut rng = Rng::new(77);
    for _ in 0..2000 {
        let len = rng.range_i32(0, 600) as usize;
        let b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let mut d = FrameDecoder::new();
        d.push(&b);
        let mut frames = 0;
        while let Some((_, p)) =
            d.next_frame(|p| Command::decode(p).is_ok() || Status::decode(p).is_ok())
        {
            assert!(!p.is_empty());
            frames += 1;
            assert!(frames <= b.len());
        }
        d.clear();
        assert_eq!(d.pending(), 0);
        let _ = Command::decode(&b[..len.min(8)]);
        let _ = Status::decode(&b[..len.min(58)]);
    }
}

#[test]
fn file_readers_survive_corrupted_files() {
    use monsoon::trace::{read_csv, TraceMeta, TraceReader, TraceWriter, WriterOptions};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.mtrace");
    let mut w = TraceWriter::create_with(
        &p,
        &TraceMeta::new("fuzz"),
        WriterOptions {
            chunk_samples: 100,
            sync: false,
        },
    )
    .unwrap();
    for i in 0..1000u64 {
        w.push_sample(&monsoon::Sample {
            index: i * 2,
            main_current_a: i as f32,
            ..Default::default()
        })
        .unwrap();
    }
    w.finish().unwrap();
    let good = std::fs::read(&p).unwrap();
    let mut rng = Rng::new(5);
    for _ in 0..300 {
        let b = mutate(&mut rng, good.clone());
        std::fs::write(&p, &b).unwrap();
        // Errors are fine; panics and hangs are not.
        if let Ok(mut r) = TraceReader::open(&p) {
            let _ = r.read_all();
        }
        let gt = dir.path().join("gt.bin");
        std::fs::write(&gt, &b).unwrap();
        let _ = monsoon::sim::GroundTruth::read(&gt);
    }
    let c = dir.path().join("x.csv");
    for _ in 0..300 {
        let mut text = b"Time(ms),Main(mA),USB(mA)\n0.0,1,2\n0.2,3,4\n".to_vec();
        text = mutate(&mut rng, text);
        std::fs::write(&c, &text).unwrap();
        let _ = read_csv(&c);
    }
}
