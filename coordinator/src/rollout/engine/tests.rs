//! Unit and property tests of the engine, with an injected clock and random fleets.

use drover_rules::ReasonCode;
use std::collections::{HashMap, HashSet};

use drover_rules::{Weekdays, check_constraints};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};
use semver::Version;

use super::*;
use crate::rollout::{GroupSpec, Strategy};

pub(super) const MONDAY: i64 = 1_795_392_000_000; // 2026-11-23T00:00Z

pub(super) fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

fn group(name: &str, canaries: u32, wait_hours: u32) -> GroupSpec {
    GroupSpec {
        name: name.into(),
        days: Weekdays::ALL,
        start_hour: 2,
        window_hours: 4,
        wait_hours,
        canary_count: canaries,
    }
}

fn spec(groups: Vec<GroupSpec>) -> RolloutSpec {
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
    }
}

fn agent(id: &str, group: &str) -> AgentSnapshot {
    AgentSnapshot {
        agent_id: id.into(),
        group: group.into(),
        version: Some(v("1.0.0")),
        health: Health::Healthy,
        connected: true,
        pinned: false,
        failed_at_ms: None,
        joined_ms: 0,
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

/// #22 item 2: a failure report that arrived before its group started names a target the
/// agent was never sent: it halts nothing (it used to halt the group at its start).
#[test]
fn a_failure_reported_before_the_group_started_halts_nothing() {
    let spec = spec(vec![group("dev", 0, 0)]);
    let cp = v("2.0.0");
    let mut fleet: Vec<AgentSnapshot> = (0..4).map(|i| agent(&format!("a{i}"), "dev")).collect();
    fleet[3].failed_at_ms = Some(MONDAY);
    let now = MONDAY + 2 * HOUR_MS;
    let out = reconcile(now, &spec, &RolloutState::new(&spec), &fleet, Some(&cp));
    assert_eq!(out.state.groups[0].phase, Phase::Active);
    let again = reconcile(now + 1000, &spec, &out.state, &fleet, Some(&cp));
    assert_eq!(
        again.state.groups[0].phase,
        Phase::Active,
        "{:?}",
        again.state
    );
    // The same failure arriving after the start counts.
    fleet[3].failed_at_ms = Some(now + 500);
    let halted = reconcile(now + 1000, &spec, &out.state, &fleet, Some(&cp));
    assert_eq!(halted.state.groups[0].phase, Phase::Halted);
}

/// #22 item 3: nine agents enrolled (with a leaked token) after the group started, already
/// claiming the target, do not complete it: only the agent there at the start counts, and
/// the late ones wait until the group is done.
#[test]
fn agents_that_joined_after_the_start_neither_count_nor_update_until_it_is_done() {
    let spec = spec(vec![group("dev", 0, 0)]);
    let cp = v("2.0.0");
    let now = MONDAY + 2 * HOUR_MS;
    let mut fleet = vec![agent("real", "dev")];
    let out = reconcile(now, &spec, &RolloutState::new(&spec), &fleet, Some(&cp));
    assert_eq!(out.state.groups[0].phase, Phase::Active);
    for i in 0..9 {
        let mut late = agent(&format!("late{i}"), "dev");
        late.joined_ms = now + 1000;
        late.version = Some(v("1.1.0"));
        fleet.push(late);
    }
    let mut newcomer = agent("newcomer", "dev");
    newcomer.joined_ms = now + 1000;
    fleet.push(newcomer);
    let next = reconcile(now + 2000, &spec, &out.state, &fleet, Some(&cp));
    assert_eq!(
        next.state.groups[0].phase,
        Phase::Active,
        "{:?}",
        next.state
    );
    assert_eq!(
        next.decisions["newcomer"].reason,
        ReasonCode::JoinedAfterStart
    );
    assert_eq!(next.decisions["real"].target, Some(v("1.1.0")));
    // The real agent updates: the group is done, and the newcomer follows.
    fleet[0].version = Some(v("1.1.0"));
    let done = reconcile(now + 3000, &spec, &next.state, &fleet, Some(&cp));
    assert_eq!(done.state.groups[0].phase, Phase::Done);
    assert!(
        done.state.groups[0].note.contains("1 of 1"),
        "{}",
        done.state.groups[0].note
    );
    let after = reconcile(now + 4000, &spec, &done.state, &fleet, Some(&cp));
    assert_eq!(after.decisions["newcomer"].target, Some(v("1.1.0")));
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

/// A random rollout over a random fleet, stepped through random time with random outcomes.
struct Sim {
    spec: RolloutSpec,
    fleet: Vec<AgentSnapshot>,
    cp: Version,
    failing: HashSet<String>,
}

/// A random rollout of 1–4 groups named a–d; agents of group "other" belong to the last.
pub(super) fn random_spec(rng: &mut StdRng) -> RolloutSpec {
    let names = ["a", "b", "c", "d"];
    let groups: Vec<GroupSpec> = (0..rng.random_range(1..=4))
        .map(|i| GroupSpec {
            name: names[i].into(),
            days: Weekdays(rng.random_range(1..128)),
            start_hour: rng.random_range(0..24),
            window_hours: rng.random_range(1..=24),
            wait_hours: rng.random_range(0..4),
            canary_count: rng.random_range(0..4),
        })
        .collect();
    RolloutSpec {
        rollout_id: format!("r-{}", rng.random::<u32>()),
        channel: "c".into(),
        start_version: v("1.0.0"),
        target_version: [v("1.1.0"), v("2.0.0"), v("3.0.0")][rng.random_range(0..3)].clone(),
        strategy: if rng.random_bool(0.5) {
            Strategy::HaltOnError
        } else {
            Strategy::TimeBased
        },
        groups,
        done_threshold_pct: rng.random_range(50..=100),
        failure_threshold: rng.random_range(1..4),
        max_in_flight: rng.random_range(0..4),
        immediate: rng.random_bool(0.3),
    }
}

fn random_sim(rng: &mut StdRng) -> Sim {
    let spec = random_spec(rng);
    let fleet: Vec<AgentSnapshot> = (0..rng.random_range(1..30))
        .map(|i| AgentSnapshot {
            agent_id: format!("agent-{i}"),
            group: ["a", "b", "c", "d", "other"][rng.random_range(0..5)].into(),
            version: Some(v("1.0.0")),
            health: if rng.random_bool(0.9) {
                Health::Healthy
            } else {
                Health::Unknown
            },
            connected: rng.random_bool(0.9),
            pinned: rng.random_bool(0.1),
            failed_at_ms: None,
            joined_ms: 0,
        })
        .collect();
    let failing = fleet
        .iter()
        .filter(|_| rng.random_bool(0.15))
        .map(|a| a.agent_id.clone())
        .collect();
    Sim {
        spec,
        fleet,
        cp: [v("1.1.0"), v("2.0.0"), v("2.5.0")][rng.random_range(0..3)].clone(),
        failing,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn engine_invariants_hold_over_random_runs(seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sim = random_sim(&mut rng);
        let spec = sim.spec.clone();
        let mut state = RolloutState::new(&spec);
        let mut now = MONDAY + rng.random_range(0..7 * 24) * HOUR_MS;
        let mut ever_served: HashSet<String> = HashSet::new();
        let mut halted_in_canary: HashMap<usize, Vec<String>> = HashMap::new();
        for _ in 0..80 {
            state.paused = rng.random_bool(0.15);
            let out = reconcile(now, &spec, &state, &sim.fleet, Some(&sim.cp));

            for (id, decision) in &out.decisions {
                // 1. Never a version that breaks the constraints.
                if let Some(target) = &decision.target {
                    prop_assert!(check_constraints(target, &sim.cp).is_ok(), "{id} served {target} with cp {}", sim.cp);
                    // 1b. Only the target, or the start version of a rollback: a decision
                    //     made from a stale snapshot can never send an agent back.
                    prop_assert!(
                        *target == spec.target_version
                            || (decision.reason == ReasonCode::Rolledback && *target == spec.start_version),
                        "{id} was sent {target} ({})", decision.reason
                    );
                }
            }
            // 1c. An active group with a cap sends no more than the cap toward the target,
            //     and only to agents holding one of its committed slots.
            if spec.max_in_flight > 0 {
                for (i, group) in out.state.groups.iter().enumerate() {
                    let going: Vec<&AgentSnapshot> = sim.fleet.iter().filter(|a| {
                        spec.group_of(&a.group) == i
                            && a.version.as_ref() != Some(&spec.target_version)
                            && out.decisions[&a.agent_id].target.as_ref() == Some(&spec.target_version)
                            && out.decisions[&a.agent_id].reason == ReasonCode::GroupActive
                    }).collect();
                    prop_assert!(going.len() <= spec.max_in_flight as usize, "{} going at once in group {i}", going.len());
                    prop_assert!(going.iter().all(|a| group.in_flight.contains(&a.agent_id)));
                }
            }
            if state.paused {
                // 2. A paused rollout changes nothing and moves nobody.
                prop_assert_eq!(&out.state, &state);
                prop_assert!(out.events.is_empty());
                for agent in &sim.fleet {
                    let d = &out.decisions[&agent.agent_id];
                    prop_assert!(agent.pinned || d.target.is_none() || d.target == agent.version || d.reason == ReasonCode::Rolledback);
                }
            }
            for (i, (before, after)) in state.groups.iter().zip(&out.state.groups).enumerate() {
                // 3. Halt-on-error: a group starts only after the previous one is done and waited
                //    (being halted, e.g. by a control plane that no longer allows the target, is
                //    not starting).
                if spec.strategy == Strategy::HaltOnError && i > 0 && before.phase == Phase::Unstarted && matches!(after.phase, Phase::Canary | Phase::Active | Phase::Done) {
                    // Transitions run in group order, so the previous group may finish in this same step.
                    let previous = &out.state.groups[i - 1];
                    prop_assert_eq!(previous.phase, Phase::Done);
                    prop_assert!(now >= previous.done_ms.unwrap() + i64::from(spec.groups[i].wait_hours) * HOUR_MS);
                }
                // 4. A group with canaries never skips them while agents are left to update.
                if before.phase == Phase::Unstarted && after.phase == Phase::Active && spec.groups[i].canary_count > 0 {
                    prop_assert!(sim.fleet.iter().all(|a| spec.group_of(&a.group) != i || a.pinned || a.version.as_ref() == Some(&spec.target_version)),
                        "group {i} skipped its canaries");
                }
                if before.phase == Phase::Canary && after.phase == Phase::Halted {
                    halted_in_canary.insert(i, after.canaries.clone());
                }
            }
            for agent in &sim.fleet {
                if out.decisions[&agent.agent_id].target.as_ref() == Some(&spec.target_version)
                    && agent.version.as_ref() != Some(&spec.target_version) {
                    ever_served.insert(agent.agent_id.clone());
                }
            }
            apply(now, &mut sim.fleet, &out.decisions, &sim.failing);
            state = out.state;
            now += rng.random_range(0..6) * HOUR_MS + rng.random_range(0..60) * 60_000;
        }
        // 5. Canary failures never spread past the canaries.
        for (index, canaries) in halted_in_canary {
            for agent in sim.fleet.iter().filter(|a| spec.group_of(&a.group) == index) {
                if ever_served.contains(&agent.agent_id) {
                    prop_assert!(canaries.contains(&agent.agent_id), "{} of a canary-halted group was served the target", agent.agent_id);
                }
            }
        }
    }
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
