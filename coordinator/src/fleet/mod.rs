//! The fleet service: what happens when updaters connect, report and poll, and when admins
//! change channels. Transport-agnostic: the gRPC and HTTP edges call into this.

mod liveness;
pub mod registry;
pub mod view;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use drover_rules::MaintenanceSchedule;
use parking_lot::RwLock;
use semver::Version;

use crate::{
    domain::{
        AgentFilter, AgentIdentity, AgentRecord, AgentStatus, Channel, SummaryRow, UpdateReport,
        directive::Directive,
        follows_control_plane, now_ms, validate,
        version::{check_constraints, parse_version},
    },
    error::{DroverError, Result},
    store::Store,
};
use registry::{LiveStatus, Session, SessionOutbox, SessionRegistry};
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
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            recheck_interval: Duration::from_secs(600),
            liveness_flush_interval: Duration::from_secs(15),
            view_refresh_interval: Duration::from_secs(5),
            schedule_validity: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Default)]
pub struct FleetCounters {
    pub heartbeats: AtomicU64,
    pub reports: AtomicU64,
    pub directives_pushed: AtomicU64,
}

pub struct Fleet {
    store: Arc<Store>,
    pub sessions: SessionRegistry,
    pub config: FleetConfig,
    view: RwLock<Arc<SettingsView>>,
    /// Serializes load-and-swap of the view, so a slow refresh that read before an admin
    /// change can never replace the view that change produced.
    refresh_lock: tokio::sync::Mutex<()>,
    pub counters: FleetCounters,
    /// Cancelled when the coordinator shuts down: every session ends with `Unavailable`.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// An agent as admins see it: the stored record merged with its live session, if any.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentView {
    #[serde(flatten)]
    pub record: AgentRecord,
    pub connected: bool,
    pub directive: Directive,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetSummary {
    pub rows: Vec<SummaryRow>,
    pub total_agents: u64,
    pub connected_agents: u64,
    pub control_plane_version: Option<Version>,
}

impl Fleet {
    pub async fn new(store: Arc<Store>, config: FleetConfig) -> Result<Arc<Self>> {
        let view = SettingsView::load(&store).await?;
        Ok(Arc::new(Self {
            store,
            sessions: SessionRegistry::default(),
            config,
            view: RwLock::new(Arc::new(view)),
            refresh_lock: tokio::sync::Mutex::new(()),
            counters: FleetCounters::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }))
    }

    /// The `valid_until` for schedules sent now.
    pub fn schedule_valid_until(&self) -> i64 {
        now_ms() + self.config.schedule_validity.as_millis() as i64
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn view(&self) -> Arc<SettingsView> {
        self.view.read().clone()
    }

    /// Opens a session: the agent record is committed before the updater hears anything back.
    pub async fn open_session(
        &self,
        identity: AgentIdentity,
        last_directive_id: &str,
    ) -> Result<(Arc<Session>, SessionOutbox)> {
        let now = now_ms();
        self.store.upsert_agent(&identity, now).await?;
        let directive = self
            .view()
            .directive_for(&identity.channel, &identity.group);
        let live = LiveStatus {
            health: identity.health,
            updater_state: crate::domain::UpdaterState::Idle,
            agent_version: identity.agent_version.as_ref().map(ToString::to_string),
            last_seen_ms: now,
            flushed_seen_ms: now,
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
        Ok((session, outbox))
    }

    pub fn close_session(&self, session: &Session) {
        self.sessions.remove(&session.agent_id, &session.session_id);
    }

    /// A heartbeat costs no store write unless health, updater state or version changed.
    pub async fn heartbeat(&self, session: &Session, status: AgentStatus<'_>) -> Result<()> {
        self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let changed = {
            let mut live = session.live.lock();
            live.last_seen_ms = now;
            let changed = live.health != status.health
                || live.updater_state != status.updater_state
                || live.agent_version.as_deref() != status.agent_version;
            if changed {
                live.health = status.health;
                live.updater_state = status.updater_state;
                live.agent_version = status.agent_version.map(str::to_string);
            }
            changed
        };
        if changed {
            self.store
                .update_agent_status(&session.agent_id, status, now)
                .await?;
            session.live.lock().flushed_seen_ms = now;
        }
        Ok(())
    }

    /// Commits the report, then acknowledges it; a resent report is acknowledged again.
    pub async fn report(&self, session: &Session, report: UpdateReport) -> Result<()> {
        self.counters.reports.fetch_add(1, Ordering::Relaxed);
        let inserted = self
            .store
            .record_report(&session.agent_id, &report, now_ms())
            .await?;
        if inserted && report.outcome == crate::domain::UpdateOutcome::Succeeded {
            session.live.lock().agent_version = Some(report.to_version.clone());
        }
        session.ack(report.attempt_id).await;
        Ok(())
    }

    /// The directive for a polling updater (or a streaming one re-checking).
    pub fn target_for(&self, channel: &str, group: &str) -> Result<Directive> {
        validate::name("channel", channel)?;
        validate::name("group", group)?;
        Ok(self.view().directive_for(channel, group))
    }

    pub async fn set_schedule(&self, group: &str, schedule: MaintenanceSchedule) -> Result<()> {
        validate::name("group", group)?;
        schedule.validate().map_err(DroverError::InvalidArgument)?;
        self.store.set_schedule(group, &schedule, now_ms()).await?;
        self.refresh_and_push().await?;
        Ok(())
    }

    pub async fn clear_schedule(&self, group: &str) -> Result<()> {
        validate::name("group", group)?;
        if !self.store.clear_schedule(group).await? {
            return Err(DroverError::NotFound(format!(
                "group '{group}' has no maintenance schedule; `droverctl schedule list` shows them"
            )));
        }
        self.refresh_and_push().await?;
        Ok(())
    }

    pub async fn schedules(&self) -> Result<Vec<crate::store::GroupSchedule>> {
        self.store.list_schedules().await
    }

    pub async fn set_channel_version(&self, name: &str, version: &str) -> Result<Channel> {
        validate::name("channel", name)?;
        let version = parse_version(version)?;
        if follows_control_plane(name) {
            return Err(DroverError::FailedPrecondition(format!(
                "channel '{name}' follows the control-plane version; change that with \
                 `droverctl control-plane set VERSION`, or put agents on a channel of their own"
            )));
        }
        let control_plane = self.view().control_plane.clone().ok_or_else(|| {
            DroverError::FailedPrecondition(
                "the control-plane version is not set, so the version constraints cannot be \
                 checked; set it first with `droverctl control-plane set VERSION`"
                    .into(),
            )
        })?;
        check_constraints(&version, &control_plane)
            .map_err(|violation| DroverError::FailedPrecondition(violation.to_string()))?;
        self.store
            .set_channel_version(name, &version.to_string(), now_ms())
            .await?;
        self.refresh_and_push().await?;
        self.channel(name)
    }

    pub async fn set_channel_critical(&self, name: &str, critical: bool) -> Result<Channel> {
        validate::name("channel", name)?;
        self.store
            .set_channel_critical(name, critical, now_ms())
            .await?;
        self.refresh_and_push().await?;
        self.channel(name)
    }

    pub async fn set_control_plane_version(&self, version: &str) -> Result<(Version, i64)> {
        let version = parse_version(version)?;
        let now = now_ms();
        self.store
            .set_control_plane_version(&version.to_string(), now)
            .await?;
        self.refresh_and_push().await?;
        Ok((version, now))
    }

    fn channel(&self, name: &str) -> Result<Channel> {
        self.view()
            .channels
            .get(name)
            .cloned()
            .ok_or_else(|| DroverError::NotFound(format!("channel '{name}' does not exist")))
    }

    pub fn channels(&self) -> Vec<Channel> {
        let mut channels: Vec<Channel> = self.view().channels.values().cloned().collect();
        channels.sort_by(|a, b| a.name.cmp(&b.name));
        channels
    }

    /// Re-reads channels from the store and pushes every directive that changed.
    pub async fn refresh_and_push(&self) -> Result<usize> {
        let _serialized = self.refresh_lock.lock().await;
        let fresh = Arc::new(SettingsView::load(&self.store).await?);
        *self.view.write() = fresh.clone();
        Ok(self.push_all(&fresh))
    }

    fn push_all(&self, view: &SettingsView) -> usize {
        let mut per_target: HashMap<(&str, &str), Directive> = HashMap::new();
        let sessions = self.sessions.all();
        let mut pushed = 0;
        for session in &sessions {
            let directive = per_target
                .entry((session.channel.as_str(), session.group.as_str()))
                .or_insert_with(|| view.directive_for(&session.channel, &session.group));
            if session.push(directive) {
                pushed += 1;
            }
        }
        self.counters
            .directives_pushed
            .fetch_add(pushed as u64, Ordering::Relaxed);
        if pushed > 0 {
            tracing::info!(
                pushed,
                connected = sessions.len(),
                "pushed changed directives"
            );
        }
        pushed
    }

    pub async fn agent(&self, agent_id: &str) -> Result<AgentView> {
        validate::identifier("agent_id", agent_id)?;
        let record = self.store.get_agent(agent_id).await?.ok_or_else(|| {
            DroverError::NotFound(format!(
                "no agent '{agent_id}' is known; `droverctl agents list` shows the known ones"
            ))
        })?;
        Ok(self.agent_view(record))
    }

    pub async fn agents(
        &self,
        filter: &AgentFilter,
        after_id: &str,
        limit: u32,
    ) -> Result<(Vec<AgentView>, u64)> {
        let records = self.store.list_agents(filter, after_id, limit).await?;
        let total = self.store.count_agents(filter).await?;
        Ok((
            records.into_iter().map(|r| self.agent_view(r)).collect(),
            total,
        ))
    }

    fn agent_view(&self, mut record: AgentRecord) -> AgentView {
        let session = self.sessions.get(&record.agent_id);
        if let Some(session) = &session {
            let live = session.live.lock();
            record.health = live.health;
            record.updater_state = live.updater_state;
            record.agent_version = live.agent_version.clone();
            record.last_seen_ms = live.last_seen_ms;
        }
        let directive = self.view().directive_for(&record.channel, &record.group);
        AgentView {
            record,
            connected: session.is_some(),
            directive,
        }
    }

    pub async fn summary(&self) -> Result<FleetSummary> {
        let rows = self.store.fleet_summary().await?;
        Ok(FleetSummary {
            total_agents: rows.iter().map(|r| r.count).sum(),
            rows,
            connected_agents: self.sessions.len() as u64,
            control_plane_version: self.view().control_plane.clone(),
        })
    }

    pub async fn agents_per_channel(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        self.store.agents_per_channel().await
    }
}

pub use liveness::run_background_tasks;
