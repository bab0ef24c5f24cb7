//! Property tests of the engine over random rollouts, fleets, clocks and outcomes.

use std::collections::HashSet;

use drover_rules::{ReasonCode, Weekdays, check_constraints};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};
use semver::Version;

use super::tests::{MONDAY, apply, v};
use super::*;
use crate::rollout::{GroupSpec, Strategy};

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
        verdict: crate::rollout::verdict::VerdictSpec::off(),
        strata: crate::rollout::strata::StrataSpec::off(),
        canary_seed: String::new(),
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
            updated_at_ms: None,
            track: None,
            stratum: String::new(),
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
