//! Unit and property tests of the engine, with an injected clock and random fleets.

use drover_rules::ReasonCode;
use std::collections::{HashMap, HashSet};

use drover_rules::Weekdays;
use semver::Version;

use super::*;
use crate::rollout::{GroupSpec, Strategy};

pub(super) const MONDAY: i64 = 1_795_392_000_000; // 2026-11-23T00:00Z

pub(super) fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

pub(super) fn group(name: &str, canaries: u32, wait_hours: u32) -> GroupSpec {
    GroupSpec {
        name: name.into(),
        days: Weekdays::ALL,
        start_hour: 2,
        window_hours: 4,
        wait_hours,
        canary_count: canaries,
    }
}

pub(super) fn spec(groups: Vec<GroupSpec>) -> RolloutSpec {
    RolloutSpec {
        rollout_id: "r-1".into(),
        channel: "stable".into(),
        start_version: v("1.0.0"),
        target_version: v("1.1.0"),
        strategy: Strategy::HaltOnError,
        groups,
        done_threshold_pct: 90,
        failure_threshold: 1,
        max_in_flight: 0,
        immediate: false,
        verdict: crate::rollout::verdict::VerdictSpec::off(),
        strata: crate::rollout::strata::StrataSpec::off(),
        canary_seed: String::new(),
    }
}

pub(super) fn agent(id: &str, group: &str) -> AgentSnapshot {
    AgentSnapshot {
        agent_id: id.into(),
        group: group.into(),
        version: Some(v("1.0.0")),
        health: Health::Healthy,
        connected: true,
        pinned: false,
        failed_at_ms: None,
        joined_ms: 0,
        updated_at_ms: None,
        track: None,
        stratum: String::new(),
    }
}

/// Agents served the target move to it (or fail, if their id is in `failing`).
pub(super) fn apply(
    now_ms: i64,
    fleet: &mut [AgentSnapshot],
    decisions: &HashMap<String, AgentDecision>,
    failing: &HashSet<String>,
) {
    for agent in fleet {
        let Some(target) = decisions[&agent.agent_id].target.clone() else {
            continue;
        };
        if agent.version.as_ref() != Some(&target) {
            if failing.contains(&agent.agent_id) {
                agent.failed_at_ms = Some(now_ms);
            } else {
                agent.version = Some(target);
            }
        }
    }
}

#[test]
fn a_good_release_moves_group_by_group_honouring_windows_and_waits() {
    let spec = spec(vec![group("dev", 1, 0), group("prod", 2, 24)]);
    let mut fleet: Vec<_> = (0..4).map(|i| agent(&format!("d{i}"), "dev")).collect();
    fleet.extend((0..6).map(|i| agent(&format!("p{i}"), "prod")));
    fleet.push(agent("stray", "elsewhere")); // unlisted group: belongs to the last (prod)
    let cp = v("1.1.0");
    let mut state = RolloutState::new(&spec);

    // 01:00: before dev's window (02:00–06:00): nothing moves.
    let out = reconcile(MONDAY + HOUR_MS, &spec, &state, &fleet, Some(&cp));
    assert_eq!(out.state.groups[0].phase, Phase::Unstarted);
    assert_eq!(out.decisions["d0"].reason, ReasonCode::GroupUnstarted);
    assert_eq!(out.decisions["d0"].target, None, "held: keep what you have");

    let mut now = MONDAY + 2 * HOUR_MS;
    for _ in 0..6 {
        let out = reconcile(now, &spec, &state, &fleet, Some(&cp));
        state = out.state;
        apply(now, &mut fleet, &out.decisions, &HashSet::new());
    }
    assert_eq!(state.groups[0].phase, Phase::Done);
    let dev_done = state.groups[0].done_ms.unwrap();
    assert_eq!(
        state.groups[1].phase,
        Phase::Unstarted,
        "prod waits 24 h after dev"
    );
    let out = reconcile(dev_done + 23 * HOUR_MS, &spec, &state, &fleet, Some(&cp));
    assert_eq!(out.state.groups[1].phase, Phase::Unstarted);
    assert_eq!(out.decisions["p0"].reason, ReasonCode::GroupUnstarted);

    now = dev_done + 24 * HOUR_MS; // Tuesday 02:00: wait over and window open
    for _ in 0..6 {
        let out = reconcile(now, &spec, &state, &fleet, Some(&cp));
        state = out.state;
        apply(now, &mut fleet, &out.decisions, &HashSet::new());
    }
    assert!(state.finished());
    assert!(
        fleet.iter().all(|a| a.version == Some(v("1.1.0"))),
        "the stray agent went with the last group"
    );
}

#[test]
fn a_failing_canary_halts_the_group_and_nobody_else_is_touched() {
    let spec = spec(vec![group("prod", 2, 0)]);
    let fleet: Vec<_> = (0..10).map(|i| agent(&format!("a{i}"), "prod")).collect();
    let cp = v("1.1.0");
    let out = reconcile(
        MONDAY + 3 * HOUR_MS,
        &spec,
        &RolloutState::new(&spec),
        &fleet,
        Some(&cp),
    );
    let canaries = out.state.groups[0].canaries.clone();
    assert_eq!(canaries.len(), 2);
    let served: Vec<_> = out
        .decisions
        .iter()
        .filter(|(_, d)| d.target == Some(v("1.1.0")))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(served.len(), 2);
    // The same inputs choose the same canaries.
    let again = reconcile(
        MONDAY + 3 * HOUR_MS,
        &spec,
        &RolloutState::new(&spec),
        &fleet,
        Some(&cp),
    );
    assert_eq!(again.state.groups[0].canaries, canaries);

    let mut fleet = fleet;
    apply(
        MONDAY + 3 * HOUR_MS,
        &mut fleet,
        &out.decisions,
        &canaries.iter().take(1).cloned().collect(),
    );
    let halted = reconcile(MONDAY + 3 * HOUR_MS, &spec, &out.state, &fleet, Some(&cp));
    assert_eq!(halted.state.groups[0].phase, Phase::Halted);
    assert!(halted.events[0].text.contains("canary → halted"));
    assert!(
        halted
            .decisions
            .values()
            .all(|d| d.target != Some(v("1.1.0")) || d.reason == ReasonCode::OnTarget)
    );

    let mut rolled = halted.state.clone();
    rolled.groups[0].phase = Phase::Rolledback;
    let back = reconcile(MONDAY + 3 * HOUR_MS, &spec, &rolled, &fleet, Some(&cp));
    assert!(
        back.decisions
            .values()
            .all(|d| d.target == Some(v("1.0.0")) && d.reason == ReasonCode::Rolledback)
    );
}

#[test]
fn a_group_waits_for_connected_healthy_canaries_and_never_skips_them() {
    let spec = spec(vec![group("prod", 2, 0)]);
    let mut fleet: Vec<_> = (0..10).map(|i| agent(&format!("a{i}"), "prod")).collect();
    for a in &mut fleet {
        a.connected = false; // a restarted coordinator: nobody has reconnected yet
    }
    let cp = v("1.1.0");
    let now = MONDAY + 3 * HOUR_MS;
    let out = reconcile(now, &spec, &RolloutState::new(&spec), &fleet, Some(&cp));
    let waiting = &out.state.groups[0];
    assert_eq!(waiting.phase, Phase::Unstarted);
    assert!(waiting.canaries.is_empty() && waiting.started_ms.is_none());
    assert!(
        waiting.note.contains("waits for 2 connected healthy"),
        "{}",
        waiting.note
    );
    assert!(out.events.is_empty());
    for decision in out.decisions.values() {
        assert_eq!(decision.reason, ReasonCode::CanaryWaiting);
        assert_eq!(decision.target, None, "held: keep what you have");
        assert!(
            decision.detail.contains("2 connected healthy"),
            "{}",
            decision.detail
        );
    }
    // Waiting again changes nothing and says nothing.
    let again = reconcile(now + HOUR_MS, &spec, &out.state, &fleet, Some(&cp));
    assert_eq!(again.state, out.state);
    assert!(again.events.is_empty());

    // One healthy agent and one of unknown health are not enough.
    fleet[0].connected = true;
    fleet[1].connected = true;
    fleet[1].health = Health::Unknown;
    let still = reconcile(now, &spec, &out.state, &fleet, Some(&cp));
    assert_eq!(still.state, out.state);
    assert!(still.events.is_empty());

    // The second connected healthy agent starts the canaries: exactly those two.
    fleet[2].connected = true;
    let started = reconcile(now, &spec, &still.state, &fleet, Some(&cp));
    let group = &started.state.groups[0];
    assert_eq!(group.phase, Phase::Canary);
    let mut canaries = group.canaries.clone();
    canaries.sort();
    assert_eq!(canaries, ["a0", "a2"]);
    assert_eq!(started.events.len(), 1);
    assert!(started.events[0].text.contains("unstarted → canary"));

    // Outside the window it is simply unstarted, not waiting for canaries.
    let closed = reconcile(MONDAY + 8 * HOUR_MS, &spec, &out.state, &fleet, Some(&cp));
    assert_eq!(closed.decisions["a5"].reason, ReasonCode::GroupUnstarted);
}

#[test]
fn canaries_needed_are_capped_by_agents_left_and_an_admin_may_skip_them() {
    let spec = spec(vec![group("prod", 3, 0)]);
    let mut fleet: Vec<_> = (0..4).map(|i| agent(&format!("a{i}"), "prod")).collect();
    fleet[0].version = Some(v("1.1.0"));
    fleet[1].version = Some(v("1.1.0"));
    fleet[2].pinned = true;
    fleet[3].connected = true;
    let cp = v("1.1.0");
    let now = MONDAY + 3 * HOUR_MS;
    // One agent is left to update, so one canary suffices.
    let out = reconcile(now, &spec, &RolloutState::new(&spec), &fleet, Some(&cp));
    assert_eq!(out.state.groups[0].phase, Phase::Canary);
    assert_eq!(out.state.groups[0].canaries, ["a3"]);

    // Nobody connected: only `skip_canaries` (set by an admin) goes straight to active.
    fleet[3].connected = false;
    let mut state = RolloutState::new(&spec);
    let out = reconcile(now, &spec, &state, &fleet, Some(&cp));
    assert_eq!(out.state.groups[0].phase, Phase::Unstarted);
    state.groups[0].skip_canaries = true;
    let out = reconcile(now, &spec, &state, &fleet, Some(&cp));
    assert_eq!(out.state.groups[0].phase, Phase::Active);
    assert_eq!(out.decisions["a3"].target, Some(v("1.1.0")));

    // Nobody left to update: no canaries needed.
    fleet[3].version = Some(v("1.1.0"));
    let out = reconcile(now, &spec, &RolloutState::new(&spec), &fleet, Some(&cp));
    assert_ne!(out.state.groups[0].phase, Phase::Unstarted);
}

#[test]
fn pins_caps_and_pauses() {
    let mut spec = spec(vec![group("prod", 0, 0)]);
    spec.max_in_flight = 2;
    let mut fleet: Vec<_> = (0..6).map(|i| agent(&format!("a{i}"), "prod")).collect();
    fleet[5].pinned = true;
    let cp = v("1.1.0");
    let out = reconcile(
        MONDAY + 3 * HOUR_MS,
        &spec,
        &RolloutState::new(&spec),
        &fleet,
        Some(&cp),
    );
    let out = reconcile(MONDAY + 3 * HOUR_MS, &spec, &out.state, &fleet, Some(&cp));
    let reasons: Vec<_> = fleet
        .iter()
        .map(|a| out.decisions[&a.agent_id].reason)
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == ReasonCode::GroupActive)
            .count(),
        2
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == ReasonCode::MaxInFlight)
            .count(),
        3
    );
    assert_eq!(out.decisions["a5"].reason, ReasonCode::Pinned);

    let mut paused = out.state.clone();
    paused.paused = true;
    let still = reconcile(MONDAY + 30 * HOUR_MS, &spec, &paused, &fleet, Some(&cp));
    assert_eq!(still.state, paused);
    assert!(still.decisions.values().all(|d| d.target.is_none()));
}

/// Lowering the control plane below the target halts the rollout with the reason, instead of
/// leaving it stalled with nobody told why; nobody is served the target.
#[test]
fn a_control_plane_below_the_target_halts_the_rollout_with_its_reason() {
    let spec = spec(vec![group("dev", 1, 0), group("prod", 1, 0)]);
    let fleet: Vec<AgentSnapshot> = (0..4)
        .map(|i| agent(&format!("a{i}"), if i < 2 { "dev" } else { "prod" }))
        .collect();
    let lowered = v("1.0.5");
    let out = reconcile(
        MONDAY + 3 * HOUR_MS,
        &spec,
        &RolloutState::new(&spec),
        &fleet,
        Some(&lowered),
    );
    for group in &out.state.groups {
        assert_eq!(group.phase, Phase::Halted);
        assert!(group.note.contains("no longer allowed"), "{}", group.note);
    }
    assert_eq!(out.events.len(), 2);
    assert!(
        out.decisions
            .values()
            .all(|d| d.target != Some(spec.target_version.clone()))
    );
    let again = reconcile(
        MONDAY + 4 * HOUR_MS,
        &spec,
        &out.state,
        &fleet,
        Some(&lowered),
    );
    assert!(
        again.events.is_empty(),
        "a halted rollout writes nothing more"
    );
}
