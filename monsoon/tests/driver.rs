//! Driver ↔ simulator through a real pseudo-terminal: status, settings,
//! exclusive ownership.

mod common;

use common::Rig;
use monsoon::sim::{event_code, SimConfig};
use monsoon::{CurrentLimitKind, Error, Monitor, UsbPassthrough};

#[test]
fn status_round_trip() {
    let mut cfg = SimConfig::default();
    cfg.model.serial_number = 4242;
    let rig = Rig::new(cfg);
    let mut m = rig.open();
    // The connect sequence already read status once.
    assert_eq!(m.last_status().serial_number, 4242);
    for _ in 0..20 {
        let s = m.status().unwrap();
        assert_eq!(s.packet_type, 0x10);
        assert_eq!(s.serial_number, 4242);
        assert_eq!(s.sample_rate_hz(), 5000);
        assert_eq!(s.hardware_revision, 3);
        assert_eq!(s.usb_passthrough(), Some(UsbPassthrough::Auto));
        assert_eq!(s.output_voltage_v(), 0.0);
    }
    let text = m.status().unwrap().to_string();
    assert!(text.contains("serial 4242"), "{text}");
}

#[test]
fn settings_are_confirmed_through_status() {
    let rig = Rig::new(SimConfig::default());
    let mut m = rig.open();

    // Voltage: ramped from 3.0 V in 0.1 V steps, so the simulator flags no
    // unramped step; confirmed by status.
    let t0 = std::time::Instant::now();
    let s = m.set_voltage(4.2).unwrap();
    assert_eq!(s.output_voltage_setting, 220);
    assert_eq!(s.event_code, 0, "voltage was not ramped: {s}");
    assert!(t0.elapsed().as_millis() >= 1000, "12 ramp steps of 100 ms");
    assert!((m.status().unwrap().output_voltage_v() - 4.2).abs() < 1e-6);
    // Lowering needs no ramp.
    assert_eq!(m.set_voltage(3.7).unwrap().output_voltage_setting, 170);
    assert_eq!(m.set_voltage(0.0).unwrap().output_voltage_setting, 0);

    for mode in [
        UsbPassthrough::Off,
        UsbPassthrough::On,
        UsbPassthrough::Auto,
    ] {
        assert_eq!(
            m.set_usb_passthrough(mode).unwrap().usb_passthrough(),
            Some(mode)
        );
    }

    let s = m.set_current_limit(CurrentLimitKind::Runtime, 3.0).unwrap();
    assert_eq!(s.runtime_current_limit, 1023 - 383);
    assert!((s.runtime_current_limit_a() - 3.0).abs() < 0.01);
    let s = m.set_current_limit(CurrentLimitKind::PowerUp, 6.5).unwrap();
    assert!((s.power_up_current_limit_a() - 6.5).abs() < 0.01);
    assert_eq!(
        s.runtime_current_limit,
        1023 - 383,
        "the other limit is untouched"
    );

    // Out-of-range arguments are refused before anything is sent.
    assert!(matches!(m.set_voltage(5.0), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        m.set_current_limit(CurrentLimitKind::Runtime, 9.0),
        Err(Error::InvalidArgument(_))
    ));

    // A USB passthrough scope restores the mode found, also on early return.
    m.set_usb_passthrough(UsbPassthrough::On).unwrap();
    {
        let mut g = m.usb_passthrough_scope(UsbPassthrough::Off).unwrap();
        assert_eq!(
            g.status().unwrap().usb_passthrough(),
            Some(UsbPassthrough::Off)
        );
    }
    assert_eq!(
        m.status().unwrap().usb_passthrough(),
        Some(UsbPassthrough::On)
    );
    let g = m.usb_passthrough_scope(UsbPassthrough::Off).unwrap();
    assert_eq!(
        g.finish().unwrap().usb_passthrough(),
        Some(UsbPassthrough::On)
    );
}

#[test]
fn an_unramped_jump_is_visible_in_status() {
    // The simulator enforces the ramp rule: proof that the test above
    // would notice a driver that jumped.
    let rig = Rig::new(SimConfig::default());
    let m = rig.open();
    drop(m);
    let port = rig.sim.as_ref().unwrap().path().to_path_buf();
    let mut raw = serialport::new(port.to_str().unwrap(), 9600)
        .timeout(std::time::Duration::from_millis(500))
        .open_native()
        .unwrap();
    use std::io::{Read, Write};
    let mut bytes = Vec::new();
    monsoon::protocol::Command::SetOutputVoltage(220).encode(&mut bytes);
    monsoon::protocol::Command::GetStatus.encode(&mut bytes);
    raw.write_all(&bytes).unwrap();
    let mut buf = [0u8; 60];
    raw.read_exact(&mut buf).unwrap();
    let s = monsoon::Status::decode(&buf[1..59]).unwrap();
    assert_eq!(s.event_code, event_code::UNRAMPED_VOLTAGE);
    let _ = raw.set_exclusive(false);
}

#[test]
fn a_second_owner_is_told_who_holds_the_monitor() {
    let rig = Rig::new(SimConfig::default());
    let m = rig.open();
    let err = Monitor::open_with(rig.sim.as_ref().unwrap().path(), rig.opts()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Busy { pid: Some(p), .. } if p == std::process::id()),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("held by pid {}", std::process::id())),
        "{msg}"
    );
    drop(m);
    // Released on drop: the next owner gets it (and the pty is reusable).
    let mut again = rig.open();
    again.status().unwrap();
}

#[test]
fn opening_something_that_is_not_a_monitor_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let opts = monsoon::OpenOptions {
        lock_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let err = Monitor::open_with(dir.path().join("ttyNOPE"), opts.clone()).unwrap_err();
    assert!(err.to_string().contains("ttyNOPE"), "{err}");
    // A pty with nobody on the other end: no status reply.
    let pty = monsoon::sim::Pty::open().unwrap();
    let err = Monitor::open_with(pty.path(), opts).unwrap_err();
    assert!(matches!(err, Error::NoStatus(_)), "{err}");
}
