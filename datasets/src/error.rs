//! The crate-wide error type. Every variant names the file, package, line or label at fault.
use std::path::PathBuf;

/// Errors of the datasets crate; each names the file, package or label at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A registry client (pip, apt-get, npm) is missing, or it could not fetch a package;
    /// the message says what to run by hand.
    #[error("{0}")]
    Registry(Box<RegistryFailure>),
    /// A file's SHA-256 is not the pinned one.
    #[error("checksum mismatch for {file}: expected sha256 {expected}, got {got}")]
    Checksum {
        /// The file (or archive member) at fault.
        file: String,
        /// The pinned digest.
        expected: String,
        /// The digest of what is there.
        got: String,
    },
    /// A package archive (wheel, .deb, .tgz) is malformed or lacks a member.
    #[error("{archive}: {message}")]
    Archive {
        /// The archive.
        archive: PathBuf,
        /// What is wrong, naming the member where there is one.
        message: String,
    },
    /// A fetched file is missing from the cache.
    #[error("{path} is missing: run `cargo run --release -p datasets --bin ulab-data -- fetch` (cache {cache})")]
    NotFetched {
        /// The missing file.
        path: PathBuf,
        /// The cache folder looked in.
        cache: PathBuf,
    },
    /// An image could not be read or decoded.
    #[error("{path}: unreadable image: {message}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// A class label is outside the classes known.
    #[error("{at}: label {label} is out of range (0..{classes})")]
    LabelOutOfRange {
        /// Where the label comes from (`file:line`).
        at: String,
        /// The label as written.
        label: i64,
        /// The number of classes.
        classes: usize,
    },
    /// A folder holds no images (.jpg, .jpeg, .png).
    #[error("{dir}: no images (.jpg, .jpeg, .png) found")]
    NoImages {
        /// The folder.
        dir: PathBuf,
    },
    /// An image of a labelled folder has no label.
    #[error("{image}: no label for this image in {labels}")]
    Unlabeled {
        /// The image without a label.
        image: PathBuf,
        /// Where labels were looked up.
        labels: String,
    },
    /// A text file (label file, synset list, class names) does not parse.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when not tied to a line).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A `.pth` file is truncated, corrupt or uses something this reader does not handle.
    #[error("{path}: corrupt or truncated .pth at byte {offset}: {message}")]
    Pth {
        /// The .pth file.
        path: PathBuf,
        /// Byte offset in the file where reading failed.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// Input/output failure with the file involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Details of [`Error::Registry`].
#[derive(Debug, thiserror::Error)]
#[error(
    "could not fetch {package} {version} from {registry}: {reason}\n  \
     fetch it by hand with `{command}`\n  \
     (it must leave `{artifact}` in {downloads}), then run `ulab-data fetch` again",
    downloads = downloads.display()
)]
pub struct RegistryFailure {
    /// Registry name (PyPI, Debian, npm).
    pub registry: &'static str,
    /// Package name.
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// What went wrong (client missing, network, version gone...), with the client's last words.
    pub reason: String,
    /// The command that fetches the artifact by hand.
    pub command: String,
    /// The artifact's file name.
    pub artifact: &'static str,
    /// Where a hand-fetched artifact is picked up.
    pub downloads: PathBuf,
}

impl Error {
    /// Wraps an I/O error with the path involved.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An archive error.
    pub(crate) fn archive(archive: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Archive {
            archive: archive.into(),
            message: message.into(),
        }
    }

    /// A parse error at `path:line`.
    pub(crate) fn parse(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Error::Parse {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}

/// The crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
