//! The one error type of the crate.

use thiserror::Error;

/// What can go wrong in the flow system; every message says which input was wrong.
#[derive(Debug, Error)]
pub enum FlowError {
    /// A configuration value is out of range (the message names the key and the bound).
    #[error("invalid config: {0}")]
    Config(String),
    /// An input has the wrong shape or length.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A value that must be finite is not (a reward, a pixel, a loss).
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// A kernel failed.
    #[error(transparent)]
    Kernel(#[from] treepo_kernels::KernelError),
    /// An advantage estimator rejected its input.
    #[error(transparent)]
    Rl(#[from] treepo_rl::RlError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint or image could not be encoded or decoded.
    #[error("{0}")]
    Format(String),
}

/// `Result` with [`FlowError`].
pub type Result<T, E = FlowError> = std::result::Result<T, E>;
