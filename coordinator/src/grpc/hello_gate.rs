//! Admission for opening sessions. After a restart every updater reconnects at once; each
//! Hello reads the agent's enrolment and queues a durable write. Let thousands through
//! together and they wait on the store's few connections until the pool gives up on them,
//! and each refused updater comes back later to redo its TLS handshake. At most
//! `IN_FLIGHT` Hellos are processed at once; the rest wait here, in memory and in order,
//! up to `QUEUE_WAIT`, and past that are told "busy, retry in 2 s".

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tonic::Status;

/// Hellos processed at once: enough to fill group commits, few enough that the store's
/// pool serves each without a long wait.
const IN_FLIGHT: usize = 128;
/// How long a Hello may wait for its turn before the updater is asked to come back.
const QUEUE_WAIT: Duration = Duration::from_secs(8);

pub struct HelloGate {
    permits: Semaphore,
    queue_wait: Duration,
}

impl Default for HelloGate {
    fn default() -> Self {
        Self::new(IN_FLIGHT, QUEUE_WAIT)
    }
}

impl HelloGate {
    fn new(in_flight: usize, queue_wait: Duration) -> Self {
        Self {
            permits: Semaphore::new(in_flight),
            queue_wait,
        }
    }

    /// A turn to open a session, or "busy" with a pushback once the queue is too slow.
    pub async fn turn(&self) -> Result<SemaphorePermit<'_>, Status> {
        match tokio::time::timeout(self.queue_wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(crate::edge::busy(
                "the coordinator is busy: too many updaters are opening sessions at once",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_queue_wait_a_hello_is_told_to_come_back() {
        let gate = HelloGate::new(3, Duration::from_millis(20));
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
}
