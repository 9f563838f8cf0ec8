//! # Cooperative single-layer acceleration (μLayer §3–§5)
//!
//! The CPU and the GPU compute parts of the **same layer** at the same time, each writing its
//! own slice of one shared output tensor. Four parts:
//!
//! - [`profile`]: the profiler. It times every (layer type, processor, precision) on the zoo
//!   networks' real layers and a grid of shapes, at several split fractions (output channels
//!   and output rows), plus the cost of one CPU↔GPU synchronisation (fork/join, GPU dispatch
//!   and fence wait, copy bandwidth) and how much the two processors slow each other down
//!   when they run at once (`contention`). The result is a [`profile::Profile`] keyed by the
//!   device's identity ([`profile::DeviceIdentity`]); a profile of another device is refused.
//! - [`predict`]: three latency predictors fitted from a profile: the paper's
//!   ([`predict::paper`], one linear regression per (layer type, processor, precision) on
//!   FLOPs, input size and (kernel/stride)²·output channels) and two of ours:
//!   [`predict::kernel`] (kernel-aware: per kernel variant, the work rounded up to the tiles
//!   the kernel computes and spread over its parallel workers, plus memory traffic, with the
//!   tile sizes chosen by fit; the planner's default) and [`predict::boosted`] (gradient-
//!   boosted trees over the same kernel-level features, as nn-Meter). [`predict::evaluate`]
//!   reports the share of held-out measurements within ±10 % and ±20 %, and
//!   [`predict::repeatability`] the same score for a second profile of the device: how well
//!   the measurements themselves repeat.
//! - [`partition`]: the partitioner. Per layer: whole on the CPU, whole on the GPU, or split
//!   by output channels (on the GPU's packing grid, multiples of 8, or 4 for small layers) or
//!   by output rows, whichever is predicted fastest including the synchronisation and
//!   contention; multi-branch modules (GoogLeNet's Inception, SqueezeNet's Fire expands) are
//!   also tried as whole branches per processor and the better kept. The [`partition::Plan`]
//!   is JSON-serialisable and explains every choice.
//! - [`executor`]: the concurrent executor. For a split layer the GPU backend runs its slice
//!   on a second thread while the CPU runs its slice on its own pool, both into the same
//!   [`crate::SharedTensor`] (or [`crate::quant::SharedQTensor`] at QUInt8: the CPU's 8-bit
//!   integer kernels and the GPU's F16-over-QUInt8 kernels, processor-friendly quantization);
//!   the trace has one span per processor per layer.
//!
//! [`mechanism::Mechanism`] names the ways a model can run: `cpu`, `gpu`,
//! `layer-to-processor`, `ulayer`, `ulayer+branch`.
//!
//! ## Where a profile comes from
//!
//! The mechanisms that need one (`layer-to-processor`, `ulayer`, `ulayer+branch`) take the
//! profile file given (`--profile`, or `$ULAYER_PROFILE`); without one they use the cached
//! profile of this device (`<data dir>/profiles/<device key>.json`), and when there is none
//! they run the quick built-in profile once (`ulayer-agent profile --quick`, well under a
//! minute) and cache it, logging a warning that a full `ulayer-agent profile` predicts better.
//! A profile whose device identity differs from this device's is refused with both named.
//!
//! ## What is modelled but not executed
//!
//! Consecutive layers that keep the same channel split and depend only channel-wise on each
//! other (pooling, activations, depthwise convolution after a split convolution) could share
//! one synchronisation: the plan marks them (`shares_sync`) and reports the predicted saving,
//! but the executor still synchronises at every layer boundary, because the GPU backend
//! uploads its whole input tensor, which the CPU would still be writing.
pub mod executor;
pub mod helper;
pub mod mechanism;
pub mod partition;
pub mod predict;
pub mod profile;

#[cfg(test)]
pub(crate) mod tests;

pub use executor::{CoopExecutor, Runner};
pub use mechanism::Mechanism;
pub use partition::{plan, Plan, PlanOptions, Stage};
pub use profile::{DeviceIdentity, Profile, ProfileOptions};
