//! The health verdict in the engine: a regression halts the group naming its signal, a clean
//! release bakes then is done, and too little evidence when the bake ends pauses the rollout.

use drover_rules::VerdictOutcome;

use super::tests::{MONDAY, agent, group, spec, v};
use super::*;
use crate::rollout::verdict::{HealthSample, Track, VerdictSpec};

const HOUR: i64 = 3_600_000;

fn rss(kib: u64) -> HealthSample {
    HealthSample {
        span_ms: 10_000,
        rss_kib: Some(kib),
        ..HealthSample::default()
    }
}

/// 12 agents of one active group, all updated at `at` (after the group started), their
/// RSS before 50 MB and after `after_kib(i)` (`None`: no sample after the install).
fn fleet(at: i64, after_kib: impl Fn(usize) -> Option<u64>) -> Vec<AgentSnapshot> {
    (0..12)
        .map(|i| {
            let mut track = Track::default();
            for t in 1..=5 {
                track.record(at - t * 10_000, "1.0.0", &rss(50_000 + i as u64), None, 3);
            }
            // Without samples since, the track has not seen the install.
            if let Some(kib) = after_kib(i) {
                for t in 0..4 {
                    track.record(at + t * 10_000, "1.1.0", &rss(kib), None, 3);
                }
            }
            let mut a = agent(&format!("a{i:02}"), "prod");
            a.version = Some(v("1.1.0"));
            a.updated_at_ms = Some(at);
            a.track = Some(track);
            a
        })
        .collect()
}

fn started(spec: &RolloutSpec, at: i64) -> RolloutState {
    let mut state = RolloutState::new(spec);
    state.groups[0].phase = Phase::Active;
    state.groups[0].started_ms = Some(at);
    state
}

fn verdict_spec(bake_secs: u64) -> RolloutSpec {
    let mut spec = spec(vec![group("prod", 0, 0)]);
    spec.immediate = true;
    spec.verdict = VerdictSpec {
        bake_secs,
        ..VerdictSpec::default()
    };
    spec
}

#[test]
fn a_leaking_release_halts_its_group_naming_rss() {
    let spec = verdict_spec(600);
    let now = MONDAY + 3 * HOUR;
    let fleet = fleet(now - 60_000, |i| Some(80_000 + i as u64 * 100));
    let out = reconcile(now, &spec, &started(&spec, now - 120_000), &fleet, None);
    let group = &out.state.groups[0];
    assert_eq!(group.phase, Phase::Halted, "{}", group.note);
    assert!(
        group.note.starts_with("health verdict failed: rss +"),
        "{}",
        group.note
    );
    assert_eq!(
        group.verdict.as_ref().unwrap().outcome,
        VerdictOutcome::Fail
    );
    assert!(out.events[0].text.contains("rss"), "{:?}", out.events);
}

#[test]
fn a_clean_release_bakes_then_is_done() {
    let spec = verdict_spec(600);
    let now = MONDAY + 3 * HOUR;
    let fleet = fleet(now - 60_000, |i| Some(50_000 + i as u64));
    let out = reconcile(now, &spec, &started(&spec, now - 120_000), &fleet, None);
    let group = &out.state.groups[0];
    assert_eq!(group.phase, Phase::Active, "bakes first");
    assert_eq!(group.threshold_ms, Some(now));
    assert!(group.note.starts_with("bakes until"), "{}", group.note);
    let later = now + 600_000;
    let out = reconcile(later, &spec, &out.state, &fleet, None);
    let group = &out.state.groups[0];
    assert_eq!(group.phase, Phase::Done, "{}", group.note);
    assert!(group.note.contains("health verdict pass"), "{}", group.note);
}

#[test]
fn too_little_evidence_after_the_bake_and_a_wait_pauses_and_says_what_is_missing() {
    let spec = verdict_spec(0);
    let now = MONDAY + 3 * HOUR;
    // Only 3 of 12 sent samples after their install.
    let fleet = fleet(now - 60_000, |i| (i < 3).then_some(50_000));
    let out = reconcile(now, &spec, &started(&spec, now - 120_000), &fleet, None);
    assert!(!out.state.paused, "samples may still come");
    assert!(
        out.state.groups[0]
            .note
            .starts_with("waits for health samples")
    );
    let out = reconcile(now + 600_000, &spec, &out.state, &fleet, None);
    assert!(out.state.paused);
    let stored = out.state.groups[0].verdict.as_ref().unwrap();
    assert_eq!(stored.outcome, VerdictOutcome::Inconclusive);
    let group = &out.state.groups[0];
    assert_eq!(group.phase, Phase::Active);
    assert!(
        group
            .note
            .contains("inconclusive: rss has 3 updated agent(s) watched"),
        "{}",
        group.note
    );
    assert!(out.events.iter().any(|e| e.text.contains("inconclusive")));
}

#[test]
fn an_observation_window_keeps_fresh_installs_from_counting_toward_done() {
    let mut spec = verdict_spec(0);
    spec.verdict.observe_secs = 300;
    let now = MONDAY + 3 * HOUR;
    let fleet = fleet(now - 60_000, |i| Some(50_000 + i as u64));
    let out = reconcile(now, &spec, &started(&spec, now - 120_000), &fleet, None);
    assert_eq!(out.state.groups[0].phase, Phase::Active);
    let out = reconcile(now + 240_000, &spec, &out.state, &fleet, None);
    assert_eq!(
        out.state.groups[0].phase,
        Phase::Done,
        "{}",
        out.state.groups[0].note
    );
}
