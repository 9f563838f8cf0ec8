//! Decode throughput: `cargo run --release -p monsoon --example decode_bench`.
//!
//! Generates 60 s of exact wire bytes with the simulator's monitor model
//! (5 samples per packet, a calibration pair every second, a status reply
//! every 100 ms), then times the full decoder — framing, checksum,
//! resynchronisation, gap accounting, calibration and conversion to
//! amps/volts — over it, clean and with 1% of bytes corrupted. Prints
//! samples per second and the multiple of real time (5000 samples/s).

use std::time::Instant;

use monsoon::calibration::CalKind;
use monsoon::protocol::Command;
use monsoon::sim::{ModelConfig, MonitorModel, Rng, TrueSample};
use monsoon::stream::{DecoderOptions, StreamDecoder, StreamEvent};

fn wire(seconds: usize, corrupt: f64) -> Vec<u8> {
    let mut m = MonitorModel::new(ModelConfig::default(), 1);
    m.apply(Command::SetOutputVoltage(220));
    m.apply(Command::START[1]);
    let mut rng = Rng::new(2);
    let mut out = Vec::new();
    for p in 0..seconds * 1000 {
        if m.calibration_due() {
            m.encode_calibration(CalKind::Zero, &mut out);
            m.encode_calibration(CalKind::Reference, &mut out);
        }
        if p % 100 == 0 {
            m.encode_status(&mut out);
        }
        let s: Vec<TrueSample> = (0..5)
            .map(|_| TrueSample {
                main_a: (0.3 + 0.05 * rng.normal()).max(0.0) as f32,
                volts: 4.2,
                ..Default::default()
            })
            .collect();
        m.encode_measurement(&s, &mut out);
    }
    if corrupt > 0.0 {
        for b in out.iter_mut() {
            if rng.chance(corrupt) {
                *b ^= rng.range_i32(1, 255) as u8;
            }
        }
    }
    out
}

fn bench(name: &str, bytes: &[u8]) {
    let reps = 20;
    let mut best = f64::INFINITY;
    let mut samples = 0;
    for _ in 0..reps {
        let t0 = Instant::now();
        let mut d = StreamDecoder::new(DecoderOptions::default());
        let mut ev = Vec::with_capacity(64);
        let mut n = 0;
        // Feed as a port would: 4 KiB reads, events drained per read.
        for chunk in bytes.chunks(4096) {
            d.push(chunk, &mut ev);
            for e in ev.drain(..) {
                if let StreamEvent::Samples(v) = e {
                    n += v.len();
                }
            }
        }
        d.finish(&mut ev);
        best = best.min(t0.elapsed().as_secs_f64());
        samples = n + ev
            .iter()
            .map(|e| {
                if let StreamEvent::Samples(v) = e {
                    v.len()
                } else {
                    0
                }
            })
            .sum::<usize>();
    }
    let rate = samples as f64 / best;
    println!(
        "{name:<22} {:>7.2} MB  {samples:>7} samples  best of {reps}: {:>7.2} ms  {:>6.1} M samples/s  {:>7.0}x real time  {:>6.0} MB/s",
        bytes.len() as f64 / 1e6,
        best * 1e3,
        rate / 1e6,
        rate / 5000.0,
        bytes.len() as f64 / best / 1e6
    );
}

fn main() {
    println!("monsoon decode throughput (60 s of 5 kHz samples per run)");
    bench("clean", &wire(60, 0.0));
    bench("1% bytes corrupted", &wire(60, 0.01));
}
