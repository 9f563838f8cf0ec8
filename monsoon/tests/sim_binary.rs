//! The built `monsoon-sim` binary as a separate process, driven through the
//! `monsoon` CLI functions the host tool embeds.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Parser;
use monsoon::cli::MonsoonArgs;
use monsoon::sim::GroundTruth;
use monsoon::trace::{read_csv, TraceReader};

#[derive(Parser)]
struct Host {
    #[command(flatten)]
    monsoon: MonsoonArgs,
}

fn cli(args: &[&str]) -> anyhow::Result<()> {
    let h = Host::try_parse_from(std::iter::once("ulab-monsoon").chain(args.iter().copied()))?;
    monsoon::cli::run(h.monsoon)
}

#[test]
fn binary_with_link_offset_drift_and_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("monsoon0");
    let gt = dir.path().join("truth.bin");
    let mut child = Command::new(env!("CARGO_BIN_EXE_monsoon-sim"))
        .args([
            "--link",
            link.to_str().unwrap(),
            "--ground-truth",
            gt.to_str().unwrap(),
        ])
        .args([
            "--offset-ms",
            "37",
            "--drift-ppm",
            "80",
            "--seed",
            "9",
            "--initial-voltage",
            "4.2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(PathBuf::from(line.trim()), link, "prints the path to open");

    let port = link.to_str().unwrap();
    cli(&["--port", port, "status"]).unwrap();
    cli(&["--port", port, "usb", "off"]).unwrap();
    let csv = dir.path().join("rec.csv");
    let t_before = monsoon::sim::mono_ns();
    cli(&[
        "--port",
        port,
        "record",
        "--seconds",
        "2",
        "--out",
        csv.to_str().unwrap(),
    ])
    .unwrap();
    let trace = dir.path().join("rec.mtrace");
    cli(&[
        "--port",
        port,
        "record",
        "--seconds",
        "1",
        "--out",
        trace.to_str().unwrap(),
        "--voltage",
        "3.9",
    ])
    .unwrap();
    // SIGTERM: the simulator flushes its ground truth and removes the link.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(!link.exists());

    let samples = read_csv(&csv).unwrap();
    assert_eq!(samples.len(), 10_000);
    assert!(samples.iter().enumerate().all(|(i, s)| s.index == i as u64));
    assert!(samples.iter().all(|s| (s.voltage_v - 4.2).abs() < 1e-6));
    let mut r = TraceReader::open(&trace).unwrap();
    let d = r.read_all().unwrap();
    assert_eq!(d.samples.len(), 5_000);
    assert!(d.samples.iter().all(|s| (s.voltage_v - 3.9).abs() < 1e-6));

    // Ground truth: two sessions; the sample clock runs 80 ppm fast and
    // sample 0 is 37 ms after the start command.
    let truth = GroundTruth::read(&gt).unwrap();
    assert_eq!(truth.truncated_bytes, 0);
    assert_eq!(
        (truth.header.offset_ns, truth.header.drift_ppm),
        (37_000_000, 80.0)
    );
    let s1: Vec<_> = truth.session(1).collect();
    assert!(s1.len() >= 10_000);
    let span = (s1[10_000 - 1].t_ns - s1[0].t_ns) as f64 / 9_999.0;
    assert!(
        (span - 200_000.0 / (1.0 + 80e-6)).abs() < 0.01,
        "{span} ns per sample"
    );
    let lead = s1[0].t_ns - t_before;
    assert!(
        (37_000_000..37_000_000 + 1_500_000_000).contains(&lead),
        "sample 0 at +{lead} ns"
    );
    assert!(truth.session(2).count() >= 5_000);
    // The recording holds the simulator's true power.
    for (s, r) in samples.iter().zip(&s1) {
        assert!((s.main_power_w() - f64::from(r.power_w)).abs() < 0.006);
    }
}

#[test]
fn decode_convert_and_info_commands() {
    use monsoon::calibration::CalKind;
    use monsoon::sim::{ModelConfig, MonitorModel, TrueSample};
    let dir = tempfile::tempdir().unwrap();
    // A raw capture: a status reply, then 2000 packets, with junk spliced in.
    let mut m = MonitorModel::new(ModelConfig::default(), 4);
    m.apply(monsoon::protocol::Command::SetOutputVoltage(150));
    m.apply(monsoon::protocol::Command::START[1]);
    let mut raw = Vec::new();
    m.encode_status(&mut raw);
    for p in 0..2000 {
        if m.calibration_due() {
            m.encode_calibration(CalKind::Zero, &mut raw);
            m.encode_calibration(CalKind::Reference, &mut raw);
        }
        if p == 1000 {
            raw.extend_from_slice(&[0xFF, 0x13, 0x37]);
        }
        m.encode_measurement(
            &[TrueSample {
                main_a: 0.5,
                volts: 3.5,
                ..Default::default()
            }; 5],
            &mut raw,
        );
    }
    raw.extend_from_slice(&[46, 0x20]); // a frame cut short by the capture
    let raw_path = dir.path().join("capture.bin");
    std::fs::write(&raw_path, &raw).unwrap();
    let csv = dir.path().join("decoded.csv");
    let tr = dir.path().join("decoded.mtrace");
    cli(&[
        "decode",
        raw_path.to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ])
    .unwrap();
    cli(&[
        "decode",
        raw_path.to_str().unwrap(),
        "--out",
        tr.to_str().unwrap(),
    ])
    .unwrap();
    let a = read_csv(&csv).unwrap();
    assert_eq!(a.len(), 10_000);
    assert!(a
        .iter()
        .all(|s| (s.main_current_a - 0.5).abs() < 2e-3 && (s.voltage_v - 3.5).abs() < 1e-6));
    let b = TraceReader::open(&tr).unwrap().read_all().unwrap();
    assert_eq!(b.samples.len(), 10_000);
    // Round trip trace -> CSV -> trace.
    let back_csv = dir.path().join("back.csv");
    let back_tr = dir.path().join("back.mtrace");
    cli(&["convert", tr.to_str().unwrap(), back_csv.to_str().unwrap()]).unwrap();
    cli(&[
        "convert",
        back_csv.to_str().unwrap(),
        back_tr.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(TraceReader::open(&back_tr).unwrap().total_samples(), 10_000);
    cli(&["info", back_tr.to_str().unwrap()]).unwrap();
    cli(&["info", back_csv.to_str().unwrap()]).unwrap();
    // A file with no frame at all names itself.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"hello, not a monitor").unwrap();
    let e = cli(&[
        "decode",
        junk.to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(
        e.to_string().contains("junk.bin") && e.to_string().contains("no Monsoon frame"),
        "{e}"
    );
}
