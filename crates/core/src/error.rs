//! The vocabulary's errors: a file that cannot be read or written (named),
//! and a value that is not valid. The engine's error converts from these.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OS error is part of the message and deliberately not a
    /// `source`: `{:#}` would print it twice.
    #[error("{}: {}", path.display(), io_reason(error))]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("{}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },

    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }

    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// A text file's contents; a file that is not UTF-8 is an error naming it
/// with `not_text`, what the reader took it for.
pub fn read_text(path: &std::path::Path, not_text: &str) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|_| Error::data(path, not_text))
}

/// An OS error as a reader wants it: "No such file or directory", without
/// the "(os error 2)" tail; data that is not text says so.
pub fn io_reason(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::InvalidData {
        return format!("not UTF-8 text ({e})");
    }
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
