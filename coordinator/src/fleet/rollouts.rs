//! Rollouts in the fleet: create, plan and steer them, and pins. The engine's pass over live
//! snapshots is `reconcile.rs`.

use std::{collections::HashMap, sync::Arc};

use drover_rules::{EventKind, RolloutStatus};

use super::Fleet;
use crate::{
    domain::{follows_control_plane, now_ms, validate, version::check_constraints},
    error::{DroverError, Result},
    failpoint::crash_point,
    rollout::{AgentDecision, GroupPlan, Phase, RolloutSpec, RolloutState, plan},
    store::{NewEvent, RolloutCommit, RolloutRow},
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupCounts {
    pub present: u64,
    pub on_target: u64,
    pub healthy: u64,
    pub failed: u64,
}

/// An active rollout as the fleet holds it: what the store has, plus the latest decisions.
#[derive(Debug, Clone)]
pub struct ActiveRollout {
    pub spec: RolloutSpec,
    pub state: RolloutState,
    pub created_ms: i64,
    pub status: RolloutStatus,
    /// The store's revision this state was read or committed at (compare-and-set).
    pub revision: i64,
    pub decisions: HashMap<String, AgentDecision>,
    pub counts: Vec<GroupCounts>,
}

#[derive(Debug, Clone)]
pub enum RolloutVerb {
    Pause,
    Resume,
    StartGroup {
        group: String,
        skip_canaries: bool,
    },
    MarkDone {
        group: String,
    },
    /// `respect_windows: false` (the default) rolls back at once, like a critical update.
    Rollback {
        group: Option<String>,
        respect_windows: bool,
    },
}

impl ActiveRollout {
    pub(super) fn from_row(row: &RolloutRow) -> Result<Self> {
        let corrupt = |err: serde_json::Error| {
            DroverError::Internal(format!(
                "rollout {} is unreadable in the store: {err}",
                row.rollout_id
            ))
        };
        let spec: RolloutSpec = serde_json::from_str(&row.spec_json).map_err(corrupt)?;
        let state: RolloutState = serde_json::from_str(&row.state_json).map_err(corrupt)?;
        Ok(Self {
            counts: vec![GroupCounts::default(); spec.groups.len()],
            spec,
            state,
            created_ms: row.created_ms,
            status: RolloutStatus::parse(&row.status).ok_or_else(|| {
                DroverError::Internal(format!(
                    "rollout {} has the unknown status '{}' in the store",
                    row.rollout_id, row.status
                ))
            })?,
            revision: row.revision,
            decisions: HashMap::new(),
        })
    }

    fn group_index(&self, name: &str) -> Result<usize> {
        self.spec
            .groups
            .iter()
            .position(|g| g.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.spec.groups.iter().map(|g| g.name.as_str()).collect();
                DroverError::NotFound(format!(
                    "the rollout has no group '{name}'; its groups are {}",
                    names.join(", ")
                ))
            })
    }
}

pub(super) fn state_json(state: &RolloutState) -> Result<String> {
    serde_json::to_string(state).map_err(|err| DroverError::Internal(err.to_string()))
}

impl Fleet {
    /// Loads active rollouts from the store (at start-up).
    pub(super) async fn load_rollouts(&self) -> Result<()> {
        let mut active = HashMap::new();
        for row in self.store().active_rollouts().await? {
            active.insert(
                row.channel.clone(),
                Arc::new(ActiveRollout::from_row(&row)?),
            );
        }
        let mut finished = HashMap::new();
        for row in self.store().latest_finished_rollouts().await? {
            finished.insert(
                row.channel.clone(),
                Arc::new(ActiveRollout::from_row(&row)?),
            );
        }
        *self.rollouts.write() = active;
        *self.finished_rollouts.write() = finished;
        *self.pins.write() = self.store().pinned_agents().await?;
        Ok(())
    }

    pub fn rollout_for(&self, channel: &str) -> Option<Arc<ActiveRollout>> {
        self.rollouts.read().get(channel).cloned()
    }

    /// The channel's active rollout, or else the last one that finished.
    pub fn rollout_status(&self, channel: &str) -> Result<Arc<ActiveRollout>> {
        self.rollout_for(channel)
            .or_else(|| self.finished_rollouts.read().get(channel).cloned())
            .ok_or_else(|| {
                DroverError::NotFound(format!(
                    "channel '{channel}' has no rollout; `droverctl rollout list` shows the active ones"
                ))
            })
    }

    pub fn rollouts(&self) -> Vec<Arc<ActiveRollout>> {
        self.rollouts.read().values().cloned().collect()
    }

    fn check_spec(&self, spec: &RolloutSpec) -> Result<()> {
        validate::name("channel", &spec.channel)?;
        for group in &spec.groups {
            validate::name("group", &group.name)?;
        }
        spec.validate().map_err(DroverError::InvalidArgument)?;
        if follows_control_plane(&spec.channel) {
            return Err(DroverError::FailedPrecondition(format!(
                "channel '{}' follows the control plane; roll out on a channel with its own version",
                spec.channel
            )));
        }
        let view = self.view();
        let channel = view.channels.get(&spec.channel).ok_or_else(|| {
            let like =
                validate::close_matches(&spec.channel, view.channels.keys().map(String::as_str));
            DroverError::NotFound(format!(
                "channel '{0}' does not exist{2}; create it with `droverctl channels set {0} {1}`",
                spec.channel,
                spec.start_version,
                did_you_mean(&like)
            ))
        })?;
        // A mistyped group would silently fold its agents into the last group and drop the
        // stage (and its canaries) the admin asked for.
        let known = self.inventory.groups_on(&spec.channel);
        for group in &spec.groups {
            if !known.contains(&group.name) {
                let like = validate::close_matches(&group.name, known.iter().map(String::as_str));
                let listed: Vec<&str> = known.iter().map(String::as_str).collect();
                return Err(DroverError::NotFound(format!(
                    "no agent on channel '{}' is in group '{}'{}; its groups are: {}",
                    spec.channel,
                    group.name,
                    did_you_mean(&like),
                    if listed.is_empty() {
                        "none yet".to_string()
                    } else {
                        listed.join(", ")
                    }
                )));
            }
        }
        if channel.version.as_ref() != Some(&spec.start_version) {
            return Err(DroverError::FailedPrecondition(format!(
                "channel '{}' serves {}, not the start version {}; start from what the channel serves",
                spec.channel,
                channel
                    .version
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "nothing".into()),
                spec.start_version
            )));
        }
        let cp = view.control_plane.clone().ok_or_else(|| {
            DroverError::FailedPrecondition(
                "set the control-plane version first: `droverctl control-plane set VERSION`".into(),
            )
        })?;
        for version in [&spec.start_version, &spec.target_version] {
            check_constraints(version, &cp)
                .map_err(|v| DroverError::FailedPrecondition(v.to_string()))?;
        }
        Ok(())
    }

    pub async fn create_rollout(
        &self,
        mut spec: RolloutSpec,
        actor: &str,
    ) -> Result<Arc<ActiveRollout>> {
        let _serialized = self.rollout_lock.lock().await;
        spec.rollout_id = format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        self.check_spec(&spec)?;
        if let Some(existing) = self.rollout_for(&spec.channel) {
            return Err(DroverError::FailedPrecondition(format!(
                "channel '{}' already has an active rollout ({}); finish or roll it back first",
                spec.channel, existing.spec.rollout_id
            )));
        }
        let state = RolloutState::new(&spec);
        let now = now_ms();
        let row = RolloutRow {
            rollout_id: spec.rollout_id.clone(),
            channel: spec.channel.clone(),
            spec_json: serde_json::to_string(&spec)
                .map_err(|e| DroverError::Internal(e.to_string()))?,
            state_json: state_json(&state)?,
            status: RolloutStatus::Active.as_str().into(),
            created_ms: now,
            updated_ms: now,
            revision: 0,
        };
        let event = NewEvent {
            at_ms: self.clock.now_ms(),
            kind: EventKind::Admin,
            rollout_id: spec.rollout_id.clone(),
            actor: actor.into(),
            text: format!(
                "rollout created on channel {}: {} → {} ({:?}, groups {})",
                spec.channel,
                spec.start_version,
                spec.target_version,
                spec.strategy,
                spec.groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ..NewEvent::default()
        };
        self.store().create_rollout(&row, &[event]).await?;
        let active = Arc::new(ActiveRollout::from_row(&row)?);
        self.rollouts
            .write()
            .insert(spec.channel.clone(), active.clone());
        drop(_serialized);
        crash_point!("create_rollout.after_commit");
        // Decide for every agent at once, so directives and `agents why` reflect the rollout.
        self.reconcile_after_commit().await;
        Ok(self.rollout_for(&spec.channel).unwrap_or(active))
    }

    /// Runs the engine forward over today's inventory; changes nothing.
    pub async fn plan_rollout(&self, spec: RolloutSpec) -> Result<Vec<GroupPlan>> {
        self.check_spec(&spec)?;
        let state = RolloutState::new(&spec);
        let snapshot = self.snapshot(&spec, now_ms());
        Ok(plan(
            self.clock.now_ms(),
            &spec,
            &state,
            &snapshot,
            self.view().control_plane.as_ref(),
        ))
    }

    pub async fn steer_rollout(
        &self,
        channel: &str,
        verb: RolloutVerb,
        actor: &str,
    ) -> Result<Arc<ActiveRollout>> {
        let _serialized = self.rollout_lock.lock().await;
        let current = self.rollout_for(channel).ok_or_else(|| {
            DroverError::NotFound(format!(
                "channel '{channel}' has no active rollout; `droverctl rollout list` shows them"
            ))
        })?;
        let mut rollout = (*current).clone();
        let (group, text) = match &verb {
            RolloutVerb::Pause => {
                rollout.state.paused = true;
                (String::new(), "rollout paused".to_string())
            }
            RolloutVerb::Resume => {
                rollout.state.paused = false;
                (String::new(), "rollout resumed".to_string())
            }
            RolloutVerb::StartGroup {
                group,
                skip_canaries,
            } => {
                let index = rollout.group_index(group)?;
                let g = &mut rollout.state.groups[index];
                if !matches!(g.phase, Phase::Unstarted | Phase::Halted) {
                    return Err(DroverError::FailedPrecondition(format!(
                        "group {group} is {}; only an unstarted or halted group can be started",
                        g.phase.as_str()
                    )));
                }
                g.phase = Phase::Unstarted;
                g.force_start = true;
                g.skip_canaries = *skip_canaries;
                let how = if *skip_canaries {
                    " without canaries"
                } else {
                    ""
                };
                (group.clone(), format!("group {group} started by hand{how}"))
            }
            RolloutVerb::MarkDone { group } => {
                let index = rollout.group_index(group)?;
                let g = &mut rollout.state.groups[index];
                g.phase = Phase::Done;
                g.done_ms = Some(self.clock.now_ms());
                g.note = "marked done by hand".into();
                (group.clone(), format!("group {group} marked done"))
            }
            RolloutVerb::Rollback {
                group,
                respect_windows,
            } => {
                let indexes: Vec<usize> = match group {
                    Some(name) => vec![rollout.group_index(name)?],
                    None => (0..rollout.spec.groups.len()).collect(),
                };
                for index in indexes {
                    rollout.state.groups[index].phase = Phase::Rolledback;
                    rollout.state.groups[index].rollback_urgent = !respect_windows;
                    rollout.state.groups[index].note =
                        format!("rolled back to {}", rollout.spec.start_version);
                }
                let what = group
                    .as_deref()
                    .map(|g| format!("group {g}"))
                    .unwrap_or_else(|| "every group".into());
                let when = if *respect_windows {
                    "in the agents' maintenance windows"
                } else {
                    "at once"
                };
                (
                    group.clone().unwrap_or_default(),
                    format!(
                        "{what} rolled back to {} {when}",
                        rollout.spec.start_version
                    ),
                )
            }
        };
        let event = NewEvent {
            at_ms: self.clock.now_ms(),
            kind: EventKind::Admin,
            rollout_id: rollout.spec.rollout_id.clone(),
            group,
            actor: actor.into(),
            text,
            ..NewEvent::default()
        };
        let committed = self
            .store()
            .commit_rollout(&RolloutCommit {
                rollout_id: &rollout.spec.rollout_id,
                expected_revision: rollout.revision,
                state_json: state_json(&rollout.state)?,
                status: RolloutStatus::Active,
                now_ms: now_ms(),
                events: vec![event],
                channel_switch: None,
            })
            .await?;
        let Some(revision) = committed else {
            self.reload_rollout(&current).await?;
            return Err(DroverError::FailedPrecondition(format!(
                "rollout {} changed while this request was made; look at `droverctl rollout \
                 status --channel {channel}` and retry",
                rollout.spec.rollout_id
            )));
        };
        crash_point!("steer.after_commit");
        rollout.revision = revision;
        let rollout = Arc::new(rollout);
        self.rollouts
            .write()
            .insert(channel.to_string(), rollout.clone());
        drop(_serialized);
        self.reconcile_after_commit().await;
        // After the pass the rollout may have finished (e.g. everything rolled back).
        self.rollout_status(channel).or(Ok(rollout))
    }

    pub async fn pin(&self, agent_id: &str, note: &str, actor: &str, pinned: bool) -> Result<()> {
        validate::identifier("agent_id", agent_id)?;
        validate::bounded_text("note", note, 256)?;
        self.agent(agent_id).await?;
        let text = if pinned {
            format!(
                "agent pinned{}",
                if note.is_empty() {
                    String::new()
                } else {
                    format!(": {note}")
                }
            )
        } else {
            "agent unpinned".to_string()
        };
        let event = NewEvent {
            agent_id: agent_id.into(),
            ..self.admin_event(actor, text)
        };
        if pinned {
            self.store()
                .pin_agent(agent_id, note, now_ms(), &event)
                .await?;
            self.pins.write().insert(agent_id.to_string());
        } else {
            if !self.store().unpin_agent(agent_id, &event).await? {
                return Err(DroverError::FailedPrecondition(format!(
                    "agent {agent_id} is not pinned"
                )));
            }
            self.pins.write().remove(agent_id);
        }
        self.reconcile_after_commit().await;
        self.push_all();
        Ok(())
    }
}

/// " (did you mean 'a' or 'b'?)", or nothing when nothing looks close.
pub(super) fn did_you_mean(like: &[&str]) -> String {
    if like.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = like.iter().map(|l| format!("'{l}'")).collect();
    format!(" (did you mean {}?)", quoted.join(" or "))
}
