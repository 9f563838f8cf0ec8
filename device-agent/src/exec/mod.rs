//! Executors and the per-layer trace.
pub mod trace;

