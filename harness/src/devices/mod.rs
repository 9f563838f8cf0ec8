//! `ulab devices`: what a campaign could run on from this host — Android devices (`adb
//! devices -l`), the ssh targets of campaign files, and serial ports that may be Monsoon
//! monitors. Nothing is opened or changed.
pub mod ports;

use serde::Serialize;
use std::path::{Path, PathBuf};

use crate::campaign::{Campaign, TransportKind};
use crate::transport::adb::{self, AdbDevice};
use ports::SerialPortInfo;

/// The ssh target of one campaign file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SshTargetInfo {
    pub campaign: String,
    pub file: PathBuf,
    pub host: String,
    /// `None`: the ssh config's (22 unless it says otherwise).
    pub port: Option<u16>,
    pub soc: String,
}

/// What `adb` said.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AdbInventory {
    /// Whether an `adb` client is on `PATH`.
    pub found: bool,
    pub devices: Vec<AdbDevice>,
    /// Why `adb devices -l` failed, if it did.
    pub error: Option<String>,
}

/// Everything `ulab devices` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub adb: AdbInventory,
    /// The campaign files and folders read.
    pub campaign_sources: Vec<PathBuf>,
    pub ssh: Vec<SshTargetInfo>,
    /// Campaign files that could not be read or are not valid, with why.
    pub skipped_campaigns: Vec<(PathBuf, String)>,
    pub serial_ports: Vec<SerialPortInfo>,
}

/// The `.toml` files of `sources` (folders: their `.toml` files, not recursively, sorted).
pub fn campaign_files(sources: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut bad = Vec::new();
    for s in sources {
        if s.is_dir() {
            match std::fs::read_dir(s) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| Some(e.ok()?.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => bad.push((s.clone(), e.to_string())),
            }
        } else if s.is_file() {
            files.push(s.clone());
        } else {
            bad.push((s.clone(), "no such file or folder".into()));
        }
    }
    (files, bad)
}

/// The ssh targets of campaign files (other transports are left out), and the files that
/// could not be read, with why.
pub fn ssh_targets(files: &[PathBuf]) -> (Vec<SshTargetInfo>, Vec<(PathBuf, String)>) {
    let mut targets = Vec::new();
    let mut bad = Vec::new();
    for f in files {
        match Campaign::load(f) {
            Ok((c, _)) if c.device.transport == TransportKind::Ssh => targets.push(SshTargetInfo {
                campaign: c.name,
                file: f.clone(),
                host: c.device.host.unwrap_or_default(),
                port: c.device.port,
                soc: c.device.soc,
            }),
            Ok(_) => {}
            Err(e) => bad.push((f.clone(), e.to_string())),
        }
    }
    (targets, bad)
}

/// The default campaign sources: `campaigns/` of the current folder, else of the
/// repository `ulab` runs from; none if neither exists.
pub fn default_campaign_sources() -> Vec<PathBuf> {
    [
        PathBuf::from("campaigns"),
        datasets::repo_root().join("campaigns"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .into_iter()
    .collect()
}

/// Looks at this host.
pub fn inventory(campaign_sources: Vec<PathBuf>) -> Inventory {
    let adb = match adb::list_devices() {
        Ok(Some(devices)) => AdbInventory {
            found: true,
            devices,
            error: None,
        },
        Ok(None) => AdbInventory::default(),
        Err(e) => AdbInventory {
            found: true,
            devices: Vec::new(),
            error: Some(format!("{e:#}")),
        },
    };
    let (files, mut skipped) = campaign_files(&campaign_sources);
    let (ssh, bad) = ssh_targets(&files);
    skipped.extend(bad);
    Inventory {
        adb,
        campaign_sources,
        ssh,
        skipped_campaigns: skipped,
        serial_ports: ports::scan_system(),
    }
}

/// Rows as a table: columns padded to their widest cell, two spaces apart, indented.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

/// The inventory as text.
pub fn render(inv: &Inventory) -> String {
    let mut out = String::from("Android devices (adb devices -l):\n");
    if !inv.adb.found {
        out.push_str("  adb not found on PATH\n");
    } else if let Some(e) = &inv.adb.error {
        out.push_str(&format!("  {e}\n"));
    } else if inv.adb.devices.is_empty() {
        out.push_str("  none attached\n");
    } else {
        let rows: Vec<Vec<String>> = inv
            .adb
            .devices
            .iter()
            .map(|d| {
                vec![
                    d.serial.clone(),
                    d.state.clone(),
                    d.model.clone().unwrap_or_else(|| "-".into()),
                    d.product.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        out.push_str(&table(&["SERIAL", "STATE", "MODEL", "PRODUCT"], &rows));
    }

    let sources: Vec<String> = inv.campaign_sources.iter().map(|p| show(p)).collect();
    out.push_str(&format!(
        "\nssh targets (campaigns in {}):\n",
        if sources.is_empty() {
            "none: no campaigns/ folder here, pass --campaigns".into()
        } else {
            sources.join(", ")
        }
    ));
    if inv.ssh.is_empty() {
        out.push_str("  no campaign with transport = \"ssh\"\n");
    } else {
        let rows: Vec<Vec<String>> = inv
            .ssh
            .iter()
            .map(|t| {
                vec![
                    t.campaign.clone(),
                    t.host.clone(),
                    t.port.map_or("(ssh config)".into(), |p| p.to_string()),
                    t.soc.clone(),
                    show(&t.file),
                ]
            })
            .collect();
        out.push_str(&table(&["CAMPAIGN", "HOST", "PORT", "SOC", "FILE"], &rows));
    }
    for (f, why) in &inv.skipped_campaigns {
        out.push_str(&format!("  skipped {}: {why}\n", show(f)));
    }

    out.push_str("\nserial ports (Monsoon monitors: USB vendor 2ab9, or 04d8:fe23):\n");
    if inv.serial_ports.is_empty() {
        out.push_str("  no serial ports (/dev/ttyACM*, /dev/ttyUSB*, /dev/serial/by-id/*)\n");
    } else {
        let rows: Vec<Vec<String>> = inv
            .serial_ports
            .iter()
            .map(|p| {
                vec![
                    show(&p.path),
                    p.usb_id
                        .map_or("-".into(), |(v, d)| format!("{v:04x}:{d:04x}")),
                    if p.monsoon { "yes" } else { "no" }.into(),
                    p.by_id.as_deref().map_or("-".into(), show),
                ]
            })
            .collect();
        out.push_str(&table(&["PORT", "USB ID", "MONSOON", "BY-ID"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn ssh_targets_come_from_ssh_campaigns_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        write(
            d,
            "b_pi.toml",
            "name = \"pi\"\n[device]\ntransport = \"ssh\"\nhost = \"lab@pi5\"\nport = 2222\nsoc = \"BCM2712\"\n[matrix]\nmodels = [\"mobilenet-v1\"]\n",
        );
        write(
            d,
            "a_local.toml",
            "name = \"l\"\n[device]\ntransport = \"local\"\n[matrix]\nmodels = [\"mobilenet-v1\"]\n",
        );
        write(d, "c_bad.toml", "name = \"x\"\n");
        write(d, "notes.txt", "not a campaign");
        let (files, bad) = campaign_files(&[d.to_path_buf(), d.join("missing")]);
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(bad.len(), 1);
        let (targets, bad) = ssh_targets(&files);
        assert_eq!(
            targets,
            [SshTargetInfo {
                campaign: "pi".into(),
                file: d.join("b_pi.toml"),
                host: "lab@pi5".into(),
                port: Some(2222),
                soc: "BCM2712".into(),
            }]
        );
        assert_eq!(bad.len(), 1);
        assert!(bad[0].1.contains("c_bad.toml"), "{bad:?}");
    }

    #[test]
    fn tables_are_aligned_and_empty_sections_say_so() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["long cell".into(), "x".into()],
                vec!["y".into(), "z".into()],
            ],
        );
        assert_eq!(t, "  A          BB\n  long cell  x\n  y          z\n");
        let text = render(&Inventory::default());
        assert!(text.contains("adb not found on PATH"), "{text}");
        assert!(
            text.contains("no campaign with transport = \"ssh\""),
            "{text}"
        );
        assert!(text.contains("no serial ports"), "{text}");
    }
}
