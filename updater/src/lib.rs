//! Drover's updater: keeps one agent on the version its coordinator asks for.
//!
//! Thin on purpose. Four cooperating tasks share one `Shared` (a fifth, `renewal`, renews
//! an enrolled agent's certificate):
//! - `connection`: the stream to the coordinator (hello, heartbeats, reports up; directives
//!   and acks down), failing over between the coordinator's addresses (`address`) and
//!   backing off (capped, jittered, exponential) after a whole round of them failed;
//! - `recheck`: a periodic unary re-check, so a lost push never leaves the updater stale;
//! - `health`: probes the agent and publishes its health;
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
pub mod http;
pub mod identity;
pub mod installers;
pub mod manager;
pub mod pin;
pub mod policy;
pub mod recheck;
pub mod renewal;
pub mod shell;
pub mod simulate;
pub mod state;
mod trace;

use std::{sync::Arc, time::Duration};

use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use installers::Installer as _;

pub use state::{DirectiveRecord, DirectiveSource, PersistedState, ReportRecord, StateStore};

/// What the updater reports about its agent in every heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    /// No probe is configured, or it has not run yet.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Idle,
    Waiting,
    Downloading,
    Installing,
    Verifying,
    Reverting,
}

/// Wall-clock time, optionally shifted. The shift exists so black-box tests can put an
/// updater just before a maintenance window; production never sets it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    pub offset_ms: i64,
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        convert::now_ms() + self.offset_ms
    }
}

#[derive(Debug, Clone)]
pub struct UpdaterConfig {
    /// One or more replicas, e.g. `https://10.0.0.1:7400,https://coordinator:7400`.
    pub coordinator: address::Coordinators,
    /// The CA to trust for an `https://` coordinator (see `connection::coordinator_ca`).
    pub coordinator_ca: Option<tonic::transport::Certificate>,
    /// The client certificate for an `https://` coordinator (from enrolment).
    pub identity: identity::ClientIdentity,
    pub hostname: String,
    pub group: String,
    pub channel: String,
    pub labels: Vec<(String, String)>,
    pub installer: installers::backend::Backend,
    /// Used until the state (or the installer) knows better.
    pub initial_agent_version: Option<String>,
    /// Overrides the coordinator's recheck interval (e.g. for tests that prove push).
    pub recheck_interval: Option<Duration>,
    pub backoff: backoff::Backoff,
    /// How the agent's health is probed; `None` reports `initial_health` forever.
    pub health: Option<health::HealthConfig>,
    pub initial_health: Health,
    /// How long a new version has to become healthy before it is reverted.
    pub health_grace: Duration,
    pub clock: Clock,
}

/// State shared by the updater's tasks.
pub struct Shared {
    pub config: UpdaterConfig,
    pub store: StateStore,
    pub state: Mutex<PersistedState>,
    pub health: watch::Sender<Health>,
    pub activity: parking_lot::Mutex<Activity>,
    /// Woken when a report waits to be sent or the status changed: the connection sends both.
    pub wake_connection: Notify,
    /// The coordinator's recheck interval from Welcome, when connected at least once.
    pub recheck_from_coordinator: parking_lot::Mutex<Option<Duration>>,
    /// The coordinator the stream is connected to (welcomed), if any; unary calls go there.
    pub connected: parking_lot::Mutex<Option<address::Target>>,
}

impl Shared {
    /// Saves the state; a failure is logged and the updater carries on from memory (the
    /// journal's next write retries).
    pub(crate) async fn save_state(&self, state: &PersistedState) {
        if let Err(err) = self.store.save(state).await {
            tracing::error!(
                error = format!("{err:#}"),
                "cannot save the updater state; carrying on from memory"
            );
        }
    }

    pub fn new(config: UpdaterConfig, store: StateStore, state: PersistedState) -> Self {
        let (health, _) = watch::channel(config.initial_health);
        Self {
            config,
            store,
            state: Mutex::new(state),
            health,
            activity: parking_lot::Mutex::new(Activity::Idle),
            wake_connection: Notify::new(),
            recheck_from_coordinator: parking_lot::Mutex::new(None),
            connected: parking_lot::Mutex::new(None),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }

    pub fn current_health(&self) -> Health {
        *self.health.borrow()
    }

    pub fn set_activity(&self, activity: Activity) {
        let changed = {
            let mut current = self.activity.lock();
            std::mem::replace(&mut *current, activity) != activity
        };
        if changed {
            self.wake_connection.notify_one();
        }
    }
}

/// A simulated updater's config for unit tests: healthy, on 1.0.0, `broken` never healthy.
#[cfg(test)]
pub(crate) fn test_config(coordinator: &str, broken: &[&str]) -> UpdaterConfig {
    UpdaterConfig {
        coordinator: address::Coordinators::parse(coordinator).expect("a test address"),
        coordinator_ca: None,
        identity: identity::ClientIdentity::None,
        hostname: "test".into(),
        group: "g".into(),
        channel: "stable".into(),
        labels: Vec::new(),
        installer: installers::backend::Backend::Simulated(
            installers::simulated::SimulatedInstaller {
                broken_versions: broken.iter().map(ToString::to_string).collect(),
            },
        ),
        initial_agent_version: Some("1.0.0".into()),
        recheck_interval: None,
        backoff: backoff::Backoff::default(),
        health: None,
        initial_health: Health::Healthy,
        health_grace: Duration::from_secs(30),
        clock: Clock::default(),
    }
}

/// Runs an updater until `shutdown`. The state is loaded from (and kept in) `store`.
pub async fn run(
    config: UpdaterConfig,
    store: StateStore,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut state = store.load(config.initial_agent_version.clone()).await?;
    if let Some(active) = config.installer.installed_version().await? {
        // The installed files are the truth about what runs, whatever a crash left in the state.
        state.agent_version = Some(active);
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
        tokio::spawn(health::run(shared.clone(), shutdown.clone()).in_current_span()),
        tokio::spawn(
            manager::run(shared.clone(), directives_rx, shutdown.clone()).in_current_span(),
        ),
        tokio::spawn(renewal::run(shared.clone(), shutdown.clone()).in_current_span()),
    ];
    futures::future::join_all(tasks).await;
    Ok(())
}
