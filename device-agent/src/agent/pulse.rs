//! Sync pulses: a known power signature the host finds in the monitor's trace to map device
//! time onto sample index. A burst loads every core with integer work for its length; the
//! gaps are idle (sleeping). The interval of each burst is recorded on `CLOCK_MONOTONIC`.
//!
//! The whole pattern is scheduled in advance on absolute `CLOCK_MONOTONIC` times, and every
//! worker thread lives for the whole pattern: it sleeps until a burst's start
//! (`clock_nanosleep(TIMER_ABSTIME)`, no spinning while idle), spins until the burst's end,
//! and records when it actually started and stopped. A burst's interval is the mean of its
//! workers' actual starts and ends — where the power trace's half-height edge falls — and no
//! other thread runs during the pattern (the caller only waits), so nothing but the workers
//! draws power.
use crate::exec::trace::monotonic_ns;
use crate::protocol::{Interval, SyncPattern};

/// Sleeps until `CLOCK_MONOTONIC` reaches `t_ns` (returns at once if it has).
fn sleep_until(t_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (t_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (t_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec we own; a null remainder is allowed with TIMER_ABSTIME.
    // EINTR just wakes early: the loop re-checks the clock.
    while monotonic_ns() < t_ns {
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
    }
}

/// Keeps this core busy until `CLOCK_MONOTONIC` reaches `end_ns`; returns when it stopped and
/// a value so that the work is not optimised away.
fn spin_until(end_ns: u64) -> (u64, u64) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        for _ in 0..256 {
            // xorshift: cheap, dependent integer work that keeps the core's pipeline full.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        let now = monotonic_ns();
        if now >= end_ns {
            return (now, x);
        }
    }
}

/// The planned `(start, end)` of each burst of `pattern`, the first starting at `t0_ns`.
fn schedule(pattern: &SyncPattern, t0_ns: u64) -> Vec<(u64, u64)> {
    let mut t = t0_ns;
    pattern
        .bursts_ms
        .iter()
        .map(|&ms| {
            let start = t;
            let end = start + u64::from(ms) * 1_000_000;
            t = end + u64::from(pattern.gap_ms) * 1_000_000;
            (start, end)
        })
        .collect()
}

/// Emits `pattern` on `threads` cores (0 = all): each burst, then `gap_ms` idle. Returns each
/// burst's interval in order.
pub fn emit(pattern: &SyncPattern, threads: usize) -> Vec<Interval> {
    // Start far enough ahead that every worker is created and asleep before the first burst.
    let plan = schedule(pattern, monotonic_ns() + 20_000_000);
    emit_planned(&plan, pattern.gap_ms, threads)
}

/// Runs the planned bursts `plan` on `threads` cores and idles `gap_ms` after the last one.
fn emit_planned(plan: &[(u64, u64)], gap_ms: u32, threads: usize) -> Vec<Interval> {
    let threads = super::resolve_threads(threads).max(1);
    let per_worker: Vec<Vec<(u64, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    plan.iter()
                        .map(|&(start, end)| {
                            sleep_until(start);
                            let began = monotonic_ns();
                            let (stopped, x) = spin_until(end);
                            std::hint::black_box(x);
                            (began, stopped)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // A worker that panicked (it cannot: no fallible code runs there) is left out.
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    if let Some(&(_, last_end)) = plan.last() {
        sleep_until(last_end + u64::from(gap_ms) * 1_000_000);
    }
    plan.iter()
        .enumerate()
        .map(|(i, &(start, end))| {
            let n = per_worker.len() as u64;
            if n == 0 {
                return Interval {
                    start_ns: start,
                    end_ns: end,
                };
            }
            let mean =
                |f: fn(&(u64, u64)) -> u64| per_worker.iter().map(|w| f(&w[i])).sum::<u64>() / n;
            Interval {
                start_ns: mean(|w| w.0),
                end_ns: mean(|w| w.1),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What holds however loaded the machine is (the suite runs tests in parallel on two
    /// cores, so a worker may wake late): no worker starts a burst before its planned start
    /// nor stops before its planned end, and the call returns only after the last gap.
    #[test]
    fn bursts_never_start_early_nor_stop_early_and_the_call_waits_out_the_last_gap() {
        let pattern = SyncPattern {
            bursts_ms: vec![30, 10, 20],
            gap_ms: 15,
        };
        let plan = schedule(&pattern, monotonic_ns() + 20_000_000);
        let marks = emit_planned(&plan, pattern.gap_ms, 2);
        let done = monotonic_ns();
        assert_eq!(marks.len(), 3);
        for (m, &(start, end)) in marks.iter().zip(&plan) {
            assert!(
                m.start_ns >= start,
                "burst began {} ns early",
                start - m.start_ns
            );
            assert!(m.end_ns >= end, "burst stopped {} ns early", end - m.end_ns);
            assert!(m.start_ns <= m.end_ns);
        }
        assert!(done >= plan[2].1 + 15_000_000);
    }

    #[test]
    fn the_schedule_follows_the_pattern() {
        let p = SyncPattern {
            bursts_ms: vec![2, 1],
            gap_ms: 3,
        };
        assert_eq!(
            schedule(&p, 10),
            vec![(10, 2_000_010), (5_000_010, 6_000_010)]
        );
    }
}
