//! Which agents and reports a group's gates count (#22): agents there when it started,
//! failures that arrived after its start.

use drover_rules::ReasonCode;

use super::tests::{MONDAY, agent, group, spec, v};
use super::*;

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
