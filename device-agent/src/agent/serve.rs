//! The protocol server: JSON lines on a reader/writer pair (stdin/stdout for `serve`).
use crate::protocol::{Request, RequestEnvelope, Response, ResponseEnvelope, PROTOCOL_VERSION};
use std::io::{BufRead, Write};
use std::path::Path;

/// Answers one request. Never panics on bad input: failures become `Response::Error`.
pub fn handle(request: &Request, data_dir: &Path) -> Response {
    let result = match request {
        Request::Hello => Ok(Response::Hello(super::agent_info())),
        Request::Models => super::model_infos(data_dir).map(|models| Response::Models { models }),
        Request::Classify(c) => super::classify_with(
            &c.model,
            &c.images,
            c.top,
            c.precision,
            &c.mechanism,
            c.threads,
            data_dir,
        )
        .map(|(results, _)| Response::Classified { results }),
        Request::Bench(b) => super::bench(b, data_dir, |_, _| {}).map(Response::Bench),
        Request::Job(j) => super::run_job(j, data_dir).map(Response::Job),
        Request::Shutdown => Ok(Response::Bye),
    };
    result.unwrap_or_else(|e| Response::Error {
        message: e.to_string(),
    })
}

/// Parses one request line; a bad line gives the error response to send (with id 0 when the
/// id itself could not be read).
pub fn parse_line(line: &str, line_no: usize) -> Result<RequestEnvelope, Box<ResponseEnvelope>> {
    let fail = |id: u64, message: String| {
        Box::new(ResponseEnvelope {
            v: PROTOCOL_VERSION,
            id,
            response: Response::Error { message },
        })
    };
    let value: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| fail(0, format!("line {line_no}: not JSON: {e}")))?;
    let id = value.get("id").and_then(|v| v.as_u64()).unwrap_or(0);
    match value.get("v").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => return Err(fail(id, format!("line {line_no}: protocol version {v} requested, this agent speaks {PROTOCOL_VERSION}"))),
        None => return Err(fail(id, format!("line {line_no}: missing protocol version \"v\""))),
    }
    serde_json::from_value(value).map_err(|e| fail(id, format!("line {line_no}: bad request: {e}")))
}

/// Serves requests until `shutdown` or end of input. Returns the number of requests answered.
pub fn serve(
    input: impl BufRead,
    mut output: impl Write,
    data_dir: &Path,
) -> std::io::Result<usize> {
    let mut answered = 0;
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let (reply, stop) = match parse_line(&line, i + 1) {
            Ok(req) => {
                let stop = matches!(req.request, Request::Shutdown);
                (
                    ResponseEnvelope {
                        v: PROTOCOL_VERSION,
                        id: req.id,
                        response: handle(&req.request, data_dir),
                    },
                    stop,
                )
            }
            Err(reply) => (*reply, false),
        };
        let text = serde_json::to_string(&reply).map_err(std::io::Error::other)?;
        writeln!(output, "{text}")?;
        output.flush()?;
        answered += 1;
        if stop {
            break;
        }
    }
    Ok(answered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> Vec<ResponseEnvelope> {
        let mut out = Vec::new();
        serve(input.as_bytes(), &mut out, Path::new("/nonexistent")).expect("in-memory io");
        String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("valid response"))
            .collect()
    }

    #[test]
    fn hello_then_shutdown_stops() {
        let r = run("{\"v\":1,\"id\":7,\"cmd\":\"hello\"}\n{\"v\":1,\"id\":8,\"cmd\":\"shutdown\"}\n{\"v\":1,\"id\":9,\"cmd\":\"hello\"}\n");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].id, 7);
        assert!(matches!(r[0].response, Response::Hello(ref a) if a.protocol == PROTOCOL_VERSION));
        assert!(matches!(r[1].response, Response::Bye));
    }

    #[test]
    fn bad_lines_get_errors_naming_the_line() {
        let r = run("not json\n{\"v\":99,\"id\":3,\"cmd\":\"hello\"}\n{\"v\":1,\"id\":4,\"cmd\":\"nope\"}\n");
        let msgs: Vec<String> = r
            .iter()
            .map(|e| match &e.response {
                Response::Error { message } => message.clone(),
                other => panic!("expected an error, got {other:?}"),
            })
            .collect();
        assert!(msgs[0].starts_with("line 1: not JSON"));
        assert!(msgs[1].contains("version 99") && r[1].id == 3);
        assert!(msgs[2].starts_with("line 3: bad request"));
    }

    #[test]
    fn unknown_model_is_an_error_response() {
        let r = run("{\"v\":1,\"id\":1,\"cmd\":\"bench\",\"model\":\"no-such-net\"}\n");
        assert!(
            matches!(&r[0].response, Response::Error { message } if message.contains("no-such-net"))
        );
    }
}
