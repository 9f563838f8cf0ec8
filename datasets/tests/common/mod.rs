//! Shared by the integration tests: the default cache, fetched (or just verified) once per
//! test binary, so only the fetch test itself downloads into a fresh folder.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The default cache folder, complete and verified.
pub fn cache() -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| {
        let dir = datasets::default_cache_dir();
        if let Err(e) = datasets::fetch(&dir) {
            panic!(
                "fetching the shared test cache {} failed: {e}",
                dir.display()
            );
        }
        dir
    })
}

/// Path of a cached file.
pub fn cached(rel: &str) -> PathBuf {
    cache().join(rel)
}

/// Copies `src` to `dir/name`.
pub fn copy_to(src: &Path, dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).expect("create folder");
    }
    std::fs::copy(src, &dst)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", src.display(), dst.display()));
    dst
}
