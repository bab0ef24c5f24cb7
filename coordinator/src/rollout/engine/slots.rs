//! Install slots (`max_in_flight`): granted by the reconciler and committed with the state,
//! so the cap holds across replicas and restarts.

use super::{
    AgentSnapshot, Phase, RolloutSpec, RolloutState, is_held, on_target, stratum_gate,
    there_at_start, window_open,
};

/// Gives back the slots of agents that are done with them (on the target, failed, pinned,
/// gone) and grants free ones to the next connected agents in the group's order, while the
/// group may update: active in its window, or done (its last agents catching up).
pub(super) fn assign_slots(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &mut RolloutState,
    index: usize,
    members: &[&AgentSnapshot],
) {
    // A halt stops the whole rollout (scope `rollout`): a done group's stragglers wait too.
    let halted_anywhere = stratum_gate::rollout_halted_by(spec, state).is_some();
    let RolloutState {
        groups,
        held_strata: held,
        ..
    } = state;
    let group = &mut groups[index];
    if spec.max_in_flight == 0 || group.phase == Phase::Rolledback {
        group.in_flight.clear();
        return;
    }
    // Slots outlive a halt: their agents may still be installing when the group restarts.
    let started_ms = group.started_ms;
    let needs_slot = |a: &AgentSnapshot| {
        !a.pinned
            && !is_held(held, &a.stratum)
            && !on_target(spec, a)
            && a.failed_at_ms.is_none()
            && (group.phase == Phase::Done || there_at_start(a, started_ms))
    };
    group
        .in_flight
        .retain(|id| members.iter().any(|a| a.agent_id == *id && needs_slot(a)));
    let may_grant = match group.phase {
        Phase::Active => group.ignore_window || window_open(now_ms, spec, index),
        Phase::Done => !halted_anywhere,
        _ => false,
    };
    if !may_grant {
        return;
    }
    // Only to agents that can hear it now: a slot held by one that is away holds up others.
    let free = (spec.max_in_flight as usize).saturating_sub(group.in_flight.len());
    let next: Vec<String> = members
        .iter()
        .filter(|a| a.connected && needs_slot(a) && !group.in_flight.contains(&a.agent_id))
        .take(free)
        .map(|a| a.agent_id.clone())
        .collect();
    group.in_flight.extend(next);
}
