//! The 58-byte status packet (big-endian).

use super::command::{raw_to_current_limit, raw_to_voltage, UsbPassthrough};
use super::ProtocolError;

/// Status payload length.
pub const STATUS_LEN: usize = 58;
/// First payload byte of a status packet.
pub const STATUS_PACKET_TYPE: u8 = 0x10;

/// The monitor's status packet, field by field (offsets in the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// 0: packet type, always 0x10.
    pub packet_type: u8,
    /// 1: firmware version.
    pub firmware_version: u8,
    /// 2: protocol version.
    pub protocol_version: u8,
    /// 3: main fine current, raw.
    pub main_fine_current: i16,
    /// 5: USB fine current, raw.
    pub usb_fine_current: i16,
    /// 7: aux fine current, raw.
    pub aux_fine_current: i16,
    /// 9: voltage1, × 125 µV.
    pub voltage1: u16,
    /// 11: main coarse current, raw.
    pub main_coarse_current: i16,
    /// 13: USB coarse current, raw.
    pub usb_coarse_current: i16,
    /// 15: aux coarse current, raw.
    pub aux_coarse_current: i16,
    /// 17: voltage2, × 125 µV.
    pub voltage2: u16,
    /// 19: output voltage setting, `2.0 + x × 0.01` V (0 = off).
    pub output_voltage_setting: u8,
    /// 20: temperature.
    pub temperature: u8,
    /// 21: status bits.
    pub status: u8,
    /// 22: reserved.
    pub reserved: u8,
    /// 23: LEDs; bit 0x08 means the high-resolution voltage is the aux channel.
    pub leds: u8,
    /// 24: main fine resistor offset, `0.05 + x × 0.0001` Ω.
    pub main_fine_resistor: i8,
    /// 25: serial number.
    pub serial_number: u16,
    /// 27: sample rate in kHz.
    pub sample_rate_khz: u8,
    /// 28: DAC calibration low.
    pub dac_cal_low: u16,
    /// 30: DAC calibration high.
    pub dac_cal_high: u16,
    /// 32: power-up current limit, raw (`A = 8 × (1023 − x) / 1023`).
    pub power_up_current_limit: u16,
    /// 34: runtime current limit, raw.
    pub runtime_current_limit: u16,
    /// 36: power-up time.
    pub power_up_time: u8,
    /// 37: USB fine resistor offset.
    pub usb_fine_resistor: i8,
    /// 38: aux fine resistor offset (base 0.10 Ω).
    pub aux_fine_resistor: i8,
    /// 39: initial USB voltage, × 125 µV.
    pub initial_usb_voltage: u16,
    /// 41: initial aux voltage, × 125 µV.
    pub initial_aux_voltage: u16,
    /// 43: hardware revision (1 → 62.5 µV voltage LSB).
    pub hardware_revision: u8,
    /// 44: temperature limit.
    pub temperature_limit: u8,
    /// 45: USB passthrough mode (0 off, 1 on, 2 auto).
    pub usb_passthrough_mode: u8,
    /// 46: main coarse resistor offset.
    pub main_coarse_resistor: i8,
    /// 47: USB coarse resistor offset.
    pub usb_coarse_resistor: i8,
    /// 48: aux coarse resistor offset.
    pub aux_coarse_resistor: i8,
    /// 49–54: factory copies of the six resistor offsets.
    pub factory_resistors: [i8; 6],
    /// 55: event code.
    pub event_code: u8,
    /// 56: event data.
    pub event_data: u16,
}

impl Status {
    /// Decode a status payload.
    pub fn decode(p: &[u8]) -> Result<Status, ProtocolError> {
        let p: &[u8; STATUS_LEN] = match p.try_into() {
            Ok(a) if p[0] == STATUS_PACKET_TYPE => a,
            _ => {
                return Err(ProtocolError::BadStatus {
                    len: p.len(),
                    first: p.first().copied().unwrap_or(0),
                })
            }
        };
        let u16at = |o: usize| u16::from_be_bytes([p[o], p[o + 1]]);
        let i16at = |o: usize| i16::from_be_bytes([p[o], p[o + 1]]);
        let i8at = |o: usize| p[o] as i8;
        Ok(Status {
            packet_type: p[0],
            firmware_version: p[1],
            protocol_version: p[2],
            main_fine_current: i16at(3),
            usb_fine_current: i16at(5),
            aux_fine_current: i16at(7),
            voltage1: u16at(9),
            main_coarse_current: i16at(11),
            usb_coarse_current: i16at(13),
            aux_coarse_current: i16at(15),
            voltage2: u16at(17),
            output_voltage_setting: p[19],
            temperature: p[20],
            status: p[21],
            reserved: p[22],
            leds: p[23],
            main_fine_resistor: i8at(24),
            serial_number: u16at(25),
            sample_rate_khz: p[27],
            dac_cal_low: u16at(28),
            dac_cal_high: u16at(30),
            power_up_current_limit: u16at(32),
            runtime_current_limit: u16at(34),
            power_up_time: p[36],
            usb_fine_resistor: i8at(37),
            aux_fine_resistor: i8at(38),
            initial_usb_voltage: u16at(39),
            initial_aux_voltage: u16at(41),
            hardware_revision: p[43],
            temperature_limit: p[44],
            usb_passthrough_mode: p[45],
            main_coarse_resistor: i8at(46),
            usb_coarse_resistor: i8at(47),
            aux_coarse_resistor: i8at(48),
            factory_resistors: [i8at(49), i8at(50), i8at(51), i8at(52), i8at(53), i8at(54)],
            event_code: p[55],
            event_data: u16at(56),
        })
    }

    /// Encode as a status payload (the simulator's side).
    pub fn encode(&self) -> [u8; STATUS_LEN] {
        let mut p = [0u8; STATUS_LEN];
        let mut put16 = |o: usize, b: [u8; 2]| p[o..o + 2].copy_from_slice(&b);
        put16(3, self.main_fine_current.to_be_bytes());
        put16(5, self.usb_fine_current.to_be_bytes());
        put16(7, self.aux_fine_current.to_be_bytes());
        put16(9, self.voltage1.to_be_bytes());
        put16(11, self.main_coarse_current.to_be_bytes());
        put16(13, self.usb_coarse_current.to_be_bytes());
        put16(15, self.aux_coarse_current.to_be_bytes());
        put16(17, self.voltage2.to_be_bytes());
        put16(25, self.serial_number.to_be_bytes());
        put16(28, self.dac_cal_low.to_be_bytes());
        put16(30, self.dac_cal_high.to_be_bytes());
        put16(32, self.power_up_current_limit.to_be_bytes());
        put16(34, self.runtime_current_limit.to_be_bytes());
        put16(39, self.initial_usb_voltage.to_be_bytes());
        put16(41, self.initial_aux_voltage.to_be_bytes());
        put16(56, self.event_data.to_be_bytes());
        p[0] = STATUS_PACKET_TYPE;
        p[1] = self.firmware_version;
        p[2] = self.protocol_version;
        p[19] = self.output_voltage_setting;
        p[20] = self.temperature;
        p[21] = self.status;
        p[22] = self.reserved;
        p[23] = self.leds;
        p[24] = self.main_fine_resistor as u8;
        p[27] = self.sample_rate_khz;
        p[36] = self.power_up_time;
        p[37] = self.usb_fine_resistor as u8;
        p[38] = self.aux_fine_resistor as u8;
        p[43] = self.hardware_revision;
        p[44] = self.temperature_limit;
        p[45] = self.usb_passthrough_mode;
        p[46] = self.main_coarse_resistor as u8;
        p[47] = self.usb_coarse_resistor as u8;
        p[48] = self.aux_coarse_resistor as u8;
        for (i, r) in self.factory_resistors.iter().enumerate() {
            p[49 + i] = *r as u8;
        }
        p[55] = self.event_code;
        p
    }

    /// Output voltage setting in volts (0 when off).
    pub fn output_voltage_v(&self) -> f32 {
        raw_to_voltage(self.output_voltage_setting)
    }

    /// Power-up current limit in amps.
    pub fn power_up_current_limit_a(&self) -> f32 {
        raw_to_current_limit(self.power_up_current_limit)
    }

    /// Runtime current limit in amps.
    pub fn runtime_current_limit_a(&self) -> f32 {
        raw_to_current_limit(self.runtime_current_limit)
    }

    /// USB passthrough mode, if the byte is a known mode.
    pub fn usb_passthrough(&self) -> Option<UsbPassthrough> {
        UsbPassthrough::from_byte(self.usb_passthrough_mode)
    }

    /// Sample rate in Hz.
    pub fn sample_rate_hz(&self) -> u32 {
        u32::from(self.sample_rate_khz) * 1000
    }

    /// Volts per voltage LSB: 62.5 µV on hardware revision 1, else 125 µV.
    pub fn voltage_lsb_v(&self) -> f32 {
        voltage_lsb_v(self.hardware_revision)
    }

    /// Whether the high-resolution voltage is the aux channel (LED bit 0x08).
    pub fn aux_is_high_res_voltage(&self) -> bool {
        self.leds & 0x08 != 0
    }

    /// Main fine resistor in ohms: `0.05 + x × 0.0001`.
    pub fn main_fine_resistor_ohm(&self) -> f32 {
        0.05 + f32::from(self.main_fine_resistor) * 0.0001
    }

    /// Aux fine resistor in ohms: `0.10 + x × 0.0001`.
    pub fn aux_fine_resistor_ohm(&self) -> f32 {
        0.10 + f32::from(self.aux_fine_resistor) * 0.0001
    }

    /// voltage1 in volts (× 125 µV, as documented for the status fields).
    pub fn voltage1_v(&self) -> f32 {
        f32::from(self.voltage1) * 125e-6
    }
}

/// Volts per data-record voltage LSB for a hardware revision.
pub fn voltage_lsb_v(hardware_revision: u8) -> f32 {
    if hardware_revision == 1 {
        62.5e-6
    } else {
        125e-6
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let usb = self.usb_passthrough().map_or_else(
            || format!("unknown({})", self.usb_passthrough_mode),
            |m| m.to_string(),
        );
        write!(
            f,
            "serial {} · firmware {} · protocol {} · hardware rev {} · {} kHz\n\
             output {:.2} V · USB passthrough {} · current limit {:.2} A (power-up {:.2} A)\n\
             temperature {} (limit {}) · event {:#04x}/{}",
            self.serial_number,
            self.firmware_version,
            self.protocol_version,
            self.hardware_revision,
            self.sample_rate_khz,
            self.output_voltage_v(),
            usb,
            self.runtime_current_limit_a(),
            self.power_up_current_limit_a(),
            self.temperature,
            self.temperature_limit,
            self.event_code,
            self.event_data
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_every_byte() {
        // A payload whose every byte differs exercises every offset.
        let mut p = [0u8; STATUS_LEN];
        for (i, b) in p.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        p[0] = STATUS_PACKET_TYPE;
        let s = Status::decode(&p).unwrap();
        assert_eq!(s.encode(), p);
        assert_eq!(s.serial_number, u16::from_be_bytes([p[25], p[26]]));
        assert_eq!(s.usb_passthrough_mode, p[45]);
        assert_eq!(s.event_data, u16::from_be_bytes([p[56], p[57]]));
        assert!(Status::decode(&p[..57]).is_err());
        p[0] = 0x11;
        assert!(Status::decode(&p).is_err());
    }
}
