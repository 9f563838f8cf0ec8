//! The agent's work, shared by its CLI subcommands and its protocol server: loading models,
//! classifying images, timing inference. The binary `ulayer-agent` is a thin shell over this.
mod accuracy;
mod bench;
mod classify;
pub mod coop;
mod job;
mod model;
pub mod pulse;
pub mod quant;
pub mod serve;

pub use accuracy::{accuracy, AccuracyReport, AccuracyRow};
pub use bench::bench;
pub use classify::{classify, classify_with, evaluate, evaluate_with, Evaluation, PhotoResult};
pub use job::run_job;
pub use model::{load_model, model_infos, LoadedModel};

use crate::protocol::AgentInfo;

/// Who this agent is and what it runs on.
pub fn agent_info() -> AgentInfo {
    AgentInfo {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: crate::protocol::PROTOCOL_VERSION,
        arch: std::env::consts::ARCH.to_string(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_isa: crate::backend::cpu::isa_name().to_string(),
    }
}

/// Threads to use: `0` means every available core.
pub fn resolve_threads(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}
