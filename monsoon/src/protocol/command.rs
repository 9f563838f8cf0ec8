//! Host → monitor commands.
//!
//! | command | payload |
//! | --- | --- |
//! | get status | `01 00 00` |
//! | set output voltage | `01 01 vv`, `vv = round((V - 2.0) * 100)`, 0 = off |
//! | power-up current limit | `01 08 lo`, `01 09 hi` |
//! | runtime current limit | `01 0A lo`, `01 0B hi` |
//! | USB passthrough | `01 10 m` (0 off, 1 on, 2 auto) |
//! | start sampling | `01 1B 01` then `02 FF FF FF FF 03 E8` |
//! | stop sampling | `03 00` |
//!
//! Every `01 rr vv` payload writes register `rr`; register 0 reads status.

use super::{encode_frame, ProtocolError};

/// USB passthrough mode of the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsbPassthrough {
    /// USB power to the device is off (what a measurement needs).
    Off,
    /// USB power passes through.
    On,
    /// The monitor decides.
    Auto,
}

impl UsbPassthrough {
    /// The wire value (0 off, 1 on, 2 auto).
    pub fn to_byte(self) -> u8 {
        match self {
            UsbPassthrough::Off => 0,
            UsbPassthrough::On => 1,
            UsbPassthrough::Auto => 2,
        }
    }

    /// Parse a wire value.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(UsbPassthrough::Off),
            1 => Some(UsbPassthrough::On),
            2 => Some(UsbPassthrough::Auto),
            _ => None,
        }
    }
}

impl std::fmt::Display for UsbPassthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UsbPassthrough::Off => "off",
            UsbPassthrough::On => "on",
            UsbPassthrough::Auto => "auto",
        })
    }
}

impl std::str::FromStr for UsbPassthrough {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "0" => Ok(UsbPassthrough::Off),
            "on" | "1" => Ok(UsbPassthrough::On),
            "auto" | "2" => Ok(UsbPassthrough::Auto),
            other => Err(format!(
                "USB passthrough mode must be on, off or auto, not {other:?}"
            )),
        }
    }
}

const REG_STATUS: u8 = 0x00;
const REG_VOLTAGE: u8 = 0x01;
const REG_POWER_UP_LIMIT_LO: u8 = 0x08;
const REG_POWER_UP_LIMIT_HI: u8 = 0x09;
const REG_RUNTIME_LIMIT_LO: u8 = 0x0A;
const REG_RUNTIME_LIMIT_HI: u8 = 0x0B;
const REG_USB_PASSTHROUGH: u8 = 0x10;
const REG_ARM_SAMPLING: u8 = 0x1B;

/// A host → monitor command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `01 00 00`: ask for a status packet.
    GetStatus,
    /// `01 01 vv`: output voltage, `vv = round((V - 2.0) * 100)`, 0 = off.
    SetOutputVoltage(u8),
    /// `01 08 lo`: power-up current limit, low byte of the raw value.
    SetPowerUpLimitLo(u8),
    /// `01 09 hi`: power-up current limit, high byte.
    SetPowerUpLimitHi(u8),
    /// `01 0A lo`: runtime current limit, low byte.
    SetRuntimeLimitLo(u8),
    /// `01 0B hi`: runtime current limit, high byte.
    SetRuntimeLimitHi(u8),
    /// `01 10 m`: USB passthrough (0 off, 1 on, 2 auto).
    SetUsbPassthrough(u8),
    /// `01 1B 01`: the first half of every driver's start sequence.
    ArmSampling,
    /// `02 FF FF FF FF 03 E8`: start streaming; read as "max samples
    /// (0xFFFFFFFF = forever), calibration interval in ms" (inferred).
    StartSampling {
        /// Samples to take; `u32::MAX` is forever.
        max_samples: u32,
        /// Calibration interval in milliseconds.
        calibration_interval_ms: u16,
    },
    /// `03 00`: stop streaming.
    StopSampling,
    /// Any other `01 rr vv` register write.
    SetRegister {
        /// Register.
        register: u8,
        /// Value.
        value: u8,
    },
}

impl Command {
    /// The start sequence every driver sends: arm, then sample forever with a
    /// 1000 ms calibration interval.
    pub const START: [Command; 2] = [
        Command::ArmSampling,
        Command::StartSampling {
            max_samples: u32::MAX,
            calibration_interval_ms: 1000,
        },
    ];

    /// The payload bytes (without framing).
    pub fn payload(&self) -> Vec<u8> {
        let reg = |r: u8, v: u8| vec![0x01, r, v];
        match *self {
            Command::GetStatus => reg(REG_STATUS, 0),
            Command::SetOutputVoltage(v) => reg(REG_VOLTAGE, v),
            Command::SetPowerUpLimitLo(v) => reg(REG_POWER_UP_LIMIT_LO, v),
            Command::SetPowerUpLimitHi(v) => reg(REG_POWER_UP_LIMIT_HI, v),
            Command::SetRuntimeLimitLo(v) => reg(REG_RUNTIME_LIMIT_LO, v),
            Command::SetRuntimeLimitHi(v) => reg(REG_RUNTIME_LIMIT_HI, v),
            Command::SetUsbPassthrough(m) => reg(REG_USB_PASSTHROUGH, m),
            Command::ArmSampling => reg(REG_ARM_SAMPLING, 1),
            Command::StartSampling {
                max_samples,
                calibration_interval_ms,
            } => {
                let mut p = vec![0x02];
                p.extend_from_slice(&max_samples.to_be_bytes());
                p.extend_from_slice(&calibration_interval_ms.to_be_bytes());
                p
            }
            Command::StopSampling => vec![0x03, 0x00],
            Command::SetRegister { register, value } => reg(register, value),
        }
    }

    /// Append the framed command to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Every payload above is 2..=7 bytes, so framing cannot fail.
        let p = self.payload();
        let l = (p.len() + 1) as u8;
        out.push(l);
        out.extend_from_slice(&p);
        out.push(super::checksum(l, &p));
        debug_assert!(encode_frame(&p, &mut Vec::new()).is_ok());
    }

    /// The framed command as bytes.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9);
        self.encode(&mut v);
        v
    }

    /// Parse a command payload (the simulator's side).
    pub fn decode(payload: &[u8]) -> Result<Command, ProtocolError> {
        match payload {
            [0x01, REG_STATUS, _] => Ok(Command::GetStatus),
            [0x01, REG_VOLTAGE, v] => Ok(Command::SetOutputVoltage(*v)),
            [0x01, REG_POWER_UP_LIMIT_LO, v] => Ok(Command::SetPowerUpLimitLo(*v)),
            [0x01, REG_POWER_UP_LIMIT_HI, v] => Ok(Command::SetPowerUpLimitHi(*v)),
            [0x01, REG_RUNTIME_LIMIT_LO, v] => Ok(Command::SetRuntimeLimitLo(*v)),
            [0x01, REG_RUNTIME_LIMIT_HI, v] => Ok(Command::SetRuntimeLimitHi(*v)),
            [0x01, REG_USB_PASSTHROUGH, m] => Ok(Command::SetUsbPassthrough(*m)),
            [0x01, REG_ARM_SAMPLING, 1] => Ok(Command::ArmSampling),
            [0x01, register, value] => Ok(Command::SetRegister {
                register: *register,
                value: *value,
            }),
            [0x02, a, b, c, d, e, f] => Ok(Command::StartSampling {
                max_samples: u32::from_be_bytes([*a, *b, *c, *d]),
                calibration_interval_ms: u16::from_be_bytes([*e, *f]),
            }),
            [0x03, 0x00] => Ok(Command::StopSampling),
            other => Err(ProtocolError::UnknownCommand(other.to_vec())),
        }
    }
}

/// Raw output-voltage setting for `volts` (`round((V - 2.0) * 100)`, 0 = off).
/// `None` when outside 0 or 2.01..=4.55 V.
pub fn voltage_to_raw(volts: f32) -> Option<u8> {
    if volts == 0.0 {
        return Some(0);
    }
    let raw = ((volts - 2.0) * 100.0).round();
    (1.0..=255.0).contains(&raw).then_some(raw as u8)
}

/// Volts for a raw output-voltage setting (0 = off).
pub fn raw_to_voltage(raw: u8) -> f32 {
    if raw == 0 {
        0.0
    } else {
        2.0 + f32::from(raw) * 0.01
    }
}

/// Raw current-limit value for `amps`: `1023 - int(A / 8 * 1023)`.
/// `None` outside 0..=8 A.
pub fn current_limit_to_raw(amps: f32) -> Option<u16> {
    if !(0.0..=8.0).contains(&amps) {
        return None;
    }
    Some(1023 - (amps / 8.0 * 1023.0) as u16)
}

/// Amps for a raw current-limit value: `8 * (1023 - x) / 1023`.
pub fn raw_to_current_limit(raw: u16) -> f32 {
    8.0 * (1023.0 - f32::from(raw)) / 1023.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_match_the_documented_bytes() {
        assert_eq!(Command::GetStatus.payload(), [1, 0, 0]);
        assert_eq!(Command::SetOutputVoltage(220).payload(), [1, 1, 220]);
        assert_eq!(Command::START[0].payload(), [1, 0x1B, 1]);
        assert_eq!(
            Command::START[1].payload(),
            [2, 0xFF, 0xFF, 0xFF, 0xFF, 0x03, 0xE8]
        );
        assert_eq!(Command::StopSampling.payload(), [3, 0]);
        assert_eq!(Command::SetUsbPassthrough(2).payload(), [1, 0x10, 2]);
        assert_eq!(Command::SetRuntimeLimitHi(3).payload(), [1, 0x0B, 3]);
        for c in [
            Command::GetStatus,
            Command::SetOutputVoltage(7),
            Command::SetPowerUpLimitLo(1),
            Command::SetPowerUpLimitHi(2),
            Command::SetRuntimeLimitLo(3),
            Command::SetRuntimeLimitHi(4),
            Command::SetUsbPassthrough(1),
            Command::START[0],
            Command::START[1],
            Command::StopSampling,
            Command::SetRegister {
                register: 0x42,
                value: 9,
            },
        ] {
            assert_eq!(Command::decode(&c.payload()), Ok(c));
        }
        assert!(Command::decode(&[9, 9]).is_err());
    }

    #[test]
    fn value_encodings() {
        assert_eq!(voltage_to_raw(4.2), Some(220));
        assert_eq!(voltage_to_raw(0.0), Some(0));
        assert_eq!(voltage_to_raw(4.56), None);
        assert_eq!(voltage_to_raw(2.0), None);
        assert!((raw_to_voltage(220) - 4.2).abs() < 1e-6);
        assert_eq!(current_limit_to_raw(8.0), Some(0));
        assert_eq!(current_limit_to_raw(0.0), Some(1023));
        assert_eq!(current_limit_to_raw(4.6), Some(435));
        assert!((raw_to_current_limit(435) - 4.598).abs() < 1e-3);
        assert_eq!(current_limit_to_raw(9.0), None);
        assert_eq!("AUTO".parse::<UsbPassthrough>(), Ok(UsbPassthrough::Auto));
    }
}
