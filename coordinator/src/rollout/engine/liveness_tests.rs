//! Liveness of the engine over random rollouts: a healthy fleet always finishes, and a fleet
//! whose canaries fail always halts, each within a time bound derived from the spec alone.
//! The simulated clock steps every 10 minutes; agents act on a decision by the next step.

use std::collections::HashSet;

use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::property_tests::random_spec;
use super::tests::{MONDAY, apply};
use super::*;
use crate::rollout::Strategy;

const STEP_MS: i64 = 10 * 60_000;
const WEEK_MS: i64 = 7 * 24 * HOUR_MS;

/// Every agent connected and healthy; one in ten pinned, agent-0 never.
fn healthy_fleet(rng: &mut StdRng) -> Vec<AgentSnapshot> {
    (0..rng.random_range(1..30))
        .map(|i| AgentSnapshot {
            agent_id: format!("agent-{i}"),
            group: ["a", "b", "c", "d", "other"][rng.random_range(0..5)].into(),
            version: Some(Version::new(1, 0, 0)),
            health: Health::Healthy,
            connected: true,
            pinned: i > 0 && rng.random_bool(0.1),
            failed_at_ms: None,
            joined_ms: 0,
            updated_at_ms: None,
            track: None,
            stratum: String::new(),
        })
        .collect()
}

fn unpinned_in(spec: &RolloutSpec, fleet: &[AgentSnapshot], index: usize) -> usize {
    fleet
        .iter()
        .filter(|a| !a.pinned && spec.group_of(&a.group) == index)
        .count()
}

/// How long a healthy fleet may take, from the spec: per group its wait, a step to notice its
/// turn, then (with windows) a week until its window opens plus a week for every further
/// window its in-window steps need (one for canaries, then one per `max_in_flight` batch), the
/// window itself and a step to count it done; without windows just those steps.
fn healthy_bound_ms(spec: &RolloutSpec, fleet: &[AgentSnapshot]) -> i64 {
    let mut total = 0;
    for (index, group) in spec.groups.iter().enumerate() {
        let agents = unpinned_in(spec, fleet, index) as i64;
        let batches = match i64::from(spec.max_in_flight) {
            0 => 1,
            cap => (agents + cap - 1) / cap,
        };
        let in_window_steps = 1 + batches;
        let own = if spec.immediate {
            (in_window_steps + 2) * STEP_MS
        } else {
            let per_window = i64::from(group.window_hours) * HOUR_MS / STEP_MS;
            let windows = (in_window_steps + per_window - 1) / per_window;
            windows * WEEK_MS + i64::from(group.window_hours) * HOUR_MS + 2 * STEP_MS
        };
        total += i64::from(group.wait_hours) * HOUR_MS + STEP_MS + own;
    }
    total
}

fn target_served_to_newcomer(
    spec: &RolloutSpec,
    agent: &AgentSnapshot,
    decision: &AgentDecision,
) -> bool {
    decision.target.as_ref() == Some(&spec.target_version)
        && agent.version.as_ref() != Some(&spec.target_version)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_healthy_fleet_always_finishes_within_its_bound(seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let spec = random_spec(&mut rng);
        let mut fleet = healthy_fleet(&mut rng);
        let cp = spec.target_version.clone();
        let bound = healthy_bound_ms(&spec, &fleet);
        let start = MONDAY + rng.random_range(0..7 * 24 * 60) * 60_000;
        let mut now = start;
        let mut state = RolloutState::new(&spec);
        while !state.finished() {
            prop_assert!(now - start <= bound, "not finished after {} h (bound {} h): {:?}",
                (now - start) / HOUR_MS, bound / HOUR_MS, state.groups);
            let out = reconcile(now, &spec, &state, &fleet, Some(&cp));
            apply(now, &mut fleet, &out.decisions, &HashSet::new());
            state = out.state;
            now += STEP_MS;
        }
        // Not vacuous: every group started and went through its canaries when it needed them.
        for (index, (group, group_spec)) in state.groups.iter().zip(&spec.groups).enumerate() {
            prop_assert_eq!(group.phase, Phase::Done);
            prop_assert!(group.started_ms.is_some());
            if group_spec.canary_count > 0 && unpinned_in(&spec, &fleet, index) > 0 {
                prop_assert!(!group.canaries.is_empty(), "group {} had no canaries", group_spec.name);
            }
        }
        // Once done, every unpinned agent is served the target and takes it.
        let out = reconcile(now, &spec, &state, &fleet, Some(&cp));
        apply(now, &mut fleet, &out.decisions, &HashSet::new());
        for agent in fleet.iter().filter(|a| !a.pinned) {
            prop_assert_eq!(agent.version.as_ref(), Some(&spec.target_version));
        }
    }

    #[test]
    fn failing_canaries_always_halt_the_first_group_and_touch_nobody_else(seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut spec = random_spec(&mut rng);
        for group in &mut spec.groups {
            group.canary_count = rng.random_range(1..4);
        }
        let mut fleet = healthy_fleet(&mut rng);
        fleet[0].group = "a".into(); // the first group has at least one unpinned agent
        let failing: HashSet<String> = fleet.iter().map(|a| a.agent_id.clone()).collect();
        let cp = spec.target_version.clone();
        // The first group's turn comes at once: a week for its window, a step to serve its
        // canaries, a step to see them fail, a step for the clock grid.
        let bound = WEEK_MS + 3 * STEP_MS;
        let start = MONDAY + rng.random_range(0..7 * 24 * 60) * 60_000;
        let mut now = start;
        let mut state = RolloutState::new(&spec);
        let mut served: HashSet<String> = HashSet::new();
        let mut halted_at = None;
        // Keep going a week past the halt: a halted group must stay contained.
        while halted_at.is_none_or(|at| now <= at + WEEK_MS) {
            prop_assert!(halted_at.is_some() || now - start <= bound,
                "the first group did not halt within {} h: {:?}", bound / HOUR_MS, state.groups);
            let out = reconcile(now, &spec, &state, &fleet, Some(&cp));
            for agent in &fleet {
                if target_served_to_newcomer(&spec, agent, &out.decisions[&agent.agent_id]) {
                    let group = &out.state.groups[spec.group_of(&agent.group)];
                    prop_assert!(group.canaries.contains(&agent.agent_id),
                        "{} was served the target without being a canary", agent.agent_id);
                    served.insert(agent.agent_id.clone());
                }
            }
            apply(now, &mut fleet, &out.decisions, &failing);
            state = out.state;
            if halted_at.is_none() && state.groups[0].phase == Phase::Halted {
                halted_at = Some(now);
            }
            now += STEP_MS;
        }
        // Not vacuous: the first group picked canaries and they were asked to update.
        prop_assert!(!state.groups[0].canaries.is_empty());
        prop_assert!(state.groups[0].canaries.iter().all(|c| served.contains(c)));
        if spec.strategy == Strategy::HaltOnError {
            prop_assert!(state.groups[1..].iter().all(|g| g.phase == Phase::Unstarted));
        }
        prop_assert!(fleet.iter().all(|a| a.version.as_ref() != Some(&spec.target_version)));
    }
}
