//! Streaming through a real pseudo-terminal: a minute at 5 kHz with nothing
//! lost, and energy against the simulator's ground truth.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{collect_until, Rig};
use monsoon::sim::{Fate, SimConfig};
use monsoon::stream::StreamEvent;
use monsoon::UsbPassthrough;

#[test]
fn sixty_seconds_no_faults_300k_samples_zero_lost_exact_timestamps() {
    let mut rig = Rig::new(SimConfig::default());
    let mut m = rig.open();
    m.set_voltage(4.2).unwrap();
    m.set_usb_passthrough(UsbPassthrough::Off).unwrap();
    let t0 = Instant::now();
    let stream = m.start().unwrap();
    let mut c = collect_until(&stream, 150_000, Duration::from_secs(90));
    // Status can be read while sampling; it arrives in the stream too.
    let s = m.status().unwrap();
    assert_eq!(s.output_voltage_setting, 220);
    c.samples
        .extend(collect_until(&stream, 300_000, Duration::from_secs(90)).samples);
    let wall = t0.elapsed();
    m.stop().unwrap();
    for ev in stream {
        c.push(ev);
    }
    let stats = m.stats();
    let truth = rig.truth();

    let n = 300_000;
    let got: Vec<_> = c.samples.iter().take_while(|s| s.index < n).collect();
    assert_eq!(
        got.len() as u64,
        n,
        "samples in the first 60 s of the sample clock"
    );
    assert!(
        got.iter().enumerate().all(|(i, s)| s.index == i as u64),
        "indices 0..300000 in order"
    );
    assert!(!c
        .events
        .iter()
        .any(|e| matches!(e, StreamEvent::Gap(_) | StreamEvent::Error(_))));
    assert_eq!(
        (
            stats.lost_packets,
            stats.lost_samples,
            stats.frames.garbage_bytes
        ),
        (0, 0, 0)
    );
    assert_eq!(stats.uncalibrated_samples, 0);
    // Paced by the simulated 5 kHz crystal, not by host reads.
    assert!(
        wall >= Duration::from_millis(59_900),
        "300k samples in {wall:?}"
    );
    assert!(wall < Duration::from_secs(75), "300k samples in {wall:?}");
    // Timestamps are exact: sample i carries the device's power at its
    // true time t_start + i × 200 µs (so a one-sample shift anywhere would
    // pair each sample with its neighbour's noise and fail).
    let recs: Vec<_> = truth.session(1).take(n as usize).collect();
    assert_eq!(recs.len() as u64, n);
    let t_first = recs[0].t_ns;
    let mut worst = 0.0f64;
    for (s, r) in got.iter().zip(&recs) {
        assert_eq!(s.index, r.index);
        assert_eq!(r.fate, Fate::Sent);
        assert_eq!(
            r.t_ns - t_first,
            s.index as i64 * 200_000,
            "ground-truth time of sample {}",
            s.index
        );
        assert_eq!(s.time_ns(), s.index * 200_000);
        let err = (s.main_power_w() - f64::from(r.power_w)).abs();
        worst = worst.max(err);
    }
    // Noise is 20 mW per sample; quantisation and calibration error stay
    // far below it.
    assert!(worst < 0.006, "worst per-sample power error {worst} W");
}

/// Spin `threads` threads named `name` while `on` holds.
fn load(
    name: &str,
    threads: usize,
    on: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|i| {
            let (on, stop) = (on.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if on.load(Ordering::Relaxed) {
                            std::hint::spin_loop();
                        } else {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                })
                .unwrap()
        })
        .collect()
}

#[test]
fn energy_matches_ground_truth_within_half_a_percent() {
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_on = Arc::new(AtomicBool::new(false));
    let gpu_on = Arc::new(AtomicBool::new(false));
    let mut workers = load("worker", 1, cpu_on.clone(), stop.clone());
    workers.extend(load("llvmpipe", 1, gpu_on.clone(), stop.clone()));
    let mut rig = Rig::new(SimConfig {
        follow_pid: Some(std::process::id()),
        ..SimConfig::default()
    });
    let mut m = rig.open();
    m.set_voltage(3.8).unwrap();
    let stream;
    {
        // A measured window keeps USB power out (else half the power would
        // show on the USB channel instead of main).
        let mut g = m.usb_passthrough_scope(UsbPassthrough::Off).unwrap();
        stream = g.start().unwrap();
        // Idle, CPU burst, GPU burst, both, idle.
        for (cpu, gpu, ms) in [
            (false, false, 1500),
            (true, false, 1500),
            (false, true, 1500),
            (true, true, 1500),
            (false, false, 1000),
        ] {
            cpu_on.store(cpu, Ordering::Relaxed);
            gpu_on.store(gpu, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(ms));
        }
        g.stop().unwrap();
        g.finish().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    workers.into_iter().for_each(|w| w.join().unwrap());
    let mut c = common::Collected::default();
    for ev in stream {
        c.push(ev);
    }
    let truth = rig.truth();
    assert_eq!(c.lost(), 0);
    let first = c.samples.first().unwrap().index;
    let end = c.samples.last().unwrap().index + 1;
    assert_eq!(first, 0);
    assert_eq!(c.samples.len() as u64, end, "no holes");
    assert!(end > 30_000, "{end} samples");
    let measured = monsoon::energy_j(&c.samples);
    let true_j = truth.energy_j(1, 0..end);
    let rel = (measured - true_j).abs() / true_j;
    eprintln!(
        "energy: decoded {measured:.5} J, ground truth {true_j:.5} J, error {:.4}%",
        rel * 100.0
    );
    assert!(
        rel < 0.005,
        "decoded {measured} J vs true {true_j} J ({:.3}%)",
        rel * 100.0
    );
    // The activity really moved the power: the bursts are well above idle.
    let mean = |a: u64, b: u64| truth.energy_j(1, a..b) / ((b - a) as f64 / 5000.0);
    let idle = mean(1000, 6000);
    let busy = mean(16_000, 21_000);
    assert!(busy > idle + 0.2, "idle {idle:.3} W, both busy {busy:.3} W");
}
