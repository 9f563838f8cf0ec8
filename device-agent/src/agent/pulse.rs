//! Sync pulses: a known power signature the host finds in the monitor's trace to map device
//! time onto sample index. A burst loads every core with integer work for its length; the
//! gaps are idle (sleeping). The interval of each burst is recorded on `CLOCK_MONOTONIC`.
use crate::exec::trace::monotonic_ns;
use crate::protocol::{Interval, SyncPattern};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Keeps one core busy until `stop` is set; returns a value so the work is not optimised away.
fn spin(stop: &AtomicBool) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1024 {
            // xorshift: cheap, dependent integer work that keeps the core's pipeline full.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    x
}

/// Loads `threads` cores for `ms` milliseconds and returns the burst's interval (from the
/// moment every worker has started to the moment the stop was signalled).
fn burst(threads: usize, ms: u32) -> Interval {
    let stop = AtomicBool::new(false);
    let started = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                started.wait();
                std::hint::black_box(spin(&stop));
            });
        }
        started.wait();
        let start_ns = monotonic_ns();
        let end_target = start_ns + u64::from(ms) * 1_000_000;
        // Sleep most of the burst, then poll the clock for the last stretch so the end is
        // precise to well under one monitor sample (200 µs).
        std::thread::sleep(Duration::from_nanos(
            u64::from(ms).saturating_sub(2) * 1_000_000,
        ));
        while monotonic_ns() < end_target {
            std::hint::spin_loop();
        }
        let end_ns = monotonic_ns();
        stop.store(true, Ordering::Relaxed);
        Interval { start_ns, end_ns }
    })
}

/// Emits `pattern` on `threads` cores (0 = all): each burst, then `gap_ms` idle. Returns each
/// burst's interval in order.
pub fn emit(pattern: &SyncPattern, threads: usize) -> Vec<Interval> {
    let threads = super::resolve_threads(threads);
    pattern
        .bursts_ms
        .iter()
        .map(|&ms| {
            let interval = burst(threads, ms);
            std::thread::sleep(Duration::from_millis(u64::from(pattern.gap_ms)));
            interval
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_last_as_long_as_asked_and_are_ordered() {
        let pattern = SyncPattern {
            bursts_ms: vec![30, 10, 20],
            gap_ms: 15,
        };
        let marks = emit(&pattern, 2);
        assert_eq!(marks.len(), 3);
        for (m, &ms) in marks.iter().zip(&pattern.bursts_ms) {
            let got = (m.end_ns - m.start_ns) as f64 / 1e6;
            assert!(
                (got - f64::from(ms)).abs() < 1.0,
                "burst of {ms} ms lasted {got} ms"
            );
        }
        for w in marks.windows(2) {
            let gap = (w[1].start_ns - w[0].end_ns) as f64 / 1e6;
            assert!(gap >= 14.0, "gap {gap} ms");
        }
    }
}
