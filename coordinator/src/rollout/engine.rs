//! One reconcile step: transitions first, then a decision for every agent.

use std::collections::HashMap;

use drover_rules::{VerdictOutcome, check_constraints};
use semver::Version;

use super::{
    AgentDecision, AgentSnapshot, GroupState, HOUR_MS, Phase, RolloutEvent, RolloutSpec,
    RolloutState, Strategy, agent_rank,
    strata::{self, is_held},
    verdict::GroupVerdict,
};
use crate::domain::Health;

pub struct Reconciled {
    pub state: RolloutState,
    pub events: Vec<RolloutEvent>,
    pub decisions: HashMap<String, AgentDecision>,
    /// Each group's health verdict as of this pass (`None` where none was judged): what the
    /// reconciler shows live; the state keeps the one of the last transition.
    pub verdicts: Vec<Option<GroupVerdict>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    present: u64,
    /// On the target, not unhealthy, and watched for the verdict's observation time.
    on_target_healthy: u64,
    failed: u64,
}

/// Agents by group index, each group in the rollout's stable order.
fn members_of<'a>(spec: &RolloutSpec, fleet: &'a [AgentSnapshot]) -> Vec<Vec<&'a AgentSnapshot>> {
    let mut members: Vec<Vec<&AgentSnapshot>> = vec![Vec::new(); spec.groups.len()];
    for agent in fleet {
        members[spec.group_of(&agent.group)].push(agent);
    }
    for group in &mut members {
        // Cached: the rank hashes two ids, once per agent rather than per comparison.
        group.sort_by_cached_key(|a| agent_rank(spec.rank_seed(), &a.agent_id));
    }
    members
}

/// Runs one step at `now_ms`. A paused rollout makes no transition and moves nobody.
pub fn reconcile(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &RolloutState,
    fleet: &[AgentSnapshot],
    control_plane: Option<&Version>,
) -> Reconciled {
    let members = members_of(spec, fleet);
    let mut next = state.clone();
    let mut events = Vec::new();
    let mut verdicts = vec![None; spec.groups.len()];
    if !state.paused {
        let refused =
            control_plane.and_then(|cp| check_constraints(&spec.target_version, cp).err());
        match refused {
            // The control plane moved under the rollout: its target may no longer be served.
            Some(violation) => {
                halt_unfinished(spec, &mut next, &violation.to_string(), &mut events)
            }
            None => {
                for (index, group_members) in members.iter().enumerate() {
                    verdicts[index] =
                        transition(now_ms, spec, &mut next, index, group_members, &mut events);
                    assign_slots(now_ms, spec, &mut next, index, group_members);
                }
                stratum_gate::stop_the_rest(spec, state, &mut next, &mut events);
            }
        }
    }
    next.stamp_changes(state, now_ms);
    let decisions = decide_each(now_ms, spec, &next, fleet, control_plane);
    Reconciled {
        state: next,
        events,
        decisions,
        verdicts,
    }
}

/// Every agent's decision under `state` exactly as it stands: no transition. What a verb's
/// committed state means for directives before the next pass moves anything.
pub fn decisions(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &RolloutState,
    fleet: &[AgentSnapshot],
    control_plane: Option<&Version>,
) -> HashMap<String, AgentDecision> {
    decide_each(now_ms, spec, state, fleet, control_plane)
}

fn decide_each(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &RolloutState,
    fleet: &[AgentSnapshot],
    control_plane: Option<&Version>,
) -> HashMap<String, AgentDecision> {
    fleet
        .iter()
        .map(|agent| {
            let index = spec.group_of(&agent.group);
            let decision = decide(now_ms, spec, state, index, agent, control_plane);
            (agent.agent_id.clone(), decision)
        })
        .collect()
}

/// Halts every group that has not finished, saying why.
fn halt_unfinished(
    spec: &RolloutSpec,
    state: &mut RolloutState,
    why: &str,
    events: &mut Vec<RolloutEvent>,
) {
    for (group_spec, group) in spec.groups.iter().zip(&mut state.groups) {
        if matches!(
            group.phase,
            Phase::Unstarted | Phase::Canary | Phase::Active
        ) {
            let before = group.phase;
            group.phase = Phase::Halted;
            group.note = format!("the target is no longer allowed: {why}");
            events.push(RolloutEvent {
                group: Some(group_spec.name.clone()),
                text: format!(
                    "group {}: {} → halted ({})",
                    group_spec.name,
                    before.as_str(),
                    group.note
                ),
            });
        }
    }
}

fn on_target(spec: &RolloutSpec, agent: &AgentSnapshot) -> bool {
    agent.version.as_ref() == Some(&spec.target_version)
}

/// A group's counts over the agents there when it started (all, before it starts); failures
/// only those reported after the start, when its agents could have been sent the target.
fn counts(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &RolloutState,
    members: &[&AgentSnapshot],
    started_ms: Option<i64>,
) -> Counts {
    let mut counts = Counts::default();
    // A held stratum's agents neither complete the group nor halt it again.
    for agent in members
        .iter()
        .filter(|a| !a.pinned && there_at_start(a, started_ms) && !state.holds(&a.stratum))
    {
        counts.present += 1;
        if on_target(spec, agent)
            && agent.health != Health::Unhealthy
            && health_gate::watched_long_enough(now_ms, spec, agent)
        {
            counts.on_target_healthy += 1;
        }
        let from = strata::failures_count_from(&state.released_strata, &agent.stratum, started_ms);
        if failed_since(agent, from) {
            counts.failed += 1;
        }
    }
    counts
}

/// Whether `agent` was there when its group started (or the group has not started).
fn there_at_start(agent: &AgentSnapshot, started_ms: Option<i64>) -> bool {
    started_ms.is_none_or(|start| agent.joined_ms <= start)
}

/// Whether `agent` reported failing the target after `started_ms` (never before a start).
fn failed_since(agent: &AgentSnapshot, started_ms: Option<i64>) -> bool {
    matches!((agent.failed_at_ms, started_ms), (Some(at), Some(start)) if at >= start)
}

pub(super) fn window_open(now_ms: i64, spec: &RolloutSpec, index: usize) -> bool {
    spec.immediate
        || spec.groups[index]
            .window()
            .window_containing(now_ms)
            .is_some()
}

/// Whether group `index` may start by order and waits (its own window aside).
pub(super) fn turn_has_come(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &RolloutState,
    index: usize,
) -> bool {
    if index == 0 {
        return true;
    }
    let previous = &state.groups[index - 1];
    let wait = i64::from(spec.groups[index].wait_hours) * HOUR_MS;
    match spec.strategy {
        Strategy::HaltOnError => {
            previous.phase == Phase::Done
                && previous.done_ms.is_some_and(|done| now_ms >= done + wait)
        }
        // A halt stops the whole rollout (halt scope `rollout`): no group starts after one.
        Strategy::TimeBased => {
            previous
                .started_ms
                .is_some_and(|started| now_ms >= started + wait)
                && (spec.strata.halt_scope != drover_rules::HaltScope::Rollout
                    || !state.groups[..index]
                        .iter()
                        .any(|g| g.phase == Phase::Halted))
        }
    }
}

fn startable(now_ms: i64, spec: &RolloutSpec, state: &RolloutState, index: usize) -> bool {
    state.groups[index].force_start
        || (turn_has_come(now_ms, spec, state, index) && window_open(now_ms, spec, index))
}

fn canary_candidate(spec: &RolloutSpec, agent: &AgentSnapshot) -> bool {
    !agent.pinned && agent.connected && agent.health == Health::Healthy && !on_target(spec, agent)
}

/// Canaries a starting group needs: `canary_count`, capped by the agents left to update.
fn canaries_needed(
    spec: &RolloutSpec,
    group: &GroupState,
    held: &[strata::HeldStratum],
    index: usize,
    members: &[&AgentSnapshot],
) -> usize {
    if group.skip_canaries {
        return 0;
    }
    let left = members
        .iter()
        .filter(|a| !a.pinned && !on_target(spec, a) && !is_held(held, &a.stratum))
        .count();
    left.min(spec.groups[index].canary_count as usize)
}

/// A startable group still unstarted after its transition is waiting for canaries.
fn waiting_for_canaries(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &RolloutState,
    index: usize,
) -> bool {
    state.groups[index].phase == Phase::Unstarted && startable(now_ms, spec, state, index)
}

fn transition(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &mut RolloutState,
    index: usize,
    members: &[&AgentSnapshot],
    events: &mut Vec<RolloutEvent>,
) -> Option<GroupVerdict> {
    let group_spec = &spec.groups[index];
    stratum_gate::hold_failing(now_ms, spec, state, index, members, events);
    let held = state.held_strata.clone();
    let released = state.released_strata.clone();
    let counts = counts(now_ms, spec, state, members, state.groups[index].started_ms);
    let startable = startable(now_ms, spec, state, index);
    let mut verdict = match state.groups[index].phase {
        Phase::Canary | Phase::Active => {
            health_gate::group_verdict(spec, members, state.groups[index].started_ms)
        }
        _ => None,
    };
    let failed_verdict = verdict
        .as_ref()
        .filter(|v| v.outcome == VerdictOutcome::Fail)
        .map(|v| format!("health verdict failed: {}", v.describe()));
    let mut pause = None;
    let group = &mut state.groups[index];
    let before = group.phase;
    match group.phase {
        Phase::Unstarted if startable => {
            let needed = canaries_needed(spec, group, &held, index, members);
            // Only agents that can prove the target right now count; too few means wait,
            // never skip to the whole group (agents may not have reconnected yet).
            let picked = if needed == 0 {
                Ok(Vec::new())
            } else {
                stratum_gate::pick(spec, &held, members, needed)
            };
            if let Err(waiting) = picked {
                group.note = waiting;
            } else {
                let candidates = picked.unwrap_or_default();
                group.started_ms = Some(now_ms);
                group.initial_count = counts.present;
                group.force_start = false;
                if needed > 0 {
                    group.phase = Phase::Canary;
                    group.note = format!("canaries: {}", candidates.join(", "));
                    group.canaries = candidates;
                } else {
                    group.phase = Phase::Active;
                    group.note = String::new();
                }
            }
        }
        Phase::Canary => {
            // A canary of a held stratum proves nothing for the others, and blocks nobody.
            let canaries: Vec<&&AgentSnapshot> = members
                .iter()
                .filter(|a| group.canaries.contains(&a.agent_id) && !is_held(&held, &a.stratum))
                .collect();
            let started_ms = group.started_ms;
            let failed = canaries.iter().find(|a| {
                failed_since(
                    a,
                    strata::failures_count_from(&released, &a.stratum, started_ms),
                )
            });
            if let Some(failed) = failed {
                group.phase = Phase::Halted;
                group.note = format!(
                    "canary {}{} failed to update to {}",
                    failed.agent_id,
                    strata::named(&failed.stratum),
                    spec.target_version
                );
            } else if let Some(why) = failed_verdict {
                group.phase = Phase::Halted;
                group.note = why;
            } else if canaries.is_empty() && !group.canaries.is_empty() {
                // Every canary was in a stratum now held: nothing has proven the target for
                // the others yet, so new canaries are picked outside the held strata.
                let needed = canaries_needed(spec, group, &held, index, members);
                let picked = match needed {
                    0 => Ok(Vec::new()),
                    _ => stratum_gate::pick(spec, &held, members, needed),
                };
                match picked {
                    Ok(fresh) if !fresh.is_empty() => {
                        group.note = format!(
                            "canaries picked again outside the held strata: {}",
                            fresh.join(", ")
                        );
                        group.canaries = fresh;
                    }
                    Ok(_) => {
                        group.phase = Phase::Active;
                        group.note = "no agent left to update outside the held strata".into();
                    }
                    Err(waiting) => group.note = waiting,
                }
            } else if canaries
                .iter()
                .all(|a| on_target(spec, a) && a.health != Health::Unhealthy)
            {
                group.phase = Phase::Active;
                group.note = "canaries healthy on the target".into();
            }
        }
        Phase::Active => {
            if counts.failed >= u64::from(spec.failure_threshold) {
                group.phase = Phase::Halted;
                group.note = format!(
                    "{} agent(s) failed to update (threshold {}){}",
                    counts.failed,
                    spec.failure_threshold,
                    stratum_gate::failures_named(spec, &held, &released, members, group.started_ms)
                );
            } else if let Some(why) = failed_verdict {
                group.phase = Phase::Halted;
                group.note = why;
            } else if counts.on_target_healthy * 100
                >= u64::from(spec.done_threshold_pct) * counts.present
            {
                let reached = *group.threshold_ms.get_or_insert(now_ms);
                let bake_end = health_gate::bake_ends(spec, reached);
                let outcome = verdict.as_ref().map(|v| v.outcome);
                if now_ms < bake_end {
                    if reached == now_ms {
                        group.note = format!(
                            "bakes until {} before it is done",
                            drover_rules::time::rfc3339(bake_end)
                        );
                    }
                } else if outcome == Some(VerdictOutcome::Pending)
                    && now_ms < bake_end.saturating_add(health_gate::EVIDENCE_GRACE_MS)
                {
                    // Agents that just installed have not sent their samples yet: wait for
                    // them a while rather than call it inconclusive.
                    if !group.note.starts_with("waits for health samples") {
                        group.note = "waits for health samples from the updated agents".into();
                    }
                } else if outcome == Some(VerdictOutcome::Pending) {
                    let what = verdict.as_ref().map(|v| v.describe()).unwrap_or_default();
                    group.note = format!(
                        "health verdict inconclusive: {what}; the rollout pauses (mark the group \
                         done to accept it, or roll back)"
                    );
                    pause = Some(format!("group {}: {}", group_spec.name, group.note));
                    if let Some(v) = &mut verdict {
                        v.outcome = VerdictOutcome::Inconclusive;
                    }
                } else {
                    group.phase = Phase::Done;
                    group.done_ms = Some(now_ms);
                    let judged = verdict
                        .as_ref()
                        .map(|v| format!("; health verdict {}: {}", v.outcome, v.describe()))
                        .unwrap_or_default();
                    group.note = format!(
                        "{} of {} on the target and healthy{judged}",
                        counts.on_target_healthy, counts.present
                    );
                }
            }
        }
        _ => {}
    }
    // The verdict as it stood at a transition, or when its outcome changed: what `rollout
    // show` and the dashboard explain (not every pass, which would commit every pass).
    if let Some(verdict) = &verdict
        && (group.phase != before
            || pause.is_some()
            || group.verdict.as_ref().map(|v| v.outcome) != Some(verdict.outcome))
    {
        group.verdict = Some(verdict.clone());
    }
    if let Some(text) = pause {
        state.paused = true;
        events.push(RolloutEvent {
            group: Some(group_spec.name.clone()),
            text,
        });
        return verdict;
    }
    let group = &mut state.groups[index];
    if group.phase != before {
        let note = if group.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", group.note)
        };
        events.push(RolloutEvent {
            group: Some(group_spec.name.clone()),
            text: format!(
                "group {}: {} → {}{note}",
                group_spec.name,
                before.as_str(),
                group.phase.as_str()
            ),
        });
    }
    verdict
}

mod decide;
mod health_gate;
mod slots;
use slots::assign_slots;
mod stratum_gate;
use decide::decide;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod liveness_tests;
#[cfg(test)]
mod property_tests;
#[cfg(test)]
mod stop_tests;
#[cfg(test)]
mod strata_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod trust_tests;
#[cfg(test)]
mod verdict_tests;
