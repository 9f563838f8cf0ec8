//! The simulated monitor's protocol state: status, settings, sequence
//! numbers, calibration and packet encoding. No I/O and no clock, so the
//! benchmark and tests can generate exact wire bytes with it.

use crate::calibration::{CalKind, ChannelScales, COARSE_REF_A, FINE_REF_A};
use crate::protocol::{
    encode_data_packet, encode_frame, voltage_lsb_v, Command, RawRecord, RecordType, Status,
    FLAG_OUTPUT_ENABLED, FLAG_OVER_CURRENT,
};

use super::rng::Rng;

/// Simulator-defined event codes in the status packet (the real monitor's
/// codes are not documented).
pub mod event_code {
    /// A voltage step of more than 0.1 V upward above 3.0 V (not ramped).
    pub const UNRAMPED_VOLTAGE: u8 = 0x01;
    /// Over-current kill; output switched off.
    pub const OVER_CURRENT: u8 = 0x02;
}

/// Fine and coarse LSBs: 20 µA and 0.6 mA (reference spans 1660 and 4800).
const FINE_SPAN: f32 = 1660.0;
const COARSE_SPAN: f32 = 4800.0;
/// True zeros of (main, USB, aux), fine and coarse.
const ZEROS: [(f32, f32); 3] = [(120.0, 210.0), (96.0, 180.0), (64.0, 150.0)];

/// Fixed properties of the simulated monitor.
#[derive(Debug, Clone, Copy)]
pub struct ModelConfig {
    /// Serial number in status.
    pub serial_number: u16,
    /// Samples per measurement packet.
    pub records_per_packet: usize,
    /// Measurement packets between calibration pairs.
    pub calibration_every: usize,
    /// Hardware revision in status (1 → 62.5 µV voltage LSB).
    pub hardware_revision: u8,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            serial_number: 20_456,
            records_per_packet: 5,
            calibration_every: 1000,
            hardware_revision: 3,
        }
    }
}

/// True currents and voltage of one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrueSample {
    /// Main current, A.
    pub main_a: f32,
    /// USB current, A.
    pub usb_a: f32,
    /// Aux current, A.
    pub aux_a: f32,
    /// Output voltage, V.
    pub volts: f32,
}

/// What a command asks the simulator to do besides changing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing more.
    None,
    /// Send a status packet.
    SendStatus,
    /// Start a sampling session.
    Start,
    /// Stop sampling.
    Stop,
}

/// The simulated monitor.
#[derive(Debug)]
pub struct MonitorModel {
    cfg: ModelConfig,
    status: Status,
    scales: [ChannelScales; 3],
    seq: u8,
    since_cal: usize,
    cal_due: bool,
    last: RawRecord,
    rng: Rng,
}

impl MonitorModel {
    /// A monitor with output off, USB passthrough auto.
    pub fn new(cfg: ModelConfig, seed: u64) -> MonitorModel {
        let scales = ZEROS.map(|(fz, cz)| ChannelScales {
            fine_zero: fz,
            fine_scale: (FINE_REF_A / f64::from(FINE_SPAN)) as f32,
            coarse_zero: cz,
            coarse_scale: (COARSE_REF_A / f64::from(COARSE_SPAN)) as f32,
        });
        let status = Status {
            packet_type: 0x10,
            firmware_version: 32,
            protocol_version: 16,
            serial_number: cfg.serial_number,
            sample_rate_khz: 5,
            hardware_revision: cfg.hardware_revision,
            temperature: 31,
            temperature_limit: 80,
            usb_passthrough_mode: 2,
            power_up_current_limit: 0,
            runtime_current_limit: 435,
            power_up_time: 10,
            dac_cal_low: 0x0123,
            dac_cal_high: 0x0F00,
            ..Default::default()
        };
        MonitorModel {
            cfg,
            status,
            scales,
            seq: 0,
            since_cal: 0,
            cal_due: true,
            last: RawRecord::default(),
            rng: Rng::new(seed ^ 0xCA11_B8A7),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Current status, live readings included.
    pub fn status(&self) -> Status {
        let mut s = self.status;
        s.main_fine_current = self.last.main;
        s.usb_fine_current = self.last.usb;
        s.aux_fine_current = self.last.aux;
        s.voltage1 = self.last.voltage;
        s.voltage2 = self.last.voltage;
        s
    }

    /// Output voltage now (0 when off or killed).
    pub fn output_v(&self) -> f32 {
        self.status.output_voltage_v()
    }

    /// USB passthrough mode byte.
    pub fn usb_mode(&self) -> u8 {
        self.status.usb_passthrough_mode
    }

    /// Whether an over-current kill is in force.
    pub fn over_current(&self) -> bool {
        self.status.event_code == event_code::OVER_CURRENT
            && self.status.output_voltage_setting == 0
    }

    /// Apply a host command.
    pub fn apply(&mut self, cmd: Command) -> Effect {
        let s = &mut self.status;
        match cmd {
            Command::GetStatus => return Effect::SendStatus,
            Command::SetOutputVoltage(v) => {
                let from = s.output_voltage_setting.max(100);
                if v > 100 && u16::from(v) > u16::from(from) + 10 {
                    s.event_code = event_code::UNRAMPED_VOLTAGE;
                    s.event_data = u16::from(v);
                } else if s.event_code == event_code::OVER_CURRENT {
                    s.event_code = 0;
                    s.event_data = 0;
                }
                s.output_voltage_setting = v;
            }
            Command::SetPowerUpLimitLo(b) => {
                s.power_up_current_limit = (s.power_up_current_limit & 0xFF00) | u16::from(b)
            }
            Command::SetPowerUpLimitHi(b) => {
                s.power_up_current_limit = (s.power_up_current_limit & 0x00FF) | (u16::from(b) << 8)
            }
            Command::SetRuntimeLimitLo(b) => {
                s.runtime_current_limit = (s.runtime_current_limit & 0xFF00) | u16::from(b)
            }
            Command::SetRuntimeLimitHi(b) => {
                s.runtime_current_limit = (s.runtime_current_limit & 0x00FF) | (u16::from(b) << 8)
            }
            Command::SetUsbPassthrough(m) if m <= 2 => s.usb_passthrough_mode = m,
            Command::SetUsbPassthrough(_) | Command::ArmSampling | Command::SetRegister { .. } => {}
            Command::StartSampling { .. } => {
                self.seq = 0;
                self.since_cal = 0;
                self.cal_due = true;
                return Effect::Start;
            }
            Command::StopSampling => return Effect::Stop,
        }
        Effect::None
    }

    /// Trip the over-current kill: output off, flag set in data packets.
    pub fn trip_over_current(&mut self) {
        self.status.output_voltage_setting = 0;
        self.status.event_code = event_code::OVER_CURRENT;
        self.status.event_data = 0;
    }

    fn flags(&mut self) -> u8 {
        let mut f = self.seq & 0x0F;
        self.seq = (self.seq + 1) & 0x0F;
        if self.status.output_voltage_setting != 0 {
            f |= FLAG_OUTPUT_ENABLED;
        }
        if self.over_current() {
            f |= FLAG_OVER_CURRENT;
        }
        f
    }

    /// Whether a calibration pair goes before the next measurement packet.
    pub fn calibration_due(&self) -> bool {
        self.cal_due
    }

    /// Append one framed calibration packet (record 0 fine, record 1 coarse).
    pub fn encode_calibration(&mut self, kind: CalKind, out: &mut Vec<u8>) {
        let (fine_span, coarse_span) = match kind {
            CalKind::Zero => (0.0, 0.0),
            CalKind::Reference => (FINE_SPAN, COARSE_SPAN),
        };
        let mut read =
            |zero: f32, span: f32| (zero + span).round() as i32 + self.rng.range_i32(-1, 1);
        let mut fine = [0i16; 3];
        let mut coarse = [0i16; 3];
        for (c, s) in self.scales.iter().enumerate() {
            fine[c] = read(s.fine_zero, fine_span) as i16;
            coarse[c] = read(s.coarse_zero, coarse_span) as i16;
        }
        let rec = |w: [i16; 3]| RawRecord {
            main: w[0],
            usb: w[1],
            aux: w[2],
            voltage: 0,
        };
        let t = match kind {
            CalKind::Zero => RecordType::ZeroCal,
            CalKind::Reference => {
                self.cal_due = false;
                self.since_cal = 0;
                RecordType::RefCal
            }
        };
        let flags = self.flags();
        // Two records always fit a frame.
        let _ = encode_data_packet(flags, t, &[rec(fine), rec(coarse)], out);
    }

    /// Encode one sample's record.
    pub fn record(&self, s: &TrueSample) -> RawRecord {
        let lsb = voltage_lsb_v(self.cfg.hardware_revision);
        let vw =
            ((f64::from(s.volts) / f64::from(lsb) / 4.0).round() * 4.0).clamp(0.0, 65532.0) as u16;
        RawRecord {
            main: self.scales[0].word(s.main_a),
            usb: self.scales[1].word(s.usb_a),
            aux: self.scales[2].word(s.aux_a),
            voltage: vw,
        }
    }

    /// Append one framed measurement packet of up to 31 samples.
    pub fn encode_measurement(&mut self, samples: &[TrueSample], out: &mut Vec<u8>) {
        let recs: Vec<RawRecord> = samples.iter().map(|s| self.record(s)).collect();
        if let Some(r) = recs.last() {
            self.last = *r;
        }
        let flags = self.flags();
        // Callers pass 1..=31 samples (records_per_packet is validated).
        let _ = encode_data_packet(flags, RecordType::Measurement, &recs, out);
        self.since_cal += 1;
        if self.since_cal >= self.cfg.calibration_every {
            self.cal_due = true;
        }
    }

    /// Append a framed status packet.
    pub fn encode_status(&self, out: &mut Vec<u8>) {
        // 58 bytes always fit a frame.
        let _ = encode_frame(&self.status().encode(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{DecoderOptions, StreamDecoder, StreamEvent};

    #[test]
    fn model_bytes_decode_to_the_true_values() {
        let mut m = MonitorModel::new(ModelConfig::default(), 3);
        assert_eq!(m.apply(Command::START[1]), Effect::Start);
        let mut wire = Vec::new();
        let mut truth = Vec::new();
        for p in 0..2500 {
            if m.calibration_due() {
                m.encode_calibration(CalKind::Zero, &mut wire);
                m.encode_calibration(CalKind::Reference, &mut wire);
            }
            let s: Vec<TrueSample> = (0..5)
                .map(|k| TrueSample {
                    main_a: 0.05 + ((p * 5 + k) % 97) as f32 * 0.02,
                    usb_a: 0.01,
                    aux_a: 0.0,
                    volts: 4.2,
                })
                .collect();
            truth.extend_from_slice(&s);
            m.encode_measurement(&s, &mut wire);
        }
        let mut d = StreamDecoder::new(DecoderOptions {
            hardware_revision: 3,
            ..Default::default()
        });
        let mut ev = Vec::new();
        d.push(&wire, &mut ev);
        d.finish(&mut ev);
        let samples: Vec<_> = ev
            .iter()
            .flat_map(|e| match e {
                StreamEvent::Samples(v) => v.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(samples.len(), truth.len());
        for (s, t) in samples.iter().zip(&truth) {
            // Resolution (40 µA fine, 1.2 mA coarse) plus the scale error of
            // averaging ±1-LSB-noisy calibration readings.
            let tol = if t.main_a < 0.55 { 1e-4 } else { 1.5e-3 } + 2e-3 * t.main_a;
            assert!((s.main_current_a - t.main_a).abs() < tol, "{s:?} vs {t:?}");
            assert!((s.usb_current_a - t.usb_a).abs() < 1e-4);
            assert!((s.voltage_v - 4.2).abs() < 1e-6);
        }
        assert_eq!(d.stats().calibration_packets, 6);
    }

    #[test]
    fn settings_and_ramp_check() {
        let mut m = MonitorModel::new(ModelConfig::default(), 1);
        m.apply(Command::SetOutputVoltage(100));
        m.apply(Command::SetOutputVoltage(110));
        assert_eq!(m.status().event_code, 0);
        m.apply(Command::SetOutputVoltage(220));
        assert_eq!(m.status().event_code, event_code::UNRAMPED_VOLTAGE);
        m.apply(Command::SetRuntimeLimitLo(0x34));
        m.apply(Command::SetRuntimeLimitHi(0x02));
        assert_eq!(m.status().runtime_current_limit, 0x0234);
        m.apply(Command::SetUsbPassthrough(0));
        assert_eq!(m.status().usb_passthrough_mode, 0);
        m.apply(Command::SetUsbPassthrough(7));
        assert_eq!(m.status().usb_passthrough_mode, 0);
        m.trip_over_current();
        assert!(m.over_current());
        assert_eq!(m.output_v(), 0.0);
    }
}
