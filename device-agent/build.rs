//! Generates the ONNX protobuf types (`$OUT_DIR/onnx.rs`) from the vendored
//! `proto/onnx.proto`, with `protox` (a pure-Rust .proto compiler, so no system `protoc`)
//! and `prost-build`; compiles the Vulkan compute shaders to SPIR-V (see `vulkan_shaders`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    println!("cargo:rerun-if-changed=build.rs");
    let descriptors = protox::compile(["proto/onnx.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    vulkan_shaders::build()?;
    Ok(())
}

/// Compiles every compute shader `src/ops/<op>/*.comp` to SPIR-V with naga (GLSL front end,
/// SPIR-V back end: pure Rust, no system `glslc`), in six precisions, and writes the table
/// `$OUT_DIR/vulkan_shaders.rs` that `backend::vulkan::shaders` includes.
///
/// Each source gets `src/backend/vulkan/common.glsl` (version, extensions, type macros) put in
/// front of it. Precisions: `f32` (f32 storage and arithmetic), `f16` (`FP16_STORAGE` and
/// `FP16_ARITH`), `f16s` (`FP16_STORAGE` only, for devices without shaderFloat16), and the
/// QUInt8 (processor-friendly) ones with QUInt8 activations: `q8` (F16 parameters and
/// arithmetic), `q8s` (F16 parameters, F32 arithmetic), `q8f` (F32 parameters and
/// arithmetic: no 16-bit storage). A line
/// `// @variant NAME: DEFINE...` in a shader adds a variant compiled with those defines.
mod vulkan_shaders {
    use std::fmt::Write as _;
    use std::path::{Path, PathBuf};

    const PRECISIONS: &[(&str, &[&str])] = &[
        ("f32", &[]),
        ("f16", &["FP16_STORAGE", "FP16_ARITH"]),
        ("f16s", &["FP16_STORAGE"]),
        ("q8", &["QUINT8", "FP16_STORAGE", "FP16_ARITH"]),
        ("q8s", &["QUINT8", "FP16_STORAGE"]),
        ("q8f", &["QUINT8"]),
    ];

    fn compile(name: &str, src: &str, defines: &[&str]) -> Result<Vec<u32>, String> {
        use naga::front::glsl::{Frontend, Options};
        let mut opts = Options::from(naga::ShaderStage::Compute);
        for d in defines {
            opts.defines.insert((*d).to_string(), "1".to_string());
        }
        let module = Frontend::default()
            .parse(&opts, src)
            .map_err(|e| format!("{name} {defines:?}:\n{}", e.emit_to_string(src)))?;
        let mut module = module;
        // naga's GLSL front end turns `barrier()` into a control barrier with every flag,
        // SUB_GROUP included, which its SPIR-V back end writes with *subgroup* execution
        // scope: work groups larger than a subgroup then race on shared memory (seen on
        // NVIDIA). GLSL's barrier() is a work-group barrier: drop the subgroup flag.
        for f in module.functions.iter_mut().map(|(_, f)| f) {
            workgroup_barriers(&mut f.body);
        }
        for ep in module.entry_points.iter_mut() {
            workgroup_barriers(&mut ep.function.body);
        }
        let module = module;
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| format!("{name} {defines:?}: {}", e.emit_to_string(src)))?;
        let options = naga::back::spv::Options {
            lang_version: (1, 3),
            flags: naga::back::spv::WriterFlags::empty(),
            ..Default::default()
        };
        let pipeline = naga::back::spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: "main".into(),
        };
        naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
            .map_err(|e| format!("{name} {defines:?}: {e}"))
    }

    fn workgroup_barriers(block: &mut naga::Block) {
        for st in block.iter_mut() {
            match st {
                naga::Statement::ControlBarrier(b) | naga::Statement::MemoryBarrier(b) => {
                    b.remove(naga::Barrier::SUB_GROUP);
                }
                naga::Statement::Block(b) => workgroup_barriers(b),
                naga::Statement::If { accept, reject, .. } => {
                    workgroup_barriers(accept);
                    workgroup_barriers(reject);
                }
                naga::Statement::Loop {
                    body, continuing, ..
                } => {
                    workgroup_barriers(body);
                    workgroup_barriers(continuing);
                }
                naga::Statement::Switch { cases, .. } => {
                    for c in cases {
                        workgroup_barriers(&mut c.body);
                    }
                }
                _ => {}
            }
        }
    }

    pub fn build() -> Result<(), Box<dyn std::error::Error>> {
        let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
        let common_path = Path::new("src/backend/vulkan/common.glsl");
        println!("cargo:rerun-if-changed={}", common_path.display());
        let common = std::fs::read_to_string(common_path)?;
        let mut sources: Vec<PathBuf> = Vec::new();
        for op in std::fs::read_dir("src/ops")? {
            let op = op?.path();
            println!("cargo:rerun-if-changed={}", op.display());
            if op.is_dir() {
                for f in std::fs::read_dir(&op)? {
                    let f = f?.path();
                    if f.extension().is_some_and(|e| e == "comp") {
                        sources.push(f);
                    }
                }
            }
        }
        sources.sort();
        let mut table = String::from(
            "/// (shader name, precision, SPIR-V bytes), generated by build.rs.\n\
             pub(crate) static SHADERS: &[(&str, &str, &[u8])] = &[\n",
        );
        let mut errors = Vec::new();
        for path in &sources {
            println!("cargo:rerun-if-changed={}", path.display());
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or("bad name")?;
            let body = std::fs::read_to_string(path)?;
            let src = format!("{common}\n{body}");
            let mut variants: Vec<(String, Vec<&str>)> = vec![(stem.to_string(), vec![])];
            for line in body.lines() {
                if let Some(rest) = line.trim().strip_prefix("// @variant ") {
                    let (name, defs) = rest.split_once(':').ok_or("variant needs NAME:")?;
                    variants.push((name.trim().to_string(), defs.split_whitespace().collect()));
                }
            }
            for (name, defs) in &variants {
                for (prec, pdefs) in PRECISIONS {
                    let all: Vec<&str> = defs.iter().chain(pdefs.iter()).copied().collect();
                    match compile(name, &src, &all) {
                        Ok(words) => {
                            let bytes: Vec<u8> =
                                words.iter().flat_map(|w| w.to_le_bytes()).collect();
                            let file = out_dir.join(format!("{name}.{prec}.spv"));
                            std::fs::write(&file, bytes)?;
                            writeln!(
                                table,
                                "    ({name:?}, {prec:?}, include_bytes!({:?})),",
                                file.display().to_string()
                            )?;
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(format!("shader compilation failed:\n{}", errors.join("\n")).into());
        }
        table.push_str("];\n");
        std::fs::write(out_dir.join("vulkan_shaders.rs"), table)?;
        Ok(())
    }
}
