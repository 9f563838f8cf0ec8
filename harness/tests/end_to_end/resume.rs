//! Resume: a campaign interrupted by kill -9 of ulab, by an agent crash, or by a monitor
//! disconnect restarts from its checkpoint and neither redoes nor loses a finished
//! configuration. Each interruption is done for real: SIGKILL to ulab, SIGKILL to the agent
//! process (ULAB_FAULT=kill-agent), the simulated monitor's pty closed mid-job
//! (ULAB_FAULT=disconnect).
use crate::common::*;
use std::time::{Duration, Instant};

const MATRIX: &str = "models = [\"squeezenet1.1\", \"mobilenet-v1\", \"alexnet\"]\nmechanisms = [\"cpu\"]\nprecisions = [\"f32\"]";
const SIM: &str = "kind = \"simulated\"\nvoltage = 4.0";
const SLUGS: [&str; 3] = [
    "squeezenet1.1__cpu__f32",
    "mobilenet-v1__cpu__f32",
    "alexnet__cpu__f32",
];

/// Every configuration finished exactly once, each with its results on disk.
fn assert_complete(out: &std::path::Path) {
    let cp = checkpoint(out);
    let mut got = cp.finished.clone();
    got.sort();
    let mut want: Vec<String> = SLUGS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "checkpoint {cp:?}");
    let summary = harness::results::read_parquet(&out.join("summary.parquet")).expect("summary");
    assert_eq!(summary.height(), 3);
}

/// The interrupted first run, the resumed second one; returns the results kept from the
/// first run, which the second must not have redone.
fn interrupted_then_resumed(name: &str, fault: Option<&str>, expect_failed: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = campaign(tmp.path(), name, MATRIX, SIM, "");
    let out = tmp.path().join("results");
    let env: Vec<(&str, &str)> = fault.map(|f| vec![("ULAB_FAULT", f)]).unwrap_or_default();
    let first = run(&path, &out, &[], &env);
    assert!(
        !first.status.success(),
        "the fault must fail the run: {}",
        text(&first)
    );
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(err.contains(&format!("failed: {expect_failed}")), "{err}");
    let cp = checkpoint(&out);
    assert_eq!(
        cp.finished.len(),
        2,
        "the other configurations finished: {cp:?}"
    );
    let kept: Vec<_> = cp.finished.iter().map(|s| result(&out, s)).collect();

    let second = run(&path, &out, &[], &[]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("2 configuration(s) already finished, 1 to run"),
        "{}",
        text(&second)
    );
    assert_complete(&out);
    for k in kept {
        assert_eq!(
            k,
            result(&out, &k.config.slug()),
            "finished results untouched"
        );
    }
}

#[test]
fn resumes_after_an_agent_crash() {
    let _cpu = sharing_the_cpu();
    interrupted_then_resumed(
        "agent-crash",
        Some("kill-agent=mobilenet-v1/cpu/f32"),
        "mobilenet-v1/cpu/f32",
    );
}

#[test]
fn resumes_after_a_monitor_disconnect() {
    let _cpu = sharing_the_cpu();
    interrupted_then_resumed(
        "monitor-disconnect",
        Some("disconnect=alexnet/cpu/f32@0.6"),
        "alexnet/cpu/f32",
    );
}

#[test]
fn resumes_after_kill_9_of_ulab() {
    let _cpu = sharing_the_cpu();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = campaign(tmp.path(), "kill9", MATRIX, SIM, "");
    let out = tmp.path().join("results");
    let mut child = ulab()
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ulab starts");
    // Kill it as soon as one configuration is finished (the next is then under way).
    let t0 = Instant::now();
    loop {
        let done = harness::checkpoint::Checkpoint::read(&out)
            .ok()
            .flatten()
            .map_or(0, |c| c.finished.len());
        if done >= 1 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "no configuration finished"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "ulab ended early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let cp = checkpoint(&out);
    assert!(cp.finished.len() < 3, "killed before the end: {cp:?}");
    let kept: Vec<_> = cp.finished.iter().map(|s| result(&out, s)).collect();
    // Give the orphaned agent (its stdin closed) a moment to finish its job and exit.
    std::thread::sleep(Duration::from_millis(500));

    let second = run(&path, &out, &["--resume"], &[]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains(&format!("{} configuration(s) already finished", kept.len())),
        "{}",
        text(&second)
    );
    assert_complete(&out);
    for k in kept {
        assert_eq!(
            k,
            result(&out, &k.config.slug()),
            "finished results untouched"
        );
    }
}
