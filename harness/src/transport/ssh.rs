//! The ssh transport: the system `ssh` and `scp` with the user's keys (or the campaign's
//! identity file). `prepare` pushes the agent binary and the data folder into the remote
//! folder when their stamp differs; every session runs `ulayer-agent serve` there.
use anyhow::{Context, Result};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{run_checked, ProcessSession};
use super::{sh_quote, Session, Transport};

/// Where and how to ssh.
#[derive(Clone, Debug, PartialEq)]
pub struct SshTarget {
    /// `user@host` or an ssh config alias.
    pub host: String,
    pub port: Option<u16>,
    pub identity: Option<PathBuf>,
    /// Extra `-o` options (`Key=value`).
    pub options: Vec<String>,
}

impl SshTarget {
    fn common(&self, port_flag: &str) -> Vec<String> {
        let mut a = vec!["-o".into(), "BatchMode=yes".into()];
        for o in &self.options {
            a.push("-o".into());
            a.push(o.clone());
        }
        if let Some(p) = self.port {
            a.push(port_flag.into());
            a.push(p.to_string());
        }
        if let Some(i) = &self.identity {
            a.push("-i".into());
            a.push(i.display().to_string());
        }
        a
    }

    /// `ssh` arguments that run `remote` (one shell command line) on the host.
    pub fn ssh_args(&self, remote: &str) -> Vec<String> {
        let mut a = self.common("-p");
        a.push("-T".into());
        a.push(self.host.clone());
        a.push(remote.into());
        a
    }

    /// `scp` arguments that copy `local` (recursively) to `remote` on the host.
    pub fn scp_args(&self, local: &Path, remote: &str) -> Vec<String> {
        let mut a = self.common("-P");
        a.push("-q".into());
        a.push("-r".into());
        a.push(local.display().to_string());
        a.push(format!("{}:{}", self.host, remote));
        a
    }
}

/// The agent on a machine reached by ssh.
pub struct Ssh {
    target: SshTarget,
    agent: PathBuf,
    data: PathBuf,
    dir: String,
}

impl Ssh {
    pub fn new(target: SshTarget, agent: PathBuf, data: PathBuf, dir: String) -> Ssh {
        Ssh {
            target,
            agent,
            data,
            dir,
        }
    }

    fn ssh(&self, remote: &str, what: &str) -> Result<String> {
        run_checked(
            Command::new("ssh").args(self.target.ssh_args(remote)),
            &format!("ssh {} ({what})", self.target.host),
        )
    }

    fn scp(&self, local: &Path, remote: &str) -> Result<()> {
        run_checked(
            Command::new("scp").args(self.target.scp_args(local, remote)),
            &format!("scp {} to {}:{remote}", local.display(), self.target.host),
        )
        .map(|_| ())
    }

    /// A digest of the agent binary and the data manifest: what the remote folder holds
    /// when it is up to date.
    fn stamp(&self) -> Result<String> {
        let mut h = sha2::Sha256::new();
        let bin = std::fs::read(&self.agent)
            .with_context(|| format!("read the agent binary {}", self.agent.display()))?;
        h.update(&bin);
        if let Ok(m) = std::fs::read(datasets::manifest_path(&self.data)) {
            h.update(&m);
        }
        Ok(hex::encode(h.finalize()))
    }
}

impl Transport for Ssh {
    fn describe(&self) -> String {
        format!("ssh {}:{}", self.target.host, self.dir)
    }

    fn prepare(&mut self) -> Result<()> {
        let dir = sh_quote(&self.dir);
        let stamp = self.stamp()?;
        let remote = self.ssh(
            &format!("mkdir -p {dir}/files && cat {dir}/.ulab-stamp 2>/dev/null || true"),
            "check the remote agent",
        )?;
        if remote.trim() == stamp {
            tracing::info!(host = %self.target.host, "agent and data already pushed");
            return Ok(());
        }
        self.ssh(
            &format!("rm -rf {dir}/data {dir}/ulayer-agent {dir}/.ulab-stamp"),
            "clear the remote folder",
        )?;
        self.scp(&self.agent, &format!("{}/ulayer-agent", self.dir))?;
        if self.data.is_dir() {
            self.scp(&self.data, &format!("{}/data", self.dir))?;
        }
        self.ssh(
            &format!(
                "chmod +x {dir}/ulayer-agent && echo {} > {dir}/.ulab-stamp",
                sh_quote(&stamp)
            ),
            "finish the push",
        )?;
        Ok(())
    }

    fn connect(&mut self) -> Result<Box<dyn Session>> {
        let dir = sh_quote(&self.dir);
        let remote = format!("cd {dir} && ULAB_DATA_DIR={dir}/data exec ./ulayer-agent serve");
        let mut cmd = Command::new("ssh");
        cmd.args(self.target.ssh_args(&remote));
        Ok(Box::new(ProcessSession::spawn(
            cmd,
            format!("agent over ssh {}", self.target.host),
            false,
        )?))
    }

    fn put_file(&mut self, local: &Path, name: &str) -> Result<String> {
        let remote = format!("{}/files/{name}", self.dir);
        if let Some(parent) = Path::new(&remote).parent() {
            self.ssh(
                &format!("mkdir -p {}", sh_quote(&parent.display().to_string())),
                "make a folder",
            )?;
        }
        self.scp(local, &remote)?;
        Ok(remote)
    }

    fn data_path(&self, rel: &Path) -> String {
        format!("{}/data/{}", self.dir, rel.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_and_scp_arguments() {
        let t = SshTarget {
            host: "lab@phone-host".into(),
            port: Some(2222),
            identity: Some(PathBuf::from("/k/id")),
            options: vec!["StrictHostKeyChecking=no".into()],
        };
        assert_eq!(
            t.ssh_args("cd /x && ls"),
            [
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-p",
                "2222",
                "-i",
                "/k/id",
                "-T",
                "lab@phone-host",
                "cd /x && ls"
            ]
        );
        let scp = t.scp_args(Path::new("/a/b"), "/r/b");
        assert_eq!(scp[4..6], ["-P", "2222"]);
        assert_eq!(scp.last().map(String::as_str), Some("lab@phone-host:/r/b"));
    }
}
