//! The policy's examples and properties (safety and liveness).

use super::*;
use crate::state::{
    BrokenVersion, DirectiveRecord, DirectiveSource, InstallFailure, SavedSchedule,
};
use drover_rules::{MaintenanceSchedule, Weekdays};
use proptest::prelude::*;

const MONDAY: i64 = 1_795_392_000_000; // 2026-11-23T00:00Z
const HOUR: i64 = 3_600_000;

fn state(current: &str, target: &str, cp: &str) -> PersistedState {
    PersistedState {
        agent_id: "a".into(),
        agent_version: Some(current.into()),
        directive: Some(DirectiveRecord {
            directive_id: "d-1".into(),
            target_version: Some(target.into()),
            critical: false,
            reason: ReasonCode::ChannelTarget.as_str().into(),
            reason_detail: String::new(),
            control_plane_version: Some(cp.into()),
            received_ms: 0,
            source: DirectiveSource::Push,
            schedule: Some(SavedSchedule {
                // Daily 02:00–03:00 UTC.
                window: MaintenanceSchedule {
                    days: Weekdays::ALL,
                    start_minute_utc: 120,
                    duration_minutes: 60,
                },
                valid_until_ms: MONDAY + 30 * 24 * HOUR,
            }),
            attempt_id: String::new(),
            rollout_id: String::new(),
            rollout_epoch: 0,
            trace_context: Default::default(),
        }),
        ..PersistedState::default()
    }
}

fn directive(s: &mut PersistedState) -> &mut DirectiveRecord {
    s.directive.as_mut().unwrap()
}

#[test]
fn the_seed_rules() {
    let s = state("1.0.0", "1.1.0", "1.1.0");
    let outside = MONDAY + 5 * HOUR;
    let inside = MONDAY + 2 * HOUR + 10 * 60_000;
    assert_eq!(
        decide(inside, &s, Health::Healthy).reason(),
        ReasonCode::InWindow
    );
    let waiting = decide(outside, &s, Health::Healthy);
    assert_eq!(waiting.reason(), ReasonCode::OutsideWindow);
    assert!(
        matches!(waiting, Decision::Wait { recheck_at_ms: Some(t), .. } if t == MONDAY + 26 * HOUR)
    );
    assert_eq!(
        decide(outside, &s, Health::Unhealthy).reason(),
        ReasonCode::AgentUnhealthy
    );
    assert_eq!(
        decide(outside, &s, Health::Unknown).reason(),
        ReasonCode::OutsideWindow
    );

    let mut critical = s.clone();
    directive(&mut critical).critical = true;
    assert_eq!(
        decide(outside, &critical, Health::Healthy).reason(),
        ReasonCode::Critical
    );

    let mut none = s.clone();
    directive(&mut none).schedule = None;
    assert_eq!(
        decide(outside, &none, Health::Healthy).reason(),
        ReasonCode::NoSchedule
    );

    let mut expired = s.clone();
    directive(&mut expired)
        .schedule
        .as_mut()
        .unwrap()
        .valid_until_ms = outside - 1;
    assert_eq!(
        decide(outside, &expired, Health::Healthy).reason(),
        ReasonCode::ScheduleExpired
    );
}

#[test]
fn constraints_and_broken_versions_block_even_critical_updates() {
    let mut above = state("1.0.0", "1.2.0", "1.1.0");
    directive(&mut above).critical = true;
    assert_eq!(
        decide(MONDAY, &above, Health::Unhealthy).reason(),
        ReasonCode::ConstraintAboveControlPlane
    );
    assert_eq!(
        decide(MONDAY, &state("1.0.0", "1.0.5", "3.0.0"), Health::Unhealthy).reason(),
        ReasonCode::ConstraintBelowControlPlane
    );

    let mut broken = state("1.0.0", "1.1.0", "1.1.0");
    broken.broken_versions.insert(
        "1.1.0".into(),
        BrokenVersion {
            reason: "unhealthy".into(),
            attempt_id: "x".into(),
            directive_attempt_id: String::new(),
            at_ms: 0,
        },
    );
    directive(&mut broken).critical = true;
    assert_eq!(
        decide(MONDAY, &broken, Health::Unhealthy).reason(),
        ReasonCode::VersionBroken
    );
    directive(&mut broken).attempt_id = "retry-1".into();
    assert_eq!(
        decide(MONDAY, &broken, Health::Unhealthy).reason(),
        ReasonCode::Critical,
        "an explicit new attempt retries"
    );
}

#[test]
fn failed_installs_wait_for_a_retry_or_a_new_directive() {
    let mut s = state("1.0.0", "1.1.0", "1.1.0");
    s.directive.as_mut().unwrap().schedule = None;
    s.install_failure = Some(InstallFailure {
        directive_id: "d-1".into(),
        target: "1.1.0".into(),
        kind: FailureKind::Transient,
        attempts: 1,
        retry_at_ms: MONDAY + HOUR,
        reason: None,
    });
    assert_eq!(
        decide(MONDAY, &s, Health::Healthy).reason(),
        ReasonCode::RetryPending
    );
    s.install_failure.as_mut().unwrap().reason = Some(ReasonCode::PackageManagerBusy);
    assert_eq!(
        decide(MONDAY, &s, Health::Healthy).reason(),
        ReasonCode::PackageManagerBusy,
        "the wait says why the last attempt failed"
    );
    assert_eq!(
        decide(MONDAY + HOUR, &s, Health::Healthy).reason(),
        ReasonCode::NoSchedule
    );
    s.install_failure.as_mut().unwrap().kind = FailureKind::Refused;
    s.install_failure.as_mut().unwrap().reason = None;
    assert_eq!(
        decide(MONDAY + HOUR, &s, Health::Healthy).reason(),
        ReasonCode::InstallRefused
    );
    // A refusal by the signed release metadata keeps its own code while it waits.
    s.install_failure.as_mut().unwrap().reason = Some(ReasonCode::ReleaseBelowFloor);
    assert_eq!(
        decide(MONDAY + HOUR, &s, Health::Healthy).reason(),
        ReasonCode::ReleaseBelowFloor
    );
    directive(&mut s).directive_id = "d-2".into();
    assert_eq!(
        decide(MONDAY + HOUR, &s, Health::Healthy).reason(),
        ReasonCode::NoSchedule
    );
}

#[test]
fn an_interrupted_revert_is_finished() {
    let mut s = state("1.1.0", "1.1.0", "1.1.0");
    s.previous_version = Some("1.0.0".into());
    s.broken_versions.insert(
        "1.1.0".into(),
        BrokenVersion {
            reason: "unhealthy".into(),
            attempt_id: "x".into(),
            directive_attempt_id: String::new(),
            at_ms: 0,
        },
    );
    assert!(
        matches!(decide(MONDAY, &s, Health::Healthy), Decision::Revert { to, .. } if to == "1.0.0")
    );
}

fn broken(s: &mut PersistedState, version: &str) {
    s.broken_versions.insert(
        version.into(),
        BrokenVersion {
            reason: "unhealthy".into(),
            attempt_id: "x".into(),
            directive_attempt_id: String::new(),
            at_ms: 0,
        },
    );
}

/// #21 item 2: a failed revert waits out its backoff (it looped 544 times in 20 s).
#[test]
fn a_failed_revert_is_retried_after_its_backoff_only() {
    let mut s = state("1.1.0", "1.1.0", "1.1.0");
    s.previous_version = Some("1.0.0".into());
    broken(&mut s, "1.1.0");
    s.revert_failure = Some(crate::state::RevertFailure {
        version: "1.1.0".into(),
        back_to: Some("1.0.0".into()),
        attempts: 1,
        retry_at_ms: MONDAY + 30_000,
        why: "restart failed".into(),
    });
    let waiting = decide(MONDAY, &s, Health::Unhealthy);
    // Also when the files went back but the restart failed (the current version is the
    // one to go back to): the revert is retried, not forgotten.
    let mut restarted = s.clone();
    restarted.agent_version = Some("1.0.0".into());
    assert!(matches!(
        decide(MONDAY + 30_000, &restarted, Health::Unhealthy),
        Decision::Revert { from, to, .. } if from == "1.1.0" && to == "1.0.0"
    ));
    assert!(
        matches!(&waiting, Decision::Wait { reason: ReasonCode::RevertFailed, recheck_at_ms: Some(at), .. } if *at == MONDAY + 30_000),
        "{waiting:?}"
    );
    assert!(matches!(
        decide(MONDAY + 30_000, &s, Health::Unhealthy),
        Decision::Revert { to, .. } if to == "1.0.0"
    ));
}

/// #21 item 2: a fresh host whose first install failed runs a broken version with
/// nothing to go back to; that is not "up to date".
#[test]
fn a_broken_target_with_nothing_to_go_back_to_needs_an_operator() {
    let mut s = state("1.4.0", "1.4.0", "1.4.0");
    broken(&mut s, "1.4.0");
    let decision = decide(MONDAY, &s, Health::Unhealthy);
    assert!(
        matches!(
            &decision,
            Decision::Wait {
                reason: ReasonCode::RevertFailed,
                recheck_at_ms: None,
                ..
            }
        ),
        "{decision:?}"
    );
    // A fix served as another version installs.
    directive(&mut s).target_version = Some("1.4.1".into());
    directive(&mut s).control_plane_version = Some("1.4.1".into());
    assert!(matches!(
        decide(MONDAY, &s, Health::Unhealthy),
        Decision::Install { target, .. } if target == "1.4.1"
    ));
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        Just(Health::Healthy),
        Just(Health::Unhealthy),
        Just(Health::Unknown)
    ]
}

proptest! {
    /// Whatever the clock, schedule, flags and health: an install is always allowed by
    /// the rules, and a healthy agent outside its window with a valid schedule waits.
    #[test]
    fn installs_only_when_the_rules_allow(
        offset in 0i64..(14 * 24 * HOUR),
        days in 1u8..128, start in 0u32..1440, duration in 1u32..=1440,
        valid_for in -HOUR..(30 * 24 * HOUR),
        has_schedule in any::<bool>(), critical in any::<bool>(), h in health(),
        target in (0u64..4, 0u64..3), cp in (0u64..4, 0u64..3), broken in any::<bool>(),
    ) {
        let now = MONDAY + offset;
        let target = format!("{}.{}.0", target.0, target.1);
        let cp = format!("{}.{}.0", cp.0, cp.1);
        let mut s = state("0.0.1", &target, &cp);
        let window = MaintenanceSchedule { days: Weekdays(days), start_minute_utc: start, duration_minutes: duration };
        let d = directive(&mut s);
        d.critical = critical;
        d.schedule = has_schedule.then_some(SavedSchedule { window, valid_until_ms: now + valid_for });
        if broken {
            s.broken_versions.insert(target.clone(), BrokenVersion {
                reason: "r".into(), attempt_id: "a".into(), directive_attempt_id: String::new(), at_ms: 0,
            });
        }
        let decision = decide(now, &s, h);
        let allowed_version = check_constraints(&parse_version(&target).unwrap(), &parse_version(&cp).unwrap()).is_ok();
        let schedule_usable = has_schedule && valid_for > 0;
        if let Decision::Install { .. } = decision {
            prop_assert!(allowed_version, "installed a version outside the constraints");
            prop_assert!(!broken, "installed a broken version without being asked");
            let in_window = window.window_containing(now).is_some();
            prop_assert!(critical || h == Health::Unhealthy || !schedule_usable || in_window);
        }
        if allowed_version && !broken && !critical && h != Health::Unhealthy && schedule_usable
            && window.window_containing(now).is_none() {
            prop_assert_eq!(decision.reason(), ReasonCode::OutsideWindow);
        }
        if allowed_version && !broken && (critical || h == Health::Unhealthy) {
            prop_assert!(matches!(decision, Decision::Install { .. }), "{:?}", decision);
        }
    }
}
