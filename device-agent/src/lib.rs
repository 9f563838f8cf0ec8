//! # ulayer — the μLayer runtime
//!
//! A neural-network executor after μLayer (EuroSys 2019): every layer can compute any slice
//! of its output (a range of output channels and of output rows) so that the CPU and the GPU
//! can work on one layer at once. This crate holds the graph IR ([`graph`], [`ops`]), the
//! importers ([`onnx`], [`zoo`]), the processor backends ([`backend`]), the executor and its
//! per-layer trace ([`exec`]), and the agent protocol ([`protocol`]).
#![deny(missing_debug_implementations)]

pub mod agent;
pub mod backend;
pub mod coop;
pub mod error;
pub mod exec;
pub mod graph;
pub mod onnx;
pub mod ops;
pub mod protocol;
pub mod quant;
pub mod tensor;
pub mod zoo;

pub use error::{Error, Result};
pub use graph::{Graph, Node, WeightsOrigin};
pub use tensor::{SharedTensor, Slice, Tensor};
