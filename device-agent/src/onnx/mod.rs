//! ONNX import and export (filled by the runtime issue's importer work).
