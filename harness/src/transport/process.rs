//! A `serve` session over a child process's stdin/stdout (the agent itself, or the `ssh` /
//! `adb shell` that runs it). A reader thread turns stdout into lines so that waiting has a
//! timeout and notices Ctrl-C; stderr is kept (last lines) for error messages.
use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Session;

/// A session on a child process.
pub struct ProcessSession {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Whether the child is the agent itself (its pid is the agent's).
    agent_is_child: bool,
}

impl ProcessSession {
    /// Spawns `cmd` with piped stdio. `what` names it in errors.
    pub fn spawn(mut cmd: Command, what: String, agent_is_child: bool) -> Result<ProcessSession> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("start {what}"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("{what}: no stdout pipe"))?;
        let stderr_pipe = child.stderr.take();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("agent-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let stop = line.is_err();
                    if tx.send(line).is_err() || stop {
                        break;
                    }
                }
            })
            .context("start the agent reader thread")?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(pipe) = stderr_pipe {
            let keep = stderr.clone();
            std::thread::Builder::new()
                .name("agent-stderr".into())
                .spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                        tracing::debug!(target: "agent", "{line}");
                        if let Ok(mut k) = keep.lock() {
                            if k.len() >= 20 {
                                k.remove(0);
                            }
                            k.push(line);
                        }
                    }
                })
                .context("start the agent stderr thread")?;
        }
        Ok(ProcessSession {
            what,
            child,
            stdin,
            lines,
            stderr,
            agent_is_child,
        })
    }

    fn stderr_tail(&self) -> String {
        // Give the stderr thread a moment to collect the last words.
        std::thread::sleep(Duration::from_millis(50));
        let lines = self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default();
        if lines.trim().is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with:\n{lines}")
        }
    }

    fn exit_note(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!(" ({status})"),
            _ => String::new(),
        }
    }
}

impl Session for ProcessSession {
    fn send_line(&mut self, line: &str) -> Result<()> {
        let what = self.what.clone();
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{what}: the session is closed"))?;
        let sent = writeln!(stdin, "{line}").and_then(|_| stdin.flush());
        if let Err(e) = sent {
            let note = self.exit_note();
            bail!(
                "{what}: could not send a request ({e}): the agent has gone{note}{}",
                self.stderr_tail()
            );
        }
        Ok(())
    }

    fn recv_line(&mut self, timeout: Duration) -> Result<String> {
        let t0 = Instant::now();
        loop {
            if crate::interrupt::requested() {
                bail!(crate::interrupt::Interrupted);
            }
            let left = timeout.saturating_sub(t0.elapsed());
            if left.is_zero() {
                bail!("{}: no answer within {:?}", self.what, timeout);
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(Ok(line)) if line.trim().is_empty() => continue,
                Ok(Ok(line)) => return Ok(line),
                Ok(Err(e)) => bail!("{}: reading its answer: {e}", self.what),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    let note = self.exit_note();
                    bail!(
                        "{}: the agent ended without answering{note}{}",
                        self.what,
                        self.stderr_tail()
                    );
                }
            }
        }
    }

    fn local_pid(&self) -> Option<u32> {
        self.agent_is_child.then(|| self.child.id())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn close(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(
                stdin,
                "{{\"v\":{},\"id\":0,\"cmd\":\"shutdown\"}}",
                ulayer::protocol::PROTOCOL_VERSION
            );
            let _ = stdin.flush();
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for ProcessSession {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Runs a command to completion, failing with its stderr when it fails. For the short
/// helper commands of ssh/scp/adb.
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
