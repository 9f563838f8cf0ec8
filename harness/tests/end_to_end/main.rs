//! The end-to-end tests of `ulab`, in one test binary: every test binary of this crate links
//! the harness and with it polars, so one binary instead of eight saves their links (time
//! and disk). Clock alignment (`tests/align_sim.rs`) keeps its own binary: it re-executes
//! itself as the agent's child process.
mod common;

mod campaign_e2e;
mod demo_cli;
mod devices_cli;
mod monsoon_cli;
mod regression_check;
mod resume;
mod shard_merge;
mod ssh_transport;
