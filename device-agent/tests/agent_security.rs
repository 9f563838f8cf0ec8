//! The agent's security statement: `ulayer-agent serve` speaks its protocol on stdin/stdout
//! only — it never listens on a socket (loopback or not) — and never hands text it receives
//! to a shell or starts a process with it.
//!
//! Checked twice: (a) the agent's source holds no socket and no process-spawning code (the
//! one exception, `onnx/reference.rs`, is the onnxruntime oracle of the numerical tests,
//! which starts Python; no serving code reaches it); (b) the real binary, sent shell text in
//! every string field of the protocol, answers each request with an error, runs none of it,
//! and holds no socket while it serves.
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use ulayer::backend::Precision;
use ulayer::protocol::{
    BenchRequest, ClassifyRequest, JobRequest, Request, RequestEnvelope, Response,
    ResponseEnvelope, SyncPattern, PROTOCOL_VERSION,
};

const AGENT: &str = env!("CARGO_BIN_EXE_ulayer-agent");

// ---------------------------------------------------------------------------------------
// (a) The source.

/// Files compiled into the agent, except the test oracle (see the module docs).
fn agent_sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files.retain(|p| !p.ends_with("onnx/reference.rs"));
    files
}

/// The serving path itself: the protocol server and its handlers, the protocol types, the
/// binary's `serve`. `bind(` is checked here only: elsewhere `bind` binds layers to
/// backends.
fn is_serving_code(p: &Path) -> bool {
    let s = p.to_string_lossy();
    s.contains("/src/agent/") || s.ends_with("/src/protocol.rs") || s.contains("/src/bin/")
}

/// `text` without its comments (`//` to the end of the line, `/* */`); string and char
/// literals, raw strings included, are kept as they are.
fn strip_comments(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            i += 2;
            while i < c.len() && !(c[i] == '*' && c.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c[i] == 'r' && (next == Some('"') || next == Some('#')) {
            // A raw string r"..." / r#"..."# (or an identifier starting with r).
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            let mut k = j + 1;
            while k < c.len() {
                if c[k] == '"' && (1..=hashes).all(|h| c.get(k + h) == Some(&'#')) {
                    k += 1 + hashes;
                    break;
                }
                k += 1;
            }
            out.extend(&c[i..k.min(c.len())]);
            i = k;
        } else if c[i] == '"' {
            let start = i;
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.extend(&c[start..i.min(c.len())]);
        } else if c[i] == '\'' && c.get(i + 2) == Some(&'\'') {
            out.extend(&c[i..i + 3]);
            i += 3;
        } else if c[i] == '\'' && next == Some('\\') {
            // An escaped char literal ('\'' , '\n', '\u{..}').
            let start = i;
            i += 3;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.extend(&c[start..i.min(c.len())]);
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// What must not appear in agent code: sockets, and starting processes or shells.
const FORBIDDEN: &[&str] = &[
    "TcpListener",
    "TcpStream",
    "UdpSocket",
    "UnixListener",
    "UnixStream",
    "UnixDatagram",
    "std::net",
    "os::unix::net",
    "libc::socket",
    "libc::bind",
    "libc::listen",
    "libc::accept",
    "Command::new",
    "process::Command",
    "libc::system",
    "libc::popen",
    "libc::fork",
    "libc::exec",
    "\"sh\"",
    "\"/bin/sh\"",
    "\"bash\"",
    "\"-c\"",
];

fn violations(path: &Path, code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let serving = is_serving_code(path);
        for pat in FORBIDDEN.iter().copied().chain(serving.then_some("bind(")) {
            if line.contains(pat) {
                found.push(format!(
                    "{}:{}: {pat}: {}",
                    path.display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn comment_stripping_keeps_code_and_strings() {
    let text = "let a = 1; // TcpListener\nlet u = \"http://x\"; /* Command::new */ let b = r#\"a\"b\"#; // x\nlet q = '\\''; let c = '\"'; Command::new(\"sh\")\n";
    let s = strip_comments(text);
    assert!(!s.contains("TcpListener"), "{s}");
    assert!(s.contains("\"http://x\""), "{s}");
    assert!(s.contains("r#\"a\"b\"#"), "{s}");
    assert_eq!(
        s.matches("Command::new").count(),
        1,
        "only the one outside the comment: {s}"
    );
    assert_eq!(violations(Path::new("src/agent/x.rs"), &s).len(), 2, "{s}");
}

#[test]
fn the_agent_source_has_no_sockets_and_starts_no_processes() {
    let files = agent_sources();
    let serving: Vec<&PathBuf> = files.iter().filter(|p| is_serving_code(p)).collect();
    for must in ["agent/serve.rs", "protocol.rs", "bin/ulayer-agent/main.rs"] {
        assert!(
            serving.iter().any(|p| p.ends_with(must)),
            "{must} is among the scanned serving files: {serving:?}"
        );
    }
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let code = strip_comments(&text);
        found.extend(violations(f, &code));
        // The excluded oracle is not reachable from the agent's code.
        assert!(
            !code.contains("OrtReference") && !code.contains("onnx::reference"),
            "{} uses the onnxruntime oracle",
            f.display()
        );
    }
    assert!(
        found.is_empty(),
        "socket or process code in the agent:\n{}",
        found.join("\n")
    );
    assert!(files.len() > 20, "scanned {} files", files.len());
}

// ---------------------------------------------------------------------------------------
// (b) The running agent.

struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Agent {
    fn start() -> Agent {
        let mut child = Command::new(AGENT)
            .arg("serve")
            .env("ULAB_DATA_DIR", datasets::default_cache_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the agent starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Agent {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, line: &str) -> ResponseEnvelope {
        writeln!(self.stdin, "{line}").expect("write a request");
        self.stdin.flush().expect("flush");
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).expect("read an answer");
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"))
    }
}

/// Inodes of the sockets among a process's open files.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/<pid>/fd");
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Inodes of listening TCP sockets and bound UDP sockets in the process's network
/// namespace (`/proc/<pid>/net/{tcp,tcp6,udp,udp6}`; TCP state 0A is LISTEN).
fn listening_inodes(pid: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let (Some(state), Some(inode)) = (cols.get(3), cols.get(9)) else {
                continue;
            };
            if table.starts_with("udp") || *state == "0A" {
                if let Ok(i) = inode.parse() {
                    out.push(i);
                }
            }
        }
    }
    out
}

fn assert_no_sockets(pid: u32, when: &str) {
    let mine = socket_inodes(pid);
    let listening = listening_inodes(pid);
    let listening_mine: Vec<&u64> = mine.iter().filter(|i| listening.contains(i)).collect();
    assert!(
        listening_mine.is_empty(),
        "{when}: the agent listens on sockets {listening_mine:?}"
    );
    assert!(mine.is_empty(), "{when}: the agent holds sockets {mine:?}");
}

fn envelope(id: u64, request: Request) -> String {
    serde_json::to_string(&RequestEnvelope {
        v: PROTOCOL_VERSION,
        id,
        request,
    })
    .expect("encode")
}

#[test]
fn shell_text_in_every_string_field_is_refused_and_never_run_and_no_socket_is_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut agent = Agent::start();
    let pid = agent.child.id();
    let hello = agent.ask(r#"{"v":1,"id":1,"cmd":"hello"}"#);
    assert!(matches!(hello.response, Response::Hello(_)), "{hello:?}");
    assert_no_sockets(pid, "after hello");

    // Each payload touches its own marker file if a shell ever sees it.
    let mut n = 0;
    let mut payload = |form: usize| {
        n += 1;
        let m = tmp.path().join(format!("PWNED_{n}"));
        let m = m.display();
        match form % 6 {
            0 => format!("$(touch {m})"),
            1 => format!("`touch {m}`"),
            2 => format!("x; touch {m}"),
            3 => format!("x | touch {m}"),
            4 => format!("x && touch {m}"),
            _ => format!("x\ntouch {m}"),
        }
    };
    let bench = |model: String, mechanism: String| BenchRequest {
        model,
        iterations: 1,
        warmup: 0,
        precision: Precision::F32,
        threads: 1,
        traces: false,
        mechanism,
        min_duration_ms: 0,
        measured_fallback: true,
        predictor: Default::default(),
    };
    let classify = |model: String, images: Vec<String>, mechanism: String| ClassifyRequest {
        model,
        images,
        top: 5,
        precision: Precision::F32,
        threads: 1,
        mechanism,
    };
    let job = |b: BenchRequest| {
        Request::Job(JobRequest {
            bench: b,
            idle_ms: 0,
            pattern: SyncPattern {
                bursts_ms: vec![1],
                gap_ms: 1,
            },
        })
    };
    // A small seeded model that loads, for the fields checked after the model.
    let ok_model = || "squeezenet1.1".to_string();
    let cpu = || "cpu".to_string();
    let mut requests: Vec<(String, String)> = Vec::new();
    for form in 0..6 {
        let fields: Vec<(&str, Request)> = vec![
            (
                "classify.model",
                Request::Classify(classify(payload(form), vec![], cpu())),
            ),
            (
                "classify.model (.onnx)",
                Request::Classify(classify(format!("{}.onnx", payload(form)), vec![], cpu())),
            ),
            (
                "classify.images",
                Request::Classify(classify(ok_model(), vec![payload(form)], cpu())),
            ),
            (
                "classify.mechanism",
                Request::Classify(classify(ok_model(), vec![], payload(form))),
            ),
            ("bench.model", Request::Bench(bench(payload(form), cpu()))),
            (
                "bench.mechanism",
                Request::Bench(bench(ok_model(), payload(form))),
            ),
            ("job.bench.model", job(bench(payload(form), cpu()))),
            ("job.bench.mechanism", job(bench(ok_model(), payload(form)))),
        ];
        for (what, r) in fields {
            let id = requests.len() as u64 + 10;
            requests.push((what.to_string(), envelope(id, r)));
        }
        // Fields that are not free text in the protocol: the command and the precision.
        let id = requests.len() as u64 + 10;
        let cmd = serde_json::json!({"v": PROTOCOL_VERSION, "id": id, "cmd": payload(form)});
        requests.push(("cmd".into(), cmd.to_string()));
        let id = requests.len() as u64 + 10;
        let precision = serde_json::json!({
            "v": PROTOCOL_VERSION, "id": id, "cmd": "bench",
            "model": ok_model(), "precision": payload(form)
        });
        requests.push(("bench.precision".into(), precision.to_string()));
    }
    for (i, (what, line)) in requests.iter().enumerate() {
        let answer = agent.ask(line);
        assert_eq!(answer.id, i as u64 + 10, "{what}: {answer:?}");
        assert!(
            matches!(answer.response, Response::Error { .. }),
            "{what}: shell text must be refused, got {:?} for {line}",
            answer.response
        );
    }
    assert_no_sockets(pid, "after the requests");
    let bye = agent.ask(r#"{"v":1,"id":999,"cmd":"shutdown"}"#);
    assert!(matches!(bye.response, Response::Bye), "{bye:?}");
    drop(agent.stdin);
    assert!(agent.child.wait().expect("the agent exits").success());

    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("read the marker folder")
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    assert!(left.is_empty(), "the agent ran shell text: {left:?}");
}
