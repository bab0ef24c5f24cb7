//! Drover's updater: keeps one agent on the version its coordinator asks for.
//!
//! Thin on purpose. Three cooperating tasks share one `Shared`:
//! - `connection`: the stream to the coordinator (hello, heartbeats, reports up; directives
//!   and acks down), reconnecting with capped, jittered exponential backoff;
//! - `recheck`: a periodic unary re-check, so a lost push never leaves the updater stale;
//! - `manager`: persists directives, decides whether to install, runs the installer and
//!   records the outcome as a report that is kept until the coordinator acknowledges it.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod connection;
pub mod convert;
pub mod install;
pub mod manager;
pub mod recheck;
pub mod simulate;
pub mod state;

use std::{sync::Arc, time::Duration};

use tokio::sync::{Mutex, Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub use state::{DirectiveRecord, DirectiveSource, PersistedState, ReportRecord, StateStore};

/// What the updater reports about its agent in every heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Idle,
    Installing,
}

#[derive(Debug, Clone)]
pub struct UpdaterConfig {
    /// e.g. `http://127.0.0.1:7400`.
    pub coordinator: String,
    pub hostname: String,
    pub group: String,
    pub channel: String,
    pub labels: Vec<(String, String)>,
    pub installer: install::Installer,
    /// Used until the state knows better (first start).
    pub initial_agent_version: Option<String>,
    /// Overrides the coordinator's recheck interval (e.g. for tests that prove push).
    pub recheck_interval: Option<Duration>,
    pub backoff: backoff::Backoff,
    /// Reported until a health probe says otherwise (probes are their own work).
    pub initial_health: Health,
}

/// State shared by the updater's tasks.
pub struct Shared {
    pub config: UpdaterConfig,
    pub store: StateStore,
    pub state: Mutex<PersistedState>,
    pub health: parking_lot::Mutex<Health>,
    pub activity: parking_lot::Mutex<Activity>,
    /// Woken when a report waits to be sent or the status changed: the connection sends both.
    pub wake_connection: Notify,
    /// The coordinator's recheck interval from Welcome, when connected at least once.
    pub recheck_from_coordinator: parking_lot::Mutex<Option<Duration>>,
}

/// Runs an updater until `shutdown`. The state is loaded from (and kept in) `store`.
pub async fn run(
    config: UpdaterConfig,
    store: StateStore,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = store.load(config.initial_agent_version.clone()).await?;
    tracing::info!(agent_id = %state.agent_id, version = ?state.agent_version, "updater starting");
    let initial_health = config.initial_health;
    let shared = Arc::new(Shared {
        config,
        store,
        state: Mutex::new(state),
        health: parking_lot::Mutex::new(initial_health),
        activity: parking_lot::Mutex::new(Activity::Idle),
        wake_connection: Notify::new(),
        recheck_from_coordinator: parking_lot::Mutex::new(None),
    });
    let (directives_tx, directives_rx) = mpsc::channel(16);
    let connection = tokio::spawn(connection::run(
        shared.clone(),
        directives_tx.clone(),
        shutdown.clone(),
    ));
    let recheck = tokio::spawn(recheck::run(
        shared.clone(),
        directives_tx,
        shutdown.clone(),
    ));
    let manager = tokio::spawn(manager::run(
        shared.clone(),
        directives_rx,
        shutdown.clone(),
    ));
    let _ = tokio::join!(connection, recheck, manager);
    Ok(())
}
