//! Monsoon power monitor: wire protocol, serial driver, calibrated sample
//! stream, trace files and a protocol-exact simulator.
//!
//! The protocol facts this crate implements are collected in
//! `shared/docs/MONSOON.md`; where this code had to choose something the
//! documents leave open, the choice is stated next to the code.
//!
//! Layout (one job per module):
//! - [`protocol`]: frame codec, host commands, status packet, data packets —
//!   shared by the driver and the simulator, never duplicated.
//! - [`calibration`]: rolling zero/reference averages and raw → amps/volts.
//! - [`stream`]: the pure byte-stream decoder (resync, gap accounting, sample
//!   indices) and the reader thread that feeds a bounded channel.
//! - [`driver`]: [`Monitor`] — port lock, connect sequence, control commands
//!   confirmed by status read-back, ramped voltage, start/stop.
//! - [`trace`]: chunked crash-safe trace files and Monsoon's own CSV shape.
//! - [`sim`]: the simulated monitor on a pseudo-terminal (`monsoon-sim`).
//! - [`cli`]: the `monsoon` subcommands for the host tool (`ulab monsoon ...`).
//!
//! Time on a power trace is the monitor's sample index ([`SAMPLE_RATE_HZ`] per
//! second from the start of sampling), never the host clock.
#![deny(missing_docs)]

pub mod calibration;
pub mod cli;
pub mod driver;
mod error;
pub mod protocol;
pub mod sim;
pub mod stream;
pub mod trace;

pub use driver::{find_monitors, CurrentLimitKind, Monitor, OpenOptions};
pub use error::{Error, Result};
pub use protocol::{Status, UsbPassthrough};
pub use stream::{Gap, SampleStream, StreamEvent};

/// Native sample rate of the monitor: 5000 samples per second.
pub const SAMPLE_RATE_HZ: u32 = 5000;

/// One calibrated measurement of the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// Sample index since sampling started (0-based); lost samples keep their
    /// indices, so indices jump across a [`Gap`].
    pub index: u64,
    /// Main channel current in amperes.
    pub main_current_a: f32,
    /// USB channel current in amperes.
    pub usb_current_a: f32,
    /// Auxiliary channel current in amperes.
    pub aux_current_a: f32,
    /// Main output voltage in volts.
    pub voltage_v: f32,
}

impl Sample {
    /// Time of the sample in seconds since sampling started, from its index at
    /// the native rate.
    pub fn time_s(&self) -> f64 {
        self.index as f64 / f64::from(SAMPLE_RATE_HZ)
    }

    /// Time of the sample in nanoseconds since sampling started, exact for
    /// the native 5 kHz rate (200 µs per sample).
    pub fn time_ns(&self) -> u64 {
        self.index * (1_000_000_000 / u64::from(SAMPLE_RATE_HZ))
    }

    /// Instantaneous power on the main channel in watts.
    pub fn main_power_w(&self) -> f64 {
        f64::from(self.main_current_a) * f64::from(self.voltage_v)
    }
}

/// Energy on the main channel in joules: `Σ V·I / rate` over the given
/// samples (samples missing from a gap contribute nothing).
pub fn energy_j(samples: &[Sample]) -> f64 {
    samples.iter().map(Sample::main_power_w).sum::<f64>() / f64::from(SAMPLE_RATE_HZ)
}

/// Charge on the main channel in milliamp-hours: `Σ I / rate / 3.6`.
pub fn charge_mah(samples: &[Sample]) -> f64 {
    samples
        .iter()
        .map(|s| f64::from(s.main_current_a))
        .sum::<f64>()
        / f64::from(SAMPLE_RATE_HZ)
        / 3.6
}
