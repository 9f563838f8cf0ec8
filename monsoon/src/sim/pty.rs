//! A raw pseudo-terminal pair (posix_openpt). The simulator keeps the slave
//! side open itself so that the master never sees a hang-up while no host is
//! connected, and reads/writes the master without blocking.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The simulator's end of a pseudo-terminal.
#[derive(Debug)]
pub struct Pty {
    master: OwnedFd,
    slave: Option<OwnedFd>,
    path: PathBuf,
}

fn check(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(rc)
    }
}

impl Pty {
    /// Open a new pseudo-terminal in raw mode.
    pub fn open() -> io::Result<Pty> {
        // SAFETY: plain libc calls on a descriptor we own; ptsname_r writes
        // into a buffer of the length we pass.
        unsafe {
            let fd = check(
                libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC),
                "posix_openpt",
            )?;
            let master = OwnedFd::from_raw_fd(fd);
            check(libc::grantpt(fd), "grantpt")?;
            check(libc::unlockpt(fd), "unlockpt")?;
            let mut name = [0 as libc::c_char; 128];
            let rc = libc::ptsname_r(fd, name.as_mut_ptr(), name.len());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            let path = PathBuf::from(CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned());
            let cpath = std::ffi::CString::new(path.to_string_lossy().as_bytes())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let sfd = check(
                libc::open(
                    cpath.as_ptr(),
                    libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
                ),
                "open pty slave",
            )?;
            let slave = OwnedFd::from_raw_fd(sfd);
            // Raw mode: no echo (which would bounce our own bytes back as
            // commands), no line editing, no CR/LF translation.
            let mut tio: libc::termios = std::mem::zeroed();
            check(libc::tcgetattr(sfd, &mut tio), "tcgetattr")?;
            libc::cfmakeraw(&mut tio);
            check(libc::tcsetattr(sfd, libc::TCSANOW, &tio), "tcsetattr")?;
            let flags = check(libc::fcntl(fd, libc::F_GETFL), "fcntl")?;
            check(
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK),
                "fcntl",
            )?;
            Ok(Pty {
                master,
                slave: Some(slave),
                path,
            })
        }
    }

    /// Path of the slave side (`/dev/pts/N`), what a driver opens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Master descriptor.
    pub fn fd(&self) -> RawFd {
        self.master.as_raw_fd()
    }

    /// Wait up to `timeout` for input (and, if `want_write`, for room to
    /// write). `ppoll`, not `poll`: the simulator's activity polls come every
    /// 200 µs, finer than `poll`'s milliseconds. Returns `(readable, writable)`.
    pub fn wait(&self, timeout: std::time::Duration, want_write: bool) -> io::Result<(bool, bool)> {
        let mut p = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN | if want_write { libc::POLLOUT } else { 0 },
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd, a valid timespec, no signal mask.
        let rc = unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok((false, false))
            } else {
                Err(e)
            };
        }
        Ok((
            p.revents & libc::POLLIN != 0,
            p.revents & libc::POLLOUT != 0,
        ))
    }

    /// Non-blocking read; `Ok(0)` when nothing is there.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    /// Non-blocking write; returns bytes written (0 when the buffer is full).
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::write(self.fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    /// Bytes sent but not yet read by the host (FIONREAD on the slave).
    pub fn pending_input(&self) -> usize {
        let Some(slave) = self.slave.as_ref() else {
            return 0;
        };
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int.
        let rc = unsafe { libc::ioctl(slave.as_raw_fd(), libc::FIONREAD, &mut n) };
        if rc < 0 {
            0
        } else {
            n.max(0) as usize
        }
    }

    /// Close both sides: the host sees a hang-up.
    pub fn close(self) {
        drop(self.slave);
        drop(self.master);
    }
}
