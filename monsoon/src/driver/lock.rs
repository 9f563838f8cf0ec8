//! Exclusive ownership of a monitor across processes: a lock file per port,
//! held with `flock` and naming the holder's pid, so a second process is told
//! "monitor held by pid N" instead of reading half of someone else's stream.
//!
//! The lock is the kernel's `flock`, so it dies with its process: a stale
//! file left by a crash never blocks anyone.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A held port lock; released (and its file removed) on drop.
#[derive(Debug)]
pub struct PortLock {
    path: PathBuf,
    /// Holding the descriptor holds the `flock`.
    _file: File,
}

/// The lock file used for `port` inside `dir`: symlinks are resolved so that
/// `/dev/monsoon` and the `/dev/ttyACM0` it points at share one lock.
pub fn lock_path(port: &Path, dir: &Path) -> PathBuf {
    let real = std::fs::canonicalize(port).unwrap_or_else(|_| port.to_path_buf());
    let name: String = real
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("monsoon{name}.lock"))
}

/// Default directory for lock files: `$MONSOON_LOCK_DIR`, else the system
/// temporary directory.
pub fn default_lock_dir() -> PathBuf {
    std::env::var_os("MONSOON_LOCK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

impl PortLock {
    /// Take the lock for `port`, or fail with [`Error::Busy`] naming the pid
    /// that holds it.
    pub fn acquire(port: &Path, dir: &Path) -> Result<PortLock> {
        let path = lock_path(port, dir);
        // Retry when the holder removed the file between our open and our
        // flock: we would then hold a lock on an unlinked file.
        for _ in 0..10 {
            let mut file = open_lock_file(&path)?;
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::WouldBlock {
                    return Err(Error::Busy {
                        port: port.to_path_buf(),
                        pid: read_pid(&mut file),
                        lock: path,
                    });
                }
                return Err(Error::io(format!("lock {}", path.display()), err));
            }
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            // Record who holds it; a read-only lock file (another user's)
            // still locks, it just cannot name us.
            let _ = file
                .set_len(0)
                .and_then(|_| file.seek(SeekFrom::Start(0)))
                .and_then(|_| writeln!(file, "{}", std::process::id()))
                .and_then(|_| file.flush());
            return Ok(PortLock { path, _file: file });
        }
        Err(Error::Busy {
            port: port.to_path_buf(),
            pid: None,
            lock: path,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path);
    match rw {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            File::open(path).map_err(|e| Error::io(format!("open lock file {}", path.display()), e))
        }
        Err(e) => Err(Error::io(format!("open lock file {}", path.display()), e)),
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    // The holder writes its pid right after locking; give it a moment.
    for _ in 0..5 {
        let mut s = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok() && file.read_to_string(&mut s).is_ok() {
            if let Ok(pid) = s.trim().parse() {
                return Some(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    None
}

impl Drop for PortLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock; a waiter that opened the old
        // file notices the inode changed and retries.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_told_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let port = dir.path().join("ttyFAKE0");
        std::fs::write(&port, b"").unwrap();
        let a = PortLock::acquire(&port, dir.path()).unwrap();
        let err = PortLock::acquire(&port, dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("held by pid {}", std::process::id())),
            "{msg}"
        );
        assert!(matches!(err, Error::Busy { pid: Some(_), .. }));
        drop(a);
        let b = PortLock::acquire(&port, dir.path()).unwrap();
        assert!(b.path().exists());
        // A symlink to the same port shares the lock.
        let link = dir.path().join("monsoon-link");
        std::os::unix::fs::symlink(&port, &link).unwrap();
        assert!(matches!(
            PortLock::acquire(&link, dir.path()),
            Err(Error::Busy { .. })
        ));
    }
}
