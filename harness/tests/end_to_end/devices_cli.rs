//! `ulab devices`, the real binary: the ssh targets of a campaigns folder are listed, and a
//! host without adb (an empty PATH here) is said so, with exit code 0.
use std::process::Command;

#[test]
fn devices_lists_ssh_targets_and_runs_without_adb() {
    let _cpu = crate::common::sharing_the_cpu();
    let tmp = tempfile::tempdir().expect("tempdir");
    let campaigns = tmp.path().join("campaigns");
    std::fs::create_dir(&campaigns).expect("mkdir");
    std::fs::write(
        campaigns.join("pi.toml"),
        "name = \"pi-lab\"\n[device]\ntransport = \"ssh\"\nhost = \"lab@pi5.example\"\nport = 2222\nsoc = \"BCM2712\"\n[matrix]\nmodels = [\"mobilenet-v1\"]\n",
    )
    .expect("write");
    std::fs::write(
        campaigns.join("local.toml"),
        "name = \"here\"\n[device]\ntransport = \"local\"\n[matrix]\nmodels = [\"mobilenet-v1\"]\n",
    )
    .expect("write");
    let empty_path = tmp.path().join("bin");
    std::fs::create_dir(&empty_path).expect("mkdir");
    let ulab = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ulab"));
        c.env("PATH", &empty_path)
            .current_dir(tmp.path())
            .arg("devices")
            .arg("--campaigns")
            .arg(&campaigns);
        c
    };

    let o = ulab().output().expect("ulab runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{}\n{stdout}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("adb not found"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.contains("lab@pi5.example"))
        .unwrap_or_else(|| panic!("the ssh target is listed: {stdout}"));
    for want in ["pi-lab", "2222", "BCM2712", "pi.toml"] {
        assert!(row.contains(want), "{want} in {row:?}");
    }
    assert!(
        !stdout.contains("here"),
        "local campaigns are not ssh targets: {stdout}"
    );

    let o = ulab().arg("--json").output().expect("ulab runs");
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["adb"]["found"], false);
    assert_eq!(v["ssh"][0]["host"], "lab@pi5.example");
    assert_eq!(v["ssh"][0]["port"], 2222);
    assert!(v["serial_ports"].is_array());
}
