//! The freeze alarm (#28): held release metadata past its expiry stops every install and
//! says so; before it, decisions are unchanged and a wait wakes at the expiry at the latest.

use super::*;
use crate::state::{DirectiveRecord, DirectiveSource, HeldRelease};
use proptest::prelude::*;

const NOW: i64 = 1_795_392_000_000;

fn waiting_for(target: &str, critical: bool, release: Option<HeldRelease>) -> PersistedState {
    PersistedState {
        agent_id: "a".into(),
        agent_version: Some("1.0.0".into()),
        directive: Some(DirectiveRecord {
            directive_id: "d-1".into(),
            target_version: Some(target.into()),
            critical,
            reason: ReasonCode::ChannelTarget.as_str().into(),
            reason_detail: String::new(),
            control_plane_version: Some("2.0.0".into()),
            received_ms: 0,
            source: DirectiveSource::Push,
            schedule: None,
            attempt_id: String::new(),
            rollout_id: String::new(),
            rollout_epoch: 0,
            trace_context: Default::default(),
        }),
        release,
        ..PersistedState::default()
    }
}

#[test]
fn expired_metadata_stops_installs_and_says_why() {
    let held = HeldRelease {
        version: 3,
        expires_ms: NOW,
    };
    let s = waiting_for("1.1.0", true, Some(held));
    let decision = decide(NOW, &s, Health::Unhealthy);
    assert_eq!(decision.reason(), ReasonCode::ReleaseMetadataExpired);
    assert!(matches!(decision, Decision::Wait { .. }));
    // Up to date is no excuse: a frozen fleet is up to date with what it was told.
    let s = waiting_for("1.0.0", false, Some(held));
    assert_eq!(
        decide(NOW + 1, &s, Health::Healthy).reason(),
        ReasonCode::ReleaseMetadataExpired
    );
    // Never verified anything within the grace a fresh updater gets: said as missing.
    let fresh = waiting_for("1.0.0", false, Some(HeldRelease { version: 0, ..held }));
    assert_eq!(
        decide(NOW, &fresh, Health::Healthy).reason(),
        ReasonCode::ReleaseMetadataMissing
    );
    let before = decide(NOW - 1, &s, Health::Healthy);
    assert_eq!(before.reason(), ReasonCode::UpToDate);
    assert!(matches!(
        before,
        Decision::Wait {
            recheck_at_ms: Some(NOW),
            ..
        }
    ));
}

proptest! {
    /// Safety: never an install with expired metadata. Liveness: before the expiry the
    /// decision is what it would be without metadata, and a wait is due again by then.
    #[test]
    fn the_expiry_is_the_only_difference_and_is_never_missed(
        expires_in in -HOUR_MS..HOUR_MS, critical in any::<bool>(), up_to_date in any::<bool>(),
        unhealthy in any::<bool>(),
    ) {
        let held = HeldRelease { version: 2, expires_ms: NOW + expires_in };
        let target = if up_to_date { "1.0.0" } else { "1.1.0" };
        let health = if unhealthy { Health::Unhealthy } else { Health::Healthy };
        let with = decide(NOW, &waiting_for(target, critical, Some(held)), health);
        let without = decide(NOW, &waiting_for(target, critical, None), health);
        if expires_in <= 0 {
            prop_assert_eq!(with.reason(), ReasonCode::ReleaseMetadataExpired);
            let installs = matches!(with, Decision::Install { .. });
            prop_assert!(!installs);
        } else {
            prop_assert_eq!(with.reason(), without.reason());
            if let Decision::Wait { recheck_at_ms, .. } = with {
                let due = recheck_at_ms.is_some_and(|at| at <= held.expires_ms);
                prop_assert!(due);
            }
        }
    }
}

const HOUR_MS: i64 = 3_600_000;
