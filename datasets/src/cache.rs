//! Where the cache folder is, and small file helpers (hashing, atomic writes).
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Environment variable that overrides the cache folder.
pub const DATA_DIR_ENV: &str = "ULAB_DATA_DIR";

/// The cache folder: `$ULAB_DATA_DIR` when set and not empty, else `<repo>/.cache/datasets`.
///
/// `<repo>` is the μLayer Lab checkout: the nearest folder, walking up from the current
/// directory, whose `Cargo.toml` declares a `[workspace]` and which holds
/// `datasets/Cargo.toml`; failing that (a binary run from outside any checkout), the
/// checkout this crate was compiled in (`CARGO_MANIFEST_DIR/..`).
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    repo_root().join(".cache").join("datasets")
}

/// The μLayer Lab checkout (see [`default_cache_dir`]).
pub fn repo_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            if is_lab_root(dir) {
                return dir.to_path_buf();
            }
        }
    }
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

fn is_lab_root(dir: &Path) -> bool {
    let Ok(toml) = fs::read_to_string(dir.join("Cargo.toml")) else {
        return false;
    };
    toml.lines().any(|l| l.trim() == "[workspace]")
        && dir.join("datasets").join("Cargo.toml").is_file()
}

/// SHA-256 of bytes, lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 and size of a file, streamed.
pub(crate) fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, then a rename,
/// so that readers (and concurrent fetches) never see a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    // Temporary files are created private (0600); cached data is ordinary readable data.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(tmp.path(), e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_is_the_workspace() {
        let root = repo_root();
        assert!(
            root.join("datasets").join("Cargo.toml").is_file(),
            "{}",
            root.display()
        );
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a/b.txt");
        write_atomic(&p, b"one").expect("write");
        write_atomic(&p, b"two").expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert_eq!(
            fs::read_dir(p.parent().expect("parent"))
                .expect("ls")
                .count(),
            1
        );
    }
}
