//! The crate-wide error type. Graph-level errors carry the name of the node at fault.
use std::path::PathBuf;

/// Everything that can go wrong in the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A node of the graph is malformed or its shapes do not fit together.
    #[error("node '{node}': {msg}")]
    Node { node: String, msg: String },
    /// The graph as a whole is malformed (missing value, cycle, no outputs...).
    #[error("graph '{graph}': {msg}")]
    Graph { graph: String, msg: String },
    /// Ops that the importer does not support, all listed at once.
    #[error("unsupported ops: {}", .0.join(", "))]
    Unsupported(Vec<String>),
    /// A model file could not be decoded.
    #[error("{path}: {msg}")]
    Decode { path: PathBuf, msg: String },
    /// A tensor given at run time does not have the shape the graph expects.
    #[error("input '{name}': expected shape {expected:?}, got {got:?}")]
    InputShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// The requested model is not known.
    #[error("unknown model '{0}' (see `ulayer-agent models`)")]
    UnknownModel(String),
    /// Input/output failure with the file involved.
    // The cause is part of the message and deliberately not a `#[source]` (nor named
    // `source`): `{:#}` printed it twice ("f: No such file: No such file").
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A data set error (fetching, images, labels).
    #[error(transparent)]
    Data(#[from] datasets::Error),
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Shorthand for an error about one node.
    pub fn node(node: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Node {
            node: node.into(),
            msg: msg.into(),
        }
    }
}

/// The crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
