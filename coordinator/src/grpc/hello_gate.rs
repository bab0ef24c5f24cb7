//! Admission for opening sessions. After a restart every updater reconnects at once; each
//! Hello reads the agent's enrolment and queues a durable write. Let thousands through
//! together and they wait on the store's few connections until the pool gives up on them,
//! and each refused updater comes back later to redo its TLS handshake. At most
//! `IN_FLIGHT` Hellos are processed at once; the rest wait here, in memory and in order,
//! up to `QUEUE_WAIT`, and past that are told "busy, retry in 2 s" — unless the store has
//! not answered all that while: then the queue is slow because the store is down, and the
//! updater is told that instead.

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tonic::Status;

use crate::error::{DroverError, ErrorId, StoreProblem};

/// Hellos processed at once: enough to fill group commits, few enough that the store's
/// pool serves each without a long wait.
const IN_FLIGHT: usize = 128;
/// How long a Hello may wait for its turn before the updater is asked to come back.
const QUEUE_WAIT: Duration = Duration::from_secs(8);

pub struct HelloGate {
    permits: Semaphore,
    queue_wait: Duration,
    /// Why the store kept callers waiting this long (the store's own classification).
    store_problem: fn(Duration) -> StoreProblem,
}

impl Default for HelloGate {
    fn default() -> Self {
        Self::new(IN_FLIGHT, QUEUE_WAIT, crate::store::waiting_problem)
    }
}

impl HelloGate {
    fn new(
        in_flight: usize,
        queue_wait: Duration,
        store_problem: fn(Duration) -> StoreProblem,
    ) -> Self {
        Self {
            permits: Semaphore::new(in_flight),
            queue_wait,
            store_problem,
        }
    }

    /// A turn to open a session; once the queue is too slow, "busy" with a pushback, or the
    /// store's problem if it is not busy but silent.
    pub async fn turn(&self) -> Result<SemaphorePermit<'_>, Status> {
        if let Ok(Ok(permit)) = tokio::time::timeout(self.queue_wait, self.permits.acquire()).await
        {
            return Ok(permit);
        }
        match (self.store_problem)(self.queue_wait) {
            StoreProblem::Busy => Err(crate::edge::busy(
                "the coordinator is busy: too many updaters are opening sessions at once",
            )),
            problem => {
                let error_id = ErrorId::new();
                tracing::warn!(%error_id, ?problem, "Hellos waited for the store past the queue wait");
                Err(DroverError::StoreUnavailable { error_id, problem }.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_queue_wait_a_hello_is_told_to_come_back() {
        let gate = HelloGate::new(3, Duration::from_millis(20), |_| StoreProblem::Busy);
        let held: Vec<_> = futures::future::join_all((0..3).map(|_| gate.turn())).await;
        assert!(held.iter().all(Result::is_ok));
        let refused = gate.turn().await.expect_err("no turn while all are held");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(
            refused
                .metadata()
                .get(drover_rules::retry::PUSHBACK_METADATA)
                .is_some(),
            "{refused:?}"
        );
        drop(held);
        assert!(gate.turn().await.is_ok(), "a turn once one is free");
    }

    #[tokio::test]
    async fn a_queue_held_up_by_a_silent_store_says_the_store_not_busy() {
        let gate = HelloGate::new(1, Duration::from_millis(20), |_| StoreProblem::Unreachable);
        let _held = gate.turn().await.expect("a first turn");
        let refused = gate.turn().await.expect_err("no turn while it is held");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(
            refused
                .message()
                .contains("check that the database server is running"),
            "{refused:?}"
        );
        assert!(
            !refused.message().contains("too many updaters"),
            "{refused:?}"
        );
        assert!(
            refused
                .metadata()
                .get(drover_rules::retry::PUSHBACK_METADATA)
                .is_none(),
            "an outage is no reason to come back in 2 s: {refused:?}"
        );
    }
}
