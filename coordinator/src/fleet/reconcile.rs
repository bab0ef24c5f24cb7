//! The reconcile pass: run the engine over each active rollout's live snapshot, commit its
//! transitions (compare-and-set, with their events, the final one with the channel switch),
//! and keep every agent's latest decision for directives and `agents why`.

use std::sync::Arc;

use drover_rules::{EventKind, RolloutStatus};
use semver::Version;

use super::{
    Fleet,
    effects::group_counts,
    replicas::Role,
    rollout_trace,
    rollouts::{ActiveRollout, state_json},
};
use crate::{
    domain::{UpdateOutcome, UpdateReport, now_ms},
    error::Result,
    failpoint::crash_point,
    rollout::{AgentSnapshot, RolloutSpec, reconcile, strata::stratum_key},
    store::{NewEvent, RolloutCommit},
};

impl Fleet {
    /// What the engine sees of a rollout's channel: the in-memory inventory merged with
    /// live sessions (no store read; linear in the channel's agents).
    pub(super) fn snapshot(&self, spec: &RolloutSpec, created_ms: i64) -> Vec<AgentSnapshot> {
        let pins = self.pins.read();
        let target = spec.target_version.to_string();
        self.inventory
            .channel(&spec.channel)
            .into_iter()
            .map(|(agent_id, entry)| {
                let session = self.sessions.get(&agent_id);
                let connected =
                    session.is_some() || self.connected_elsewhere(entry.connected_on.as_deref());
                let (health, version) = match &session {
                    Some(s) => {
                        let live = s.live.lock();
                        (live.health, live.agent_version.clone())
                    }
                    None => (entry.health, entry.version.clone()),
                };
                let failed_at_ms = entry
                    .last_report
                    .as_ref()
                    .filter(|r| failed_this_rollout(spec, created_ms, r))
                    .map(|_| entry.report_received_ms);
                // Copied only for a rollout that judges them.
                let track = spec
                    .verdict
                    .enabled
                    .then(|| self.health_tracks.get(&agent_id))
                    .flatten();
                let on_target = version.as_deref() == Some(target.as_str());
                // When it reached the target: its install as a sample saw it, or its report.
                let updated_at_ms = on_target
                    .then(|| {
                        track
                            .as_ref()
                            .filter(|t| t.installed && t.version == target)
                            .map(|t| t.mark_ms)
                            .or_else(|| succeeded_on(&entry, &target))
                    })
                    .flatten();
                AgentSnapshot {
                    stratum: stratum_key(&spec.strata.labels, &entry.traits),
                    updated_at_ms,
                    track,
                    pinned: pins.contains(&agent_id),
                    connected,
                    version: version.and_then(|v| Version::parse(&v).ok()),
                    health,
                    failed_at_ms,
                    joined_ms: entry.first_seen_ms,
                    group: entry.group,
                    agent_id,
                }
            })
            .collect()
    }

    /// Re-reads a rollout someone else changed (a compare-and-set that found another
    /// revision), so the next pass works from what the store holds.
    pub(super) async fn reload_rollout(&self, current: &ActiveRollout) -> Result<()> {
        let channel = &current.spec.channel;
        match self.store().rollout(&current.spec.rollout_id).await? {
            Some(row) if row.status == RolloutStatus::Active.as_str() => {
                let fresh = ActiveRollout::from_row(&row)?;
                self.rollouts
                    .write()
                    .insert(channel.clone(), Arc::new(fresh));
            }
            Some(row) => {
                let fresh = ActiveRollout::from_row(&row)?;
                self.refresh_settings().await?;
                self.rollouts.write().remove(channel);
                self.finished_rollouts
                    .write()
                    .insert(channel.clone(), Arc::new(fresh));
            }
            None => {
                self.rollouts.write().remove(channel);
            }
        }
        Ok(())
    }

    /// One pass of the reconcile loop over every active rollout; pushes what changed. Only
    /// the reconciler (the only replica, or the lease holder) moves rollouts; another
    /// replica decides for its own updaters from the committed state.
    pub async fn reconcile_rollouts(&self) -> Result<()> {
        let _serialized = self.rollout_lock.lock().await;
        let active = self.rollouts();
        if active.is_empty() {
            return Ok(());
        }
        self.merge_shared_facts().await?;
        let fence = match self.role() {
            Role::Sole => None,
            Role::Leader(fence) => Some(fence),
            Role::Follower => {
                self.decide_as_follower(active);
                drop(_serialized);
                self.push_all();
                return Ok(());
            }
        };
        let started = std::time::Instant::now();
        let control_plane = self.view().control_plane.clone();
        for current in active {
            let snapshot = self.snapshot(&current.spec, current.created_ms);
            let now = self.clock.now_ms();
            let out = reconcile(
                now,
                &current.spec,
                &current.state,
                &snapshot,
                control_plane.as_ref(),
            );
            let mut rollout = with_decisions(&current, &snapshot, out.decisions);
            rollout.live_verdicts = out.verdicts;
            let status = crate::rollout::status_after(&current.spec, &out.state, &snapshot);
            let mut committed_change = None;
            if out.state != current.state || status != RolloutStatus::Active {
                let mut events: Vec<NewEvent> = out
                    .events
                    .iter()
                    .map(|e| NewEvent {
                        at_ms: now,
                        kind: EventKind::Rollout,
                        rollout_id: current.spec.rollout_id.clone(),
                        group: e.group.clone().unwrap_or_default(),
                        actor: "engine".into(),
                        text: e.text.clone(),
                        ..NewEvent::default()
                    })
                    .collect();
                if status != RolloutStatus::Active {
                    events.push(NewEvent {
                        at_ms: now,
                        kind: EventKind::Rollout,
                        rollout_id: current.spec.rollout_id.clone(),
                        actor: "engine".into(),
                        text: format!("rollout {status}"),
                        ..NewEvent::default()
                    });
                }
                // The final transition and the channel switch are one commit: no crash can
                // leave the rollout done and the channel on the old version.
                let channel_switch = (status == RolloutStatus::Done).then(|| {
                    (
                        current.spec.channel.clone(),
                        current.spec.target_version.to_string(),
                    )
                });
                let committed = self
                    .store()
                    .commit_rollout(&RolloutCommit {
                        rollout_id: &current.spec.rollout_id,
                        expected_revision: current.revision,
                        state_json: state_json(&out.state)?,
                        status,
                        now_ms: now_ms(),
                        events,
                        channel_switch,
                        fence: fence.as_ref(),
                    })
                    .await?;
                let Some(revision) = committed else {
                    tracing::warn!(
                        rollout = %current.spec.rollout_id,
                        "rollout changed in the store since it was read; reloading it"
                    );
                    self.reload_rollout(&current).await?;
                    continue;
                };
                crash_point!("rollout.commit.after");
                self.announce(super::change_feed::Change::Rollouts).await;
                if status != RolloutStatus::Active {
                    crash_point!("rollout.finish.after_commit");
                }
                rollout.revision = revision;
                let texts: Vec<String> = out.events.iter().map(|e| e.text.clone()).collect();
                let states = (&current.state, &out.state);
                let span_id = current.trace.and_then(|trace| {
                    rollout_trace::record_change(
                        &trace,
                        &current.spec,
                        states,
                        status,
                        now_ms(),
                        &texts,
                    )
                });
                // The log lines name the span that carries the change, so a line leads to
                // its place in the trace and back.
                let trace_id = current
                    .trace
                    .map(|t| t.trace_id.to_string())
                    .unwrap_or_default();
                let span_id = span_id.map(|s| s.to_string()).unwrap_or_default();
                for event in &out.events {
                    tracing::info!(rollout = %current.spec.rollout_id, %trace_id, %span_id, "{}", event.text);
                }
                committed_change = Some(texts.join("; "));
            }
            rollout.state = out.state;
            rollout.status = status;
            if let Some(detail) = committed_change {
                let detail = (!detail.is_empty()).then_some(detail);
                self.alert_transition(Some(&current), &rollout, detail);
            }
            if status == RolloutStatus::Active {
                self.rollouts
                    .write()
                    .insert(current.spec.channel.clone(), Arc::new(rollout));
            } else {
                if status == RolloutStatus::Done {
                    // The view must show the channel's new version before the rollout stops
                    // governing it; otherwise a push in between would send the old version.
                    self.set_view_channel_version(
                        &current.spec.channel,
                        current.spec.target_version.clone(),
                    )
                    .await;
                }
                self.rollouts.write().remove(&current.spec.channel);
                self.finished_rollouts
                    .write()
                    .insert(current.spec.channel.clone(), Arc::new(rollout));
            }
        }
        self.metrics.reconcile_pass(started.elapsed());
        drop(_serialized);
        self.push_all();
        Ok(())
    }

    /// A follower's pass: every agent's decision under the committed state, no transition
    /// and no commit (the reconciler's commits reach this replica through the feed).
    fn decide_as_follower(&self, active: Vec<Arc<ActiveRollout>>) {
        let control_plane = self.view().control_plane.clone();
        let now = self.clock.now_ms();
        for current in active {
            let snapshot = self.snapshot(&current.spec, current.created_ms);
            let decisions = crate::rollout::decisions(
                now,
                &current.spec,
                &current.state,
                &snapshot,
                control_plane.as_ref(),
            );
            let rollout = with_decisions(&current, &snapshot, decisions);
            self.rollouts
                .write()
                .insert(current.spec.channel.clone(), Arc::new(rollout));
        }
    }

    /// A pass right after an admin change committed. A failure does not undo the change,
    /// so it is logged and left to the loop, never reported as the change failing.
    pub(super) async fn reconcile_after_commit(&self) {
        if let Err(err) = self.reconcile_rollouts().await {
            tracing::warn!(error = %err, "change committed; the reconcile loop will apply it");
            self.reconcile_now.notify_one();
        }
    }
}

/// Whether an agent's last report is a failed update to this rollout's target. Reports name
/// their rollout; an older updater's (no rollout id) counts if it came after the rollout began.
/// When the agent's report of a successful update to `target` arrived, if that is its last.
fn succeeded_on(entry: &super::inventory::InventoryEntry, target: &str) -> Option<i64> {
    entry
        .last_report
        .as_ref()
        .filter(|r| r.outcome == UpdateOutcome::Succeeded && r.to_version == target)
        .map(|_| entry.report_received_ms)
}

fn failed_this_rollout(spec: &RolloutSpec, created_ms: i64, report: &UpdateReport) -> bool {
    let ours = if report.rollout_id.is_empty() {
        report.finished_ms >= created_ms
    } else {
        report.rollout_id == spec.rollout_id
    };
    ours && report.to_version == spec.target_version.to_string()
        && report.outcome != UpdateOutcome::Succeeded
}

/// `current` with new decisions and the counts of `snapshot`. Built afresh, not cloned: the
/// old decisions (one per agent) are replaced anyway.
fn with_decisions(
    current: &ActiveRollout,
    snapshot: &[AgentSnapshot],
    decisions: std::collections::HashMap<String, crate::rollout::AgentDecision>,
) -> ActiveRollout {
    let mut rollout = ActiveRollout {
        spec: current.spec.clone(),
        state: current.state.clone(),
        created_ms: current.created_ms,
        status: current.status,
        revision: current.revision,
        counts: group_counts(&current.spec, snapshot),
        decisions,
        trace: current.trace,
        live_verdicts: Vec::new(),
    };
    count_in_flight(&mut rollout, snapshot);
    rollout
}

/// Per group, the agents the engine sends the target that neither run it nor failed it:
/// updating now (`in_flight` in `/metrics`). Counted once per pass, not per scrape.
fn count_in_flight(rollout: &mut ActiveRollout, snapshot: &[crate::rollout::AgentSnapshot]) {
    let target = &rollout.spec.target_version;
    for agent in snapshot.iter().filter(|a| !a.pinned) {
        let sent = rollout
            .decisions
            .get(&agent.agent_id)
            .is_some_and(|d| d.target.as_ref() == Some(target));
        if sent && agent.version.as_ref() != Some(target) && agent.failed_at_ms.is_none() {
            let group = rollout.spec.group_of(&agent.group);
            if let Some(counts) = rollout.counts.get_mut(group) {
                counts.in_flight += 1;
            }
        }
    }
}
