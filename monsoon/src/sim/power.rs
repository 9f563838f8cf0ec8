//! Power from the real activity of a followed process.
//!
//! Every poll reads, for each thread in `/proc/PID/task/`, its state
//! (`stat`: running/runnable or not) and its run time (`schedstat`, first
//! field, ns). The kernel only brings `schedstat` up to date at scheduler
//! events and ticks (every 4–16 ms on a busy host), so run time alone places
//! a burst late; the state flips the moment a thread wakes or sleeps. So:
//!
//! - *when* a thread is busy comes from its state, sampled each poll and
//!   interpolated linearly between polls (an edge between two polls counts
//!   half, which keeps edge timing unbiased);
//! - *how busy* comes from `schedstat`: the busy weight is scaled by the
//!   thread's recent run time over its recent runnable time (its share of a
//!   CPU; 1 on an idle host, less when it waits for a core), over the last
//!   [`EFFICIENCY_WINDOW`] polls.
//!
//! Threads named `llvmpipe-*` (lavapipe's workers, i.e. the GPU of this lab)
//! are GPU activity: their busy weights summed and divided by their number
//! give GPU utilisation. Everything else is CPU activity in busy cores.
//!
//! `P = baseline_w + cpu_w_per_core × cpu_cores + gpu_w × gpu_util` (+ noise,
//! added per sample by the simulator).

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Read;

/// Polls over which a thread's CPU share is estimated.
pub const EFFICIENCY_WINDOW: usize = 64;

/// Parameters of the power model. Field docs give the defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerModel {
    /// Idle power of the device in watts. Default 1.2 W.
    pub baseline_w: f64,
    /// Watts per fully busy CPU core. Default 0.9 W.
    pub cpu_w_per_core: f64,
    /// Watts of the GPU at full utilisation. Default 2.0 W.
    pub gpu_w: f64,
    /// Standard deviation of per-sample noise in watts. Default 0.02 W.
    pub noise_w: f64,
}

impl Default for PowerModel {
    fn default() -> Self {
        PowerModel {
            baseline_w: 1.2,
            cpu_w_per_core: 0.9,
            gpu_w: 2.0,
            noise_w: 0.02,
        }
    }
}

impl PowerModel {
    /// Power above baseline for an activity level.
    pub fn activity_w(&self, a: &Activity) -> f64 {
        self.cpu_w_per_core * a.cpu_cores + self.gpu_w * a.gpu_util
    }
}

/// Activity over one poll interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Activity {
    /// Busy CPU cores (non-GPU threads).
    pub cpu_cores: f64,
    /// GPU utilisation, 0..=1 (llvmpipe threads).
    pub gpu_util: f64,
    /// Threads seen.
    pub threads: usize,
    /// Of which GPU worker threads.
    pub gpu_threads: usize,
}

#[derive(Debug)]
struct ThreadState {
    gpu: bool,
    running: bool,
    run_ns: u64,
    /// Recent (run time delta, runnable time) pairs in ns.
    window: VecDeque<(f64, f64)>,
    seen: u64,
}

impl ThreadState {
    /// Run time over runnable time in the window, pulled towards 1 by one
    /// tick's worth (4 ms) of prior so that a thread that has only just
    /// become busy — its run time not yet reported — still counts.
    fn efficiency(&self) -> f64 {
        const PRIOR_NS: f64 = 4.0e6;
        let (run, busy) = self
            .window
            .iter()
            .fold((0.0, 0.0), |(r, b), (dr, db)| (r + dr, b + db));
        ((run + PRIOR_NS) / (busy + PRIOR_NS)).clamp(0.0, 1.0)
    }
}

/// Samples the threads of one process.
#[derive(Debug)]
pub struct ActivityProbe {
    pid: u32,
    threads: HashMap<u32, ThreadState>,
    last_ns: Option<i64>,
    polls: u64,
    buf: String,
}

impl ActivityProbe {
    /// Follow `pid`.
    pub fn new(pid: u32) -> ActivityProbe {
        ActivityProbe {
            pid,
            threads: HashMap::new(),
            last_ns: None,
            polls: 0,
            buf: String::with_capacity(512),
        }
    }

    /// The followed process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sample now (`now_ns` on CLOCK_MONOTONIC); returns the activity over
    /// the interval since the previous poll (zero on the first poll).
    /// `Err` when the process is gone.
    pub fn poll(&mut self, now_ns: i64) -> std::io::Result<Activity> {
        let dt = self.last_ns.map_or(0.0, |l| (now_ns - l).max(0) as f64);
        self.last_ns = Some(now_ns);
        self.polls += 1;
        let polls = self.polls;
        let dir = format!("/proc/{}/task", self.pid);
        let mut act = Activity::default();
        let mut gpu_sum = 0.0;
        for entry in fs::read_dir(&dir)? {
            let Ok(entry) = entry else { continue };
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Some((running, run_ns, gpu)) = self.read_thread(tid) else {
                continue;
            };
            // A thread born since the last poll was not running at it: its start counts half
            // of this interval, like any other edge (on the first poll, dt = 0 anyway).
            let st = self.threads.entry(tid).or_insert_with(|| ThreadState {
                gpu,
                running: false,
                run_ns,
                window: VecDeque::with_capacity(EFFICIENCY_WINDOW),
                seen: polls,
            });
            // A new thread names itself after it starts: keep checking.
            st.gpu = gpu;
            let weight = (f64::from(u8::from(st.running)) + f64::from(u8::from(running))) / 2.0;
            let d_run = run_ns.saturating_sub(st.run_ns) as f64;
            if st.window.len() == EFFICIENCY_WINDOW {
                st.window.pop_front();
            }
            st.window.push_back((d_run, weight * dt));
            st.running = running;
            st.run_ns = run_ns;
            st.seen = polls;
            let busy = if dt > 0.0 {
                weight * st.efficiency()
            } else {
                0.0
            };
            act.threads += 1;
            if st.gpu {
                act.gpu_threads += 1;
                gpu_sum += busy;
            } else {
                act.cpu_cores += busy;
            }
        }
        // A thread that ended since the last poll and was running at it: its end counts half
        // of this interval (dropping it outright would place every exit a poll early).
        if dt > 0.0 {
            for st in self
                .threads
                .values()
                .filter(|t| t.seen != polls && t.running)
            {
                let busy = 0.5 * st.efficiency();
                if st.gpu {
                    act.gpu_threads += 1;
                    gpu_sum += busy;
                } else {
                    act.cpu_cores += busy;
                }
            }
        }
        self.threads.retain(|_, t| t.seen == polls);
        if act.threads == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("process {} has no threads", self.pid),
            ));
        }
        if act.gpu_threads > 0 {
            act.gpu_util = (gpu_sum / act.gpu_threads as f64).clamp(0.0, 1.0);
        }
        Ok(act)
    }

    /// `(running, run time ns, is a GPU worker)` of one thread.
    fn read_thread(&mut self, tid: u32) -> Option<(bool, u64, bool)> {
        let base = format!("/proc/{}/task/{tid}", self.pid);
        self.buf.clear();
        fs::File::open(format!("{base}/stat"))
            .ok()?
            .read_to_string(&mut self.buf)
            .ok()?;
        // "tid (comm) S ..." — comm may hold ')' itself: split at the last.
        let open = self.buf.find('(')?;
        let close = self.buf.rfind(')')?;
        let running = self.buf.get(close + 1..)?.trim_start().starts_with('R');
        let gpu = self.buf.get(open + 1..close)?.starts_with("llvmpipe-");
        self.buf.clear();
        let run_ns = match fs::File::open(format!("{base}/schedstat")) {
            Ok(mut f) => {
                f.read_to_string(&mut self.buf).ok()?;
                self.buf.split_whitespace().next()?.parse().ok()?
            }
            // No schedstat (kernel without CONFIG_SCHED_INFO): trust the state.
            Err(_) => self.threads.get(&tid).map_or(0, |t| t.run_ns),
        };
        Some((running, run_ns, gpu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};
    use std::time::Duration;

    /// Mean activity of `pid` over `ms` polls 1 ms apart.
    fn average(pid: u32, ms: u64) -> Activity {
        let mut probe = ActivityProbe::new(pid);
        probe.poll(crate::sim::mono_ns()).unwrap();
        let mut sum = Activity::default();
        for _ in 0..ms {
            std::thread::sleep(Duration::from_millis(1));
            let a = probe.poll(crate::sim::mono_ns()).unwrap();
            sum.cpu_cores += a.cpu_cores / ms as f64;
            sum.gpu_util += a.gpu_util / ms as f64;
            sum.threads = a.threads;
            sum.gpu_threads = a.gpu_threads;
        }
        sum
    }

    fn spin(shell: &std::path::Path) -> Child {
        Command::new(shell)
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap()
    }

    // Child processes, not threads of this test binary: other tests running
    // in parallel would show up as activity of this process.
    #[test]
    fn busy_threads_show_up_as_cpu_or_gpu() {
        let dir = tempfile::tempdir().unwrap();
        // A thread's name comes from its executable: a shell called
        // llvmpipe-0 is a lavapipe worker as far as /proc can tell.
        let gpu_sh = dir.path().join("llvmpipe-0");
        std::fs::copy("/bin/sh", &gpu_sh).unwrap();
        let mut idle = Command::new("sleep").arg("10").spawn().unwrap();
        let mut cpu = spin(std::path::Path::new("/bin/sh"));
        let mut gpu = spin(&gpu_sh);
        std::thread::sleep(Duration::from_millis(300));
        let a_idle = average(idle.id(), 200);
        let a_cpu = average(cpu.id(), 200);
        let a_gpu = average(gpu.id(), 200);
        for c in [&mut idle, &mut cpu, &mut gpu] {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(
            a_idle.cpu_cores < 0.05 && a_idle.gpu_util == 0.0,
            "{a_idle:?}"
        );
        // A spinning process gets a share of a (shared, loaded) core.
        assert!(
            a_cpu.cpu_cores > 0.15 && a_cpu.gpu_threads == 0,
            "{a_cpu:?}"
        );
        assert!(
            a_gpu.gpu_util > 0.15 && a_gpu.gpu_threads == 1 && a_gpu.cpu_cores < 0.05,
            "{a_gpu:?}"
        );
        let m = PowerModel::default();
        assert!(m.activity_w(&a_gpu) > m.activity_w(&a_idle) + 0.3);
        assert!(ActivityProbe::new(u32::MAX - 1).poll(0).is_err());
    }
}
