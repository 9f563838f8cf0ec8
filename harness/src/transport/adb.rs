//! The adb transport: the real `adb` client. The agent and data are pushed to
//! `/data/local/tmp/ulab` (the campaign may choose another folder), sessions run `adb shell`,
//! and measured jobs run **detached**: switching the monitor's USB passthrough off cuts adb,
//! so the job's request is pushed as a file, the agent started with `nohup` reading it and
//! writing its answer to a file, and after the window (USB back on) the answer is pulled.
//!
//! No phone can be attached where this was written: the command lines are unit-tested
//! (below), the transport has not run against a device.
use anyhow::{bail, Context, Result};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::process::{run_checked, ProcessSession};
use super::{sh_quote, MeasuredWindow, Session, Transport};

/// Builds adb command lines (argument vectors without the leading `adb`).
#[derive(Clone, Debug, PartialEq)]
pub struct AdbCommands {
    pub serial: Option<String>,
    /// The device folder.
    pub dir: String,
}

impl AdbCommands {
    fn base(&self) -> Vec<String> {
        match &self.serial {
            Some(s) => vec!["-s".into(), s.clone()],
            None => Vec::new(),
        }
    }

    /// `adb shell <one command line>`.
    pub fn shell(&self, line: &str) -> Vec<String> {
        let mut a = self.base();
        a.push("shell".into());
        a.push(line.into());
        a
    }

    /// `adb push LOCAL REMOTE`.
    pub fn push(&self, local: &Path, remote: &str) -> Vec<String> {
        let mut a = self.base();
        a.extend(["push".into(), local.display().to_string(), remote.into()]);
        a
    }

    /// `adb pull REMOTE LOCAL`.
    pub fn pull(&self, remote: &str, local: &Path) -> Vec<String> {
        let mut a = self.base();
        a.extend(["pull".into(), remote.into(), local.display().to_string()]);
        a
    }

    /// `adb wait-for-device`.
    pub fn wait_for_device(&self) -> Vec<String> {
        let mut a = self.base();
        a.push("wait-for-device".into());
        a
    }

    fn q(&self) -> String {
        sh_quote(&self.dir)
    }

    /// The interactive `serve` session.
    pub fn serve(&self) -> Vec<String> {
        let d = self.q();
        self.shell(&format!(
            "cd {d} && ULAB_DATA_DIR={d}/data exec ./ulayer-agent serve"
        ))
    }

    /// Starts job `n` detached: the agent reads `jobs/n.json`, answers into `jobs/n.out`,
    /// and `jobs/n.done` gets its exit status when it is over.
    pub fn start_detached(&self, n: u64) -> Vec<String> {
        let d = self.q();
        self.shell(&format!(
            "cd {d} && rm -f jobs/{n}.out jobs/{n}.err jobs/{n}.done && \
             (nohup sh -c 'ULAB_DATA_DIR=./data ./ulayer-agent serve < jobs/{n}.json > jobs/{n}.out 2> jobs/{n}.err; echo $? > jobs/{n}.done' > /dev/null 2>&1 &)"
        ))
    }

    /// Prints job `n`'s exit status if it is over (nothing otherwise).
    pub fn poll_detached(&self, n: u64) -> Vec<String> {
        self.shell(&format!(
            "cat {}/jobs/{n}.done 2>/dev/null || true",
            self.q()
        ))
    }

    /// The device path of a job file.
    pub fn job_file(&self, n: u64, ext: &str) -> String {
        format!("{}/jobs/{n}.{ext}", self.dir)
    }
}

fn adb(args: &[String], what: &str) -> Result<String> {
    run_checked(Command::new("adb").args(args), &format!("adb {what}"))
}

/// The agent on an Android device.
pub struct Adb {
    cmds: AdbCommands,
    agent: PathBuf,
    data: PathBuf,
}

impl Adb {
    pub fn new(serial: Option<String>, agent: PathBuf, data: PathBuf, dir: String) -> Adb {
        Adb {
            cmds: AdbCommands { serial, dir },
            agent,
            data,
        }
    }
}

impl Transport for Adb {
    fn describe(&self) -> String {
        format!(
            "adb {}:{}",
            self.cmds.serial.as_deref().unwrap_or("(default device)"),
            self.cmds.dir
        )
    }

    fn prepare(&mut self) -> Result<()> {
        let d = sh_quote(&self.cmds.dir);
        let mut h = sha2::Sha256::new();
        h.update(
            std::fs::read(&self.agent)
                .with_context(|| format!("read the agent binary {}", self.agent.display()))?,
        );
        if let Ok(m) = std::fs::read(datasets::manifest_path(&self.data)) {
            h.update(&m);
        }
        let stamp = hex::encode(h.finalize());
        let have = adb(
            &self.cmds.shell(&format!(
                "mkdir -p {d}/files {d}/jobs && cat {d}/.ulab-stamp 2>/dev/null || true"
            )),
            "shell (check the agent)",
        )?;
        if have.trim() == stamp {
            return Ok(());
        }
        adb(
            &self
                .cmds
                .push(&self.agent, &format!("{}/ulayer-agent", self.cmds.dir)),
            "push the agent",
        )?;
        if self.data.is_dir() {
            adb(
                &self
                    .cmds
                    .push(&self.data, &format!("{}/data", self.cmds.dir)),
                "push the data",
            )?;
        }
        adb(
            &self.cmds.shell(&format!(
                "chmod 755 {d}/ulayer-agent && echo {} > {d}/.ulab-stamp",
                sh_quote(&stamp)
            )),
            "shell (finish the push)",
        )?;
        Ok(())
    }

    fn connect(&mut self) -> Result<Box<dyn Session>> {
        let mut cmd = Command::new("adb");
        cmd.args(self.cmds.serve());
        let inner = ProcessSession::spawn(cmd, "agent over adb shell".into(), false)?;
        Ok(Box::new(AdbSession {
            inner,
            cmds: self.cmds.clone(),
            jobs: 0,
        }))
    }

    fn put_file(&mut self, local: &Path, name: &str) -> Result<String> {
        let remote = format!("{}/files/{name}", self.cmds.dir);
        if let Some(parent) = Path::new(&remote).parent() {
            adb(
                &self.cmds.shell(&format!(
                    "mkdir -p {}",
                    sh_quote(&parent.display().to_string())
                )),
                "shell mkdir",
            )?;
        }
        adb(&self.cmds.push(local, &remote), "push")?;
        Ok(remote)
    }

    fn data_path(&self, rel: &Path) -> String {
        format!("{}/data/{}", self.cmds.dir, rel.display())
    }

    fn detached_jobs(&self) -> bool {
        true
    }
}

struct AdbSession {
    inner: ProcessSession,
    cmds: AdbCommands,
    jobs: u64,
}

impl Session for AdbSession {
    fn send_line(&mut self, line: &str) -> Result<()> {
        self.inner.send_line(line)
    }

    fn recv_line(&mut self, timeout: Duration) -> Result<String> {
        self.inner.recv_line(timeout)
    }

    fn local_pid(&self) -> Option<u32> {
        None
    }

    fn run_job(
        &mut self,
        line: &str,
        expected: Duration,
        timeout: Duration,
        window: &mut dyn MeasuredWindow,
    ) -> Result<String> {
        self.jobs += 1;
        let n = std::process::id() as u64 * 1000 + self.jobs;
        let tmp = tempfile::tempdir().context("a temporary folder")?;
        let req = tmp.path().join("job.json");
        std::fs::write(&req, format!("{line}\n")).context("write the job request")?;
        adb(
            &self.cmds.push(&req, &self.cmds.job_file(n, "json")),
            "push the job",
        )?;
        adb(&self.cmds.start_detached(n), "shell (start the job)")?;
        window.begin()?;
        let t0 = Instant::now();
        while t0.elapsed() < expected {
            if crate::interrupt::requested() {
                let _ = window.end();
                bail!(crate::interrupt::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        window.end()?;
        adb(&self.cmds.wait_for_device(), "wait-for-device")?;
        loop {
            let done = adb(&self.cmds.poll_detached(n), "shell (poll the job)")?;
            if !done.trim().is_empty() {
                break;
            }
            if t0.elapsed() > timeout {
                bail!("adb: job {n} did not finish within {timeout:?}");
            }
            if crate::interrupt::requested() {
                bail!(crate::interrupt::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let out = tmp.path().join("job.out");
        adb(&self.cmds.pull(&self.cmds.job_file(n, "out"), &out), "pull")?;
        let text = std::fs::read_to_string(&out).context("read the pulled answer")?;
        text.lines()
            .find(|l| !l.trim().is_empty())
            .map(str::to_string)
            .with_context(|| format!("adb: job {n} left no answer (see its .err on the device)"))
    }

    fn kill(&mut self) {
        self.inner.kill();
    }

    fn close(&mut self) {
        self.inner.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmds() -> AdbCommands {
        AdbCommands {
            serial: Some("R58M12ABC".into()),
            dir: "/data/local/tmp/ulab".into(),
        }
    }

    #[test]
    fn push_pull_and_shell_name_the_device() {
        let c = cmds();
        assert_eq!(
            c.push(
                Path::new("/x/ulayer-agent"),
                "/data/local/tmp/ulab/ulayer-agent"
            ),
            [
                "-s",
                "R58M12ABC",
                "push",
                "/x/ulayer-agent",
                "/data/local/tmp/ulab/ulayer-agent"
            ]
        );
        assert_eq!(
            c.pull("/data/local/tmp/ulab/jobs/1.out", Path::new("/t/o")),
            [
                "-s",
                "R58M12ABC",
                "pull",
                "/data/local/tmp/ulab/jobs/1.out",
                "/t/o"
            ]
        );
        let none = AdbCommands {
            serial: None,
            ..cmds()
        };
        assert_eq!(none.wait_for_device(), ["wait-for-device"]);
    }

    #[test]
    fn serve_and_detached_jobs() {
        let c = cmds();
        assert_eq!(
            c.serve(),
            [
                "-s",
                "R58M12ABC",
                "shell",
                "cd /data/local/tmp/ulab && ULAB_DATA_DIR=/data/local/tmp/ulab/data exec ./ulayer-agent serve"
            ]
        );
        let start = c.start_detached(7);
        assert_eq!(start[..3], ["-s", "R58M12ABC", "shell"]);
        let line = &start[3];
        assert!(line.starts_with("cd /data/local/tmp/ulab && rm -f jobs/7.out"));
        assert!(line.contains("nohup sh -c 'ULAB_DATA_DIR=./data ./ulayer-agent serve < jobs/7.json > jobs/7.out 2> jobs/7.err; echo $? > jobs/7.done'"));
        assert!(line.ends_with("> /dev/null 2>&1 &)"));
        assert_eq!(
            c.poll_detached(7)[3],
            "cat /data/local/tmp/ulab/jobs/7.done 2>/dev/null || true"
        );
        assert_eq!(c.job_file(7, "json"), "/data/local/tmp/ulab/jobs/7.json");
    }

    #[test]
    fn odd_folders_are_quoted() {
        let c = AdbCommands {
            serial: None,
            dir: "/sdcard/my lab".into(),
        };
        assert_eq!(
            c.serve()[1],
            "cd '/sdcard/my lab' && ULAB_DATA_DIR='/sdcard/my lab'/data exec ./ulayer-agent serve"
        );
    }
}
