//! ONNX import and export.
//!
//! - [`import_file`] / [`import_bytes`]: ONNX models of opset 11 and newer (older forms of Clip,
//!   Pad, Reshape and Softmax too) into the graph IR. Every unsupported op is listed at once in
//!   [`Error::Unsupported`](crate::Error::Unsupported); a missing weight or a bad attribute is
//!   an [`Error::Node`](crate::Error::Node) naming the node; bytes that are not a model are an
//!   [`Error::Decode`](crate::Error::Decode), never a panic. Graph inputs with symbolic
//!   dimensions (dynamic batch) get 1 there.
//! - [`export`] / [`export_file`]: our graphs as ONNX opset 13, so that onnxruntime and other
//!   peers run exactly the same network. `import(export(g))` gives `g` back for optimized
//!   graphs (after `optimized()` on the import).
//! - [`npy`] reads and writes NumPy `.npy` files of f32; [`reference`] runs a model through
//!   onnxruntime (`tools/ort_run.py`) to get reference outputs.
//!
//! The protobuf types ([`proto`]) are generated at build time from the vendored
//! `proto/onnx.proto` (build.rs: protox + prost-build).
mod attributes;
mod context;
mod convert;
mod export;
mod export_qdq;
mod import;
pub mod npy;
pub mod reference;
mod values;

#[cfg(test)]
mod tests;

pub use export::{export, export_file, to_model, EXPORT_OPSET};
pub use export_qdq::{export_qdq, export_qdq_file, to_qdq_model};
pub use import::{import_bytes, import_file};

/// The ONNX protobuf messages (generated from `proto/onnx.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}
