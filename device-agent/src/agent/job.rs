//! Measured jobs: what the agent does on its own while the host's monitor records with USB
//! passthrough off (see the protocol module): idle baseline, opening pulses, the timed
//! configuration, closing pulses.
use crate::exec::trace::monotonic_ns;
use crate::protocol::{Interval, JobReport, JobRequest};
use crate::Result;
use std::path::Path;

/// Runs one job and reports when each part happened.
pub fn run_job(req: &JobRequest, data_dir: &Path) -> Result<JobReport> {
    let job_start = monotonic_ns();
    // Load and prepare before the idle window, so that neither loading nor preparing lands
    // inside the measured part; bench() below reloads from the page cache, which is cheap
    // next to the runs but is kept outside the pulses as well.
    super::load_model(&req.bench.model, data_dir)?;
    let idle_start = monotonic_ns();
    std::thread::sleep(std::time::Duration::from_millis(u64::from(req.idle_ms)));
    let idle = Interval {
        start_ns: idle_start,
        end_ns: monotonic_ns(),
    };
    let pulses_before = super::pulse::emit(&req.pattern, req.bench.threads);
    let bench = super::bench(&req.bench, data_dir, |_, _| {})?;
    let pulses_after = super::pulse::emit(&req.pattern, req.bench.threads);
    Ok(JobReport {
        idle,
        pattern: req.pattern.clone(),
        pulses_before,
        pulses_after,
        bench,
        job: Interval {
            start_ns: job_start,
            end_ns: monotonic_ns(),
        },
    })
}
