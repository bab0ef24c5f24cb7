//! The coordinator's error policy.
//!
//! - **One domain error.** Every layer below the edges returns `DroverError`. It knows
//!   nothing of tonic, axum or sqlx, and each variant has exactly one [`ErrorCode`].
//! - **One mapping.** `crate::edge` turns an `ErrorCode` into a gRPC code and an HTTP status,
//!   each in one exhaustive `match`, so a new variant forces a decision for both transports.
//! - **Every message says what went wrong and what to do.** Validation errors change nothing.
//! - **No store or driver text leaves the process.** The store classifies each sqlx error
//!   where it happens (`store/error.rs`): it logs the real cause with a short [`ErrorId`] and
//!   returns `StoreUnavailable` (unreachable, read-only, disk full, busy, refused) or
//!   `Conflict`. Their messages name the error id, say that nothing was changed and what to
//!   check, and never quote SQL or the driver.
//! - **Internal errors are for the log.** `Internal` carries its cause for operators only:
//!   the edge logs the cause with a fresh error id and sends the client a fixed message that
//!   names that id.

use std::fmt;

/// The closed set of outcomes a client can see. Voluntarily small: add a code only when a
/// client must act differently on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    Conflict,
    Unauthenticated,
    PermissionDenied,
    Unavailable,
    Internal,
}

/// A short random id that ties what a client was told to the log line with the real cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorId(u32);

impl ErrorId {
    pub fn new() -> Self {
        Self(rand::random())
    }
}

impl Default for ErrorId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ErrorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e-{:08x}", self.0)
    }
}

/// Why the store could not serve a call, in words an operator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreProblem {
    /// No connection: the server is down, unreachable, or the pool timed out.
    Unreachable,
    /// The database accepts reads but refuses writes (read-only mode, a standby, file modes).
    ReadOnly,
    /// The database's disk is full.
    DiskFull,
    /// Locked by another writer or overloaded; a retry usually succeeds.
    Busy,
    /// The database could not read or write its own files (SQLite I/O errors).
    DiskError,
    /// Anything else the database refused; the log has the cause under the error id.
    Refused,
    /// At start-up: the SQLite file could not be opened.
    CannotOpenSqlite,
    /// At start-up: no connection to PostgreSQL.
    CannotConnectPostgres,
    /// At start-up: the schema could not be migrated.
    CannotMigrate,
}

impl StoreProblem {
    fn summary(self) -> &'static str {
        match self {
            Self::Unreachable => "the store is unreachable",
            Self::ReadOnly => "the store is read-only and refused the write",
            Self::DiskFull => "the store's disk is full and it refused the write",
            Self::Busy => "the store is busy (locked or overloaded)",
            Self::DiskError => "the store could not read or write its files",
            Self::Refused => "the store refused the operation",
            Self::CannotOpenSqlite => "cannot open the SQLite database",
            Self::CannotConnectPostgres => "cannot connect to PostgreSQL",
            Self::CannotMigrate => "cannot migrate the database schema",
        }
    }

    fn advice(self) -> &'static str {
        match self {
            Self::Unreachable => {
                "check that the database server is running and reachable from the coordinator \
                 (the --database URL's host and port), then retry"
            }
            Self::ReadOnly => {
                "check that the database is not in read-only mode or a standby, or that the \
                 SQLite file and its directory are writable, then retry"
            }
            Self::DiskFull => "free disk space on the database host, then retry",
            // The figure is drover_rules::retry::BUSY_RETRY_AFTER (a test holds them equal).
            Self::Busy => {
                "retry in 2 s; if it persists, look for long transactions or other processes \
                 holding the database, or give the coordinator more CPU or replicas"
            }
            Self::DiskError => {
                "check the disk, the database file's permissions and attributes, and the \
                 kernel log, then retry"
            }
            Self::Refused => "the coordinator's log has the cause under this error id",
            Self::CannotOpenSqlite => {
                "check that the directory exists and is writable, and that the file is a \
                 Drover database"
            }
            Self::CannotConnectPostgres => {
                "check that the server runs, the URL's host, port, user and database are right, \
                 and that the user may create tables"
            }
            Self::CannotMigrate => {
                "if the database was written by a newer Drover, run that version or restore a \
                 backup; if it is not a Drover database, point --database elsewhere"
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DroverError {
    /// The request itself is wrong; retrying it unchanged will fail again.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but the system's state forbids it (e.g. a version constraint).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The change collided with one written at the same time (a unique key); nothing was
    /// changed and a retry sees the other write.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but its role may not do this; the message names the role needed.
    #[error("{0}")]
    PermissionDenied(String),
    /// The store could not be reached or refused the operation; nothing was changed. The
    /// cause was logged under `error_id` when the store classified it.
    #[error(
        "{} (error id {error_id}); nothing was changed; {}",
        problem.summary(),
        problem.advice()
    )]
    StoreUnavailable {
        error_id: ErrorId,
        problem: StoreProblem,
    },
    /// A bug or an unexpected failure. The text is the cause, for the log only: clients get a
    /// fixed message with an error id (see `crate::edge`).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = DroverError> = std::result::Result<T, E>;

impl DroverError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::StoreUnavailable { .. } => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// How long the client should wait before retrying, when the answer is "busy".
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        matches!(
            self,
            Self::StoreUnavailable {
                problem: StoreProblem::Busy,
                ..
            }
        )
        .then_some(drover_rules::retry::BUSY_RETRY_AFTER)
    }

    /// What a client may be told. `Internal` is logged here with a fresh error id and only
    /// that id leaves the process; every other message is already client-safe.
    pub fn client_message(&self) -> String {
        match self {
            Self::Internal(cause) => {
                let error_id = ErrorId::new();
                tracing::error!(%error_id, %cause, "internal error");
                format!(
                    "internal error (error id {error_id}); the request may not have completed; \
                     the coordinator's log has the cause under this error id"
                )
            }
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_messages_name_the_id_and_what_to_check() {
        let err = DroverError::StoreUnavailable {
            error_id: ErrorId(0xabc),
            problem: StoreProblem::Unreachable,
        };
        let text = err.client_message();
        assert!(text.contains("e-00000abc"), "{text}");
        assert!(text.contains("nothing was changed"), "{text}");
        assert!(
            text.contains("check that the database server is running"),
            "{text}"
        );
    }

    #[test]
    fn busy_says_when_to_retry() {
        let err = DroverError::StoreUnavailable {
            error_id: ErrorId::new(),
            problem: StoreProblem::Busy,
        };
        let after = err.retry_after().expect("busy has a retry hint");
        let text = err.client_message();
        assert!(
            text.contains(&format!("retry in {} s", after.as_secs())),
            "{text}"
        );
        let unreachable = DroverError::StoreUnavailable {
            error_id: ErrorId::new(),
            problem: StoreProblem::Unreachable,
        };
        assert_eq!(unreachable.retry_after(), None);
    }

    #[test]
    fn internal_text_stays_in_the_process() {
        let text = DroverError::Internal("SELECT secret FROM t".into()).client_message();
        assert!(!text.contains("SELECT"), "{text}");
        assert!(text.contains("error id e-"), "{text}");
    }
}
