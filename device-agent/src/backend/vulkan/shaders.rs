//! The SPIR-V of every compute shader, compiled from `src/ops/*/*.comp` by build.rs (naga).
include!(concat!(env!("OUT_DIR"), "/vulkan_shaders.rs"));

/// The SPIR-V bytes of shader `name` in `precision` ("f32", "f16", "f16s", "q8", "q8s" or
/// "q8f").
pub(crate) fn spirv(name: &str, precision: &str) -> Option<&'static [u8]> {
    SHADERS
        .iter()
        .find(|(n, p, _)| *n == name && *p == precision)
        .map(|(_, _, b)| *b)
}

/// Names of every shader (each exists in every precision).
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = SHADERS.iter().map(|(n, _, _)| *n).collect();
    v.dedup();
    v
}
