//! Resume: `checkpoint.json` in the results folder lists the finished configurations. A
//! configuration is added only after its `result.json` is on disk, and the checkpoint is
//! replaced atomically (temporary file + rename), so a crash at any moment — `kill -9` of
//! ulab, an agent crash, a monitor disconnect — leaves either the old list or the new one.
//! A restart skips what is listed and redoes anything else from scratch (its folder is
//! cleared first).
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::campaign::Campaign;
use crate::results::{read_json, write_json};

/// The checkpoint file's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub campaign: String,
    /// [`Campaign::digest`]: a folder belongs to one campaign.
    pub digest: String,
    /// Slugs of finished configurations, in the order they finished.
    pub finished: Vec<String>,
}

impl Checkpoint {
    /// The checkpoint path of a results folder.
    pub fn path(out: &Path) -> PathBuf {
        out.join("checkpoint.json")
    }

    /// A fresh checkpoint for a campaign.
    pub fn new(c: &Campaign) -> Checkpoint {
        Checkpoint {
            campaign: c.name.clone(),
            digest: c.digest(),
            finished: Vec::new(),
        }
    }

    /// Reads the folder's checkpoint, if any.
    pub fn read(out: &Path) -> Result<Option<Checkpoint>> {
        let p = Self::path(out);
        if !p.exists() {
            return Ok(None);
        }
        read_json(&p).map(Some)
    }

    /// The folder's checkpoint for `c`: a new one when there is none, the old one when it is
    /// the same campaign, an error naming both when it belongs to another.
    pub fn open(out: &Path, c: &Campaign) -> Result<Checkpoint> {
        match Self::read(out)? {
            None => Ok(Self::new(c)),
            Some(cp) if cp.digest == c.digest() => Ok(cp),
            Some(cp) => bail!(
                "{} holds results of another campaign ({:?}, digest {}; this one is {:?}, digest {}): \
                 choose another --out folder, or remove that one to start over",
                out.display(),
                cp.campaign,
                cp.digest,
                c.name,
                c.digest()
            ),
        }
    }

    /// Whether a configuration is finished.
    pub fn is_finished(&self, slug: &str) -> bool {
        self.finished.iter().any(|s| s == slug)
    }

    /// Records a finished configuration (its result must already be on disk).
    pub fn finish(&mut self, out: &Path, slug: &str) -> Result<()> {
        if !self.is_finished(slug) {
            self.finished.push(slug.to_string());
        }
        self.save(out)
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, out: &Path) -> Result<()> {
        write_json(&Self::path(out), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(name: &str, iterations: usize) -> Campaign {
        Campaign::parse(
            &format!(
                "name = \"{name}\"\n[device]\ntransport = \"local\"\n[matrix]\nmodels = [\"m\"]\n[run]\niterations = {iterations}\n"
            ),
            "t",
        )
        .expect("valid")
    }

    #[test]
    fn finished_configurations_survive_and_other_campaigns_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = campaign("a", 3);
        let mut cp = Checkpoint::open(dir.path(), &c).expect("new");
        cp.finish(dir.path(), "m__cpu__f32").expect("saved");
        let again = Checkpoint::open(dir.path(), &c).expect("same campaign");
        assert!(again.is_finished("m__cpu__f32"));
        let other = campaign("a", 4);
        let e = Checkpoint::open(dir.path(), &other).expect_err("another campaign");
        assert!(e.to_string().contains("another campaign"), "{e}");
    }
}
