//! `mark-done` lets the next group start by the strategy's rules (its turn and its window);
//! `--now` starts it at once. Property-tested over random rollouts, states and clocks.

use drover_rules::Weekdays;
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};
use semver::Version;

use super::*;
use crate::{
    domain::Health,
    rollout::{
        AgentSnapshot, GroupSpec, HOUR_MS, Strategy,
        engine::{turn_has_come, window_open},
        reconcile,
    },
};

const MONDAY: i64 = 1_795_392_000_000; // 2026-11-23T00:00Z

fn random_spec(rng: &mut StdRng) -> RolloutSpec {
    let groups = (0..rng.random_range(2..5))
        .map(|i| GroupSpec {
            name: ["a", "b", "c", "d"][i].into(),
            days: if rng.random_bool(0.7) {
                Weekdays::ALL
            } else {
                Weekdays::parse("mon-fri").unwrap()
            },
            start_hour: rng.random_range(0..24),
            window_hours: rng.random_range(1..=8),
            wait_hours: rng.random_range(0..4),
            canary_count: rng.random_range(0..3),
        })
        .collect();
    RolloutSpec {
        rollout_id: format!("r-{}", rng.random::<u32>()),
        channel: "c".into(),
        start_version: Version::new(1, 0, 0),
        target_version: Version::new(1, 1, 0),
        strategy: if rng.random_bool(0.5) {
            Strategy::HaltOnError
        } else {
            Strategy::TimeBased
        },
        groups,
        done_threshold_pct: 90,
        failure_threshold: 1,
        max_in_flight: 0,
        immediate: rng.random_bool(0.2),
        verdict: crate::rollout::verdict::VerdictSpec::off(),
        strata: crate::rollout::strata::StrataSpec::off(),
        canary_seed: String::new(),
    }
}

/// Groups before `index` somewhere along the way; `index` unfinished; the rest unstarted.
fn random_state(rng: &mut StdRng, spec: &RolloutSpec, index: usize, now: i64) -> RolloutState {
    let mut state = RolloutState::new(spec);
    for (i, g) in state.groups.iter_mut().enumerate() {
        if i > index {
            break;
        }
        g.phase = match i == index {
            true => [
                Phase::Unstarted,
                Phase::Canary,
                Phase::Active,
                Phase::Halted,
            ][rng.random_range(0..4)],
            false => [Phase::Done, Phase::Active, Phase::Halted][rng.random_range(0..3)],
        };
        if g.phase != Phase::Unstarted {
            g.started_ms = Some(now - rng.random_range(0..48) * HOUR_MS);
        }
        if g.phase == Phase::Done {
            g.done_ms = g.started_ms;
        }
    }
    state
}

fn fleet(spec: &RolloutSpec) -> Vec<AgentSnapshot> {
    (0..12)
        .map(|i| AgentSnapshot {
            agent_id: format!("agent-{i}"),
            group: spec.groups[i % spec.groups.len()].name.clone(),
            version: Some(Version::new(1, 0, 0)),
            health: Health::Healthy,
            connected: true,
            pinned: false,
            failed_at_ms: None,
            joined_ms: 0,
            updated_at_ms: None,
            track: None,
            stratum: String::new(),
        })
        .collect()
}

fn started(phase: Phase) -> bool {
    matches!(phase, Phase::Canary | Phase::Active | Phase::Done)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn mark_done_starts_the_next_group_only_by_its_rules_and_now_at_once(seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let spec = random_spec(&mut rng);
        let index = rng.random_range(0..spec.groups.len() - 1);
        let now = MONDAY + rng.random_range(0..14 * 24 * 60) * 60_000;
        let state = random_state(&mut rng, &spec, index, now);
        let fleet = fleet(&spec);
        let cp = Version::new(1, 1, 0);
        let group = spec.groups[index].name.clone();
        let next = index + 1;

        // Without --now: the group is done, and the next one starts only in its turn and window.
        let verb = RolloutVerb::MarkDone { group: group.clone(), start_next_now: false };
        let marked = steer(now, &spec, &state, &verb).unwrap();
        prop_assert_eq!(marked.state.groups[index].phase, Phase::Done);
        prop_assert_eq!(marked.state.groups[index].done_ms, Some(now));
        prop_assert!(!marked.state.groups[next].force_start);
        let out = reconcile(now, &spec, &marked.state, &fleet, Some(&cp));
        if started(out.state.groups[next].phase) {
            prop_assert!(window_open(now, &spec, next), "group {next} started outside its window");
            prop_assert!(turn_has_come(now, &spec, &marked.state, next), "group {next} started before its turn");
        }
        // Later on the same clock the rules alone decide: in its window, once the wait passed.
        let wait = i64::from(spec.groups[next].wait_hours) * HOUR_MS;
        let opens = (0..8 * 24 * 4)
            .map(|quarter| now + wait + quarter * 15 * 60_000)
            .find(|t| window_open(*t, &spec, next));
        // ... unless an earlier group halted: a halt stops the whole rollout (halt scope
        // `rollout`, the default), time-based or not.
        let halted_before = marked.state.groups[..next].iter().any(|g| g.phase == Phase::Halted);
        if let Some(opens) = opens.filter(|_| !halted_before) {
            let out = reconcile(opens, &spec, &marked.state, &fleet, Some(&cp));
            prop_assert!(started(out.state.groups[next].phase),
                "group {next} did not start in its window: {:?}", out.state.groups[next]);
        }

        // With --now: the next group starts at once, window or not (canaries first).
        let verb = RolloutVerb::MarkDone { group, start_next_now: true };
        let forced = steer(now, &spec, &state, &verb).unwrap();
        let out = reconcile(now, &spec, &forced.state, &fleet, Some(&cp));
        prop_assert!(matches!(out.state.groups[next].phase, Phase::Canary | Phase::Active),
            "--now did not start group {next}: {:?}", out.state.groups[next]);
        // ... and its agents are sent the target now, window or not.
        let moved = fleet.iter().filter(|a| spec.group_of(&a.group) == next).any(|a| {
            out.decisions[&a.agent_id].target.as_ref() == Some(&spec.target_version)
        });
        prop_assert!(moved, "nobody of group {next} was sent the target: {:?}", out.decisions);
    }

    #[test]
    fn a_refused_verb_names_why_and_a_finished_group_cannot_be_marked_done(seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let spec = random_spec(&mut rng);
        let last = spec.groups.len() - 1;
        let now = MONDAY + rng.random_range(0..7 * 24) * HOUR_MS;
        let mut state = RolloutState::new(&spec);
        // The last group has no successor for --now.
        let verb = RolloutVerb::MarkDone { group: spec.groups[last].name.clone(), start_next_now: true };
        prop_assert!(matches!(steer(now, &spec, &state, &verb), Err(DroverError::FailedPrecondition(_))));
        // A finished group is not marked done again (no second event).
        state.groups[0].phase = [Phase::Done, Phase::Rolledback][rng.random_range(0..2)];
        let verb = RolloutVerb::MarkDone { group: spec.groups[0].name.clone(), start_next_now: false };
        prop_assert!(matches!(steer(now, &spec, &state, &verb), Err(DroverError::FailedPrecondition(_))));
        let verb = RolloutVerb::MarkDone { group: "nope".into(), start_next_now: false };
        prop_assert!(matches!(steer(now, &spec, &state, &verb), Err(DroverError::NotFound(_))));
    }
}

/// Time-based: a group marked done before it ever started still lets the next one start in
/// its window once the wait has passed (it used to wait forever for a start time).
#[test]
fn time_based_next_group_starts_after_a_group_marked_done_unstarted() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut spec = random_spec(&mut rng);
    spec.strategy = Strategy::TimeBased;
    spec.immediate = false;
    for g in &mut spec.groups {
        g.days = Weekdays::ALL;
        g.start_hour = 2;
        g.window_hours = 2;
        g.wait_hours = 1;
    }
    let state = RolloutState::new(&spec);
    let verb = RolloutVerb::MarkDone {
        group: spec.groups[0].name.clone(),
        start_next_now: false,
    };
    let now = MONDAY + 10 * HOUR_MS; // 10:00, the window 02:00–04:00 is closed
    let marked = steer(now, &spec, &state, &verb).unwrap();
    let fleet = fleet(&spec);
    let cp = Version::new(1, 1, 0);
    let out = reconcile(now, &spec, &marked.state, &fleet, Some(&cp));
    assert_eq!(
        out.state.groups[1].phase,
        Phase::Unstarted,
        "outside its window"
    );
    let tomorrow = MONDAY + 26 * HOUR_MS; // Tuesday 02:00
    let out = reconcile(tomorrow, &spec, &marked.state, &fleet, Some(&cp));
    assert!(
        started(out.state.groups[1].phase),
        "{:?}",
        out.state.groups[1]
    );
}

#[test]
fn a_group_started_by_hand_updates_outside_its_window() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut spec = random_spec(&mut rng);
    spec.immediate = false;
    for g in &mut spec.groups {
        g.days = Weekdays::ALL;
        g.start_hour = 2;
        g.window_hours = 2;
        g.canary_count = 0;
    }
    let last = spec.groups.last().unwrap().name.clone();
    let verb = RolloutVerb::StartGroup {
        group: last.clone(),
        skip_canaries: true,
    };
    let now = MONDAY + 10 * HOUR_MS; // 10:00, the window 02:00–04:00 is closed
    let started_by_hand = steer(now, &spec, &RolloutState::new(&spec), &verb).unwrap();
    let fleet = fleet(&spec);
    let cp = Version::new(1, 1, 0);
    let out = reconcile(now, &spec, &started_by_hand.state, &fleet, Some(&cp));
    let index = spec.groups.len() - 1;
    assert_eq!(out.state.groups[index].phase, Phase::Active);
    for agent in fleet.iter().filter(|a| a.group == last) {
        let decision = &out.decisions[&agent.agent_id];
        assert_eq!(
            decision.target,
            Some(spec.target_version.clone()),
            "{decision:?}"
        );
    }
}
