//! Strata in a reconcile step: canaries that cover every stratum big enough to matter, a
//! failure that names its stratum, and what it stops: its stratum only (halt scope
//! `stratum`), or the whole rollout (`rollout`, the default).

use drover_rules::HaltScope;

use super::{
    AgentSnapshot, Phase, RolloutEvent, RolloutSpec, RolloutState, canary_candidate, failed_since,
    on_target, there_at_start,
};
use crate::rollout::strata::{self, HeldStratum, is_held};

/// A starting group's canaries, or why it waits (`strata::pick_canaries`).
pub(super) fn pick(
    spec: &RolloutSpec,
    held: &[HeldStratum],
    members: &[&AgentSnapshot],
    needed: usize,
) -> Result<Vec<String>, String> {
    let left: Vec<&AgentSnapshot> = members
        .iter()
        .copied()
        .filter(|a| !a.pinned && !on_target(spec, a))
        .collect();
    let candidates: Vec<&AgentSnapshot> = left
        .iter()
        .copied()
        .filter(|a| canary_candidate(spec, a))
        .collect();
    strata::pick_canaries(&spec.strata, held, &left, &candidates, needed)
}

/// Under halt scope `stratum`, holds each stratum of group `index` whose failures reached
/// the rollout's threshold (a single failed canary does: canaries are there to fail alone),
/// with an event naming it. The group itself then goes on with its other strata.
pub(super) fn hold_failing(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &mut RolloutState,
    index: usize,
    members: &[&AgentSnapshot],
    events: &mut Vec<RolloutEvent>,
) {
    if !spec.strata.enabled() || spec.strata.halt_scope != HaltScope::Stratum {
        return;
    }
    let group = &state.groups[index];
    // A done group too: its last agents, a released stratum's among them, still install.
    if !matches!(group.phase, Phase::Canary | Phase::Active | Phase::Done) {
        return;
    }
    let started_ms = group.started_ms;
    let released = &state.released_strata;
    let failed_here = |a: &AgentSnapshot| {
        failed_since(
            a,
            strata::failures_count_from(released, &a.stratum, started_ms),
        )
    };
    let mut failing: Vec<(String, String)> = Vec::new();
    if group.phase == Phase::Canary {
        for canary in members
            .iter()
            .filter(|a| group.canaries.contains(&a.agent_id) && failed_here(a))
        {
            let note = format!(
                "canary {} failed to update to {}",
                canary.agent_id, spec.target_version
            );
            failing.push((canary.stratum.clone(), note));
        }
    }
    let mut failed: std::collections::BTreeMap<&str, u64> = Default::default();
    for agent in members
        .iter()
        .filter(|a| !a.pinned && there_at_start(a, started_ms) && failed_here(a))
    {
        *failed.entry(agent.stratum.as_str()).or_default() += 1;
    }
    for (stratum, count) in failed {
        if count >= u64::from(spec.failure_threshold) {
            let note = format!(
                "{count} agent(s) failed to update (threshold {})",
                spec.failure_threshold
            );
            failing.push((stratum.to_string(), note));
        }
    }
    let group_name = &spec.groups[index].name;
    for (stratum, note) in failing {
        if stratum.is_empty() || is_held(&state.held_strata, &stratum) {
            continue;
        }
        events.push(RolloutEvent {
            group: Some(group_name.clone()),
            text: format!(
                "stratum {stratum} held in group {group_name}: {note}; its agents install \
                 nothing more, the other strata go on"
            ),
        });
        state.held_strata.push(HeldStratum {
            stratum,
            since_ms: now_ms,
            note: format!("group {group_name}: {note}"),
        });
    }
}

/// `; by stratum: os=debian: 3` for a halt's note, or nothing without strata.
pub(super) fn failures_named(
    spec: &RolloutSpec,
    held: &[HeldStratum],
    released: &[HeldStratum],
    members: &[&AgentSnapshot],
    started_ms: Option<i64>,
) -> String {
    if !spec.strata.enabled() {
        return String::new();
    }
    let failed = members.iter().copied().filter(|a| {
        !a.pinned
            && there_at_start(a, started_ms)
            && failed_since(
                a,
                strata::failures_count_from(released, &a.stratum, started_ms),
            )
            && !is_held(held, &a.stratum)
    });
    format!("; by stratum: {}", strata::failures_by_stratum(failed))
}

/// Under halt scope `rollout`, the name of a halted group: it stops the whole rollout, so
/// even a done group's last agents wait.
pub(super) fn rollout_halted_by<'a>(
    spec: &'a RolloutSpec,
    state: &RolloutState,
) -> Option<&'a str> {
    if spec.strata.halt_scope != HaltScope::Rollout {
        return None;
    }
    spec.groups
        .iter()
        .zip(&state.groups)
        .find(|(_, g)| g.phase == Phase::Halted)
        .map(|(s, _)| s.name.as_str())
}

/// Under halt scope `rollout`, a group that halted in this step halts every other group
/// that is updating, so nothing of the rollout moves until an admin acts. (Unstarted groups
/// wait anyway: `turn_has_come` lets none start after a halted one.)
pub(super) fn stop_the_rest(
    spec: &RolloutSpec,
    before: &RolloutState,
    next: &mut RolloutState,
    events: &mut Vec<RolloutEvent>,
) {
    if spec.strata.halt_scope != HaltScope::Rollout {
        return;
    }
    let newly_halted = before
        .groups
        .iter()
        .zip(&next.groups)
        .position(|(b, n)| b.phase != Phase::Halted && n.phase == Phase::Halted);
    let Some(first) = newly_halted else { return };
    let cause = spec.groups[first].name.clone();
    for (group_spec, group) in spec.groups.iter().zip(&mut next.groups) {
        if matches!(group.phase, Phase::Canary | Phase::Active) {
            let was = group.phase;
            group.phase = Phase::Halted;
            group.note = format!("halted with group {cause}, which failed");
            events.push(RolloutEvent {
                group: Some(group_spec.name.clone()),
                text: format!(
                    "group {}: {} → halted ({})",
                    group_spec.name,
                    was.as_str(),
                    group.note
                ),
            });
        }
    }
}
