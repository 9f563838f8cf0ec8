//! QUInt8 through the agent, end to end on the real data: the protocol's classify and bench
//! at `"precision":"quint8"`, and the `accuracy` command's F32 / QUInt8 table.
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use ulayer::backend::Precision;
use ulayer::protocol::{Response, ResponseEnvelope};

const AGENT: &str = env!("CARGO_BIN_EXE_ulayer-agent");

fn data_dir() -> PathBuf {
    let dir = datasets::default_cache_dir();
    datasets::fetch(&dir).expect("fetching the bundled data (run ./lab setup if offline)");
    dir
}

#[test]
fn protocol_classifies_and_benches_at_quint8() {
    let dir = data_dir();
    let chelsea = datasets::bundled_photos(&dir)
        .expect("photos")
        .into_iter()
        .find(|p| p.name.starts_with("chelsea"))
        .expect("chelsea.png is bundled");
    let mut child = Command::new(AGENT)
        .env("ULAB_DATA_DIR", &dir)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let requests = [
        format!(
            r#"{{"v":1,"id":1,"cmd":"classify","model":"efficientnet-lite0","images":["{}"],"top":5,"precision":"quint8","threads":2}}"#,
            chelsea.path.display()
        ),
        r#"{"v":1,"id":2,"cmd":"bench","model":"mobilenet-v1","iterations":3,"warmup":1,"precision":"quint8","threads":2}"#.to_string(),
        r#"{"v":1,"id":3,"cmd":"shutdown"}"#.to_string(),
    ];
    for r in &requests {
        writeln!(stdin, "{r}").expect("writes");
    }
    drop(stdin);
    let replies: Vec<ResponseEnvelope> = BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("a response"))
        .collect();
    assert!(child.wait().expect("exits").success());
    match &replies[0].response {
        Response::Classified { results } => {
            let top = results[0].top[0].index;
            assert!(
                chelsea.accepted.contains(&top),
                "quint8 top-1 {top} not among {:?}",
                chelsea.accepted
            );
        }
        other => panic!("classify: {other:?}"),
    }
    match &replies[1].response {
        Response::Bench(b) => {
            assert_eq!(b.precision, Precision::Quint8);
            assert_eq!(b.latency.runs, 3);
            assert!(b.layers.iter().all(|l| l.p50_ms >= 0.0));
        }
        other => panic!("bench: {other:?}"),
    }
    assert!(matches!(replies[2].response, Response::Bye));
}

#[test]
fn accuracy_command_prints_f32_and_quint8() {
    let dir = data_dir();
    let out = Command::new(AGENT)
        .env("ULAB_DATA_DIR", &dir)
        .args([
            "accuracy",
            "--model",
            "efficientnet-lite0",
            "--threads",
            "2",
            "--json",
        ])
        .output()
        .expect("agent runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "f32 and the default calibration");
    assert_eq!(rows[0]["label"], "f32");
    let n = |r: &serde_json::Value, k: &str| r[k].as_u64().expect("count");
    let (f, q) = (&rows[0], &rows[1]);
    assert_eq!(n(f, "images"), 18);
    // Held-out calibration, 18 centre crops: QUInt8 keeps F32's answers.
    assert!(n(q, "top5") + 1 >= n(f, "top5"), "{q}");
    assert!(n(q, "top5_agreement") >= 17, "{q}");
    assert!(n(q, "top1_agreement") >= 16, "{q}");
}
