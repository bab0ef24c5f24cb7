//! Drover's updater: keeps one agent on the version its coordinator asks for.
//!
//! Thin on purpose: this root only wires the tasks. Four cooperating tasks share one
//! `shared::Shared` (a fifth, `renewal`, renews an enrolled agent's certificate):
//! - `connection`: the stream to the coordinator (hello, heartbeats, reports up; directives
//!   and acks down), failing over between the coordinator's addresses (`address`) and
//!   backing off (capped, jittered, exponential) after a whole round of them failed;
//! - `recheck`: a periodic unary re-check, so a lost push never leaves the updater stale;
//! - `health_task`: probes the agent (`health`) and publishes its health;
//! - `manager`: persists directives, asks the pure `policy` what to do, and carries out
//!   installs and reverts through an `installers` backend, recording every outcome as a report
//!   that is kept until the coordinator acknowledges it.
//!
//! Error policy: the updater is a process of its own with no client to answer, so I/O
//! and protocol failures are `anyhow` errors with context that says what to check, logged
//! where a task gives up on one attempt (it then retries: reconnect, re-check, resume the
//! journal). An install's failure is never only logged: it becomes a report with a reason
//! code (`refused`, `failed`, `reverted`) that reaches the coordinator. The pure `policy`
//! has no errors: every input maps to a decision with a reason.
#![forbid(unsafe_code)]

pub mod address;
pub mod attempt;
pub mod backoff;
pub mod connection;
pub mod convert;
pub mod enrol;
pub mod health;
mod health_task;
pub mod host_labels;
pub mod http;
pub mod identity;
pub mod installers;
pub mod kube;
pub mod manager;
pub mod mirror;
pub mod pin;
pub mod policy;
pub mod recheck;
pub mod release;
pub mod renewal;
pub mod sample;
mod sample_task;
pub mod shared;
pub mod shell;
pub mod simulate;
pub mod state;
mod trace;
pub mod unit_watch;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use installers::Installer as _;

// The names the binary and the black-box tests use; inside the crate, modules import
// from `shared`, `health` and `state` directly, so none of them depends on this root.
pub use health::Health;
pub use shared::{Activity, Clock, Shared, UpdaterConfig};
pub use state::{DirectiveRecord, DirectiveSource, PersistedState, ReportRecord, StateStore};

/// Runs an updater until `shutdown`. The state is loaded from (and kept in) `store`.
pub async fn run(
    config: UpdaterConfig,
    store: StateStore,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut state = store.load(config.initial_agent_version.clone()).await?;
    if let Some(mirror) = &config.directive_mirror
        && state.directive.is_none()
        && let Some(directive) = mirror.restore().await
    {
        // A fresh state dir (a rescheduled pod): act on the last directive and honour its
        // schedule until the coordinator sends it again.
        state.directive = Some(directive);
        store.save(&state).await?;
    }
    if let Some(active) = config.installer.installed_version().await? {
        // The installed files are the truth about what runs, whatever a crash left in the state.
        state.agent_version = Some(active);
    }
    if let Some(failure) = &mut state.revert_failure {
        // An operator who repaired the host restarts the updater: try going back at once.
        failure.retry_at_ms = 0;
    }
    if config.release.is_some() && state.release.is_none() {
        // Nothing verified yet: a grace, then `release_metadata_missing` (the policy's).
        state.release = Some(state::HeldRelease {
            version: 0,
            expires_ms: config.clock.now_ms() + release::FIRST_VERIFY_GRACE_MS,
        });
    }
    tracing::info!(agent_id = %state.agent_id, version = ?state.agent_version, "updater starting");
    let shared = Arc::new(Shared::new(config, store, state));
    let (directives_tx, directives_rx) = mpsc::channel(16);
    // In the caller's span (a simulated fleet names each updater's lines by it).
    let tasks = [
        tokio::spawn(
            connection::run(shared.clone(), directives_tx.clone(), shutdown.clone())
                .in_current_span(),
        ),
        tokio::spawn(
            recheck::run(shared.clone(), directives_tx, shutdown.clone()).in_current_span(),
        ),
        tokio::spawn(health_task::run(shared.clone(), shutdown.clone()).in_current_span()),
        tokio::spawn(
            manager::run(shared.clone(), directives_rx, shutdown.clone()).in_current_span(),
        ),
        tokio::spawn(renewal::run(shared.clone(), shutdown.clone()).in_current_span()),
        tokio::spawn(sample_task::run(shared.clone(), shutdown.clone()).in_current_span()),
    ];
    futures::future::join_all(tasks).await;
    Ok(())
}
