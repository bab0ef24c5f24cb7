//! Readiness that tells the truth: one task decides whether this coordinator is ready, and
//! both `/readyz` and the gRPC health service report its verdict.
//!
//! Ready means: the store accepts a write (an upsert of the one `readiness_probe` row, every
//! `interval`) and every supervised task is running. Only the ready → not-ready transition
//! is dampened, and only for the store: one failed probe may be a blip, two in a row are
//! not. The second probe runs at once, not a whole interval later, so an outage shows within
//! `interval` + two of the pool's acquire timeouts (about two seconds by default; README
//! promises three). A task that is down, and the first good sample after a
//! failure, take effect at once. The coordinator is not ready until the first sample and
//! from shutdown on.

use std::{sync::Arc, time::Duration};

use drover_proto::v1::{
    admin_service_server::AdminServiceServer, updater_service_server::UpdaterServiceServer,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    domain::now_ms,
    grpc::{AdminApi, UpdaterApi},
    store::Store,
    supervisor::{Supervisor, TaskState},
};

/// The verdict's reason once the coordinator stops (logged at info, not as a warning).
const SHUTTING_DOWN: &str = "shutting down";

/// Failed store probes in a row before a ready coordinator turns not ready.
const STORE_FAILURES_TO_FLIP: u32 = 2;

/// The bound on the probe that confirms a failure: above the pool's acquire timeout (0.8 s),
/// so a busy pool or write lock answers "busy", not "no answer".
const CONFIRM_DEADLINE: Duration = Duration::from_secs(1);

/// Why a store probe failed.
enum Probe {
    /// The store answered with an error (its client-safe message).
    Failed(String),
    /// No answer within the deadline.
    NoAnswer(Duration),
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(message) => f.write_str(message),
            Self::NoAnswer(deadline) => write!(f, "no answer within {deadline:?}"),
        }
    }
}

/// The verdict, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub ready: bool,
    /// What failed, one short line per check; never SQL or driver text.
    pub failed: Vec<String>,
}

impl Verdict {
    fn not_ready(reason: &str) -> Self {
        Self {
            ready: false,
            failed: vec![reason.to_string()],
        }
    }
}

/// The readiness task's latest verdict, shared with the HTTP edge.
pub fn channel() -> (watch::Sender<Verdict>, watch::Receiver<Verdict>) {
    watch::channel(Verdict::not_ready("starting: no readiness sample yet"))
}

pub struct ReadinessTask {
    pub store: Arc<Store>,
    pub supervisor: Supervisor,
    pub health: HealthReporter,
    pub verdict: watch::Sender<Verdict>,
    pub interval: Duration,
}

impl ReadinessTask {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut timer = tokio::time::interval(self.interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tasks_changed = self.supervisor.subscribe();
        let mut store_failures = 0u32;
        let mut store_reason = String::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = timer.tick() => {
                    let mut deadline = self.interval.max(Duration::from_secs(2));
                    loop {
                        match self.probe_store(deadline).await {
                            Ok(()) => store_failures = 0,
                            // A confirmation that only timed out keeps the first failure's
                            // reason (it says what happened; a timeout says nothing new).
                            Err(Probe::NoAnswer(_)) if store_failures == 1 => store_failures += 1,
                            Err(failure) => {
                                store_failures += 1;
                                store_reason = failure.to_string();
                            }
                        }
                        // A first failure is confirmed at once rather than a tick later.
                        if store_failures != 1 {
                            break;
                        }
                        deadline = CONFIRM_DEADLINE;
                    }
                }
                changed = tasks_changed.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
            let was_ready = self.verdict.borrow().ready;
            let mut failed = Vec::new();
            let threshold = if was_ready { STORE_FAILURES_TO_FLIP } else { 1 };
            if store_failures >= threshold {
                failed.push(format!("store write: {store_reason}"));
            }
            for (task, state) in self.supervisor.down() {
                failed.push(format!("task {task}: {}", describe(&state)));
            }
            self.publish(Verdict {
                ready: failed.is_empty(),
                failed,
            })
            .await;
        }
        self.publish(Verdict::not_ready(SHUTTING_DOWN)).await;
    }

    /// One probe write; `deadline` bounds a probe stuck on a half-open socket (the pool
    /// bounds each call already).
    async fn probe_store(&self, deadline: Duration) -> Result<(), Probe> {
        match tokio::time::timeout(deadline, self.store.probe_write(now_ms())).await {
            Ok(Ok(())) => Ok(()),
            // Client-safe by the error policy: a class and an error id, no SQL.
            Ok(Err(err)) => Err(Probe::Failed(err.client_message())),
            Err(_) => Err(Probe::NoAnswer(deadline)),
        }
    }

    async fn publish(&self, verdict: Verdict) {
        let changed = *self.verdict.borrow() != verdict;
        if !changed {
            return;
        }
        if verdict.ready {
            tracing::info!("ready");
        } else if verdict.failed == [SHUTTING_DOWN] {
            // A stop is not a fault: each clean stop would otherwise put a warning in the
            // journal (`journalctl -p warning`).
            tracing::info!("not ready: shutting down");
        } else {
            tracing::warn!(failed = ?verdict.failed, "not ready");
        }
        let status = if verdict.ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.verdict.send_replace(verdict);
        set_health(&self.health, status).await;
    }
}

/// Sets the overall status ("") and each service's.
pub async fn set_health(health: &HealthReporter, status: ServingStatus) {
    use tonic::server::NamedService;
    for service in [
        "",
        <UpdaterServiceServer<UpdaterApi> as NamedService>::NAME,
        <AdminServiceServer<AdminApi> as NamedService>::NAME,
    ] {
        health.set_service_status(service, status).await;
    }
}

fn describe(state: &TaskState) -> String {
    match state {
        TaskState::Running => "running".into(),
        TaskState::Restarting { failures } => {
            format!("not running: failed {failures} time(s) in a row, restarting (see the log)")
        }
        TaskState::Failed => "failed; the coordinator is stopping (see the log)".into(),
        TaskState::Stopped => "stopped".into(),
    }
}
