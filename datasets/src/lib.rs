//! Real data for μLayer Lab: registry-fetched weights and photos (filled by the datasets issue).

/// Errors of the datasets crate; each names the file, package or label at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder until the datasets issue lands.
    #[error("{0}")]
    Other(String),
}
