//! Calibration: rolling zero/reference averages and raw → amps/volts.
//!
//! Calibration packets arrive about once a second. In each channel's slot,
//! record 0 is the fine-range reading and record 1 the coarse-range reading.
//! Each of the four readings (zero/reference × fine/coarse) keeps a rolling
//! average of the last [`ROLLING_DEPTH`] values, and
//!
//! - `coarse_scale = 2.88 / (coarse_ref - coarse_zero)`
//! - `fine_scale = 0.0332 / (fine_ref - fine_zero)`
//! - a word with its least significant bit set is coarse:
//!   `A = ((x & !1) - coarse_zero) * coarse_scale`; otherwise fine:
//!   `A = (x - fine_zero) * fine_scale`
//! - `V = (v & !3) * 125 µV` (62.5 µV on hardware revision 1).
//!
//! MONSOON.md documents the main channel. The USB and aux channels use the
//! same slots of the same calibration records and, lacking other constants,
//! the same reference currents (inferred; the simulator does the same).

use crate::protocol::RawRecord;

/// Depth of the rolling calibration averages.
pub const ROLLING_DEPTH: usize = 5;
/// Reference current of the coarse range in amps.
pub const COARSE_REF_A: f64 = 2.88;
/// Reference current of the fine range in amps.
pub const FINE_REF_A: f64 = 0.0332;

/// A calibration reading further than this from the rolling mean (in raw
/// LSBs) is an outlier: real zero/reference readings move by a few LSBs,
/// while a corrupted byte that slipped past the 8-bit checksum moves a word
/// by hundreds.
pub const OUTLIER_LSB: i32 = 64;

/// Rolling mean of the last [`ROLLING_DEPTH`] readings, ignoring isolated
/// outliers (three in a row are taken as a real change and restart it).
#[derive(Debug, Clone, Copy, Default)]
struct Rolling {
    vals: [i32; ROLLING_DEPTH],
    n: usize,
    next: usize,
    outliers: u8,
}

impl Rolling {
    fn push(&mut self, v: i32) {
        if let Some(m) = self.mean() {
            if self.n >= 2 && (f64::from(v) - m).abs() > f64::from(OUTLIER_LSB) {
                self.outliers += 1;
                if self.outliers < 3 {
                    return;
                }
                self.n = 0;
                self.next = 0;
            }
        }
        self.outliers = 0;
        self.vals[self.next] = v;
        self.next = (self.next + 1) % ROLLING_DEPTH;
        self.n = (self.n + 1).min(ROLLING_DEPTH);
    }

    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| {
            let s: i32 = self.vals[..self.n].iter().sum();
            f64::from(s) / self.n as f64
        })
    }
}

/// Zero and scale of both ranges of one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelScales {
    /// Fine-range zero (raw).
    pub fine_zero: f32,
    /// Amps per fine LSB.
    pub fine_scale: f32,
    /// Coarse-range zero (raw).
    pub coarse_zero: f32,
    /// Amps per coarse LSB.
    pub coarse_scale: f32,
}

impl ChannelScales {
    /// Convert one current word to amps.
    #[inline(always)]
    pub fn amps(&self, x: i16) -> f32 {
        let x = i32::from(x);
        if x & 1 != 0 {
            ((x & !1) as f32 - self.coarse_zero) * self.coarse_scale
        } else {
            (x as f32 - self.fine_zero) * self.fine_scale
        }
    }

    /// The current word that best represents `amps` (the simulator's side):
    /// the fine range while it can hold the value, else coarse.
    pub fn word(&self, amps: f32) -> i16 {
        let fine = f64::from(amps) / f64::from(self.fine_scale) + f64::from(self.fine_zero);
        let even = |v: f64| ((v / 2.0).round() * 2.0).clamp(-32768.0, 32766.0) as i32;
        if fine.abs() < 30000.0 {
            return even(fine) as i16;
        }
        let coarse = f64::from(amps) / f64::from(self.coarse_scale) + f64::from(self.coarse_zero);
        (even(coarse) | 1) as i16
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ChannelCal {
    fine_zero: Rolling,
    coarse_zero: Rolling,
    fine_ref: Rolling,
    coarse_ref: Rolling,
}

impl ChannelCal {
    fn scales(&self) -> Option<ChannelScales> {
        let fz = self.fine_zero.mean()?;
        let fr = self.fine_ref.mean()?;
        let cz = self.coarse_zero.mean()?;
        let cr = self.coarse_ref.mean()?;
        // A reference equal to its zero would divide by zero: not calibrated.
        if (fr - fz).abs() < 0.5 || (cr - cz).abs() < 0.5 {
            return None;
        }
        Some(ChannelScales {
            fine_zero: fz as f32,
            fine_scale: (FINE_REF_A / (fr - fz)) as f32,
            coarse_zero: cz as f32,
            coarse_scale: (COARSE_REF_A / (cr - cz)) as f32,
        })
    }
}

/// Which calibration reading a packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalKind {
    /// Zero reading.
    Zero,
    /// Reference reading.
    Reference,
}

/// Calibration state of the three channels.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    channels: [ChannelCal; 3],
    scales: Option<[ChannelScales; 3]>,
    voltage_lsb_v: f32,
}

impl Calibration {
    /// Empty calibration for a hardware revision (sets the voltage LSB).
    pub fn new(hardware_revision: u8) -> Self {
        Calibration {
            voltage_lsb_v: crate::protocol::voltage_lsb_v(hardware_revision),
            ..Default::default()
        }
    }

    /// Change the voltage LSB after learning the hardware revision.
    pub fn set_hardware_revision(&mut self, rev: u8) {
        self.voltage_lsb_v = crate::protocol::voltage_lsb_v(rev);
    }

    /// Feed one calibration packet's fine (record 0) and coarse (record 1)
    /// readings.
    pub fn update(&mut self, kind: CalKind, fine: RawRecord, coarse: RawRecord) {
        let f = [fine.main, fine.usb, fine.aux];
        let c = [coarse.main, coarse.usb, coarse.aux];
        for (i, ch) in self.channels.iter_mut().enumerate() {
            let (fr, cr) = match kind {
                CalKind::Zero => (&mut ch.fine_zero, &mut ch.coarse_zero),
                CalKind::Reference => (&mut ch.fine_ref, &mut ch.coarse_ref),
            };
            fr.push(i32::from(f[i]));
            cr.push(i32::from(c[i]));
        }
        self.scales = match (
            self.channels[0].scales(),
            self.channels[1].scales(),
            self.channels[2].scales(),
        ) {
            (Some(a), Some(b), Some(c)) => Some([a, b, c]),
            _ => None,
        };
    }

    /// Whether both zero and reference readings exist for every channel.
    pub fn is_ready(&self) -> bool {
        self.scales.is_some()
    }

    /// Current scales of (main, USB, aux), once calibrated.
    pub fn scales(&self) -> Option<[ChannelScales; 3]> {
        self.scales
    }

    /// Volts per voltage LSB in use.
    pub fn voltage_lsb_v(&self) -> f32 {
        self.voltage_lsb_v
    }

    /// Convert a measurement record: `(main A, USB A, aux A, V)`, or `None`
    /// before calibration.
    #[inline]
    pub fn convert(&self, r: RawRecord) -> Option<(f32, f32, f32, f32)> {
        let [m, u, a] = self.scales.as_ref()?;
        Some((
            m.amps(r.main),
            u.amps(r.usb),
            a.amps(r.aux),
            voltage_v(r.voltage, self.voltage_lsb_v),
        ))
    }
}

/// Volts for a voltage word (marker bits cleared). Divides by the exact
/// LSBs per volt (8000 or 16000) so that e.g. 4.2 V reads as `4.2f32`.
#[inline(always)]
pub fn voltage_v(word: u16, lsb_v: f32) -> f32 {
    f32::from(word & !3) / (1.0 / lsb_v).round()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(main: i16) -> RawRecord {
        RawRecord {
            main,
            usb: main,
            aux: main,
            voltage: 0,
        }
    }

    #[test]
    fn needs_both_readings_and_averages_five() {
        let mut c = Calibration::new(3);
        c.update(CalKind::Zero, rec(100), rec(200));
        assert!(!c.is_ready());
        assert!(c.convert(rec(0)).is_none());
        c.update(CalKind::Reference, rec(1760), rec(5000));
        let s = c.scales().unwrap()[0];
        assert_eq!(s.fine_zero, 100.0);
        assert!((s.fine_scale - 0.0332 / 1660.0).abs() < 1e-12);
        assert!((s.coarse_scale - 2.88 / 4800.0).abs() < 1e-9);
        // Fine word (LSB clear) and coarse word (LSB set).
        assert!((s.amps(100 + 830) - 0.0166).abs() < 1e-6);
        assert!((s.amps(200 + 2400 + 1) - 1.44).abs() < 1e-4);
        // Six more zero readings: only the last five count.
        for z in [0, 110, 110, 110, 110, 110] {
            c.update(CalKind::Zero, rec(z), rec(200));
        }
        assert_eq!(c.scales().unwrap()[0].fine_zero, 110.0);
    }

    #[test]
    fn word_round_trip_and_voltage() {
        let s = ChannelScales {
            fine_zero: 120.0,
            fine_scale: 2e-5,
            coarse_zero: 200.0,
            coarse_scale: 6e-4,
        };
        for a in [0.0f32, 0.001, 0.25, 0.59, 0.61, 1.7, 9.0] {
            let w = s.word(a);
            let tol = if w & 1 == 0 { 2.1e-5 } else { 6.1e-4 };
            assert!((s.amps(w) - a).abs() <= tol, "{a} -> {w} -> {}", s.amps(w));
        }
        assert_eq!(voltage_v(33600 | 3, 125e-6), 4.2);
        assert_eq!(voltage_v(33600, 62.5e-6), 2.1);
    }
}
