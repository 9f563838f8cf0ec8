//! `harness`: the μLayer Lab host controller behind `ulab` — campaign files, transports to
//! the on-device agent, the measured-job runner with the power monitor, clock alignment,
//! energy attribution, accuracy, results tables, resume and sharding.
pub mod campaign;
pub mod checkpoint;
pub mod dataset;
pub mod demo;
pub mod devices;
pub mod interrupt;
pub mod measure;
pub mod monitor;
pub mod record;
pub mod results;
pub mod runner;
pub mod shard;
pub mod transport;

pub mod accuracy;
pub mod align;
pub mod energy;
