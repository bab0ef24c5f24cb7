//! The store's contract, run identically against SQLite and the real PostgreSQL.

use std::collections::BTreeMap;

use drover_coordinator::{
    domain::{
        AgentFilter, AgentIdentity, AgentStatus, Health, InstallerKind, UpdateOutcome,
        UpdateReport, UpdaterState,
    },
    store::{AgentWrite, NewEvent, ReportRecorded, RolloutCommit, RolloutRow, Store},
};
use drover_rules::{MaintenanceSchedule, Weekdays};
use drover_tests::TestPostgres;

fn identity(id: &str, group: &str, version: &str) -> AgentIdentity {
    AgentIdentity {
        agent_id: id.into(),
        hostname: format!("{id}.example"),
        group: group.into(),
        channel: "stable/rolling".into(),
        installer: InstallerKind::Command,
        agent_version: Some(semver::Version::parse(version).unwrap()),
        updater_version: "0.1.0".into(),
        labels: BTreeMap::from([("zone".into(), "a".into())]),
        health: Health::Healthy,
    }
}

fn report(attempt: &str, to: &str, outcome: UpdateOutcome) -> UpdateReport {
    UpdateReport {
        attempt_id: attempt.into(),
        from_version: "1.0.0".into(),
        to_version: to.into(),
        outcome,
        error: String::new(),
        started_ms: 1,
        finished_ms: 2,
        directive_id: "d-1".into(),
        rollout_id: String::new(),
    }
}

fn event(text: &str) -> NewEvent {
    NewEvent {
        at_ms: 1,
        kind: drover_rules::EventKind::Admin,
        text: text.into(),
        ..NewEvent::default()
    }
}

async fn event_count(store: &Store, text: &str) -> usize {
    let events = store.recent_events("", 1000).await.unwrap();
    events.iter().filter(|e| e.text == text).count()
}

async fn store_contract(store: Store) {
    // Agents: insert, re-hello keeps first_seen, filters, pagination, summary.
    store
        .upsert_agent(&identity("a-1", "prod", "1.0.0"), 1_000)
        .await
        .unwrap();
    store
        .upsert_agent(&identity("a-2", "prod", "1.1.0"), 1_000)
        .await
        .unwrap();
    store
        .upsert_agent(&identity("a-3", "dev", "1.0.0"), 1_000)
        .await
        .unwrap();
    store
        .upsert_agent(&identity("a-1", "prod", "1.0.0"), 5_000)
        .await
        .unwrap();
    let a1 = store.get_agent("a-1").await.unwrap().unwrap();
    assert_eq!((a1.first_seen_ms, a1.last_seen_ms), (1_000, 5_000));
    assert_eq!(a1.labels.get("zone").map(String::as_str), Some("a"));
    assert!(store.get_agent("nope").await.unwrap().is_none());

    let prod = AgentFilter {
        group: Some("prod".into()),
        ..AgentFilter::default()
    };
    assert_eq!(store.count_agents(&prod).await.unwrap(), 2);
    let page1 = store
        .list_agents(&AgentFilter::default(), "", 2)
        .await
        .unwrap();
    let page2 = store
        .list_agents(&AgentFilter::default(), &page1[1].agent_id, 2)
        .await
        .unwrap();
    let ids: Vec<_> = page1
        .iter()
        .chain(&page2)
        .map(|a| a.agent_id.as_str())
        .collect();
    assert_eq!(ids, ["a-1", "a-2", "a-3"]);
    let v100 = AgentFilter {
        agent_version: Some("1.0.0".into()),
        ..AgentFilter::default()
    };
    assert_eq!(store.count_agents(&v100).await.unwrap(), 2);

    // Status changes are written; batched liveness touches many agents in one statement.
    let status = AgentStatus {
        health: Health::Unhealthy,
        updater_state: UpdaterState::Installing,
        agent_version: Some("1.0.0"),
    };
    store
        .update_agent_status("a-3", status, 6_000)
        .await
        .unwrap();
    let unhealthy = AgentFilter {
        health: Some(Health::Unhealthy),
        ..AgentFilter::default()
    };
    assert_eq!(store.count_agents(&unhealthy).await.unwrap(), 1);
    let before = store.write_statements();
    store
        .touch_agents(&["a-1".into(), "a-2".into(), "a-3".into()], 9_000)
        .await
        .unwrap();
    assert_eq!(
        store.write_statements() - before,
        1,
        "one statement for the whole batch"
    );
    for id in ["a-1", "a-2", "a-3"] {
        assert_eq!(
            store.get_agent(id).await.unwrap().unwrap().last_seen_ms,
            9_000
        );
    }

    // Reports: stored once per agent and attempt id, with their event in the same commit;
    // a success moves the version only from the version the agent is recorded on.
    let r1 = report("r-1", "1.1.0", UpdateOutcome::Succeeded);
    let recorded = store
        .record_report("a-1", &r1, 10_000, &event("a-1 r-1"))
        .await
        .unwrap();
    let moved = ReportRecorded {
        new: true,
        version_moved: true,
    };
    assert_eq!(recorded, moved);
    let resent = store
        .record_report("a-1", &r1, 11_000, &event("a-1 r-1"))
        .await
        .unwrap();
    assert!(!resent.new && !resent.version_moved);
    assert_eq!(
        event_count(&store, "a-1 r-1").await,
        1,
        "a resend writes no event"
    );
    // Another agent's attempt with the same id is its own report, not a duplicate.
    let other = store
        .record_report("a-3", &r1, 11_500, &event("a-3 r-1"))
        .await
        .unwrap();
    assert_eq!(other, moved);
    // An older report (it finished before r-1, from 1.0.0) arriving late moves nothing back.
    let mut stale = report("r-0", "1.0.5", UpdateOutcome::Succeeded);
    stale.finished_ms = 1;
    let late = store
        .record_report("a-1", &stale, 11_600, &event("a-1 r-0"))
        .await
        .unwrap();
    assert!(late.new && !late.version_moved);
    let a1 = store.get_agent("a-1").await.unwrap().unwrap();
    assert_eq!(a1.agent_version.as_deref(), Some("1.1.0"));
    assert_eq!(a1.last_report.unwrap().attempt_id, "r-1");
    // #22 item 1: an older attempt that starts from the recorded version (1.1.0 → 1.0.9)
    // is stored too, and moves nothing back either: attempt order, not arrival order.
    let mut from_recorded = report("r-00", "1.0.9", UpdateOutcome::Succeeded);
    from_recorded.from_version = "1.1.0".into();
    from_recorded.finished_ms = 1;
    let late = store
        .record_report("a-1", &from_recorded, 11_700, &event("a-1 r-00"))
        .await
        .unwrap();
    assert!(late.new && !late.version_moved);
    let a1 = store.get_agent("a-1").await.unwrap().unwrap();
    assert_eq!(a1.agent_version.as_deref(), Some("1.1.0"));
    assert_eq!(a1.last_report.unwrap().attempt_id, "r-1");
    let failed = store
        .record_report(
            "a-2",
            &report("r-2", "1.2.0", UpdateOutcome::Failed),
            12_000,
            &event("a-2 r-2"),
        )
        .await
        .unwrap();
    assert!(failed.new && !failed.version_moved);
    assert_eq!(
        store
            .get_agent("a-2")
            .await
            .unwrap()
            .unwrap()
            .agent_version
            .as_deref(),
        Some("1.1.0")
    );

    let summary = store.fleet_summary().await.unwrap();
    let prod_110: u64 = summary
        .iter()
        .filter(|r| r.group == "prod" && r.agent_version == "1.1.0")
        .map(|r| r.count)
        .sum();
    assert_eq!(prod_110, 2);
    assert_eq!(summary.iter().map(|r| r.count).sum::<u64>(), 3);
    assert_eq!(
        store
            .get_agent("a-3")
            .await
            .unwrap()
            .unwrap()
            .agent_version
            .as_deref(),
        Some("1.1.0")
    );

    // Channels and the control-plane version.
    let channels = store.list_channels().await.unwrap();
    let names: Vec<_> = channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["default", "stable/rolling"]);
    store
        .set_channel_version("beta", "1.2.0", 20_000, &event("beta 1.2.0"))
        .await
        .unwrap();
    store
        .set_channel_version("beta", "1.3.0", 21_000, &event("beta 1.3.0"))
        .await
        .unwrap();
    store
        .set_channel_critical("beta", true, 22_000, &event("beta critical"))
        .await
        .unwrap();
    let beta = store.get_channel("beta").await.unwrap().unwrap();
    assert_eq!(
        (beta.version.as_deref(), beta.critical),
        (Some("1.3.0"), true)
    );
    let missing = store
        .set_channel_critical("nope", true, 1, &event("nope critical"))
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("droverctl channels set nope"), "{missing}");
    assert_eq!(store.control_plane_version().await.unwrap(), None);
    store
        .set_control_plane_version("2.0.0", 30_000, &event("cp 2.0.0"))
        .await
        .unwrap();
    assert_eq!(
        store.control_plane_version().await.unwrap(),
        Some(("2.0.0".into(), 30_000))
    );
    assert_eq!(
        store
            .agents_per_channel()
            .await
            .unwrap()
            .get("stable/rolling"),
        Some(&3)
    );

    // Maintenance schedules per group.
    let window = MaintenanceSchedule {
        days: Weekdays::parse("mon-fri").unwrap(),
        start_minute_utc: 120,
        duration_minutes: 60,
    };
    store
        .set_schedule("prod", &window, 40_000, &event("prod window"))
        .await
        .unwrap();
    store
        .set_schedule(
            "dev",
            &MaintenanceSchedule {
                duration_minutes: 30,
                ..window
            },
            40_000,
            &event("dev window"),
        )
        .await
        .unwrap();
    store
        .set_schedule(
            "prod",
            &MaintenanceSchedule {
                start_minute_utc: 180,
                ..window
            },
            41_000,
            &event("prod window later"),
        )
        .await
        .unwrap();
    let schedules = store.list_schedules().await.unwrap();
    assert_eq!(schedules.len(), 2);
    assert_eq!(
        (
            schedules[1].group.as_str(),
            schedules[1].schedule.start_minute_utc
        ),
        ("prod", 180)
    );
    assert_eq!(schedules[1].schedule.days, window.days);
    assert!(
        store
            .clear_schedule("dev", &event("dev cleared"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .clear_schedule("dev", &event("dev cleared"))
            .await
            .unwrap()
    );
    assert_eq!(store.list_schedules().await.unwrap().len(), 1);
    rollout_commits_are_compare_and_set(&store).await;
    batches_write_many_agents_at_once(&store).await;
    // Every committed change has exactly one event; refused ones have none.
    for (text, count) in [
        ("beta 1.2.0", 1),
        ("beta critical", 1),
        ("nope critical", 0),
        ("cp 2.0.0", 1),
        ("prod window", 1),
        ("dev cleared", 1),
    ] {
        assert_eq!(event_count(&store, text).await, count, "{text}");
    }
    store.close().await;
}

/// A rollout transition is compare-and-set: the second commit computed from the same
/// revision writes nothing — no state, no event, no channel switch.
async fn rollout_commits_are_compare_and_set(store: &Store) {
    let row = RolloutRow {
        rollout_id: "r-cas".into(),
        channel: "beta".into(),
        spec_json: "{}".into(),
        state_json: "{}".into(),
        status: "active".into(),
        created_ms: 1,
        updated_ms: 1,
        revision: 0,
        trace_parent: Some("0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331".into()),
    };
    store
        .create_rollout(&row, &[event("created")])
        .await
        .unwrap();
    let again = store
        .create_rollout(
            &RolloutRow {
                rollout_id: "r-other".into(),
                ..row.clone()
            },
            &[],
        )
        .await;
    assert!(
        again.is_err(),
        "a second active rollout on one channel is refused"
    );
    let finish = |text: &str| RolloutCommit {
        rollout_id: "r-cas",
        expected_revision: 0,
        state_json: "{\"done\":true}".into(),
        status: drover_rules::RolloutStatus::Done,
        now_ms: 2,
        events: vec![event(text)],
        channel_switch: Some(("beta".into(), "9.9.9".into())),
        fence: None,
    };
    assert_eq!(
        store.commit_rollout(&finish("finished")).await.unwrap(),
        Some(1)
    );
    store
        .set_channel_version("beta", "1.4.0", 3, &event("beta 1.4.0"))
        .await
        .unwrap();
    assert_eq!(
        store
            .commit_rollout(&finish("finished again"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(event_count(store, "finished").await, 1);
    assert_eq!(event_count(store, "finished again").await, 0);
    let beta = store.get_channel("beta").await.unwrap().unwrap();
    assert_eq!(
        beta.version.as_deref(),
        Some("1.4.0"),
        "no second channel switch"
    );
    let stored = store.rollout("r-cas").await.unwrap().unwrap();
    assert_eq!((stored.status.as_str(), stored.revision), ("done", 1));
}

/// Several agents' writes in one group commit, as the writer sends them.
async fn batches_write_many_agents_at_once(store: &Store) {
    let mut hello = identity("b-1", "prod", "1.0.0");
    let mut writes = vec![AgentWrite::Hello {
        identity: Box::new(hello.clone()),
        now_ms: 50_000,
        replica: None,
    }];
    hello.agent_id = "b-2".into();
    writes.push(AgentWrite::Hello {
        identity: Box::new(hello),
        now_ms: 50_000,
        replica: None,
    });
    let outcomes = store.write_agent_batch(&writes).await.unwrap();
    assert_eq!(outcomes, [None, None]);
    let report_write = |agent: &str, attempt: &str, from: &str, to: &str| AgentWrite::Report {
        agent_id: agent.into(),
        report: Box::new(UpdateReport {
            from_version: from.into(),
            ..report(attempt, to, UpdateOutcome::Succeeded)
        }),
        received_ms: 51_000,
        event: event(&format!("{agent} {attempt}")),
    };
    let status = AgentStatus {
        health: Health::Unhealthy,
        updater_state: UpdaterState::Idle,
        agent_version: Some("1.0.0"),
    };
    let writes = vec![
        report_write("b-1", "x-1", "1.0.0", "1.1.0"),
        // Moves nothing: b-2 is not on 0.9.0.
        report_write("b-2", "x-1", "0.9.0", "1.1.0"),
        AgentWrite::status("a-3", status, 51_000),
    ];
    let outcomes = store.write_agent_batch(&writes).await.unwrap();
    let moved = ReportRecorded {
        new: true,
        version_moved: true,
    };
    let kept = ReportRecorded {
        new: true,
        version_moved: false,
    };
    assert_eq!(outcomes, [Some(moved), Some(kept), None]);
    let version =
        |id: &'static str| async move { store.get_agent(id).await.unwrap().unwrap().agent_version };
    assert_eq!(version("b-1").await.as_deref(), Some("1.1.0"));
    assert_eq!(version("b-2").await.as_deref(), Some("1.0.0"));
    assert_eq!(
        store.get_agent("a-3").await.unwrap().unwrap().health,
        Health::Unhealthy
    );
    assert_eq!(event_count(store, "b-1 x-1").await, 1);
    assert_eq!(event_count(store, "b-2 x-1").await, 1);
    // Resending the batch writes nothing new.
    let outcomes = store.write_agent_batch(&writes[..2]).await.unwrap();
    assert!(
        outcomes.iter().all(|o| o.is_some_and(|r| !r.new)),
        "{outcomes:?}"
    );
    assert_eq!(event_count(store, "b-1 x-1").await, 1);
}

#[tokio::test]
async fn sqlite_store_keeps_its_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    store_contract(store).await;
}

#[tokio::test]
async fn postgres_store_keeps_its_contract() {
    let db = TestPostgres::create().await;
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.backend_name(), "postgres");
    store_contract(store).await;
    db.drop_database().await;
}

#[tokio::test]
async fn reopening_a_database_keeps_everything_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = Store::open(&url).await.unwrap();
    store
        .upsert_agent(&identity("a-1", "prod", "1.0.0"), 1)
        .await
        .unwrap();
    store.close().await;
    let store = Store::open(&url).await.unwrap();
    assert!(store.get_agent("a-1").await.unwrap().is_some());
}

#[tokio::test]
async fn a_file_that_is_not_a_database_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let err = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("Drover database") || err.contains("migrate"),
        "{err}"
    );
    // Nothing was overwritten.
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x42u8; 8192]);
}

#[tokio::test]
async fn an_unreachable_postgres_gets_a_clear_error() {
    let err = Store::open("postgres://postgres@127.0.0.1:1/none")
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
}
