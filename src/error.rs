//! One error type for the whole library; every variant maps to a process exit code.
//!
//! Exit codes: 0 success, 1 a failed check or an internal failure, 2 bad input (files, flags,
//! configs, data that is missing or malformed). A panic (101) is always a bug.

use std::path::{Path, PathBuf};

/// Errors raised by oodcert. Messages are one line and tell the user what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file exists but its content is malformed (bad magic, truncated, NaN, wrong dims…).
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },
    /// A bad flag, config key, dataset name or value given by the user.
    #[error("{0}")]
    BadInput(String),
    /// Data that has not been fetched yet, or a fetch that failed (registry, hash).
    #[error("{0}")]
    Data(String),
    /// An I/O failure, with what we were doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A certificate or verification check failed (exit 1).
    #[error("check failed: {0}")]
    CheckFailed(String),
    /// The tensor backend failed.
    #[error("tensor backend: {0}")]
    Candle(#[from] candle_core::Error),
    /// Anything else that is our fault, not the user's (exit 1).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias used throughout oodcert.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code for this error: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::BadFile { .. } | Error::BadInput(_) | Error::Data(_) | Error::Io { .. } => 2,
            Error::CheckFailed(_) | Error::Candle(_) | Error::Internal(_) => 1,
        }
    }

    /// A malformed-file error naming the file.
    pub fn bad_file(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    /// An I/O error with context (usually "reading FILE" / "writing FILE").
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Shorthand for `Err(Error::BadInput(format!(...)))`.
#[macro_export]
macro_rules! bad_input {
    ($($arg:tt)*) => { $crate::error::Error::BadInput(format!($($arg)*)) };
}
