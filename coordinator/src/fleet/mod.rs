//! The fleet service: what happens when updaters connect, report and poll, when admins
//! change settings or steer rollouts, and what they see. Transport-agnostic: the gRPC and
//! HTTP edges call into this.
//!
//! - `mod.rs` — sessions, heartbeats, reports, directives and pushes;
//! - `settings.rs` — channels, control-plane version, schedules (each change is an event);
//! - `rollouts.rs` — rollouts and the reconcile loop's pass;
//! - `queries.rs` — what admins read: agents, summary, explanations, events.

mod admins;
mod agent_certificates;
mod agent_writer;
mod caller;
pub mod change_feed;
mod claims;
mod clock;
pub mod conditions;
mod effects;
mod enrolment;
mod health_tracks;
mod history;
mod inventory;
mod known_tokens;
mod late_enrolment;
mod liveness;
mod pins;
mod push;
mod queries;
mod reconcile;
pub mod registry;
pub mod releases;
pub mod replicas;
mod reports;
pub mod rollout_trace;
mod rollouts;
mod search;
mod settings;
pub mod stop_acks;
mod transitions;
pub mod view;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use drover_rules::{AuditResult, EventKind, ReasonCode};
use parking_lot::RwLock;
use semver::Version;
use tokio::sync::Notify;

pub use crate::rollout::RolloutVerb;
use crate::{
    domain::{
        AgentIdentity, AgentStatus, UpdaterState,
        directive::{Directive, directive_from_rollout},
        now_ms, validate,
    },
    error::Result,
    store::{AgentWrite, NewEvent, Store},
};
pub use admins::{AdminCredentials, BOOTSTRAP_NAME, Identity, new_token};
use agent_writer::AgentWriter;
pub use caller::{Caller, updater_audit};
pub use clock::FleetClock;
pub use effects::Effect;
pub use effects::GroupCounts;
pub use enrolment::{EnrolRequest, Enrolled, Enrolment, MAX_CSR_BYTES, secret_hash};
pub use history::{AgentHistory, GroupTimeline, RolloutDetail, RolloutPage};
use inventory::Inventory;
pub use liveness::run_background_tasks;
pub use queries::{AgentView, Explanation, FleetSummary};
use registry::{LiveStatus, Session, SessionOutbox, SessionRegistry};
pub use rollouts::ActiveRollout;
pub use search::DecidedFilter;
use view::SettingsView;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// How often updaters are asked to send a heartbeat.
    pub heartbeat_interval: Duration,
    /// How often updaters re-check their target even without a push (rule 2).
    pub recheck_interval: Duration,
    /// How often in-memory last-seen times are written to the store, in one batch.
    pub liveness_flush_interval: Duration,
    /// How often the settings view is re-read, to pick up changes made by other replicas.
    pub view_refresh_interval: Duration,
    /// How long an updater may trust a maintenance schedule without hearing from us again;
    /// after that it treats the schedule as missing and installs as soon as it can (rule 4).
    pub schedule_validity: Duration,
    /// How often the rollout engine runs (it also runs at once after every admin verb).
    pub reconcile_interval: Duration,
    /// Start the rollout clock here and move it only by hand (tests); `None`: the wall clock.
    pub manual_clock_start_ms: Option<i64>,
    /// The reconciler lease, when several replicas share PostgreSQL.
    pub lease: replicas::LeaseConfig,
    /// About how many agents of a rollout are traced besides its canaries and failures.
    pub trace_agent_budget: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            recheck_interval: Duration::from_secs(600),
            liveness_flush_interval: Duration::from_secs(15),
            view_refresh_interval: Duration::from_secs(5),
            schedule_validity: Duration::from_secs(7 * 24 * 3600),
            reconcile_interval: Duration::from_secs(2),
            manual_clock_start_ms: None,
            lease: replicas::LeaseConfig::default(),
            trace_agent_budget: 400,
        }
    }
}

#[derive(Default)]
pub struct FleetCounters {
    pub heartbeats: AtomicU64,
    pub reports: AtomicU64,
    pub directives_pushed: AtomicU64,
    /// Stop epochs acknowledged by updaters (stored ones: repeats are not counted).
    pub stop_acks: AtomicU64,
    /// Trace spans updaters said they dropped (their collector down or slow).
    pub updater_spans_dropped: AtomicU64,
}

pub struct Fleet {
    store: Arc<Store>,
    /// Group commit of status changes and reports (one writer task).
    writer: AgentWriter,
    pub sessions: SessionRegistry,
    pub config: FleetConfig,
    view: RwLock<Arc<SettingsView>>,
    /// The signed release metadata updaters are given (`releases.rs`), loaded with settings.
    releases: RwLock<Option<Arc<releases::PublishedRelease>>>,
    /// Serializes load-and-swap of the view, so a slow refresh that read before an admin
    /// change can never replace the view that change produced.
    refresh_lock: tokio::sync::Mutex<()>,
    /// Active rollouts by channel, with the engine's latest decisions.
    rollouts: RwLock<HashMap<String, Arc<ActiveRollout>>>,
    /// The last finished rollout per channel, for `rollout status` after the end.
    finished_rollouts: RwLock<HashMap<String, Arc<ActiveRollout>>>,
    /// Serializes engine passes and admin verbs on rollouts.
    rollout_lock: tokio::sync::Mutex<()>,
    /// Serializes `push_all`: a pass that read the old decisions can never push them after a
    /// later push (a pause's, a rollback's) sent the new ones.
    push_lock: parking_lot::Mutex<()>,
    /// Bumped whenever the decisions behind directives change in memory; a session opened
    /// while it moved re-reads its directive (it may have missed that change's push).
    directive_epoch: AtomicU64,
    pins: RwLock<HashSet<String>>,
    /// The engine's view of every agent, kept current by the calls that write it.
    inventory: Inventory,
    /// Every agent's health samples, in memory only (`health_tracks.rs`).
    health_tracks: health_tracks::HealthTracks,
    /// Wakes the reconcile loop early (after a verb, a clock move, a report).
    pub reconcile_now: Notify,
    /// The clock rollouts run on.
    pub clock: FleetClock,
    pub counters: FleetCounters,
    /// Cancelled when the coordinator shuts down: every session ends with `Unavailable`.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The live admin credentials, cached (`admins.rs`).
    admins: AdminCredentials,
    /// Who signs agent certificates (unset with `--insecure`; `enrolment.rs`).
    enrolment: Enrolment,
    /// This process's id in the change feed, so it skips its own announcements.
    replica_id: Arc<str>,
    /// Who reconciles, and what this replica knows of the others' agents (`replicas.rs`).
    replication: replicas::Replication,
    /// What `/metrics` shows of this process's work (`crate::metrics`).
    metrics: Arc<crate::metrics::Metrics>,
    /// Rollout transitions for the webhooks, enqueued after their commit (`crate::webhook`).
    alerts: Arc<crate::webhook::AlertQueue>,
}

impl Fleet {
    pub async fn new(store: Arc<Store>, config: FleetConfig) -> Result<Arc<Self>> {
        let clock = FleetClock::new(config.manual_clock_start_ms)?;
        let view = SettingsView::load(&store).await?;
        let published = releases::PublishedRelease::load(&store).await?;
        let inventory = Inventory::load(store.all_agents().await?, store.stop_acks().await?);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        store.observe(metrics.clone());
        let fleet = Arc::new(Self {
            writer: AgentWriter::start(store.clone()),
            store,
            sessions: SessionRegistry::default(),
            clock,
            config,
            view: RwLock::new(Arc::new(view)),
            releases: RwLock::new(published),
            refresh_lock: tokio::sync::Mutex::new(()),
            rollouts: RwLock::new(HashMap::new()),
            finished_rollouts: RwLock::new(HashMap::new()),
            rollout_lock: tokio::sync::Mutex::new(()),
            push_lock: parking_lot::Mutex::new(()),
            directive_epoch: AtomicU64::new(0),
            pins: RwLock::new(HashSet::new()),
            inventory,
            health_tracks: health_tracks::HealthTracks::default(),
            reconcile_now: Notify::new(),
            counters: FleetCounters::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            admins: AdminCredentials::default(),
            enrolment: Enrolment::default(),
            replica_id: uuid::Uuid::new_v4().simple().to_string().into(),
            replication: replicas::Replication::default(),
            alerts: Arc::new(crate::webhook::AlertQueue::new(metrics.clone())),
            metrics,
        });
        fleet.load_rollouts().await?;
        fleet.reload_credentials().await?;
        Ok(fleet)
    }

    /// The `valid_until` for schedules sent now.
    pub fn schedule_valid_until(&self) -> i64 {
        now_ms() + self.config.schedule_validity.as_millis() as i64
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    pub fn alerts(&self) -> &Arc<crate::webhook::AlertQueue> {
        &self.alerts
    }

    pub fn view(&self) -> Arc<SettingsView> {
        self.view.read().clone()
    }

    /// What one agent should run now: the rollout's decision while a rollout governs its
    /// channel, else its channel's version (with its group's maintenance window).
    pub fn directive_for(&self, agent_id: &str, channel: &str, group: &str) -> Directive {
        self.directive_in(&self.view(), agent_id, channel, group)
    }

    /// `directive_for` under the given settings (a dry run's would-be view).
    fn directive_in(
        &self,
        view: &SettingsView,
        agent_id: &str,
        channel: &str,
        group: &str,
    ) -> Directive {
        let pinned = self.pins.read().contains(agent_id);
        let rollout = self.rollout_for(channel);
        directive_with(view, rollout.as_deref(), pinned, agent_id, channel, group)
    }

    /// Opens a session: the agent record is committed before the updater hears anything back.
    pub async fn open_session(
        &self,
        identity: AgentIdentity,
        last_directive_id: &str,
    ) -> Result<(Arc<Session>, SessionOutbox)> {
        let now = now_ms();
        self.writer
            .write(AgentWrite::Hello {
                identity: Box::new(identity.clone()),
                now_ms: now,
                replica: Some(self.replica_id.clone()),
            })
            .await?;
        let version = identity.agent_version.as_ref().map(ToString::to_string);
        self.inventory.identify(&identity, self.clock.now_ms());
        let epoch = self.directive_epoch.load(Ordering::SeqCst);
        let directive = self.directive_for(&identity.agent_id, &identity.channel, &identity.group);
        // Holding the current directive (its id carries the stop epoch) is hearing its stop:
        // after a reconnect it is not sent again, so this is the acknowledgement.
        if !directive.rollout_id.is_empty() && last_directive_id == directive.directive_id {
            self.acknowledge_stop(
                &identity.agent_id,
                &identity.channel,
                &directive.rollout_id,
                directive.rollout_epoch,
            )
            .await?;
        }
        let live = LiveStatus {
            health: identity.health,
            updater_state: UpdaterState::Idle,
            agent_version: version,
            last_seen_ms: now,
            flushed_seen_ms: now,
            decision_reason: String::new(),
            decision_detail: String::new(),
        };
        let (session, outbox) = Session::new(
            identity.agent_id,
            identity.group,
            identity.channel,
            live,
            directive,
            last_directive_id,
        );
        self.sessions.insert(session.clone());
        if self.directive_epoch.load(Ordering::SeqCst) != epoch {
            // Decisions changed while this session was not yet listed for pushes.
            session.push(&self.directive_for(&session.agent_id, &session.channel, &session.group));
        }
        if self.rollout_for(&session.channel).is_some() {
            self.reconcile_now.notify_one();
        }
        Ok((session, outbox))
    }

    /// With several replicas, the store learns the agent left this one (others count it
    /// as disconnected until it reconnects somewhere).
    pub async fn close_session(&self, session: &Session) {
        let was_current = self.sessions.remove(&session.agent_id, &session.session_id);
        if was_current && self.store().shared() {
            let write = AgentWrite::Disconnected {
                agent_id: session.agent_id.clone(),
                replica: self.replica_id.clone(),
            };
            if let Err(err) = self.writer.write(write).await {
                tracing::debug!(error = %err, agent_id = %session.agent_id, "could not record the session's end");
            }
        }
    }

    /// A heartbeat costs no store write unless health, updater state or version changed.
    /// The updater's own decision is kept in memory only (it is advisory and changes often).
    pub async fn heartbeat(
        &self,
        session: &Session,
        status: AgentStatus<'_>,
        decision: (&str, &str),
    ) -> Result<()> {
        self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let changed = {
            let mut live = session.live.lock();
            live.last_seen_ms = now;
            if live.decision_reason != decision.0 || live.decision_detail != decision.1 {
                live.decision_reason = decision.0.to_string();
                live.decision_detail = decision.1.to_string();
            }
            let changed = live.differs(&status);
            if changed {
                live.health = status.health;
                live.updater_state = status.updater_state;
                live.agent_version = status.agent_version.map(str::to_string);
            }
            changed
        };
        if changed {
            self.writer
                .write(AgentWrite::status(&session.agent_id, status, now))
                .await?;
            self.inventory
                .set_status(&session.agent_id, status.health, status.agent_version);
            session.live.lock().flushed_seen_ms = now;
        }
        Ok(())
    }

    /// The directive for a polling updater (or a streaming one re-checking).
    pub fn target_for(&self, agent_id: &str, channel: &str, group: &str) -> Result<Directive> {
        validate::name("channel", channel)?;
        validate::name("group", group)?;
        if !agent_id.is_empty() {
            validate::identifier("agent_id", agent_id)?;
        }
        Ok(self.directive_for(agent_id, channel, group))
    }

    /// Re-reads settings from the store and pushes every directive that changed.
    pub async fn refresh_and_push(&self) -> Result<usize> {
        self.refresh_settings().await?;
        Ok(self.push_all())
    }

    /// Re-reads settings; returns whether they changed (another replica, or an admin).
    pub async fn refresh_settings(&self) -> Result<bool> {
        let _serialized = self.refresh_lock.lock().await;
        let fresh = SettingsView::load(&self.store).await?;
        self.reload_release_metadata().await?;
        let changed = *self.view() != fresh;
        if changed {
            *self.view.write() = Arc::new(fresh);
        }
        Ok(changed)
    }

    /// How many known agents follow `channel` (from memory, no store read).
    pub fn channel_agent_count(&self, channel: &str) -> u64 {
        self.inventory.count_on(channel)
    }

    /// Resolves if the group-commit writer ever stops (see `AgentWriter::ended`).
    pub async fn writer_ended(&self) {
        self.writer.ended().await
    }

    /// Shows a channel's committed new version in the view without a store read (a finished
    /// rollout's switch), so it cannot fail between the commit and the hand-over.
    async fn set_view_channel_version(&self, channel: &str, version: Version) {
        let _serialized = self.refresh_lock.lock().await;
        let mut view = (*self.view()).clone();
        if let Some(entry) = view.channels.get_mut(channel) {
            entry.version = Some(version);
            entry.updated_at_ms = now_ms();
        }
        *self.view.write() = Arc::new(view);
    }

    /// An admin event, committed by the store together with the change it records.
    fn admin_event(&self, caller: &Caller, text: String) -> NewEvent {
        let at_ms = self.clock.now_ms();
        NewEvent {
            at_ms,
            kind: EventKind::Admin,
            actor: caller.actor.clone(),
            audit: Some(Box::new(caller.audit(at_ms, AuditResult::Ok, &text))),
            text,
            ..NewEvent::default()
        }
    }

    /// After an admin change committed: reload the view and push. A failure here does not
    /// undo the change, so it is logged, not reported (the periodic refresh catches up).
    async fn publish_committed_change(&self) {
        self.announce(change_feed::Change::Settings).await;
        if let Err(err) = self.refresh_and_push().await {
            tracing::warn!(error = %err, "change committed; pushing it waits for the next refresh");
        }
    }
}

/// An agent's directive from what decides it, fetched by the caller: the settings, the
/// channel's active rollout and whether the agent is pinned (so a pass over many agents
/// fetches them once).
pub(crate) fn directive_with(
    view: &SettingsView,
    rollout: Option<&ActiveRollout>,
    pinned: bool,
    agent_id: &str,
    channel: &str,
    group: &str,
) -> Directive {
    let cp = view.control_plane.as_ref();
    let critical = view.channels.get(channel).is_some_and(|c| c.critical);
    // Holding: keep what you have. No version is named, so what this process has not
    // learnt yet (an install finishing, a report in flight) cannot send anyone back.
    let hold = |rollout_id: &str, epoch: u64, reason: ReasonCode, detail: &str| {
        directive_from_rollout(
            rollout_id,
            epoch,
            None,
            critical,
            reason,
            detail.to_string(),
            cp,
        )
    };
    if pinned {
        return hold(
            "",
            0,
            ReasonCode::Pinned,
            "pinned by an admin: it stays on its version",
        );
    }
    let Some(rollout) = rollout else {
        return view.directive_for(channel, group);
    };
    let rollout_id = &rollout.spec.rollout_id;
    let epoch = rollout.state.stop_epoch;
    match rollout.decisions.get(agent_id) {
        Some(d) => directive_from_rollout(
            rollout_id,
            epoch,
            d.target.as_ref(),
            critical || d.urgent,
            d.reason,
            d.detail.clone(),
            cp,
        ),
        // New since the engine's last pass: hold until it has looked at this agent.
        None => hold(
            rollout_id,
            epoch,
            ReasonCode::RolloutPending,
            "the rollout has not considered this agent yet",
        ),
    }
}
