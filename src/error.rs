//! The loader's error type and how each kind of failure maps to a process exit code.
//!
//! Kubernetes retries a Job on a non-zero exit, so the code says whether a retry can help:
//! 2 for configuration mistakes (a retry repeats them), 1 for everything else.

use std::fmt;

/// Why a run failed, sorted by what the operator (or Kubernetes) should do about it.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// Bad or missing configuration: fix the variable named in the message.
    #[error("{0}")]
    Config(String),
    /// Binance answered with an error that retrying will not fix.
    #[error("{0}")]
    Exchange(String),
    /// The archive (data.binance.vision) could not deliver what `SOURCE=archive` needs.
    #[error("{0}")]
    Archive(String),
    /// The sink stopped taking records; the sink's own error says why.
    #[error("the Kafka sink stopped")]
    SinkClosed,
    /// Kafka could not be reached or refused the records.
    #[error("{0}")]
    Kafka(String),
    /// The topic content did not pass `verify`.
    #[error("{0}")]
    Verify(String),
    /// The job is stopping (stop command or signal): the work in progress was abandoned on
    /// purpose. Sources end with it; the job reports `interrupted`, not an error.
    #[error("the job was stopped")]
    Cancelled,
    /// Anything else (I/O, internal invariants).
    #[error("{0}")]
    Other(String),
}

impl LoaderError {
    /// The process exit code for this failure (README: "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            LoaderError::Config(_) => 2,
            LoaderError::Cancelled => 0,
            _ => 1,
        }
    }

    pub fn config(msg: impl fmt::Display) -> Self {
        LoaderError::Config(msg.to_string())
    }

    pub fn kafka(msg: impl fmt::Display) -> Self {
        LoaderError::Kafka(msg.to_string())
    }
}

pub type Result<T, E = LoaderError> = std::result::Result<T, E>;
