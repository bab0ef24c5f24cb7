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

pub(super) fn stratified(scope: HaltScope, canaries: u32) -> RolloutSpec {
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
pub(super) fn fleet() -> Vec<AgentSnapshot> {
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

pub(super) fn stratum_of<'a>(fleet: &'a [AgentSnapshot], id: &str) -> &'a str {
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
pub(super) fn run(
    spec: &RolloutSpec,
    fleet: &mut [AgentSnapshot],
    failing: &HashSet<String>,
) -> Reconciled {
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
