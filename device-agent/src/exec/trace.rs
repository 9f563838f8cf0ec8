//! The per-layer trace: when each layer ran, where, at what precision, on which slice.
use crate::backend::{Precision, Processor};
use crate::tensor::Slice;

/// `CLOCK_MONOTONIC` in nanoseconds: the device's time base for every trace.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux/Android.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One processor's work on one layer.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerSpan {
    /// Node name.
    pub node: String,
    /// Op kind (as [`crate::ops::Op::kind`]).
    pub kind: String,
    pub processor: Processor,
    pub precision: Precision,
    /// The part of the output this processor computed.
    pub slice: Slice,
    /// Start, `CLOCK_MONOTONIC` ns.
    pub start_ns: u64,
    /// End, `CLOCK_MONOTONIC` ns.
    pub end_ns: u64,
    /// Time spent moving this slice's inputs to the processor and its output back, outside
    /// `start_ns..end_ns` (the GPU's staging copies when its memory is not shared with the
    /// CPU; see [`crate::backend::Backend::last_transfer_ns`]); 0 when zero-copy. Absent in
    /// older traces.
    #[serde(default)]
    pub transfer_ns: u64,
}

impl LayerSpan {
    /// Duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// The trace of one inference.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Trace {
    pub start_ns: u64,
    pub end_ns: u64,
    pub layers: Vec<LayerSpan>,
}
