//! One agent's decision in a reconcile step: the target or a hold, with its reason code.

use drover_rules::{ReasonCode, check_constraints};
use semver::Version;

use super::*;

/// What `agent` (of group `index`) is told this step.
pub(super) fn decide(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &RolloutState,
    index: usize,
    agent: &AgentSnapshot,
    control_plane: Option<&Version>,
) -> AgentDecision {
    let group_spec = &spec.groups[index];
    let group = &state.groups[index];
    let allowed =
        |version: &Version| control_plane.is_some_and(|cp| check_constraints(version, cp).is_ok());
    // Holding means "keep what you have": no target at all. Never the version this snapshot
    // last saw: the agent may have moved since (an install finishing, a report not yet
    // stored), and naming the old version would send it back.
    let hold = |reason: ReasonCode, detail: String| AgentDecision {
        target: None,
        reason,
        detail,
        urgent: false,
    };
    let serve = |version: &Version, reason: ReasonCode, detail: String| {
        if allowed(version) {
            AgentDecision {
                target: Some(version.clone()),
                reason,
                detail,
                urgent: false,
            }
        } else {
            let why = match control_plane {
                Some(cp) => check_constraints(version, cp)
                    .err()
                    .map(|v| v.reason_code())
                    .unwrap_or(ReasonCode::NoControlPlaneVersion),
                None => ReasonCode::NoControlPlaneVersion,
            };
            hold(
                why,
                format!("{version} is not allowed by the control-plane version"),
            )
        }
    };
    let target = &spec.target_version;
    if agent.pinned {
        return hold(
            ReasonCode::Pinned,
            "pinned by an admin: it stays on its version".into(),
        );
    }
    if group.phase == Phase::Rolledback {
        let mut decision = serve(
            &spec.start_version,
            ReasonCode::Rolledback,
            format!(
                "group {} was rolled back to {}{}",
                group_spec.name,
                spec.start_version,
                if group.rollback_urgent {
                    ", at once"
                } else {
                    " in the agents' maintenance windows"
                }
            ),
        );
        decision.urgent = group.rollback_urgent && decision.reason == ReasonCode::Rolledback;
        return decision;
    }
    if state.paused {
        return hold(
            ReasonCode::RolloutPaused,
            "the rollout is paused; nobody moves until it resumes".into(),
        );
    }
    if on_target(spec, agent) {
        return serve(
            target,
            ReasonCode::OnTarget,
            format!("already runs {target}"),
        );
    }
    if let Some(held) = state
        .held_strata
        .iter()
        .find(|h| h.stratum == agent.stratum)
    {
        return hold(
            ReasonCode::StratumHeld,
            format!(
                "its stratum {} is held ({}); the other strata go on",
                held.stratum, held.note
            ),
        );
    }
    let halted_by = super::stratum_gate::rollout_halted_by(spec, state);
    match group.phase {
        Phase::Unstarted if waiting_for_canaries(now_ms, spec, state, index) => hold(
            ReasonCode::CanaryWaiting,
            format!(
                "group {} {} before anyone updates (`droverctl rollout start-group \
                 --skip-canaries` starts it without them)",
                group_spec.name, group.note
            ),
        ),
        Phase::Unstarted => {
            let detail = if turn_has_come(now_ms, spec, state, index) {
                format!(
                    "group {} waits for its window ({})",
                    group_spec.name,
                    group_spec.window()
                )
            } else {
                format!("group {} waits for the group before it", group_spec.name)
            };
            hold(ReasonCode::GroupUnstarted, detail)
        }
        Phase::Canary if group.canaries.contains(&agent.agent_id) => serve(
            target,
            ReasonCode::Canary,
            format!("chosen as a canary of group {}", group_spec.name),
        ),
        Phase::Canary => hold(
            ReasonCode::CanaryPending,
            format!("group {} waits for its canaries", group_spec.name),
        ),
        Phase::Halted => hold(
            ReasonCode::GroupHalted,
            format!("group {} halted: {}", group_spec.name, group.note),
        ),
        Phase::Active if !there_at_start(agent, group.started_ms) => hold(
            ReasonCode::JoinedAfterStart,
            format!(
                "enrolled after group {} started; it updates once the group is done",
                group_spec.name
            ),
        ),
        Phase::Done if halted_by.is_some() => hold(
            ReasonCode::GroupHalted,
            format!(
                "group {} halted, which stops the whole rollout; group {} is done and its last \
                 agents wait",
                halted_by.unwrap_or_default(),
                group_spec.name
            ),
        ),
        Phase::Done | Phase::Active if agent.failed_at_ms.is_some() => hold(
            ReasonCode::UpdateFailed,
            format!("the update to {target} failed on this agent"),
        ),
        // A done group's stragglers catch up under the same cap while the rollout runs; once
        // it has finished the channel serves the target to all of them, as it will then.
        Phase::Done
            if spec.max_in_flight > 0
                && !state.groups.iter().all(|g| g.phase == Phase::Done)
                && !group.in_flight.contains(&agent.agent_id) =>
        {
            hold(
                ReasonCode::MaxInFlight,
                format!(
                    "group {} is done; its last agents catch up {} at a time",
                    group_spec.name, spec.max_in_flight
                ),
            )
        }
        Phase::Done => serve(
            target,
            ReasonCode::GroupDone,
            format!("group {} is done; catching up", group_spec.name),
        ),
        Phase::Active if !group.ignore_window && !window_open(now_ms, spec, index) => hold(
            ReasonCode::OutsideWindow,
            format!(
                "group {} is active; its window ({}) is closed",
                group_spec.name,
                group_spec.window()
            ),
        ),
        Phase::Active => {
            // Only a committed slot lets an agent go: never a guess from this snapshot.
            if spec.max_in_flight > 0 && !group.in_flight.contains(&agent.agent_id) {
                return hold(
                    ReasonCode::MaxInFlight,
                    format!(
                        "{} agents of the group update at a time",
                        spec.max_in_flight
                    ),
                );
            }
            serve(
                target,
                ReasonCode::GroupActive,
                format!("group {} is updating to {target}", group_spec.name),
            )
        }
        Phase::Rolledback => unreachable!("handled above"),
    }
}
