//! Transports: how the host starts the agent's `serve` session on the device, exchanges
//! protocol lines with it, and puts files there.
//!
//! - [`local::Local`]: the agent is a child process on this machine.
//! - [`ssh::Ssh`]: the system `ssh`/`scp` with the user's keys; agent binary and data pushed.
//! - [`adb::Adb`]: the `adb` client: push to `/data/local/tmp`, `shell`, `pull`. Measured
//!   jobs run detached on the phone (USB passthrough off cuts adb), their answer pulled after.
//!
//! Every session is checked with `hello` for the protocol version before use.
pub mod adb;
pub mod local;
pub mod process;
pub mod ssh;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use ulayer::protocol::{
    AgentInfo, Request, RequestEnvelope, Response, ResponseEnvelope, PROTOCOL_VERSION,
};

use crate::campaign::{Campaign, TransportKind};

/// Called around the measured window of a job: `begin` once the device has the whole job
/// (switch USB passthrough off), `end` when it is over (switch it back on).
pub trait MeasuredWindow {
    fn begin(&mut self) -> Result<()>;
    fn end(&mut self) -> Result<()>;
}

/// A window that does nothing (no monitor).
pub struct NoWindow;

impl MeasuredWindow for NoWindow {
    fn begin(&mut self) -> Result<()> {
        Ok(())
    }
    fn end(&mut self) -> Result<()> {
        Ok(())
    }
}

/// An open `serve` session: one protocol line out, one line back.
pub trait Session: Send {
    /// Sends one line (no newline).
    fn send_line(&mut self, line: &str) -> Result<()>;
    /// Waits for the next line, at most `timeout` (and gives up early on Ctrl-C).
    fn recv_line(&mut self, timeout: Duration) -> Result<String>;
    /// The agent's process id on this machine, when it runs here (the simulated monitor
    /// follows it).
    fn local_pid(&self) -> Option<u32>;
    /// Runs a measured job request: the device gets it whole, then `window.begin()`, the
    /// wait, `window.end()`. `expected` is how long the job should take (transports that
    /// cannot talk to the device during the window use it).
    fn run_job(
        &mut self,
        line: &str,
        expected: Duration,
        timeout: Duration,
        window: &mut dyn MeasuredWindow,
    ) -> Result<String> {
        let _ = expected;
        self.send_line(line)?;
        window.begin()?;
        let answer = self.recv_line(timeout);
        let ended = window.end();
        let answer = answer?;
        ended?;
        Ok(answer)
    }
    /// Kills the agent (tests, and cleanup after a failure).
    fn kill(&mut self);
    /// Ends the session politely (shutdown), then kills what is left.
    fn close(&mut self);
}

/// A way to reach a device.
pub trait Transport: Send {
    /// For logs and metadata (e.g. "ssh lab@pixel-host").
    fn describe(&self) -> String;
    /// Puts the agent and its data on the device (once per campaign; no-op locally).
    fn prepare(&mut self) -> Result<()>;
    /// Starts a `serve` session.
    fn connect(&mut self) -> Result<Box<dyn Session>>;
    /// Makes a file of this machine readable on the device; returns its device path.
    /// `name` is a relative name unique within the campaign.
    fn put_file(&mut self, local: &Path, name: &str) -> Result<String>;
    /// The device path of a file in the pushed data folder (relative to it).
    fn data_path(&self, rel: &Path) -> String;
    /// Whether measured jobs run detached (the host cannot hear the device while USB
    /// passthrough is off), so that the runner must tell how long they take.
    fn detached_jobs(&self) -> bool {
        false
    }
}

/// The agent binary on this machine: the campaign's, else beside the running executable,
/// else `target/release/ulayer-agent` of the repository.
pub fn agent_binary(campaign: &Campaign, base: &Path) -> Result<PathBuf> {
    if let Some(p) = &campaign.device.agent {
        let p = if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        };
        if !p.is_file() {
            bail!(
                "[device] agent = {}: no such file (build it: cargo build --release -p ulayer --bin ulayer-agent)",
                p.display()
            );
        }
        return Ok(p);
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("ulayer-agent"));
            if let Some(up) = dir.parent() {
                candidates.push(up.join("ulayer-agent"));
            }
        }
    }
    candidates.push(datasets::repo_root().join("target/release/ulayer-agent"));
    candidates.into_iter().find(|p| p.is_file()).with_context(|| {
        "the agent binary ulayer-agent was not found beside ulab nor in target/release: build it with `cargo build --release -p ulayer --bin ulayer-agent` or set [device] agent".to_string()
    })
}

/// The data folder on this machine.
pub fn data_dir(campaign: &Campaign, base: &Path) -> PathBuf {
    match &campaign.device.data_dir {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => base.join(p),
        None => datasets::default_cache_dir(),
    }
}

/// The transport a campaign asks for. `base` resolves relative paths (the campaign file's
/// folder).
pub fn open(campaign: &Campaign, base: &Path) -> Result<Box<dyn Transport>> {
    let agent = agent_binary(campaign, base)?;
    let data = data_dir(campaign, base);
    let d = &campaign.device;
    Ok(match d.transport {
        TransportKind::Local => Box::new(local::Local::new(agent, data)),
        TransportKind::Ssh => Box::new(ssh::Ssh::new(
            ssh::SshTarget {
                host: d.host.clone().unwrap_or_default(),
                port: d.port,
                identity: d.identity.clone(),
                options: d.ssh_options.clone(),
            },
            agent,
            data,
            d.remote_dir
                .clone()
                .unwrap_or_else(|| "/tmp/ulab-agent".into()),
        )),
        TransportKind::Adb => Box::new(adb::Adb::new(
            d.serial.clone(),
            agent,
            data,
            d.remote_dir
                .clone()
                .unwrap_or_else(|| "/data/local/tmp/ulab".into()),
        )),
    })
}

/// A protocol client over a session: numbered requests, checked answers.
pub struct Agent {
    session: Box<dyn Session>,
    next_id: u64,
    /// What `hello` said.
    pub info: AgentInfo,
}

impl Agent {
    /// Says hello and checks the protocol version.
    pub fn connect(session: Box<dyn Session>) -> Result<Agent> {
        let mut a = Agent {
            session,
            next_id: 1,
            info: AgentInfo {
                agent_version: String::new(),
                protocol: 0,
                arch: String::new(),
                cpus: 0,
                cpu_isa: String::new(),
            },
        };
        match a.request(Request::Hello, Duration::from_secs(60))? {
            Response::Hello(info) => {
                if info.protocol != PROTOCOL_VERSION {
                    bail!(
                        "the agent speaks protocol {} and this ulab speaks {}: push a matching ulayer-agent",
                        info.protocol,
                        PROTOCOL_VERSION
                    );
                }
                if info.agent_version != env!("CARGO_PKG_VERSION") {
                    tracing::warn!(
                        agent = %info.agent_version,
                        ulab = env!("CARGO_PKG_VERSION"),
                        "agent and ulab versions differ (same protocol)"
                    );
                }
                a.info = info;
            }
            other => bail!("the agent answered hello with {other:?}"),
        }
        Ok(a)
    }

    fn envelope(&mut self, request: Request) -> Result<(u64, String)> {
        let id = self.next_id;
        self.next_id += 1;
        let line = serde_json::to_string(&RequestEnvelope {
            v: PROTOCOL_VERSION,
            id,
            request,
        })
        .context("encode a request")?;
        Ok((id, line))
    }

    fn decode(id: u64, line: &str) -> Result<Response> {
        let env: ResponseEnvelope = serde_json::from_str(line).with_context(|| {
            format!(
                "the agent's answer is not a protocol line: {}",
                truncate(line, 200)
            )
        })?;
        if env.id != id {
            bail!("the agent answered request {} while {id} was asked", env.id);
        }
        if let Response::Error { message } = &env.response {
            bail!("the agent refused: {message}");
        }
        Ok(env.response)
    }

    /// One request, one answer (an `error` answer is an `Err`).
    pub fn request(&mut self, request: Request, timeout: Duration) -> Result<Response> {
        let (id, line) = self.envelope(request)?;
        self.session.send_line(&line)?;
        let answer = self.session.recv_line(timeout)?;
        Self::decode(id, &answer)
    }

    /// A measured job (see [`Session::run_job`]).
    pub fn job(
        &mut self,
        request: Request,
        expected: Duration,
        timeout: Duration,
        window: &mut dyn MeasuredWindow,
    ) -> Result<Response> {
        let (id, line) = self.envelope(request)?;
        let answer = self.session.run_job(&line, expected, timeout, window)?;
        Self::decode(id, &answer)
    }

    /// The agent's pid on this machine, if local.
    pub fn local_pid(&self) -> Option<u32> {
        self.session.local_pid()
    }

    /// Kills the agent process.
    pub fn kill(&mut self) {
        self.session.kill();
    }

    /// Shuts the session down.
    pub fn close(mut self) {
        self.session.close();
    }
}

/// The first `n` characters of `s`.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Quotes a word for a POSIX shell (the remote side of ssh and adb shell).
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(sh_quote("/data/local/tmp/ulab"), "/data/local/tmp/ulab");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
