//! Stops: each raises the rollout's epoch once; a released stratum is forgiven what held
//! it; canaries lost to a held stratum are picked again; a rollout-wide halt holds a done
//! group's last agents; what a spec and a stratum key accept.

use std::collections::HashSet;

use drover_rules::{HaltScope, ReasonCode};

use super::strata_tests::{fleet, run, stratified, stratum_of};
use super::tests::{MONDAY, agent, apply, group, v};
use super::*;
use crate::rollout::strata::StrataSpec;

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
