//! The reconciler's lease on a real PostgreSQL, at the store: one holder at a time; a new
//! holder only after expiry, with a larger token; and a commit under an old token (a leader
//! that stalled past its lease) writes nothing, while the current holder's commit lands.
//! The black-box side (three replicas, SIGKILL and SIGSTOP of the leader) is in
//! `reconciler.rs`.

use drover_coordinator::{
    domain::{AgentIdentity, Health, InstallerKind},
    store::{AgentWrite, Fence, NewEvent, RolloutCommit, RolloutRow, Store},
};
use drover_rules::RolloutStatus;
use drover_tests::TestPostgres;

const LONG: i64 = 60_000;

fn commit<'a>(expected_revision: i64, fence: &'a Fence, text: &str) -> RolloutCommit<'a> {
    RolloutCommit {
        rollout_id: "r-lease",
        expected_revision,
        state_json: format!("{{\"by\":\"{}\"}}", fence.holder),
        status: RolloutStatus::Active,
        now_ms: 2,
        events: vec![NewEvent {
            at_ms: 2,
            kind: drover_rules::EventKind::Rollout,
            text: text.into(),
            ..NewEvent::default()
        }],
        channel_switch: None,
        fence: Some(fence),
    }
}

async fn events_saying(store: &Store, text: &str) -> usize {
    let events = store.recent_events("", 1000).await.unwrap();
    events.iter().filter(|e| e.text == text).count()
}

#[tokio::test]
async fn only_the_current_lease_holder_commits() {
    let db = TestPostgres::create().await;
    let store = Store::open(&db.url).await.unwrap();
    assert!(store.shared());

    // First come, first served; renewing keeps the token; others wait.
    let first = store.acquire_lease("a", LONG).await.unwrap();
    assert_eq!(first, Some(1));
    assert_eq!(store.acquire_lease("a", LONG).await.unwrap(), Some(1));
    assert_eq!(store.acquire_lease("b", LONG).await.unwrap(), None);

    let row = RolloutRow {
        rollout_id: "r-lease".into(),
        channel: "beta".into(),
        spec_json: "{}".into(),
        state_json: "{}".into(),
        status: "active".into(),
        created_ms: 1,
        updated_ms: 1,
        revision: 0,
        trace_parent: None,
    };
    store.create_rollout(&row, &[]).await.unwrap();
    let fence_a = Fence {
        holder: "a".into(),
        token: 1,
    };
    assert_eq!(
        store
            .commit_rollout(&commit(0, &fence_a, "a moved it"))
            .await
            .unwrap(),
        Some(1)
    );

    // A stalls: its lease runs out (renewed with no time left), and b takes over.
    assert_eq!(store.acquire_lease("a", -1).await.unwrap(), Some(1));
    let second = store.acquire_lease("b", LONG).await.unwrap();
    assert_eq!(second, Some(2), "a new holder gets a larger token");
    assert_eq!(store.acquire_lease("a", LONG).await.unwrap(), None);

    // A wakes up and commits what it computed before: refused, nothing written.
    assert_eq!(
        store
            .commit_rollout(&commit(1, &fence_a, "a again"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(events_saying(&store, "a again").await, 0);
    // Even with b's token, a is not b.
    let forged = Fence {
        holder: "a".into(),
        token: 2,
    };
    assert_eq!(
        store
            .commit_rollout(&commit(1, &forged, "a as b"))
            .await
            .unwrap(),
        None
    );
    let fence_b = Fence {
        holder: "b".into(),
        token: 2,
    };
    assert_eq!(
        store
            .commit_rollout(&commit(1, &fence_b, "b moved it"))
            .await
            .unwrap(),
        Some(2)
    );
    let stored = store.rollout("r-lease").await.unwrap().unwrap();
    assert_eq!(stored.revision, 2);
    assert_eq!(stored.state_json, "{\"by\":\"b\"}");

    // Releasing lets the next replica in at once, with the next token.
    store.release_lease("b").await.unwrap();
    assert_eq!(store.acquire_lease("c", LONG).await.unwrap(), Some(3));
    assert_eq!(
        store
            .commit_rollout(&commit(2, &fence_b, "b after release"))
            .await
            .unwrap(),
        None
    );
    db.drop_database().await;
}

#[tokio::test]
async fn replicas_are_alive_while_they_say_so() {
    let db = TestPostgres::create().await;
    let store = Store::open(&db.url).await.unwrap();
    store.replica_alive("r1").await.unwrap();
    store.replica_alive("r2").await.unwrap();
    let live = store.live_replicas(LONG).await.unwrap();
    assert!(live.contains("r1") && live.contains("r2"), "{live:?}");
    assert!(
        store.live_replicas(-1).await.unwrap().is_empty(),
        "nobody was heard from in the future"
    );
    db.drop_database().await;
}

fn hello(agent_id: &str, replica: &str) -> AgentWrite {
    AgentWrite::Hello {
        identity: Box::new(AgentIdentity {
            agent_id: agent_id.into(),
            hostname: "h".into(),
            group: "dev".into(),
            channel: "beta".into(),
            installer: InstallerKind::Command,
            agent_version: Some(semver::Version::new(1, 0, 0)),
            updater_version: "0.1.0".into(),
            labels: Default::default(),
            health: Health::Healthy,
        }),
        now_ms: 1,
        replica: Some(replica.into()),
    }
}

/// What other replicas read of an agent: who holds its session, and when its engine facts
/// last changed (a last-seen flush is not a change; a session's end on a replica that no
/// longer holds it changes nothing).
#[tokio::test]
async fn replicas_read_who_holds_each_agent_and_what_changed() {
    let db = TestPostgres::create().await;
    let store = Store::open(&db.url).await.unwrap();
    store
        .write_agent_batch(&[hello("ag-1", "r1")])
        .await
        .unwrap();
    let seen = store.agents_changed_since(0).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].connected_on.as_deref(), Some("r1"));
    let changed = seen[0].changed_ms;
    assert!(changed > 0, "the trigger set it");

    store.touch_agents(&["ag-1".into()], 99).await.unwrap();
    assert!(
        store
            .agents_changed_since(changed + 1)
            .await
            .unwrap()
            .is_empty(),
        "a last-seen flush is not a change"
    );

    // The agent moves to r2; r1's late goodbye must not clear it.
    store
        .write_agent_batch(&[hello("ag-1", "r2")])
        .await
        .unwrap();
    let gone_from_r1 = AgentWrite::Disconnected {
        agent_id: "ag-1".into(),
        replica: "r1".into(),
    };
    store.write_agent_batch(&[gone_from_r1]).await.unwrap();
    let now = &store.agents_changed_since(0).await.unwrap()[0];
    assert_eq!(now.connected_on.as_deref(), Some("r2"));
    assert!(now.changed_ms >= changed);

    let gone_from_r2 = AgentWrite::Disconnected {
        agent_id: "ag-1".into(),
        replica: "r2".into(),
    };
    store.write_agent_batch(&[gone_from_r2]).await.unwrap();
    assert_eq!(
        store.agents_changed_since(0).await.unwrap()[0].connected_on,
        None
    );
    db.drop_database().await;
}
