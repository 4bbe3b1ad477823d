//! The loader's error type and how each kind of failure maps to a process exit code.
//!
//! Kubernetes retries a Job on a non-zero exit, so the code says whether a retry can help:
//! 2 for configuration mistakes (a retry repeats them), 4 for an IP Binance refuses for a long
//! time (a retry at once would call during the ban), 1 for everything else.

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
    /// A signal (SIGTERM from a node drain, an eviction, a preemption; SIGINT) stopped the job
    /// before it was done: what was fetched was flushed, and the next attempt resumes after it.
    /// Not 0, so Kubernetes does not count the load as complete; not 2, so it is not a
    /// configuration error. The manifests ignore it (podFailurePolicy) so a drain does not
    /// spend the Job's retries.
    #[error("{message}")]
    Signalled { signal: Signal, message: String },
    /// Another instance of the same job fenced this one (transactional producers): it stopped
    /// without publishing more; the other carries the load.
    #[error("{0}")]
    Fenced(String),
    /// Binance refuses this IP for longer than the job may wait (a 418 ban or a 429 with a long
    /// Retry-After beyond MAX_RETRY_AFTER, a 403 from its firewall). A pod restarted at once
    /// would call while the ban runs, and repeat offenders are banned longer: the manifests do
    /// not retry this exit code.
    #[error("{0}")]
    Banned(String),
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
            LoaderError::Signalled { signal, .. } => signal.exit_code(),
            LoaderError::Fenced(_) => EXIT_FENCED,
            LoaderError::Banned(_) => EXIT_BANNED,
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

/// Exit code of a job fenced by another instance of itself.
pub const EXIT_FENCED: i32 = 3;

/// Exit code of a job whose IP Binance refuses for longer than it may wait.
pub const EXIT_BANNED: i32 = 4;

/// The signals that stop a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Int,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
        }
    }

    /// 128 + the signal's number, as a shell reports a process ended by it: 143 for SIGTERM,
    /// 130 for SIGINT.
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Term => 143,
            Signal::Int => 130,
        }
    }
}

pub type Result<T, E = LoaderError> = std::result::Result<T, E>;
