//! Rollouts in the fleet: create, plan and steer them, and pins. The engine's pass over live
//! snapshots is `reconcile.rs`.

use std::{collections::HashMap, sync::Arc};

use drover_rules::{EventKind, RolloutStatus};

use super::{
    Caller, Fleet,
    effects::{Effect, GroupCounts, group_counts, rollout_effect},
    rollout_trace::{self, RolloutTrace},
};
use crate::{
    domain::{follows_control_plane, now_ms, validate, version::check_constraints},
    error::{DroverError, Result},
    failpoint::crash_point,
    rollout::{
        AgentDecision, GroupPlan, RolloutSpec, RolloutState, RolloutVerb, decisions, plan,
        reconcile, steer,
    },
    store::{NewEvent, RolloutCommit, RolloutRow},
};

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
    /// The rollout's trace (None for rollouts made before tracing existed).
    pub trace: Option<RolloutTrace>,
    /// Each group's health verdict as of the reconciler's last pass (empty elsewhere: then
    /// the state's, from the last transition, is shown).
    pub live_verdicts: Vec<Option<crate::rollout::verdict::GroupVerdict>>,
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
            trace: row.trace_parent.as_deref().and_then(RolloutTrace::parse),
            live_verdicts: Vec::new(),
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
        // First, so an unknown channel's error never echoes an unbounded name.
        validate::name("channel", channel)?;
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

    /// Creates a rollout; a dry run checks the same, and returns the rollout as its first
    /// pass would leave it and the plan, committing nothing.
    pub async fn create_rollout(
        &self,
        mut spec: RolloutSpec,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<(Arc<ActiveRollout>, Effect)> {
        let _serialized = self.rollout_lock.lock().await;
        spec.rollout_id = format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        if spec.canary_seed.is_empty() {
            spec.canary_seed = spec.default_seed();
        }
        // Other replicas' agents count too (several replicas): their groups, their effect.
        self.merge_shared_facts().await?;
        self.check_spec(&spec)?;
        if let Some(existing) = self.rollout_for(&spec.channel) {
            return Err(DroverError::FailedPrecondition(format!(
                "channel '{}' already has an active rollout ({}); finish or roll it back first",
                spec.channel, existing.spec.rollout_id
            )));
        }
        let state = RolloutState::new(&spec);
        let clock = self.clock.now_ms();
        let snapshot = self.snapshot(&spec, now_ms());
        let view = self.view();
        let cp = view.control_plane.as_ref();
        let out = reconcile(clock, &spec, &state, &snapshot, cp);
        let groups = rollout_effect(
            &spec,
            &snapshot,
            |a| {
                let d = view.directive_for(&spec.channel, &a.group);
                (d.target_version, false)
            },
            &out.decisions,
        );
        let mut effect = Effect {
            agents_affected: groups.iter().sum(),
            groups,
            ..Effect::new(dry_run, create_text(&spec), 0)
        };
        if dry_run {
            effect.plan = plan(clock, &spec, &state, &snapshot, cp);
            let would = ActiveRollout {
                spec: spec.clone(),
                status: RolloutStatus::Active,
                state: out.state,
                created_ms: now_ms(),
                revision: 0,
                counts: group_counts(&spec, &snapshot),
                decisions: out.decisions,
                trace: None,
                live_verdicts: Vec::new(),
            };
            return Ok((Arc::new(would), effect));
        }
        let now = now_ms();
        // The share of agents traced is of the whole rollout, not of the first groups.
        let agents = snapshot.iter().filter(|a| !a.pinned).count() as u64;
        let trace = RolloutTrace::generate(agents, self.config.trace_agent_budget);
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
            trace_parent: Some(trace.to_text()),
        };
        let event = NewEvent {
            at_ms: self.clock.now_ms(),
            kind: EventKind::Admin,
            rollout_id: spec.rollout_id.clone(),
            ..self.admin_event(caller, effect.summary.clone())
        };
        self.store().create_rollout(&row, &[event]).await?;
        rollout_trace::record_created(&trace, &spec, agents, (now, now_ms()));
        let active = Arc::new(ActiveRollout::from_row(&row)?);
        self.rollouts
            .write()
            .insert(spec.channel.clone(), active.clone());
        self.alert_transition(None, &active, Some(format!("created by {}", caller.actor)));
        drop(_serialized);
        crash_point!("create_rollout.after_commit");
        self.announce(super::change_feed::Change::Rollouts).await;
        // Decide for every agent at once, so directives and `agents why` reflect the rollout.
        self.reconcile_after_commit().await;
        Ok((self.rollout_for(&spec.channel).unwrap_or(active), effect))
    }

    /// Runs the engine forward over today's inventory; changes nothing.
    pub async fn plan_rollout(&self, mut spec: RolloutSpec) -> Result<Vec<GroupPlan>> {
        if spec.canary_seed.is_empty() {
            spec.canary_seed = spec.default_seed();
        }
        self.merge_shared_facts().await?;
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

    /// When each group of the active rollout `rollout_id` would start and finish from its
    /// current state and today's inventory (its ETA); changes nothing.
    pub fn rollout_eta(&self, rollout_id: &str) -> Result<Vec<GroupPlan>> {
        let active = self
            .rollouts()
            .into_iter()
            .find(|r| r.spec.rollout_id == rollout_id)
            .ok_or_else(|| {
                DroverError::NotFound(format!(
                    "no active rollout '{rollout_id}'; only an active rollout has an ETA \
                     (`droverctl rollout list` shows them)"
                ))
            })?;
        let snapshot = self.snapshot(&active.spec, active.created_ms);
        Ok(plan(
            self.clock.now_ms(),
            &active.spec,
            &active.state,
            &snapshot,
            self.view().control_plane.as_ref(),
        ))
    }

    /// Applies an admin verb. A dry run checks and computes the same, and returns the
    /// rollout as the call's own pass would leave it, committing nothing. A verb that finds
    /// the rollout changed under it (another replica's reconciler committed a transition or
    /// an install slot) is applied again to the fresh state, a few times.
    pub async fn steer_rollout(
        &self,
        channel: &str,
        verb: RolloutVerb,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<(Arc<ActiveRollout>, Effect)> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            if let Some(done) = self
                .steer_rollout_once(channel, verb.clone(), caller, dry_run)
                .await?
            {
                return Ok(done);
            }
        }
        Err(DroverError::FailedPrecondition(format!(
            "the rollout on channel '{channel}' kept changing while this request was made \
             ({ATTEMPTS} tries); nothing was changed; look at `droverctl rollout status \
             --channel {channel}` and retry"
        )))
    }

    /// One try of [`Self::steer_rollout`]; `None`: the rollout changed since it was read
    /// (it has been reloaded, nothing was written).
    async fn steer_rollout_once(
        &self,
        channel: &str,
        verb: RolloutVerb,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<Option<(Arc<ActiveRollout>, Effect)>> {
        let _serialized = self.rollout_lock.lock().await;
        let current = self.rollout_for(channel).ok_or_else(|| {
            DroverError::NotFound(format!(
                "channel '{channel}' has no active rollout; `droverctl rollout list` shows them"
            ))
        })?;
        let now = self.clock.now_ms();
        let steered = steer(now, &current.spec, &current.state, &verb)?;
        if steered.state == current.state {
            // Pausing a paused rollout (a retry, a second admin): nothing to write.
            let text = format!("{} already; nothing changed", steered.text);
            return Ok(Some((current, Effect::new(dry_run, text, 0))));
        }
        let snapshot = self.snapshot(&current.spec, current.created_ms);
        let cp = self.view().control_plane.clone();
        // What the pass right after the commit makes of it: the prediction a dry run shows.
        let out = reconcile(now, &current.spec, &steered.state, &snapshot, cp.as_ref());
        let groups = rollout_effect(
            &current.spec,
            &snapshot,
            |a| match current.decisions.get(&a.agent_id) {
                Some(d) => (d.target.clone(), d.urgent),
                // Not looked at yet: it was sent a hold, which names no version.
                None => (None, false),
            },
            &out.decisions,
        );
        let effect = Effect {
            groups,
            ..Effect::new(dry_run, steered.text.clone(), 0)
        };
        let effect = Effect {
            agents_affected: effect.groups.iter().sum(),
            ..effect
        };
        if dry_run {
            let would = ActiveRollout {
                status: crate::rollout::status_after(&current.spec, &out.state, &snapshot),
                state: out.state,
                counts: group_counts(&current.spec, &snapshot),
                decisions: out.decisions,
                ..(*current).clone()
            };
            return Ok(Some((Arc::new(would), effect)));
        }
        let event_text = steered.text.clone();
        let event = NewEvent {
            rollout_id: current.spec.rollout_id.clone(),
            group: steered.group,
            ..self.admin_event(caller, steered.text)
        };
        let committed = self
            .store()
            .commit_rollout(&RolloutCommit {
                rollout_id: &current.spec.rollout_id,
                expected_revision: current.revision,
                state_json: state_json(&steered.state)?,
                status: RolloutStatus::Active,
                now_ms: now_ms(),
                events: vec![event],
                channel_switch: None,
                fence: None,
            })
            .await?;
        let Some(revision) = committed else {
            self.reload_rollout(&current).await?;
            return Ok(None);
        };
        crash_point!("steer.after_commit");
        self.announce(super::change_feed::Change::Rollouts).await;
        let detail = format!("{event_text} (by {})", caller.actor);
        if let Some(trace) = &current.trace {
            let states = (&current.state, &steered.state);
            let texts = [detail.clone()];
            rollout_trace::record_change(
                trace,
                &current.spec,
                states,
                RolloutStatus::Active,
                now_ms(),
                &texts,
            );
        }
        // The committed state's own decisions (no transition: that is the next pass's
        // commit) replace the old ones before anyone can read them, and are pushed before
        // the call returns: after a pause or a rollback nobody is sent the old target.
        let decisions = decisions(now, &current.spec, &steered.state, &snapshot, cp.as_ref());
        let rollout = Arc::new(ActiveRollout {
            state: steered.state,
            revision,
            decisions,
            ..(*current).clone()
        });
        self.rollouts
            .write()
            .insert(channel.to_string(), rollout.clone());
        self.alert_transition(Some(&current), &rollout, Some(detail));
        drop(_serialized);
        self.push_all();
        self.reconcile_after_commit().await;
        // After the pass the rollout may have finished (e.g. everything rolled back).
        Ok(Some((
            self.rollout_status(channel).unwrap_or(rollout),
            effect,
        )))
    }
}

fn create_text(spec: &RolloutSpec) -> String {
    format!(
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
    )
}

/// " (did you mean 'a' or 'b'?)", or nothing when nothing looks close.
pub(super) fn did_you_mean(like: &[&str]) -> String {
    if like.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = like.iter().map(|l| format!("'{l}'")).collect();
    format!(" (did you mean {}?)", quoted.join(" or "))
}
