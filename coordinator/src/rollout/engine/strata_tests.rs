//! Strata in the engine: canaries cover every stratum big enough, the plan picks exactly
//! what the start picks, a failure names its stratum and stops what the halt scope says.

use std::collections::HashSet;

use drover_rules::{HaltScope, ReasonCode};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::tests::{MONDAY, agent, apply, group, spec, v};
use super::*;
use crate::rollout::{
    plan,
    strata::{StrataSpec, simulation},
};

fn stratified(scope: HaltScope, canaries: u32) -> RolloutSpec {
    let mut spec = spec(vec![group("prod", canaries, 0)]);
    spec.immediate = true;
    spec.strata = StrataSpec {
        halt_scope: scope,
        ..StrataSpec::default_on()
    };
    spec.canary_seed = spec.default_seed();
    spec
}

/// 150 on debian, 30 on rocky, 15 on alpine (fewer than the 20 that earn a canary).
fn fleet() -> Vec<AgentSnapshot> {
    let sizes = [("os=debian", 150), ("os=rocky", 30), ("os=alpine", 15)];
    sizes
        .iter()
        .flat_map(|(stratum, n)| {
            (0..*n).map(move |i| AgentSnapshot {
                stratum: stratum.to_string(),
                ..agent(&format!("{}-{i}", &stratum[3..]), "prod")
            })
        })
        .collect()
}

fn stratum_of<'a>(fleet: &'a [AgentSnapshot], id: &str) -> &'a str {
    &fleet.iter().find(|a| a.agent_id == id).unwrap().stratum
}

#[test]
fn every_stratum_big_enough_gets_a_canary_and_small_ones_need_none() {
    let spec = stratified(HaltScope::Rollout, 1);
    let fleet = fleet();
    let out = reconcile(
        MONDAY,
        &spec,
        &RolloutState::new(&spec),
        &fleet,
        Some(&v("1.1.0")),
    );
    let group = &out.state.groups[0];
    assert_eq!(group.phase, Phase::Canary);
    let strata: HashSet<&str> = group
        .canaries
        .iter()
        .map(|c| stratum_of(&fleet, c))
        .collect();
    assert_eq!(strata, HashSet::from(["os=debian", "os=rocky"]));
    // One per stratum that needs one; the group's own count is already met.
    assert_eq!(group.canaries.len(), 2);
}

#[test]
fn the_plan_picks_exactly_the_canaries_the_start_picks_whatever_the_rollout_id() {
    let spec = stratified(HaltScope::Rollout, 3);
    let fleet = fleet();
    let planned = plan(
        MONDAY,
        &spec,
        &RolloutState::new(&spec),
        &fleet,
        Some(&v("1.1.0")),
    );
    // The real create gets another id; the seed made from the spec is the same.
    let created = RolloutSpec {
        rollout_id: "r-another".into(),
        ..spec.clone()
    };
    let out = reconcile(
        MONDAY,
        &created,
        &RolloutState::new(&created),
        &fleet,
        Some(&v("1.1.0")),
    );
    assert_eq!(planned[0].canaries, out.state.groups[0].canaries);
    let matrix: Vec<(&str, u64, bool)> = planned[0]
        .strata
        .iter()
        .map(|row| {
            (
                row.coverage.stratum.as_str(),
                row.coverage.agents,
                row.coverage.needs_canary,
            )
        })
        .collect();
    assert_eq!(
        matrix,
        [
            ("os=debian", 150, true),
            ("os=rocky", 30, true),
            ("os=alpine", 15, false)
        ],
        "the coverage matrix, largest stratum first"
    );
    for row in planned[0]
        .strata
        .iter()
        .filter(|row| row.coverage.needs_canary)
    {
        let canary = row
            .canary
            .as_deref()
            .expect("a stratum that needs a canary has one");
        assert_eq!(stratum_of(&fleet, canary), row.coverage.stratum);
    }
}

#[test]
fn a_stratum_with_no_agent_to_prove_it_makes_the_group_wait_naming_it() {
    let spec = stratified(HaltScope::Rollout, 1);
    let mut fleet = fleet();
    for agent in fleet.iter_mut().filter(|a| a.stratum == "os=rocky") {
        agent.connected = false;
    }
    let out = reconcile(
        MONDAY,
        &spec,
        &RolloutState::new(&spec),
        &fleet,
        Some(&v("1.1.0")),
    );
    assert_eq!(out.state.groups[0].phase, Phase::Unstarted);
    assert!(
        out.state.groups[0].note.contains("stratum os=rocky"),
        "{}",
        out.state.groups[0].note
    );
    let decision = &out.decisions["debian-0"];
    assert_eq!(decision.reason, ReasonCode::CanaryWaiting);
}

/// Runs the group from its start until nothing changes; `failing` fail the target.
fn run(spec: &RolloutSpec, fleet: &mut [AgentSnapshot], failing: &HashSet<String>) -> Reconciled {
    let mut state = RolloutState::new(spec);
    let mut now = MONDAY;
    loop {
        let out = reconcile(now, spec, &state, fleet, Some(&v("1.1.0")));
        apply(now, fleet, &out.decisions, failing);
        now += 1_000;
        if out.state == state {
            return out;
        }
        state = out.state;
    }
}

#[test]
fn a_failed_canary_halts_the_rollout_naming_its_stratum_by_default() {
    let spec = stratified(HaltScope::Rollout, 1);
    let mut fleet = fleet();
    let rocky: HashSet<String> = fleet
        .iter()
        .filter(|a| a.stratum == "os=rocky")
        .map(|a| a.agent_id.clone())
        .collect();
    let out = run(&spec, &mut fleet, &rocky);
    let group = &out.state.groups[0];
    assert_eq!(group.phase, Phase::Halted);
    assert!(
        group.note.contains("(stratum os=rocky) failed to update"),
        "{}",
        group.note
    );
    // The debian canary installed; nobody else did.
    let moved = fleet
        .iter()
        .filter(|a| a.version == Some(v("1.1.0")))
        .count();
    assert_eq!(moved, 1);
}

#[test]
fn halt_scope_stratum_holds_the_failing_stratum_and_the_others_go_on() {
    let spec = stratified(HaltScope::Stratum, 1);
    let mut fleet = fleet();
    let rocky: HashSet<String> = fleet
        .iter()
        .filter(|a| a.stratum == "os=rocky")
        .map(|a| a.agent_id.clone())
        .collect();
    let out = run(&spec, &mut fleet, &rocky);
    assert_eq!(out.state.held_strata.len(), 1);
    assert_eq!(out.state.held_strata[0].stratum, "os=rocky");
    assert!(out.state.held_strata[0].note.contains("failed to update"));
    // Debian and alpine (165 of the 194 agents left outside rocky) complete the group.
    assert_eq!(
        out.state.groups[0].phase,
        Phase::Done,
        "{}",
        out.state.groups[0].note
    );
    for agent in &fleet {
        let decision = &out.decisions[&agent.agent_id];
        if agent.stratum == "os=rocky" {
            assert_eq!(agent.version, Some(v("1.0.0")));
            assert_eq!(
                decision.reason,
                ReasonCode::StratumHeld,
                "{}",
                agent.agent_id
            );
            assert!(decision.detail.contains("os=rocky"));
        } else {
            assert_eq!(agent.version, Some(v("1.1.0")), "{}", agent.agent_id);
        }
    }
}

#[test]
fn a_halt_stops_every_group_of_a_time_based_rollout() {
    let mut spec = stratified(HaltScope::Rollout, 0);
    spec.strategy = crate::rollout::Strategy::TimeBased;
    spec.groups = vec![group("dev", 0, 0), group("prod", 0, 0), group("late", 0, 1)];
    let mut fleet: Vec<AgentSnapshot> = ["dev", "prod", "late"]
        .iter()
        .flat_map(|g| (0..5).map(move |i| agent(&format!("{g}-{i}"), g)))
        .collect();
    // prod is still updating when dev fails: one of its agents is unhealthy on the target.
    fleet
        .iter_mut()
        .find(|a| a.agent_id == "prod-4")
        .unwrap()
        .health = Health::Unhealthy;
    let failing = HashSet::from(["dev-0".to_string()]);
    let out = run(&spec, &mut fleet, &failing);
    assert_eq!(out.state.groups[0].phase, Phase::Halted);
    assert_eq!(
        out.state.groups[1].phase,
        Phase::Halted,
        "{}",
        out.state.groups[1].note
    );
    assert!(out.state.groups[1].note.contains("halted with group dev"));
    // An hour later the third group's wait is over, but a halt stops the rollout.
    let later = reconcile(
        MONDAY + 2 * HOUR_MS,
        &spec,
        &out.state,
        &fleet,
        Some(&v("1.1.0")),
    );
    assert_eq!(later.state.groups[2].phase, Phase::Unstarted);
}

#[test]
fn stratified_canaries_catch_a_half_percent_stratum_bug_that_random_ones_miss() {
    let stratified = simulation::Scenario {
        agents: 10_000,
        strata: 12,
        buggy_per_mille: 5,
        canaries: 5,
        stratified: true,
        min_agents: 20,
    };
    let (caught, runs, missed) = simulation::catch_rate(&stratified, 1, 25);
    assert_eq!(caught, runs, "missed: {missed:?}");
    let random = simulation::Scenario {
        stratified: false,
        ..stratified
    };
    let (caught, runs, _) = simulation::catch_rate(&random, 1, 25);
    assert!(
        caught * 4 < runs,
        "random canaries caught {caught} of {runs}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Safety and liveness of the pick over random fleets: every stratum with at least k
    /// agents left has a canary, none comes from a held stratum, there are at most
    /// strata + canary_count of them, and a group whose agents are all connected and
    /// healthy always starts.
    #[test]
    fn canaries_cover_every_stratum_of_k_agents(seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let canaries = rng.random_range(0..4);
        let mut spec = stratified(HaltScope::Stratum, canaries);
        spec.strata.min_agents = rng.random_range(1..30);
        let strata = rng.random_range(1..8);
        let fleet: Vec<AgentSnapshot> = (0..rng.random_range(1..200))
            .map(|i| AgentSnapshot {
                stratum: format!("os=s{}", rng.random_range(0..strata)),
                ..agent(&format!("a{i}"), "prod")
            })
            .collect();
        let mut state = RolloutState::new(&spec);
        if rng.random_bool(0.3) {
            state.held_strata.push(crate::rollout::strata::HeldStratum {
                stratum: "os=s0".into(), since_ms: 0, note: "held".into(),
            });
        }
        let out = reconcile(MONDAY, &spec, &state, &fleet, Some(&v("1.1.0")));
        let group = &out.state.groups[0];
        prop_assert_ne!(group.phase, Phase::Unstarted, "{}", group.note);
        let mut sizes = std::collections::BTreeMap::<&str, u32>::new();
        for a in &fleet { *sizes.entry(a.stratum.as_str()).or_default() += 1; }
        if canaries > 0 {
            for (stratum, n) in &sizes {
                let has = group.canaries.iter().any(|c| stratum_of(&fleet, c) == *stratum);
                if *n >= spec.strata.min_agents && !state.holds(stratum) {
                    prop_assert!(has, "stratum {} ({} agents) has no canary", stratum, n);
                }
            }
        }
        prop_assert!(group.canaries.len() <= sizes.len() + canaries as usize);
        prop_assert!(group.canaries.iter().all(|c| !state.holds(stratum_of(&fleet, c))));
    }
}

#[test]
fn every_stop_raises_the_epoch_once_and_nothing_else_does() {
    let spec = stratified(HaltScope::Stratum, 1);
    let mut fleet = fleet();
    let cp = v("1.1.0");
    let start = RolloutState::new(&spec);
    let started = reconcile(MONDAY, &spec, &start, &fleet, Some(&cp)).state;
    assert_eq!(started.stop_epoch, 0, "starting a group stops nobody");
    // A rocky canary fails: its stratum is held, a stop.
    let rocky_canary = started.groups[0]
        .canaries
        .iter()
        .find(|c| stratum_of(&fleet, c) == "os=rocky")
        .unwrap()
        .clone();
    fleet
        .iter_mut()
        .find(|a| a.agent_id == rocky_canary)
        .unwrap()
        .failed_at_ms = Some(MONDAY);
    let held = reconcile(MONDAY + 1, &spec, &started, &fleet, Some(&cp)).state;
    assert_eq!((held.stop_epoch, held.stop_ms), (1, Some(MONDAY + 1)));
    let again = reconcile(MONDAY + 2, &spec, &held, &fleet, Some(&cp)).state;
    assert_eq!(
        again.stop_epoch, 1,
        "a pass that stops nothing new keeps the epoch"
    );
    // A pause and a rollback are stops; a resume is not.
    let paused = crate::rollout::steer(
        MONDAY + 3,
        &spec,
        &again,
        &crate::rollout::RolloutVerb::Pause,
    )
    .unwrap()
    .state;
    assert_eq!(paused.stop_epoch, 2);
    let resumed = crate::rollout::steer(
        MONDAY + 4,
        &spec,
        &paused,
        &crate::rollout::RolloutVerb::Resume,
    )
    .unwrap()
    .state;
    assert_eq!(resumed.stop_epoch, 2);
    let verb = crate::rollout::RolloutVerb::Rollback {
        group: None,
        respect_windows: false,
    };
    let rolled = crate::rollout::steer(MONDAY + 5, &spec, &resumed, &verb)
        .unwrap()
        .state;
    assert_eq!(rolled.stop_epoch, 3);
}

#[test]
fn a_released_stratum_updates_and_is_not_held_again_for_what_it_was_forgiven() {
    let spec = stratified(HaltScope::Stratum, 1);
    let mut fleet = fleet();
    let rocky_canary_fails = HashSet::from(["rocky-0".to_string()]);
    // Only the first rocky agent is broken: it fails (as rocky's canary or later).
    let mut state = RolloutState::new(&spec);
    let mut now = MONDAY;
    while !state.holds("os=rocky") {
        let out = reconcile(now, &spec, &state, &fleet, Some(&v("1.1.0")));
        apply(now, &mut fleet, &out.decisions, &rocky_canary_fails);
        // Whoever the canary is, make rocky's first failure happen.
        if let Some(a) = fleet.iter_mut().find(|a| a.agent_id == "rocky-0") {
            a.failed_at_ms.get_or_insert(now);
        }
        state = out.state;
        now += 1_000;
        assert!(now < MONDAY + 60_000, "rocky was never held");
    }
    let verb = crate::rollout::RolloutVerb::ReleaseStratum {
        stratum: "os=rocky".into(),
    };
    let released = crate::rollout::steer(now, &spec, &state, &verb)
        .unwrap()
        .state;
    assert!(!released.holds("os=rocky"));
    let out = reconcile(now + 1, &spec, &released, &fleet, Some(&v("1.1.0")));
    assert!(
        !out.state.holds("os=rocky"),
        "held again for a failure already forgiven"
    );
    assert_eq!(
        out.state.stop_epoch, released.stop_epoch,
        "a release is no stop"
    );
    let rocky_1 = &out.decisions["rocky-1"];
    assert_eq!(rocky_1.target, Some(v("1.1.0")), "{rocky_1:?}");
    // A new failure after the release holds it again.
    let mut fleet = fleet.clone();
    fleet
        .iter_mut()
        .find(|a| a.agent_id == "rocky-1")
        .unwrap()
        .failed_at_ms = Some(now + 2);
    let again = reconcile(now + 3, &spec, &out.state, &fleet, Some(&v("1.1.0")));
    assert!(again.state.holds("os=rocky"));
}

#[test]
fn canaries_all_in_a_held_stratum_are_picked_again_outside_it() {
    let mut spec = stratified(HaltScope::Stratum, 1);
    // Only debian is big enough for a canary of its own: it is the one canary.
    spec.strata.min_agents = 100;
    let mut fleet = fleet();
    let state = reconcile(
        MONDAY,
        &spec,
        &RolloutState::new(&spec),
        &fleet,
        Some(&v("1.1.0")),
    )
    .state;
    let canary = state.groups[0].canaries[0].clone();
    assert_eq!(stratum_of(&fleet, &canary), "os=debian");
    fleet
        .iter_mut()
        .find(|a| a.agent_id == canary)
        .unwrap()
        .failed_at_ms = Some(MONDAY);
    let out = reconcile(MONDAY + 1, &spec, &state, &fleet, Some(&v("1.1.0")));
    assert!(out.state.holds("os=debian"));
    let group = &out.state.groups[0];
    assert_eq!(
        group.phase,
        Phase::Canary,
        "no canary has proven the target for the others"
    );
    assert!(
        group
            .canaries
            .iter()
            .all(|c| stratum_of(&fleet, c) != "os=debian"),
        "{group:?}"
    );
    assert!(group.note.contains("picked again"), "{}", group.note);
}

#[test]
fn a_done_groups_last_agents_wait_while_another_group_is_halted() {
    let mut spec = stratified(HaltScope::Rollout, 0);
    spec.groups = vec![group("dev", 0, 0), group("prod", 0, 0)];
    spec.done_threshold_pct = 50;
    let mut fleet: Vec<AgentSnapshot> = ["dev", "prod"]
        .iter()
        .flat_map(|g| (0..4).map(move |i| agent(&format!("{g}-{i}"), g)))
        .collect();
    let out = run(&spec, &mut fleet, &HashSet::from(["prod-0".to_string()]));
    assert_eq!(out.state.groups[0].phase, Phase::Done);
    assert_eq!(out.state.groups[1].phase, Phase::Halted);
    // One of dev's agents had not installed yet (it was away): it catches up no more.
    fleet
        .iter_mut()
        .find(|a| a.agent_id == "dev-3")
        .unwrap()
        .version = Some(v("1.0.0"));
    let out = reconcile(
        MONDAY + HOUR_MS,
        &spec,
        &out.state,
        &fleet,
        Some(&v("1.1.0")),
    );
    let straggler = &out.decisions["dev-3"];
    assert_eq!(straggler.target, None, "{straggler:?}");
    assert_eq!(straggler.reason, ReasonCode::GroupHalted);
}

#[test]
fn stratum_keys_clean_what_labels_may_hold_and_seeds_are_bounded() {
    use std::collections::BTreeMap;
    let labels = vec!["os".to_string(), "arch".to_string()];
    let traits = BTreeMap::from([
        ("os".to_string(), "a,arch=b\nx".to_string()),
        ("arch".to_string(), "c".to_string()),
    ]);
    assert_eq!(
        crate::rollout::strata::stratum_key(&labels, &traits),
        "os=a_arch_b_x,arch=c"
    );
    let mut spec = stratified(HaltScope::Rollout, 1);
    spec.canary_seed = "x".repeat(129);
    assert!(spec.validate().unwrap_err().contains("canary seed"));
    spec.canary_seed = "ok".into();
    spec.strata = StrataSpec {
        halt_scope: HaltScope::Stratum,
        ..StrataSpec::off()
    };
    assert!(spec.validate().unwrap_err().contains("needs strata"));
}
