//! The crate's error type: every variant names the file (and the column or configuration)
//! it is about.
use std::path::PathBuf;

/// What went wrong reading results or rules, or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the report or check needs is not there.
    #[error("{path}: missing ({what})")]
    MissingFile { path: PathBuf, what: String },
    /// A results table lacks a column.
    #[error("{path}: no column {column:?} (the results table's schema changed, or the file is not a ulab results table)")]
    MissingColumn { path: PathBuf, column: String },
    /// A results table could not be read or has a column of the wrong type.
    #[error("{path}: {msg}")]
    Table { path: PathBuf, msg: String },
    /// A JSON or TOML file is not valid.
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A figure could not be drawn.
    #[error("figure {figure}: {msg}")]
    Plot { figure: String, msg: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
