//! The supervisor: every long-running task of the coordinator is spawned here, with a name
//! and a policy, never with a bare `tokio::spawn`.
//!
//! A task is a future that runs until the shutdown token is cancelled. If it returns before
//! that, or panics, the supervisor logs the task's name and the cause and applies the task's
//! policy: restart it after a capped exponential backoff, or stop the process (readiness
//! fails, the coordinator shuts down and exits non-zero). Readiness asks [`Supervisor::down`]
//! which tasks are not running right now.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::FutureExt;
use parking_lot::Mutex;
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// What happens when a task panics or returns before shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Restart after 1 s, doubling up to 30 s; the backoff resets after a minute of good
    /// running. Readiness fails while the task waits to restart.
    Restart,
    /// The coordinator cannot do its job without this task: shut down and exit non-zero.
    ExitProcess,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const HEALTHY_RUN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Running,
    /// Failed `failures` times in a row; restarts after a backoff.
    Restarting {
        failures: u32,
    },
    /// Failed under `Policy::ExitProcess`.
    Failed,
    /// Ended because the coordinator is shutting down.
    Stopped,
}

struct Slot {
    name: &'static str,
    state: Mutex<TaskState>,
}

#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    shutdown: CancellationToken,
    slots: Mutex<Vec<Arc<Slot>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    /// Bumped on every state change, so readiness re-evaluates at once.
    changed: watch::Sender<u64>,
    /// The first failure under `Policy::ExitProcess`: (task, cause).
    fatal: Mutex<Option<(&'static str, String)>>,
    /// Tests only: the task of this name panics each time it starts.
    panic_task: Option<String>,
}

impl Supervisor {
    /// `panic_task` names a task that panics on every start; tests use it to prove that
    /// failures are seen. `None` in production.
    pub fn new(shutdown: CancellationToken, panic_task: Option<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                shutdown,
                slots: Mutex::new(Vec::new()),
                handles: Mutex::new(Vec::new()),
                changed: watch::Sender::new(0),
                fatal: Mutex::new(None),
                panic_task,
            }),
        }
    }

    /// Runs `task(shutdown)` under `policy`, calling `task` again for each restart.
    pub fn spawn<F, Fut>(&self, name: &'static str, policy: Policy, task: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let slot = Arc::new(Slot {
            name,
            state: Mutex::new(TaskState::Running),
        });
        self.inner.slots.lock().push(slot.clone());
        let inner = self.inner.clone();
        // The one bare spawn: the supervision loop itself, which cannot panic.
        let handle = tokio::spawn(supervise(inner, slot, policy, task));
        self.inner.handles.lock().push(handle);
    }

    /// Tasks that are not running although the coordinator is not shutting down, with what
    /// they are doing instead.
    pub fn down(&self) -> Vec<(&'static str, TaskState)> {
        self.inner
            .slots
            .lock()
            .iter()
            .filter_map(|slot| {
                let state = slot.state.lock().clone();
                (state != TaskState::Running && state != TaskState::Stopped)
                    .then_some((slot.name, state))
            })
            .collect()
    }

    /// Every task and its state.
    pub fn tasks(&self) -> Vec<(&'static str, TaskState)> {
        let slots = self.inner.slots.lock();
        slots
            .iter()
            .map(|slot| (slot.name, slot.state.lock().clone()))
            .collect()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// The task whose failure stopped the coordinator, and why.
    pub fn fatal(&self) -> Option<(&'static str, String)> {
        self.inner.fatal.lock().clone()
    }

    /// Waits for every task to end (after shutdown was requested).
    pub async fn join(&self) {
        let handles: Vec<_> = std::mem::take(&mut *self.inner.handles.lock());
        for handle in handles {
            let _ = handle.await;
        }
    }
}

async fn supervise<F, Fut>(inner: Arc<Inner>, slot: Arc<Slot>, policy: Policy, mut task: F)
where
    F: FnMut(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = slot.name;
    let inject_panic = inner.panic_task.as_deref() == Some(name);
    let mut failures = 0u32;
    loop {
        set_state(&inner, &slot, TaskState::Running);
        let started = Instant::now();
        let run = task(inner.shutdown.clone());
        let outcome = AssertUnwindSafe(async move {
            if inject_panic {
                panic!("injected by --test-panic-task");
            }
            run.await
        })
        .catch_unwind()
        .await;
        let cause = match outcome {
            Ok(()) if inner.shutdown.is_cancelled() => {
                set_state(&inner, &slot, TaskState::Stopped);
                return;
            }
            Ok(()) => "returned before shutdown".to_string(),
            Err(panic) => format!("panicked: {}", panic_text(panic.as_ref())),
        };
        match policy {
            // State first, log second: even a log call that fails cannot lose the failure.
            Policy::ExitProcess => {
                inner.fatal.lock().get_or_insert((name, cause.clone()));
                set_state(&inner, &slot, TaskState::Failed);
                inner.shutdown.cancel();
                tracing::error!(task = name, %cause, "supervised task failed; shutting down");
                return;
            }
            Policy::Restart => {
                if started.elapsed() >= HEALTHY_RUN {
                    failures = 0;
                }
                failures += 1;
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << (failures - 1).min(5))
                    .min(MAX_BACKOFF);
                set_state(&inner, &slot, TaskState::Restarting { failures });
                tracing::error!(task = name, %cause, failures, ?backoff, "supervised task failed; restarting after the backoff");
                tokio::select! {
                    _ = inner.shutdown.cancelled() => {
                        set_state(&inner, &slot, TaskState::Stopped);
                        return;
                    }
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}

fn set_state(inner: &Inner, slot: &Slot, state: TaskState) {
    *slot.state.lock() = state;
    inner.changed.send_modify(|generation| *generation += 1);
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-text panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_restarted_and_reported_down_meanwhile() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new(shutdown.clone(), None);
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = runs.clone();
        supervisor.spawn("flaky", Policy::Restart, move |shutdown| {
            let run = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if run == 0 {
                    panic!("first run fails");
                }
                shutdown.cancelled().await;
            }
        });
        let mut changes = supervisor.subscribe();
        while supervisor.down().is_empty() {
            changes.changed().await.unwrap();
        }
        assert_eq!(
            supervisor.down(),
            vec![("flaky", TaskState::Restarting { failures: 1 })]
        );
        while !supervisor.down().is_empty() {
            changes.changed().await.unwrap();
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        shutdown.cancel();
        supervisor.join().await;
        assert_eq!(supervisor.tasks(), vec![("flaky", TaskState::Stopped)]);
    }

    #[tokio::test]
    async fn a_fatal_task_stops_everything() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new(shutdown.clone(), Some("vital".into()));
        supervisor.spawn("vital", Policy::ExitProcess, |shutdown| async move {
            shutdown.cancelled().await;
        });
        shutdown.cancelled().await;
        supervisor.join().await;
        let (task, cause) = supervisor.fatal().unwrap();
        assert_eq!(task, "vital");
        assert!(cause.contains("injected"), "{cause}");
    }
}
