//! The local transport: the agent is a child process of `ulab`.
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::ProcessSession;
use super::{Session, Transport};

/// The agent on this machine.
pub struct Local {
    agent: PathBuf,
    data: PathBuf,
}

impl Local {
    pub fn new(agent: PathBuf, data: PathBuf) -> Local {
        Local { agent, data }
    }
}

impl Transport for Local {
    fn describe(&self) -> String {
        format!("local {}", self.agent.display())
    }

    fn prepare(&mut self) -> Result<()> {
        Ok(())
    }

    fn connect(&mut self) -> Result<Box<dyn Session>> {
        let mut cmd = Command::new(&self.agent);
        cmd.arg("serve").env(datasets::DATA_DIR_ENV, &self.data);
        Ok(Box::new(ProcessSession::spawn(
            cmd,
            format!("agent {}", self.agent.display()),
            true,
        )?))
    }

    fn put_file(&mut self, local: &Path, _name: &str) -> Result<String> {
        Ok(local.display().to_string())
    }

    fn data_path(&self, rel: &Path) -> String {
        self.data.join(rel).display().to_string()
    }
}
