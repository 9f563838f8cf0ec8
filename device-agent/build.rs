//! Generates the ONNX protobuf types (`$OUT_DIR/onnx.rs`) from the vendored
//! `proto/onnx.proto`, with `protox` (a pure-Rust .proto compiler, so no system `protoc`)
//! and `prost-build`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    println!("cargo:rerun-if-changed=build.rs");
    let descriptors = protox::compile(["proto/onnx.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
