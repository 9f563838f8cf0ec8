//! GPU timestamps on the device's `CLOCK_MONOTONIC` time base.
//!
//! With VK_EXT/KHR_calibrated_timestamps the device clock and CLOCK_MONOTONIC are sampled
//! together by the driver. Otherwise the offset is measured: a submission that only writes a
//! timestamp is bracketed by two CLOCK_MONOTONIC reads, the tightest of several brackets
//! wins, and its midpoint is the estimate (error at most half the bracket). Either way it is
//! refreshed every few seconds against drift, and each layer's span is clamped into the
//! host bracket of its own submission, so a span never leaves the time its work really took.
use crate::exec::trace::monotonic_ns;

/// Refresh period of the calibration.
pub(crate) const REFRESH_NS: u64 = 5_000_000_000;

/// Maps device timestamps to CLOCK_MONOTONIC nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// `monotonic_ns = ticks * period + offset_ns`.
    pub offset_ns: f64,
    pub period_ns: f64,
    /// Mask of the valid timestamp bits.
    pub mask: u64,
    /// Bound on the error of `offset_ns`, ns.
    pub error_ns: u64,
    /// "calibrated-timestamps" or "measured".
    pub method: &'static str,
    /// When it was made (CLOCK_MONOTONIC ns).
    pub at_ns: u64,
}

impl Calibration {
    /// From one pair of samples taken together: device `ticks` and host `mono_ns`.
    pub fn from_pair(
        ticks: u64,
        mono_ns: u64,
        period_ns: f64,
        bits: u32,
        error_ns: u64,
        method: &'static str,
    ) -> Calibration {
        let mask = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        Calibration {
            offset_ns: mono_ns as f64 - (ticks & mask) as f64 * period_ns,
            period_ns,
            mask,
            error_ns,
            method,
            at_ns: monotonic_ns(),
        }
    }

    /// From bracketed samples `(host_before, ticks, host_after)`: the tightest bracket's midpoint.
    pub fn from_brackets(
        samples: &[(u64, u64, u64)],
        period_ns: f64,
        bits: u32,
    ) -> Option<Calibration> {
        let &(a, t, b) = samples
            .iter()
            .min_by_key(|(a, _, b)| b.saturating_sub(*a))?;
        Some(Calibration::from_pair(
            t,
            a + (b - a) / 2,
            period_ns,
            bits,
            (b - a).div_ceil(2),
            "measured",
        ))
    }

    /// CLOCK_MONOTONIC ns of a device timestamp.
    pub fn to_monotonic(&self, ticks: u64) -> u64 {
        ((ticks & self.mask) as f64 * self.period_ns + self.offset_ns).max(0.0) as u64
    }

    /// The span of `(start, end)` ticks on CLOCK_MONOTONIC, clamped into the host bracket
    /// `[lo, hi]` of the submission (keeping its length where it fits).
    pub fn span(&self, start: u64, end: u64, lo: u64, hi: u64) -> (u64, u64) {
        let s = self.to_monotonic(start);
        let e = self.to_monotonic(end).max(s);
        let len = (e - s).min(hi.saturating_sub(lo));
        let s = s.clamp(lo, hi.saturating_sub(len));
        (s, s + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tightest_bracket_wins_and_spans_stay_inside() {
        let c =
            Calibration::from_brackets(&[(100, 5, 300), (1000, 50, 1010), (0, 0, 5000)], 2.0, 64)
                .unwrap();
        assert_eq!(c.offset_ns, 1005.0 - 100.0);
        assert_eq!(c.error_ns, 5);
        assert_eq!(c.to_monotonic(60), 1025);
        // Inside the bracket: unchanged.
        assert_eq!(c.span(60, 70, 1000, 2000), (1025, 1045));
        // Outside: moved in, length kept.
        assert_eq!(c.span(60, 70, 1030, 2000), (1030, 1050));
        assert_eq!(c.span(60, 70, 0, 1030), (1010, 1030));
        // Longer than the bracket: cut to it.
        assert_eq!(c.span(0, 1000, 1000, 1010), (1000, 1010));
        let m = Calibration::from_pair(u64::MAX, 10, 1.0, 8, 0, "x");
        assert_eq!(m.to_monotonic(255), 10);
    }
}
