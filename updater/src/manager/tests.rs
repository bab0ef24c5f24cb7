//! Stop epochs: a directive older than a stop already heard is never acted on, also after
//! a restart, and each stop kept is queued for acknowledgement.

use super::*;
use crate::{
    shared::test_config,
    state::{DirectiveSource, StateStore},
};

fn directive(id: &str, rollout_id: &str, epoch: u64, target: Option<&str>) -> DirectiveRecord {
    DirectiveRecord {
        directive_id: id.into(),
        target_version: target.map(Into::into),
        critical: false,
        reason: "group_active".into(),
        reason_detail: String::new(),
        control_plane_version: None,
        received_ms: 0,
        source: DirectiveSource::Push,
        schedule: None,
        attempt_id: String::new(),
        rollout_id: rollout_id.into(),
        rollout_epoch: epoch,
        trace_context: Default::default(),
    }
}

async fn shared(store: StateStore) -> Shared {
    let state = store.load(Some("1.0.0".into())).await.unwrap();
    Shared::new(test_config("http://127.0.0.1:1", &[]), store, state)
}

#[tokio::test]
async fn a_directive_older_than_a_heard_stop_is_ignored_and_each_stop_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::Dir {
        path: dir.path().to_path_buf(),
        agent_id: Some("a-1".into()),
    };
    let shared = shared(store.clone()).await;
    // Install 1.1.0 under epoch 0, then the halt (epoch 1: hold).
    accept(&shared, directive("d-1", "r-1", 0, Some("1.1.0"))).await;
    accept(&shared, directive("d-2", "r-1", 1, None)).await;
    // A re-check answered before the halt arrives after it: it names the target again.
    accept(&shared, directive("d-1", "r-1", 0, Some("1.1.0"))).await;
    let held = shared.state.lock().await.directive.clone().unwrap();
    assert_eq!(
        (held.directive_id.as_str(), held.target_version),
        ("d-2", None)
    );
    let acks: Vec<(String, u64)> = shared
        .pending_acks
        .lock()
        .iter()
        .map(|a| (a.directive_id.clone(), a.rollout_epoch))
        .collect();
    assert_eq!(
        acks,
        [("d-1".into(), 0), ("d-2".into(), 1)],
        "the stale one is not acknowledged"
    );

    // After a restart the heard stop is remembered.
    let restarted = self::shared(store).await;
    accept(&restarted, directive("d-1", "r-1", 0, Some("1.1.0"))).await;
    let held = restarted.state.lock().await.directive.clone().unwrap();
    assert_eq!(held.directive_id, "d-2");
    // A new rollout starts its epochs afresh.
    accept(&restarted, directive("d-9", "r-2", 0, Some("1.2.0"))).await;
    let held = restarted.state.lock().await.directive.clone().unwrap();
    assert_eq!(held.directive_id, "d-9");
}
