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

/// One line of `adb devices -l`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AdbDevice {
    pub serial: String,
    /// `device`, `unauthorized`, `offline`, `recovery`, `no permissions`, ...
    pub state: String,
    /// The `model:` field (absent until the device is authorized).
    pub model: Option<String>,
    /// The `product:` field.
    pub product: Option<String>,
}

/// Parses `adb devices -l`: the header, daemon start-up lines (`* daemon ...`) and blank
/// lines are skipped; each other line is a serial, a state (words up to the first
/// `key:value` field, e.g. `no permissions (...)`; shortened to `no permissions`) and fields.
pub fn parse_devices(text: &str) -> Vec<AdbDevice> {
    let is_field = |w: &str| {
        w.split_once(':').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('*') || line.starts_with("List of devices") {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(serial) = words.next() else { continue };
        let rest: Vec<&str> = words.collect();
        let n_state = rest.iter().position(|w| is_field(w)).unwrap_or(rest.len());
        let mut state = rest[..n_state].join(" ");
        if state.starts_with("no permissions") {
            state = "no permissions".into();
        }
        if state.is_empty() {
            state = "unknown".into();
        }
        let field = |key: &str| {
            rest[n_state..]
                .iter()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix(':'))
                .map(str::to_string)
        };
        out.push(AdbDevice {
            serial: serial.to_string(),
            state,
            model: field("model"),
            product: field("product"),
        });
    }
    out
}

/// The devices `adb devices -l` lists; `None` when there is no `adb` on `PATH`.
pub fn list_devices() -> Result<Option<Vec<AdbDevice>>> {
    match Command::new("adb").args(["devices", "-l"]).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("run adb devices -l"),
        Ok(o) if !o.status.success() => bail!(
            "adb devices -l failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(o) => Ok(Some(parse_devices(&String::from_utf8_lossy(&o.stdout)))),
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
    fn devices_list_is_parsed_into_serial_state_and_model() {
        // Captured from adb 35 (a phone, an emulator, an unauthorized and an unreadable
        // device, one over TCP), with the daemon's start-up lines.
        let text = "\
* daemon not running; starting now at tcp:5037
* daemon started successfully
List of devices attached
R58M12ABCDE            device usb:1-1 product:beyond1qlteue model:SM_G973U device:beyond1q transport_id:1
emulator-5554          device product:sdk_gphone64_x86_64 model:sdk_gphone64_x86_64 device:emu64xa transport_id:2
0123456789ABCDEF       unauthorized usb:1-2 transport_id:3
HT7A1B234567           no permissions (user lab is not in the plugdev group); see [http://developer.android.com/tools/device.html] usb:1-3 transport_id:4
192.168.1.5:5555       offline transport_id:5

";
        let d = parse_devices(text);
        let rows: Vec<(&str, &str, Option<&str>)> = d
            .iter()
            .map(|d| (d.serial.as_str(), d.state.as_str(), d.model.as_deref()))
            .collect();
        assert_eq!(
            rows,
            [
                ("R58M12ABCDE", "device", Some("SM_G973U")),
                ("emulator-5554", "device", Some("sdk_gphone64_x86_64")),
                ("0123456789ABCDEF", "unauthorized", None),
                ("HT7A1B234567", "no permissions", None),
                ("192.168.1.5:5555", "offline", None),
            ]
        );
        assert_eq!(d[0].product.as_deref(), Some("beyond1qlteue"));
        assert!(parse_devices("List of devices attached\n\n").is_empty());
        // `adb devices` without -l: tab-separated, no fields.
        assert_eq!(
            parse_devices("List of devices attached\nR58M12ABCDE\tdevice\n"),
            [AdbDevice {
                serial: "R58M12ABCDE".into(),
                state: "device".into(),
                model: None,
                product: None
            }]
        );
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
