//! The engine's error type. Every variant that concerns a file names it.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file that cannot be read or written, or holds bad data (the
    /// vocabulary's errors, which name the file).
    #[error(transparent)]
    File(gradnorm_core::Error),

    #[error("{}: not a checkpoint: {reason}", path.display())]
    NotACheckpoint { path: PathBuf, reason: String },

    #[error("{}: missing tensor `{name}` (expected shape {expected:?})", path.display())]
    MissingTensor {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
    },

    #[error("{}: unexpected tensor `{name}` with shape {shape:?} (not part of {arch})", path.display())]
    UnexpectedTensor {
        path: PathBuf,
        name: String,
        shape: Vec<usize>,
        arch: String,
    },

    #[error("{}: tensor `{name}` has shape {found:?}, expected {expected:?}", path.display())]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("{}: the checkpoint holds {found}, not the requested {requested}", path.display())]
    ModelMismatch {
        path: PathBuf,
        requested: String,
        found: String,
    },

    #[error("unknown model `{0}` (try one of: {1})")]
    UnknownModel(String, String),

    #[error("bad device `{0}`: {1}")]
    Device(String, String),

    #[error("{0}")]
    Invalid(String),

    #[error("cancelled")]
    Cancelled,

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::File(gradnorm_core::Error::io(path, error))
    }

    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::File(gradnorm_core::Error::data(path, reason))
    }

    /// `Ok` when `path` is a file, else a data error giving `reason` (what
    /// is missing and how to make it).
    pub fn require_file(path: &Path, reason: &str) -> Result<()> {
        if path.is_file() {
            Ok(())
        } else {
            Err(Error::data(path, reason))
        }
    }
}

pub use gradnorm_core::error::io_reason;

/// The vocabulary's errors: a file's as they are, an invalid value as the
/// engine's.
impl From<gradnorm_core::Error> for Error {
    fn from(e: gradnorm_core::Error) -> Self {
        match e {
            gradnorm_core::Error::Invalid(reason) => Error::Invalid(reason),
            file => Error::File(file),
        }
    }
}
