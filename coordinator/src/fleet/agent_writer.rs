//! Group commit for what updaters send. Sessions hand their writes (status changes, reports
//! with their events) to one writer task and wait for the commit; the writer takes whatever
//! is queued — up to `MAX_BATCH` writes, one per agent — and commits it in one transaction.
//! No timer: while one batch commits the next one gathers, so a quiet fleet waits for
//! nobody and a storm costs one fsync per batch instead of one per report. Durability is
//! unchanged: a caller hears success only after its batch committed.

use std::{
    collections::{HashSet, VecDeque},
    panic::AssertUnwindSafe,
    sync::Arc,
    time::Duration,
};

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    error::{DroverError, ErrorId, Result, StoreProblem},
    store::{AgentWrite, AgentWriteOutcome, Store},
};

/// Writes per transaction: big enough that a 10k storm is a handful of commits, small
/// enough that an admin's write waits at most one short batch for SQLite's write lock.
/// (1,000 made a 10k rollback's report lag p99 1.8–2.3 s; 2,500 made it 1.4 s, with admin
/// writes during the storm no slower: BENCHMARKS.md.)
const MAX_BATCH: usize = 2_500;
/// Writes waiting for the writer; past this, sessions wait to queue (backpressure).
const QUEUE: usize = 20_000;
/// A batch that has not committed by then is abandoned (its transaction rolls back) and its
/// writers told to retry: one stuck statement must not hold every updater's write.
const BATCH_DEADLINE: Duration = Duration::from_secs(5);

struct Pending {
    write: AgentWrite,
    done: oneshot::Sender<Result<AgentWriteOutcome>>,
}

#[derive(Clone)]
pub struct AgentWriter {
    queue: mpsc::Sender<Pending>,
    /// Turns true if the writer task ever ends (a panic outside a batch): the supervisor
    /// watches it, since without the writer no updater's write can commit.
    ended: watch::Receiver<bool>,
}

impl AgentWriter {
    /// Starts the writer task; it runs until every `AgentWriter` clone is dropped. It is
    /// spawned here rather than by the supervisor so that a fleet outside a server (tests,
    /// benchmarks) writes too; the server's supervisor watches [`AgentWriter::ended`].
    pub fn start(store: Arc<Store>) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let (ended_tx, ended) = watch::channel(false);
        tokio::spawn(async move {
            if let Err(panic) = AssertUnwindSafe(run(store, receiver)).catch_unwind().await {
                tracing::error!(cause = panic_text(&*panic), "the agent writer panicked");
            }
            let _ = ended_tx.send(true);
        });
        Self { queue, ended }
    }

    /// Resolves when the writer task has ended.
    pub async fn ended(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Queues one write and waits until its batch committed (or failed: then nothing of it
    /// was written).
    pub async fn write(&self, write: AgentWrite) -> Result<AgentWriteOutcome> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Pending { write, done })
            .await
            .map_err(|_| writer_gone())?;
        outcome.await.map_err(|_| writer_gone())?
    }
}

/// The batch's error, for each of its writers (one error id for all: one log line).
fn same_error(err: &DroverError) -> DroverError {
    match err {
        DroverError::StoreUnavailable { error_id, problem } => DroverError::StoreUnavailable {
            error_id: *error_id,
            problem: *problem,
        },
        DroverError::Conflict(message) => DroverError::Conflict(message.clone()),
        other => DroverError::Internal(other.to_string()),
    }
}

fn writer_gone() -> DroverError {
    DroverError::Internal("the agent writer stopped; the coordinator is shutting down".into())
}

async fn run(store: Arc<Store>, mut receiver: mpsc::Receiver<Pending>) {
    let mut deferred: VecDeque<Pending> = VecDeque::new();
    loop {
        let mut batch = Vec::new();
        let mut agents = HashSet::new();
        // Writes of an agent already in the batch wait for the next one, in order; so do
        // writes past a full batch.
        let mut still_deferred = VecDeque::new();
        for pending in deferred.drain(..) {
            if batch.len() < MAX_BATCH && agents.insert(pending.write.agent_id().to_string()) {
                batch.push(pending);
            } else {
                still_deferred.push_back(pending);
            }
        }
        deferred = still_deferred;
        if batch.is_empty() {
            match receiver.recv().await {
                Some(pending) => {
                    agents.insert(pending.write.agent_id().to_string());
                    batch.push(pending);
                }
                None => return,
            }
        }
        while batch.len() < MAX_BATCH {
            let Ok(pending) = receiver.try_recv() else {
                break;
            };
            if agents.insert(pending.write.agent_id().to_string()) {
                batch.push(pending);
            } else {
                deferred.push_back(pending);
            }
        }
        commit(&store, batch).await;
    }
}

async fn commit(store: &Store, batch: Vec<Pending>) {
    let (writes, waiters): (Vec<AgentWrite>, Vec<_>) =
        batch.into_iter().map(|p| (p.write, p.done)).unzip();
    match write_batch(store, &writes).await {
        Ok(outcomes) => {
            for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
                let _ = waiter.send(Ok(outcome));
            }
        }
        // The store as a whole cannot write: every write in the batch fails alike.
        Err(err) if writes.len() == 1 || store_wide(&err) => {
            tracing::warn!(error = %err, writes = writes.len(), "agent write batch failed; nothing of it was written");
            for waiter in waiters {
                let _ = waiter.send(Err(same_error(&err)));
            }
        }
        // Something in the batch was refused: one bad row must not fail its neighbours, so
        // each write is tried on its own.
        Err(err) => {
            tracing::warn!(error = %err, writes = writes.len(), "agent write batch refused; writing one by one");
            for (write, waiter) in writes.into_iter().zip(waiters) {
                let one = write_batch(store, std::slice::from_ref(&write)).await;
                let _ = waiter.send(one.map(|mut outcomes| outcomes.pop().flatten()));
            }
        }
    }
}

/// One transaction, bounded in time, with a panic turned into an error.
async fn write_batch(store: &Store, writes: &[AgentWrite]) -> Result<Vec<AgentWriteOutcome>> {
    let attempt = AssertUnwindSafe(store.write_agent_batch(writes)).catch_unwind();
    match tokio::time::timeout(BATCH_DEADLINE, attempt).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            let cause = panic_text(&*panic);
            tracing::error!(cause, "agent write batch panicked");
            Err(DroverError::Internal(format!(
                "a store write panicked: {cause}"
            )))
        }
        Err(_) => {
            let error_id = ErrorId::new();
            tracing::warn!(%error_id, writes = writes.len(), "agent write batch timed out; rolled back");
            Err(DroverError::StoreUnavailable {
                error_id,
                problem: StoreProblem::Busy,
            })
        }
    }
}

/// Errors that no row of a batch caused: retrying row by row would only repeat them.
fn store_wide(err: &DroverError) -> bool {
    matches!(
        err,
        DroverError::StoreUnavailable {
            problem: StoreProblem::Unreachable
                | StoreProblem::ReadOnly
                | StoreProblem::DiskFull
                | StoreProblem::Busy
                | StoreProblem::DiskError,
            ..
        }
    )
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use drover_rules::EventKind;

    use super::*;
    use crate::{
        domain::{AgentIdentity, Health, InstallerKind, UpdateOutcome, UpdateReport},
        store::NewEvent,
    };

    fn hello(agent_id: &str) -> AgentWrite {
        AgentWrite::Hello {
            identity: Box::new(AgentIdentity {
                agent_id: agent_id.into(),
                hostname: "h".into(),
                group: "g".into(),
                channel: "c".into(),
                installer: InstallerKind::Command,
                agent_version: Some(semver::Version::new(1, 0, 0)),
                updater_version: "0".into(),
                labels: BTreeMap::new(),
                health: Health::Healthy,
            }),
            now_ms: 1,
            replica: None,
        }
    }

    fn success(agent_id: &str, attempt: &str, from: &str, to: &str) -> AgentWrite {
        AgentWrite::Report {
            agent_id: agent_id.into(),
            report: Box::new(UpdateReport {
                attempt_id: attempt.into(),
                from_version: from.into(),
                to_version: to.into(),
                outcome: UpdateOutcome::Succeeded,
                error: String::new(),
                started_ms: 1,
                finished_ms: 2,
                directive_id: String::new(),
                rollout_id: String::new(),
            }),
            received_ms: 3,
            event: NewEvent {
                kind: EventKind::Update,
                text: attempt.into(),
                ..NewEvent::default()
            },
        }
    }

    /// An agent's writes queued back to back land in separate batches, in order: the second
    /// success moves the version only from the one the first moved it to.
    #[tokio::test]
    async fn one_agents_writes_commit_in_order_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("w.db").display());
        let store = Arc::new(Store::open(&url).await.unwrap());
        let writer = AgentWriter::start(store.clone());
        writer.write(hello("a")).await.unwrap();
        writer.write(hello("b")).await.unwrap();
        // `join!` polls in order, so the queue holds them in this order.
        let (first, second, other) = tokio::join!(
            writer.write(success("a", "x-1", "1.0.0", "1.1.0")),
            writer.write(success("a", "x-2", "1.1.0", "1.2.0")),
            writer.write(success("b", "y-1", "1.0.0", "1.1.0")),
        );
        for outcome in [first, second, other] {
            let recorded = outcome.unwrap().expect("a report's outcome");
            assert!(recorded.new && recorded.version_moved, "{recorded:?}");
        }
        let a = store.get_agent("a").await.unwrap().unwrap();
        assert_eq!(a.agent_version.as_deref(), Some("1.2.0"));
        assert_eq!(a.last_report.unwrap().attempt_id, "x-2");
    }
}
