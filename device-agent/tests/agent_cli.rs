//! End-to-end tests of the `ulayer-agent` binary: the CLI and the JSON-lines protocol over a
//! real child process, on the real fetched data.
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use ulayer::protocol::{Response, ResponseEnvelope};

const AGENT: &str = env!("CARGO_BIN_EXE_ulayer-agent");

fn data_dir() -> PathBuf {
    let dir = datasets::default_cache_dir();
    datasets::fetch(&dir).expect("fetching the bundled data (run ./lab setup if offline)");
    dir
}

fn agent() -> Command {
    let mut c = Command::new(AGENT);
    c.env("ULAB_DATA_DIR", data_dir());
    c
}

#[test]
fn serve_answers_hello_models_classify_bench_and_shutdown() {
    let dir = data_dir();
    let chelsea = datasets::bundled_photos(&dir)
        .expect("photos")
        .into_iter()
        .find(|p| p.name.starts_with("chelsea"))
        .expect("chelsea.png is bundled");
    let mut child = agent()
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let requests = [
        r#"{"v":1,"id":1,"cmd":"hello"}"#.to_string(),
        r#"{"v":1,"id":2,"cmd":"models"}"#.to_string(),
        format!(r#"{{"v":1,"id":3,"cmd":"classify","model":"efficientnet-lite0","images":["{}"],"top":5}}"#, chelsea.path.display()),
        r#"{"v":1,"id":4,"cmd":"bench","model":"squeezenet1.1","iterations":3,"warmup":1,"threads":1}"#.to_string(),
        r#"{"v":1,"id":5,"cmd":"bench","model":"no-such-net"}"#.to_string(),
        r#"{"v":1,"id":6,"cmd":"shutdown"}"#.to_string(),
    ];
    for r in &requests {
        writeln!(stdin, "{r}").expect("write request");
    }
    drop(stdin);
    let out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let replies: Vec<ResponseEnvelope> = out
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("each line is a response"))
        .collect();
    assert!(child.wait().expect("agent exits").success());
    assert_eq!(
        replies.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert!(
        matches!(&replies[0].response, Response::Hello(a) if a.protocol == ulayer::protocol::PROTOCOL_VERSION)
    );
    match &replies[1].response {
        Response::Models { models } => {
            let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
            for want in [
                "vgg16",
                "alexnet",
                "googlenet",
                "squeezenet1.1",
                "mobilenet-v1",
                "efficientnet-lite0",
            ] {
                assert!(names.contains(&want), "{want} missing from {names:?}");
            }
        }
        other => panic!("models: {other:?}"),
    }
    match &replies[2].response {
        Response::Classified { results } => assert!(
            (281..=285).contains(&results[0].top[0].index),
            "chelsea → {:?}",
            results[0].top
        ),
        other => panic!("classify: {other:?}"),
    }
    match &replies[3].response {
        Response::Bench(b) => {
            assert_eq!(b.latency.runs, 3);
            assert!(b.latency.p50_ms > 0.0 && !b.layers.is_empty());
        }
        other => panic!("bench: {other:?}"),
    }
    assert!(
        matches!(&replies[4].response, Response::Error { message } if message.contains("no-such-net"))
    );
    assert!(matches!(replies[5].response, Response::Bye));
}

#[test]
fn cli_errors_name_the_file_at_fault() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let not_image = tmp.path().join("notes.png");
    std::fs::write(&not_image, b"this is not a PNG").expect("write");
    let out = agent()
        .args(["classify", "--model", "squeezenet1.1", "--image"])
        .arg(&not_image)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notes.png"), "stderr: {err}");

    let junk = tmp.path().join("junk.onnx");
    std::fs::write(&junk, [0x08u8, 0xff, 0xff, 0x13, 0x37, 0x00, 0x42]).expect("write");
    let out = agent()
        .args(["bench", "--model"])
        .arg(&junk)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("junk.onnx") && !err.contains("panicked"),
        "stderr: {err}"
    );

    let out = agent()
        .args(["bench", "--model", "resnet-9000"])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model 'resnet-9000'"));
}

#[test]
fn models_json_marks_seeded_and_real_weights() {
    let out = agent().args(["models", "--json"]).output().expect("runs");
    assert!(out.status.success());
    let models: Vec<ulayer::protocol::ModelInfo> =
        serde_json::from_slice(&out.stdout).expect("json");
    for m in &models {
        let want = if m.name == "efficientnet-lite0" {
            ulayer::WeightsOrigin::Real
        } else {
            ulayer::WeightsOrigin::Seeded
        };
        assert_eq!(m.weights, want, "{}", m.name);
    }
}
