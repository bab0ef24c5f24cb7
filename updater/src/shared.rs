//! What the updater's tasks share: the config, the state behind one lock, the agent's
//! health and the activity the heartbeats report, and the clock. Below every task, so
//! tasks import it and it imports none of them.

use std::time::Duration;

use tokio::sync::{Mutex, Notify, watch};

use crate::{
    address, backoff,
    health::{self, Health},
    identity, installers, mirror,
    state::{PersistedState, StateStore},
};

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
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
        now_ms() + self.offset_ms
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
    /// Health samples for the coordinator's verdict; `None`: none are sent.
    pub samples: Option<crate::sample::SampleConfig>,
    pub initial_health: Health,
    /// How long a new version has to become healthy before it is reverted.
    pub health_grace: Duration,
    pub clock: Clock,
    /// Where the held directive is mirrored and restored from (Kubernetes: a ConfigMap).
    pub directive_mirror: Option<mirror::DirectiveMirror>,
    /// The pinned release root (`--release-root`): every install must be in signed release
    /// metadata (#28). `None`: only the installers' own signature checks apply.
    pub release: Option<ReleaseTrust>,
}

/// What the updater trusts for signed release metadata (#28): set with `--release-root`.
#[derive(Debug, Clone)]
pub struct ReleaseTrust {
    /// The root.json it was installed with.
    pub pinned_root: std::sync::Arc<Vec<u8>>,
    /// Its own copy of the newest trusted metadata (rollback protection across restarts).
    pub datastore: std::path::PathBuf,
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
    /// Probe results since the last health sample, and the sample the next heartbeat carries.
    pub probe_tally: parking_lot::Mutex<crate::sample::ProbeTally>,
    pub pending_sample: parking_lot::Mutex<Option<drover_proto::v1::HealthSample>>,
    /// Stop epochs heard and kept, for the stream to acknowledge (woken by `acks_ready`).
    pub pending_acks: parking_lot::Mutex<Vec<drover_proto::v1::DirectiveAck>>,
    pub acks_ready: Notify,
    /// One release-metadata verification at a time (they share tough's datastore).
    pub release_lock: tokio::sync::Mutex<()>,
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
            probe_tally: parking_lot::Mutex::default(),
            pending_sample: parking_lot::Mutex::new(None),
            pending_acks: parking_lot::Mutex::new(Vec::new()),
            acks_ready: Notify::new(),
            release_lock: tokio::sync::Mutex::new(()),
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
                install_time: None,
            },
        ),
        initial_agent_version: Some("1.0.0".into()),
        recheck_interval: None,
        backoff: backoff::Backoff::default(),
        health: None,
        initial_health: Health::Healthy,
        samples: None,
        health_grace: Duration::from_secs(30),
        clock: Clock::default(),
        directive_mirror: None,
        release: None,
    }
}
