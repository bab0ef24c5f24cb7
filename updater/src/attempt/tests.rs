//! Every report names the directive and the rollout that caused it, also after a crash.

use std::collections::HashSet;

use super::*;
use crate::{
    convert,
    shared::test_config,
    state::{DirectiveRecord, DirectiveSource, StateStore},
};

fn directive(directive_id: &str, rollout_id: &str, target: &str) -> DirectiveRecord {
    DirectiveRecord {
        directive_id: directive_id.into(),
        target_version: Some(target.into()),
        critical: false,
        reason: "group_active".into(),
        reason_detail: String::new(),
        control_plane_version: None,
        received_ms: 0,
        source: DirectiveSource::Push,
        schedule: None,
        attempt_id: String::new(),
        rollout_id: rollout_id.into(),
        rollout_epoch: 0,
        trace_context: Default::default(),
    }
}

async fn shared_with(store: StateStore, first: DirectiveRecord) -> Shared {
    let mut state = store.load(Some("1.0.0".into())).await.unwrap();
    state.directive = Some(first);
    Shared::new(test_config("http://127.0.0.1:1", &["1.2.0"]), store, state)
}

#[tokio::test]
async fn every_report_names_its_directive_and_rollout_with_its_own_attempt_id() {
    let store = StateStore::Memory {
        agent_id: "a-1".into(),
    };
    let shared = shared_with(store, directive("d-1", "r-7", "1.1.0")).await;
    install(&shared, "1.1.0").await;
    shared.state.lock().await.directive = Some(directive("d-2", "r-8", "1.2.0"));
    install(&shared, "1.2.0").await; // broken here: reverted
    shared.state.lock().await.directive = Some(directive("d-3", "", "1.3.0"));
    install(&shared, "1.3.0").await; // no rollout governs this one

    let reports = shared.state.lock().await.pending_reports.clone();
    let seen: Vec<_> = reports
        .iter()
        .map(|r| (r.directive_id.as_str(), r.rollout_id.as_str(), r.outcome))
        .collect();
    assert_eq!(
        seen,
        [
            ("d-1", "r-7", Outcome::Succeeded),
            ("d-2", "r-8", Outcome::Reverted),
            ("d-3", "", Outcome::Succeeded),
        ]
    );
    let ids: HashSet<_> = reports.iter().map(|r| r.attempt_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "attempt ids are unique");
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
    let wire = convert::report_to_proto(&reports[1]);
    assert_eq!(
        (wire.rollout_id.as_str(), wire.directive_id.as_str()),
        ("r-8", "d-2")
    );
}

#[tokio::test]
async fn an_attempt_resumed_after_a_crash_still_names_its_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let store = || StateStore::Dir {
        path: dir.path().into(),
        agent_id: Some("a-1".into()),
    };
    // Before the crash: the attempt was journaled in its verifying phase.
    let before = shared_with(store(), directive("d-1", "r-7", "1.1.0")).await;
    let journaled = InFlight {
        attempt_id: uuid::Uuid::new_v4().to_string(),
        directive_id: "d-1".into(),
        rollout_id: "r-7".into(),
        directive_attempt_id: String::new(),
        from: Some("1.0.0".into()),
        to: "1.1.0".into(),
        phase: Phase::Verifying,
        started_ms: 1,
        failure: String::new(),
        host_failure: None,
        reason: "group_active".into(),
        // Kept in the journal, so the resumed attempt continues the directive's trace.
        trace_context: [(
            "traceparent".to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        )]
        .into(),
    };
    set_in_flight(&before, Some(&journaled)).await;
    drop(before);

    // After the restart the directive names another rollout; the report keeps the journal's.
    let after = shared_with(store(), directive("d-2", "r-9", "1.2.0")).await;
    let in_flight = after.state.lock().await.in_flight.clone().unwrap();
    assert_eq!(in_flight, journaled);
    resume(&after, in_flight).await;
    let state = after.state.lock().await;
    let report = state.last_report.as_ref().unwrap();
    assert_eq!(report.attempt_id, journaled.attempt_id);
    assert_eq!(
        (report.directive_id.as_str(), report.rollout_id.as_str()),
        ("d-1", "r-7")
    );
    assert_eq!(report.outcome, Outcome::Succeeded);
}
