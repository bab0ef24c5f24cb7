//! Retention on both backends: old and surplus events and update reports are pruned in
//! batches; new rows and each agent's newest report stay.

use drover_coordinator::{
    domain::{UpdateOutcome, UpdateReport, now_ms},
    retention::{RetentionConfig, prune},
    store::{AuditRecord, NewEvent, PruneTable, Store},
};
use drover_rules::{AdminRole, AuditResult};
use drover_tests::{CoordinatorBuilder, TestPostgres, droverctl_json, eventually};
use sqlx::{Connection, PgConnection, SqliteConnection};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const DAY_MS: i64 = 24 * 3600 * 1000;

fn event(at_ms: i64, text: &str) -> NewEvent {
    NewEvent {
        at_ms,
        kind: drover_rules::EventKind::Admin,
        actor: "test".into(),
        text: text.into(),
        ..NewEvent::default()
    }
}

fn report(attempt: &str) -> UpdateReport {
    UpdateReport {
        attempt_id: attempt.into(),
        from_version: "1.0.0".into(),
        to_version: "1.1.0".into(),
        outcome: UpdateOutcome::Failed,
        error: "boom".into(),
        started_ms: 1,
        finished_ms: 2,
        directive_id: "d".into(),
        rollout_id: String::new(),
    }
}

/// Small batches, no pause: several statements per pass, quickly.
fn config() -> RetentionConfig {
    RetentionConfig {
        batch: 4,
        pause: Duration::ZERO,
        ..RetentionConfig::default()
    }
}

async fn texts(store: &Store) -> Vec<String> {
    let events = store.recent_events("", 1000).await.unwrap();
    events.into_iter().map(|e| e.text).collect()
}

async fn pruning(store: Store, report_ids: impl AsyncFn() -> Vec<String>) {
    let now = now_ms();
    let config = config();
    let never = CancellationToken::new();

    // Events by age: ten from 40 days ago go, the three from now stay. (Events are only
    // ever written with the change they record: here, control-plane versions.)
    let old = (0..10).map(|i| (now - 40 * DAY_MS + i, "old".to_string()));
    let new = (0..3).map(|i| (now + i, format!("new-{i}")));
    for (minor, (at_ms, text)) in old.chain(new).enumerate() {
        store
            .set_control_plane_version(&format!("2.{minor}.0"), at_ms, &event(at_ms, &text))
            .await
            .unwrap();
    }
    let removed = prune(
        &store,
        PruneTable::Events,
        Duration::from_secs(30 * 24 * 3600),
        1_000_000,
        &config,
        &never,
    )
    .await
    .unwrap();
    assert_eq!(removed, 10);
    assert_eq!(texts(&store).await, ["new-0", "new-1", "new-2"]);

    // Events by count: the newest two stay, whatever their age.
    let removed = prune(
        &store,
        PruneTable::Events,
        Duration::from_secs(30 * 24 * 3600),
        2,
        &config,
        &never,
    )
    .await
    .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(texts(&store).await, ["new-1", "new-2"]);

    // Audit records by age, then by count, like events; the one change (newest) is never
    // pruned by count: refusals cannot push it out.
    let records = [
        now - 400 * DAY_MS,
        now - 399 * DAY_MS,
        now,
        now + 1,
        now + 2,
        now + 3,
    ];
    for (i, at_ms) in records.into_iter().enumerate() {
        let (target, result) = match i {
            5 => ("change".to_string(), AuditResult::Ok),
            _ => (format!("c{i}"), AuditResult::Refused),
        };
        let record = AuditRecord {
            at_ms,
            actor: "admin".into(),
            role: AdminRole::Admin.into(),
            action: "SetChannelVersion".into(),
            target,
            result,
            detail: String::new(),
        };
        store.record_audit(&record).await.unwrap();
    }
    let year = Duration::from_secs(365 * 24 * 3600);
    let removed = prune(&store, PruneTable::Audit, year, 1_000_000, &config, &never)
        .await
        .unwrap();
    assert_eq!(removed, 2);
    let removed = prune(&store, PruneTable::Audit, year, 2, &config, &never)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let kept: Vec<String> = store
        .audit_since(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.record.target)
        .collect();
    assert_eq!(kept, ["change", "c4", "c3"]);

    // Reports by age: agent a's two older reports go; its newest stays although old, and so
    // does agent b's only report.
    let long_ago = now - 100 * DAY_MS;
    for (agent, attempt, at) in [
        ("a", "a-1", long_ago),
        ("a", "a-2", long_ago + 1),
        ("a", "a-3", long_ago + 2),
        ("b", "b-1", long_ago),
        ("c", "c-1", now - 10),
        ("c", "c-2", now),
    ] {
        // Their events are new: the event checks above are done.
        let recorded = store
            .record_report(agent, &report(attempt), at, &event(now, "report"))
            .await
            .unwrap();
        assert!(recorded.new);
    }
    let removed = prune(
        &store,
        PruneTable::Reports,
        Duration::from_secs(90 * 24 * 3600),
        1_000_000,
        &config,
        &never,
    )
    .await
    .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(report_ids().await, ["a-3", "b-1", "c-1", "c-2"]);

    // Reports by count: keep one (c-2); c-1 goes, each agent's newest stays.
    let removed = prune(
        &store,
        PruneTable::Reports,
        Duration::from_secs(90 * 24 * 3600),
        1,
        &config,
        &never,
    )
    .await
    .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(report_ids().await, ["a-3", "b-1", "c-2"]);

    // Nothing left to prune: a pass changes nothing.
    for table in [PruneTable::Events, PruneTable::Reports] {
        let removed = prune(
            &store,
            table,
            Duration::from_secs(3600),
            1_000_000,
            &config,
            &never,
        )
        .await
        .unwrap();
        assert_eq!(removed, 0, "{table:?}");
    }
}

const REPORT_IDS: &str = "SELECT attempt_id FROM update_reports ORDER BY attempt_id";

#[tokio::test]
async fn pruning_keeps_new_rows_and_each_agents_newest_report_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("drover.db").display());
    let store = Store::open(&url).await.unwrap();
    pruning(store, async || {
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        let rows: Vec<(String,)> = sqlx::query_as(REPORT_IDS)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        rows.into_iter().map(|(id,)| id).collect()
    })
    .await;
}

#[tokio::test]
async fn pruning_keeps_new_rows_and_each_agents_newest_report_on_postgres() {
    let db = TestPostgres::create().await;
    let store = Store::open(&db.url).await.unwrap();
    pruning(store, async || {
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let rows: Vec<(String,)> = sqlx::query_as(REPORT_IDS)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        rows.into_iter().map(|(id,)| id).collect()
    })
    .await;
    db.drop_database().await;
}

/// The flags reach the running coordinator: with room for three events, a burst of admin
/// changes leaves the newest three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_prunes_events_beyond_its_flags() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .arg("--retain-events-max")
        .arg("3")
        .arg("--retention-interval-secs")
        .arg("1")
        .start()
        .await;
    let url = coordinator.grpc_url();
    for minor in 0..8 {
        droverctl_json(&url, &["control-plane", "set", &format!("2.{minor}.0")]).await;
    }
    let events = eventually(
        "at most three events left",
        Duration::from_secs(15),
        async || {
            let (_, body) = drover_tests::http(
                coordinator.addresses.http,
                "GET",
                "/api/v1/events?limit=100",
            )
            .await;
            let events: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
            (!events.is_empty() && events.len() <= 3).then_some(events)
        },
    )
    .await;
    let newest = events.last().unwrap()["text"].as_str().unwrap().to_string();
    assert!(
        newest.contains("2.7.0"),
        "the newest event stays: {events:?}"
    );
}
