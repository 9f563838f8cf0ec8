//! `ulab demo`: the README's main job in one command. The demo campaign
//! (`campaigns/demo.toml`, embedded in the binary so that it runs from any folder; a file may
//! replace it) runs through the same runner as `ulab run` — so it resumes the same way — and
//! its results folder is then rendered by the same code as `ulab report`.
use anyhow::Result;
use std::path::{Path, PathBuf};

use crate::campaign::{folder_of, Campaign};

/// `campaigns/demo.toml` as it was when `ulab` was built.
pub const CAMPAIGN: &str = include_str!("../../campaigns/demo.toml");

/// How the embedded campaign is named in messages and errors.
pub const ORIGIN: &str = "campaigns/demo.toml (embedded in ulab)";

/// The demo's results folder unless `--out` says otherwise.
pub const DEFAULT_OUT: &str = "results/demo";

/// The campaign to run: `file` if given, else the embedded one. Returns the campaign, its
/// text (copied into the results folder) and the folder its relative paths resolve against
/// (the file's folder; the current folder for the embedded campaign, which has none).
pub fn campaign(file: Option<&Path>) -> Result<(Campaign, String, PathBuf)> {
    match file {
        Some(path) => {
            let (c, text) = Campaign::load(path)?;
            Ok((c, text, folder_of(path)))
        }
        None => {
            let c = Campaign::parse(CAMPAIGN, ORIGIN)?;
            Ok((c, CAMPAIGN.to_string(), PathBuf::from(".")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::{MonitorKind, TransportKind};

    #[test]
    fn the_embedded_campaign_is_the_local_agent_with_the_simulated_monitor() {
        let (c, text, base) = campaign(None).expect("the embedded demo campaign is valid");
        assert_eq!(c.name, "demo");
        assert_eq!(c.device.transport, TransportKind::Local);
        assert_eq!(c.monitor.kind, MonitorKind::Simulated);
        assert!(c.accuracy.is_some(), "accuracy on the bundled photos");
        assert_eq!(text, CAMPAIGN);
        assert_eq!(base, PathBuf::from("."));
    }

    #[test]
    fn a_campaign_file_replaces_it_and_resolves_against_its_folder() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("tiny.toml");
        std::fs::write(
            &path,
            "name = \"tiny\"\n[device]\ntransport = \"local\"\n[matrix]\nmodels = [\"mobilenet-v1\"]\n",
        )
        .expect("write");
        let (c, _, base) = campaign(Some(&path)).expect("valid");
        assert_eq!(c.name, "tiny");
        assert_eq!(base, tmp.path());
        assert!(campaign(Some(&tmp.path().join("missing.toml"))).is_err());
    }
}
