//! When the database last answered, so that a pool timeout can be told apart: the pool
//! gave up waiting for a connection either because every connection was busy (the
//! database answers, the coordinator is overloaded: retry soon) or because none could be
//! opened (the database is unreachable: an operator must look). sqlx reports both as
//! `PoolTimedOut`.
//!
//! A connection the pool opened but our own check refused (a SQLite file that cannot be
//! written, `store/mod.rs`) also ends in `PoolTimedOut`: sqlx retries it until the
//! deadline. That refusal's own problem (read-only, disk error) is remembered and wins
//! until a connection is opened again.
//!
//! Process-wide because the classification runs in `From<sqlx::Error>` (at every `?`),
//! where no store is at hand; a coordinator has one store.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use crate::error::StoreProblem;

/// Milliseconds since `epoch()` at which the database last answered; 0: never.
static LAST_ANSWER_MS: AtomicU64 = AtomicU64::new(0);
/// A local SQLite file refuses no connection of its own accord (only our check does, see
/// `CONNECT_REFUSED`): its pool times out only when busy.
static LOCAL_FILE: AtomicBool = AtomicBool::new(false);
/// The last connection our check refused: when (ms since `epoch()`), and why.
static CONNECT_REFUSED: Mutex<Option<(u64, StoreProblem)>> = Mutex::new(None);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch_ms() -> u64 {
    // +1 so that an answer in the first millisecond is not "never".
    epoch().elapsed().as_millis() as u64 + 1
}

/// The database answered: a connection was opened, or passed its check on its way out of
/// the pool (called from the pools' hooks).
pub(super) fn answered() {
    LAST_ANSWER_MS.fetch_max(since_epoch_ms(), Ordering::Relaxed);
}

/// A new connection was opened and passed our check: the database answered, and an earlier
/// refusal no longer speaks for the store.
pub(super) fn connected() {
    *CONNECT_REFUSED.lock() = None;
    answered();
}

/// A new connection was refused by our own check, for `problem`.
pub(super) fn connection_refused(problem: StoreProblem) {
    *CONNECT_REFUSED.lock() = Some((since_epoch_ms(), problem));
}

pub(super) fn store_is_local_file() {
    LOCAL_FILE.store(true, Ordering::Relaxed);
}

/// What kept a call that waited `waited` for a connection from getting one: a refusal of
/// our own check meanwhile, a busy pool (the database answered other calls meanwhile), or
/// an unreachable database.
pub(crate) fn pool_timeout_problem(waited: Duration) -> StoreProblem {
    problem(
        *CONNECT_REFUSED.lock(),
        LOCAL_FILE.load(Ordering::Relaxed),
        LAST_ANSWER_MS.load(Ordering::Relaxed),
        since_epoch_ms(),
        waited,
    )
}

fn problem(
    refused: Option<(u64, StoreProblem)>,
    local_file: bool,
    last_answer_ms: u64,
    now_ms: u64,
    waited: Duration,
) -> StoreProblem {
    let within =
        |at: u64, span: Duration| at != 0 && now_ms.saturating_sub(at) <= span.as_millis() as u64;
    // Refused connects are retried with a backoff that can outlast a call's wait; the last
    // refusal speaks for as long as one connect may take.
    match refused {
        Some((at, problem)) if within(at, super::connection::CONNECT_TIMEOUT) => problem,
        _ if local_file || within(last_answer_ms, waited) => StoreProblem::Busy,
        _ => StoreProblem::Unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAITED: Duration = Duration::from_millis(800);

    #[test]
    fn a_database_that_answered_while_the_call_waited_is_busy() {
        assert_eq!(
            problem(None, false, 10_000, 10_500, WAITED),
            StoreProblem::Busy
        );
        assert_eq!(
            problem(None, false, 10_000, 10_800, WAITED),
            StoreProblem::Busy
        );
    }

    #[test]
    fn a_database_silent_all_the_while_is_unreachable() {
        assert_eq!(
            problem(None, false, 10_000, 10_801, WAITED),
            StoreProblem::Unreachable
        );
        assert_eq!(
            problem(None, false, 0, 500, WAITED),
            StoreProblem::Unreachable,
            "never answered"
        );
    }

    #[test]
    fn a_local_file_that_times_out_is_busy() {
        assert_eq!(problem(None, true, 0, 60_000, WAITED), StoreProblem::Busy);
    }

    #[test]
    fn a_connection_our_check_refused_names_its_own_problem() {
        let refused = Some((10_000, StoreProblem::ReadOnly));
        assert_eq!(
            problem(refused, true, 10_400, 10_500, WAITED),
            StoreProblem::ReadOnly
        );
        // Nor does one older than a connect may take.
        assert_eq!(
            problem(refused, true, 0, 20_000, WAITED),
            StoreProblem::Busy
        );
        // A refusal outlasts one call's wait: sqlx backs off between connects.
        assert_eq!(
            problem(refused, true, 0, 12_000, WAITED),
            StoreProblem::ReadOnly
        );
    }

    #[test]
    fn a_connection_opened_clears_the_last_refusal() {
        connection_refused(StoreProblem::ReadOnly);
        connected();
        assert!(CONNECT_REFUSED.lock().is_none());
    }

    #[test]
    fn an_answer_is_recorded() {
        answered();
        assert!(LAST_ANSWER_MS.load(Ordering::Relaxed) > 0);
    }
}
