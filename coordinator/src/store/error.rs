//! Where sqlx errors become domain errors. Every failure is classified here, once, and
//! logged with its real cause and an error id; the `DroverError` that leaves the store
//! carries only the id and the class (see the policy in `crate::error`).

use sqlx::error::{DatabaseError, ErrorKind};

use crate::error::{DroverError, ErrorId, StoreProblem};

impl From<sqlx::Error> for DroverError {
    fn from(err: sqlx::Error) -> Self {
        classify(err)
    }
}

enum Class {
    Problem(StoreProblem),
    Conflict,
    /// Not the database's fault: a bug or a schema this build cannot read.
    Bug,
}

fn classify(err: sqlx::Error) -> DroverError {
    use sqlx::Error as E;
    let class = match &err {
        E::RowNotFound => return DroverError::NotFound("no such record".into()),
        E::PoolTimedOut => Class::Problem(super::answered::pool_timeout_problem(
            super::ACQUIRE_TIMEOUT,
        )),
        E::PoolClosed
        | E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::WorkerCrashed
        | E::BeginFailed => Class::Problem(StoreProblem::Unreachable),
        E::Database(db) => classify_database(db.as_ref()),
        _ => Class::Bug,
    };
    let error_id = ErrorId::new();
    match class {
        Class::Problem(problem) => {
            tracing::warn!(%error_id, ?problem, cause = %err, "store operation failed");
            DroverError::StoreUnavailable { error_id, problem }
        }
        Class::Conflict => {
            tracing::warn!(%error_id, cause = %err, "store write conflicted");
            DroverError::Conflict(format!(
                "the change collided with one written at the same time (error id {error_id}); \
                 nothing was changed; retry to see the other change"
            ))
        }
        // Logged with an id where it reaches a client (`DroverError::client_message`).
        Class::Bug => DroverError::Internal(format!("store: {err}")),
    }
}

/// The problem a failed connection check names, for `answered.rs` (not logged: the pool
/// logs it, and the call that times out logs its own error).
pub(super) fn problem_of(err: &sqlx::Error) -> StoreProblem {
    match err {
        sqlx::Error::Database(db) => match classify_database(db.as_ref()) {
            Class::Problem(problem) => problem,
            Class::Conflict | Class::Bug => StoreProblem::Refused,
        },
        _ => StoreProblem::DiskError,
    }
}

fn classify_database(db: &dyn DatabaseError) -> Class {
    if db.kind() == ErrorKind::UniqueViolation {
        return Class::Conflict;
    }
    let code = db.code().unwrap_or_default();
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        sqlite_class(code.parse().unwrap_or(0))
    } else {
        postgres_class(&code)
    }
}

/// SQLite reports extended result codes; the low byte is the primary code.
fn sqlite_class(extended: i32) -> Class {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    Class::Problem(match extended & 0xff {
        BUSY | LOCKED => StoreProblem::Busy,
        READONLY => StoreProblem::ReadOnly,
        FULL => StoreProblem::DiskFull,
        IOERR | CANTOPEN => StoreProblem::DiskError,
        _ => StoreProblem::Refused,
    })
}

/// PostgreSQL SQLSTATE codes (appendix A of its manual).
fn postgres_class(sqlstate: &str) -> Class {
    Class::Problem(match sqlstate {
        "25006" => StoreProblem::ReadOnly, // read_only_sql_transaction
        "53100" => StoreProblem::DiskFull, // disk_full
        // connection exceptions; admin/crash shutdown; cannot connect now
        s if s.starts_with("08") => StoreProblem::Unreachable,
        "57P01" | "57P02" | "57P03" => StoreProblem::Unreachable,
        // insufficient resources (too many connections, out of memory); serialization
        // failure, deadlock; statement timeout
        s if s.starts_with("53") => StoreProblem::Busy,
        "40001" | "40P01" | "57014" => StoreProblem::Busy,
        _ => StoreProblem::Refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(class: Class) -> Option<StoreProblem> {
        match class {
            Class::Problem(problem) => Some(problem),
            _ => None,
        }
    }

    #[test]
    fn sqlite_codes() {
        assert_eq!(problem(sqlite_class(8)), Some(StoreProblem::ReadOnly));
        assert_eq!(
            problem(sqlite_class(8 | (4 << 8))),
            Some(StoreProblem::ReadOnly)
        );
        assert_eq!(problem(sqlite_class(13)), Some(StoreProblem::DiskFull));
        assert_eq!(problem(sqlite_class(5)), Some(StoreProblem::Busy));
        assert_eq!(problem(sqlite_class(778)), Some(StoreProblem::DiskError));
    }

    #[test]
    fn postgres_codes() {
        assert_eq!(
            problem(postgres_class("25006")),
            Some(StoreProblem::ReadOnly)
        );
        assert_eq!(
            problem(postgres_class("53100")),
            Some(StoreProblem::DiskFull)
        );
        assert_eq!(
            problem(postgres_class("08006")),
            Some(StoreProblem::Unreachable)
        );
        assert_eq!(
            problem(postgres_class("57P01")),
            Some(StoreProblem::Unreachable)
        );
        assert_eq!(problem(postgres_class("53300")), Some(StoreProblem::Busy));
        assert_eq!(
            problem(postgres_class("42601")),
            Some(StoreProblem::Refused)
        );
    }

    #[test]
    fn pool_timeouts_are_unavailable_and_say_nothing_of_the_driver() {
        // Busy or unreachable depending on when the database last answered (answered.rs).
        let err = DroverError::from(sqlx::Error::PoolTimedOut);
        let text = err.client_message();
        assert!(matches!(
            err,
            DroverError::StoreUnavailable {
                problem: StoreProblem::Unreachable | StoreProblem::Busy,
                ..
            }
        ));
        assert!(!text.contains("pool"), "{text}");
    }
}
