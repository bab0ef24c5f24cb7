//! When the database last answered, so that a pool timeout can be told apart: the pool
//! gave up waiting for a connection either because every connection was busy (the
//! database answers, the coordinator is overloaded: retry soon) or because none could be
//! opened (the database is unreachable: an operator must look). sqlx reports both as
//! `PoolTimedOut`.
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

/// Milliseconds since `epoch()` at which the database last answered; 0: never.
static LAST_ANSWER_MS: AtomicU64 = AtomicU64::new(0);
/// A local SQLite file never refuses a connection: its pool times out only when busy.
static LOCAL_FILE: AtomicBool = AtomicBool::new(false);

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

pub(super) fn store_is_local_file() {
    LOCAL_FILE.store(true, Ordering::Relaxed);
}

/// Whether a call that waited `waited` for a connection and got none was kept out by a
/// busy pool (the database answered other calls meanwhile) rather than an unreachable one.
pub(super) fn pool_was_busy(waited: Duration) -> bool {
    busy(
        LOCAL_FILE.load(Ordering::Relaxed),
        LAST_ANSWER_MS.load(Ordering::Relaxed),
        since_epoch_ms(),
        waited,
    )
}

fn busy(local_file: bool, last_answer_ms: u64, now_ms: u64, waited: Duration) -> bool {
    local_file
        || (last_answer_ms != 0
            && now_ms.saturating_sub(last_answer_ms) <= waited.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAITED: Duration = Duration::from_millis(800);

    #[test]
    fn a_database_that_answered_while_the_call_waited_is_busy() {
        assert!(busy(false, 10_000, 10_500, WAITED));
        assert!(busy(false, 10_000, 10_800, WAITED));
    }

    #[test]
    fn a_database_silent_all_the_while_is_unreachable() {
        assert!(!busy(false, 10_000, 10_801, WAITED));
        assert!(!busy(false, 0, 500, WAITED), "never answered");
    }

    #[test]
    fn a_local_file_is_only_ever_busy() {
        assert!(busy(true, 0, 60_000, WAITED));
    }

    #[test]
    fn an_answer_is_recorded() {
        answered();
        assert!(LAST_ANSWER_MS.load(Ordering::Relaxed) > 0);
    }
}
