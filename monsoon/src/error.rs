//! The crate-wide error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::ProtocolError;

/// Crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a monitor or reading its traces.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process owns the monitor.
    #[error("monitor {port} is held by {} (lock file {lock})", holder(*.pid))]
    Busy {
        /// The serial port that was asked for.
        port: PathBuf,
        /// Process id recorded in the lock file, when it could be read.
        pid: Option<u32>,
        /// The lock file.
        lock: PathBuf,
    },
    /// The serial port could not be opened or configured.
    #[error("serial port {path}: {source}")]
    Port {
        /// The port.
        path: PathBuf,
        /// What serialport said.
        #[source]
        source: serialport::Error,
    },
    /// An I/O error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (names the file or port).
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The monitor did not answer a status request.
    #[error("no status reply from the monitor within {0:?} (is it powered and connected?)")]
    NoStatus(Duration),
    /// A setting was sent but the status read back does not show it.
    #[error("{setting} not confirmed by the monitor: sent {wanted}, status reports {got}")]
    NotConfirmed {
        /// Which setting.
        setting: &'static str,
        /// What was sent.
        wanted: String,
        /// What the status says.
        got: String,
    },
    /// The connect sequence found something that is not a usable monitor.
    #[error("connect to {port}: {reason}")]
    Connect {
        /// The port.
        port: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The monitor went away (unplugged, simulator closed, I/O error).
    #[error("monitor disconnected: {0}")]
    Disconnected(String),
    /// A call that needs a state the monitor is not in.
    #[error("{0}")]
    State(&'static str),
    /// An argument out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A malformed file, naming the byte offset at fault.
    #[error("{path}: {msg} (at byte offset {offset})")]
    Format {
        /// The file.
        path: PathBuf,
        /// Byte offset of the fault.
        offset: u64,
        /// What is wrong.
        msg: String,
    },
    /// A malformed CSV file, naming the line at fault.
    #[error("{path}:{line}: {msg}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        msg: String,
    },
    /// A protocol encoding error.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("pid {p}"),
        None => "another process".to_string(),
    }
}

impl Error {
    /// Wrap an I/O error with what was being done.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
