//! Serial ports that may be Monsoon monitors: `/dev/ttyACM*`, `/dev/ttyUSB*` and the
//! `/dev/serial/by-id` links, with the USB vendor:product id read from sysfs where present
//! (`/sys/class/tty/<port>/device/../idVendor`, one level further up for USB-serial
//! adapters).
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One serial port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SerialPortInfo {
    /// The device node (`/dev/ttyACM0`).
    pub path: PathBuf,
    /// USB vendor and product id, when sysfs tells.
    pub usb_id: Option<(u16, u16)>,
    /// The `/dev/serial/by-id` link naming this port, if any.
    pub by_id: Option<PathBuf>,
    /// A Monsoon USB id (or vendor 0x2AB9), or a by-id name that says Monsoon.
    pub monsoon: bool,
}

/// Monsoon Solutions' USB vendor id.
pub const MONSOON_VENDOR: u16 = 0x2AB9;

fn is_serial_name(name: &str) -> bool {
    ["ttyACM", "ttyUSB"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|n| !n.is_empty()))
}

fn read_hex(path: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(path).ok()?;
    u16::from_str_radix(text.trim(), 16).ok()
}

/// The USB id of tty `name` from `sys` (normally `/sys`).
fn usb_id(sys: &Path, name: &str) -> Option<(u16, u16)> {
    let device = sys.join("class/tty").join(name).join("device");
    // ttyACM: device is the USB interface, its parent the USB device. ttyUSB: device is the
    // usb-serial port, two levels below the USB device.
    ["..", "../.."].iter().find_map(|up| {
        let dir = device.join(up);
        Some((
            read_hex(&dir.join("idVendor"))?,
            read_hex(&dir.join("idProduct"))?,
        ))
    })
}

fn names_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    // ttyACM2 before ttyACM10.
    names.sort_by_key(|n| {
        let digits = n.trim_start_matches(|c: char| !c.is_ascii_digit());
        (
            n[..n.len() - digits.len()].to_string(),
            digits.parse::<u64>().unwrap_or(u64::MAX),
            n.clone(),
        )
    });
    names
}

/// Scans `dev` (normally `/dev`) and `sys` (normally `/sys`).
pub fn scan(dev: &Path, sys: &Path) -> Vec<SerialPortInfo> {
    let mut ports: Vec<SerialPortInfo> = names_in(dev)
        .into_iter()
        .filter(|n| is_serial_name(n))
        .map(|n| SerialPortInfo {
            path: dev.join(&n),
            usb_id: usb_id(sys, &n),
            by_id: None,
            monsoon: false,
        })
        .collect();
    let by_id_dir = dev.join("serial/by-id");
    for link_name in names_in(&by_id_dir) {
        let link = by_id_dir.join(&link_name);
        let target = std::fs::read_link(&link).ok();
        let tty = target
            .as_deref()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .map(str::to_string);
        let port = tty.as_ref().and_then(|t| {
            ports
                .iter_mut()
                .find(|p| p.path.file_name() == Some(t.as_ref()))
        });
        match port {
            Some(p) => p.by_id = Some(link),
            // A link to a port not under a ttyACM/ttyUSB name: listed as itself.
            None => ports.push(SerialPortInfo {
                usb_id: tty.as_deref().and_then(|t| usb_id(sys, t)),
                path: link.clone(),
                by_id: Some(link),
                monsoon: false,
            }),
        }
    }
    for p in &mut ports {
        let id_says = p.usb_id.is_some_and(|(v, d)| {
            v == MONSOON_VENDOR || monsoon::driver::MONSOON_USB_IDS.contains(&(v, d))
        });
        let name_says = p.by_id.as_deref().is_some_and(|l| {
            l.file_name()
                .is_some_and(|n| n.to_string_lossy().to_lowercase().contains("monsoon"))
        });
        p.monsoon = id_says || name_says;
    }
    ports
}

/// [`scan`] of this machine.
pub fn scan_system() -> Vec<SerialPortInfo> {
    scan(Path::new("/dev"), Path::new("/sys"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake /dev and /sys: ttyACM0 a Monsoon (2ab9:0001) with a by-id link, ttyACM10 an
    /// Arduino (2341:0043), ttyUSB0 an FTDI adapter (0403:6001, two levels down), ttyS0 not
    /// listed.
    fn tree(root: &Path) -> (PathBuf, PathBuf) {
        let dev = root.join("dev");
        let sys = root.join("sys");
        std::fs::create_dir_all(dev.join("serial/by-id")).expect("mkdir");
        for n in ["ttyACM0", "ttyACM10", "ttyUSB0", "ttyS0", "tty"] {
            std::fs::write(dev.join(n), "").expect("node");
        }
        symlink(
            "../../ttyACM0",
            dev.join(
                "serial/by-id/usb-Monsoon_Solutions_Inc._Mobile_Device_Power_Monitor_12431-if00",
            ),
        )
        .expect("link");
        let usb = |path: &str, vid: &str, pid: &str| {
            let d = sys.join("devices").join(path);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("idVendor"), format!("{vid}\n")).expect("vid");
            std::fs::write(d.join("idProduct"), format!("{pid}\n")).expect("pid");
            d
        };
        let tty = |name: &str, device: &Path| {
            let d = sys.join("class/tty").join(name);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::create_dir_all(device).expect("mkdir");
            symlink(device, d.join("device")).expect("link");
        };
        tty("ttyACM0", &usb("1-1", "2ab9", "0001").join("1-1:1.0"));
        tty("ttyACM10", &usb("1-2", "2341", "0043").join("1-2:1.0"));
        tty(
            "ttyUSB0",
            &usb("1-3", "0403", "6001").join("1-3:1.0/ttyUSB0"),
        );
        (dev, sys)
    }

    #[test]
    fn ports_get_their_usb_ids_and_by_id_links() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (dev, sys) = tree(tmp.path());
        let ports = scan(&dev, &sys);
        type Row = (String, Option<(u16, u16)>, bool, bool);
        let rows: Vec<Row> = ports
            .iter()
            .map(|p| {
                (
                    p.path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    p.usb_id,
                    p.by_id.is_some(),
                    p.monsoon,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("ttyACM0".to_string(), Some((0x2AB9, 0x0001)), true, true),
                ("ttyACM10".to_string(), Some((0x2341, 0x0043)), false, false),
                ("ttyUSB0".to_string(), Some((0x0403, 0x6001)), false, false),
            ]
        );
    }

    #[test]
    fn no_ports_and_no_sysfs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(scan(tmp.path(), tmp.path()).is_empty());
        std::fs::write(tmp.path().join("ttyUSB3"), "").expect("node");
        let ports = scan(tmp.path(), &tmp.path().join("nosys"));
        assert_eq!(ports.len(), 1);
        assert_eq!((ports[0].usb_id, ports[0].monsoon), (None, false));
    }
}
