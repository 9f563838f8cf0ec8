//! `ulab monsoon ...` end to end: the real `ulab` binary talks to the simulator through a
//! real pseudo-terminal.
use monsoon::sim::{SimConfig, Simulator};
use std::process::Command;

fn ulab(port: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ulab"))
        .arg("monsoon")
        .arg("--port")
        .arg(port)
        .args(args)
        .output()
        .expect("ulab runs")
}

#[test]
fn status_voltage_usb_and_record_through_the_simulator() {
    let _cpu = crate::common::sharing_the_cpu();
    let sim = Simulator::spawn(SimConfig::default()).expect("simulator starts");
    let port = sim.path().to_path_buf();

    let out = ulab(&port, &["voltage", "4.0"]);
    assert!(
        out.status.success(),
        "voltage: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ulab(&port, &["usb", "off"]);
    assert!(
        out.status.success(),
        "usb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ulab(&port, &["status"]);
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains("4.0"), "status shows the voltage set: {text}");

    let tmp = tempfile::tempdir().expect("tempdir");
    let csv = tmp.path().join("rec.csv");
    let out = ulab(
        &port,
        &[
            "record",
            "--seconds",
            "1",
            "--out",
            csv.to_str().expect("utf8 path"),
        ],
    );
    assert!(
        out.status.success(),
        "record: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = std::fs::read_to_string(&csv)
        .expect("csv written")
        .lines()
        .count();
    // One header line plus ~5000 samples for one second (calibration takes a moment).
    assert!((4000..=5100).contains(&(rows - 1)), "{rows} rows");
    sim.shutdown().expect("simulator stops");
}

#[test]
fn a_missing_port_is_a_clear_error() {
    let _cpu = crate::common::sharing_the_cpu();
    let out = ulab(std::path::Path::new("/dev/no-such-monitor"), &["status"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/no-such-monitor"), "stderr: {err}");
}
