//! The store's reads behind the dashboard (agent search, the version timeline's samples),
//! run identically against SQLite and the real PostgreSQL.

use std::collections::BTreeMap;

use drover_coordinator::{
    domain::{AgentFilter, AgentIdentity, Health, InstallerKind},
    store::{AgentSearch, AgentSort, Store},
};
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

/// The dashboard's agent search (substring of id or hostname, any case, wildcards taken
/// literally; sorted; offset pages) and the version timeline's samples.
async fn dashboard_reads(store: &Store) {
    for (id, version) in [
        ("Dash-1", "1.0.0"),
        ("dash-2", "1.2.0"),
        ("dash_3", "1.1.0"),
    ] {
        store
            .upsert_agent(&identity(id, "edge", version), 5_000)
            .await
            .unwrap();
    }
    let search = |text: &str, sort: AgentSort, descending: bool| AgentSearch {
        filter: AgentFilter::default(),
        text: text.into(),
        sort,
        descending,
    };
    let ids = |agents: Vec<drover_coordinator::domain::AgentRecord>| {
        agents.into_iter().map(|a| a.agent_id).collect::<Vec<_>>()
    };
    let found = store
        .search_agents(&search("DASH", AgentSort::Version, true), 0, 10)
        .await
        .unwrap();
    assert_eq!(ids(found), ["dash-2", "dash_3", "Dash-1"]);
    // `_` is a character, not LIKE's wildcard.
    let found = store
        .search_agents(&search("h_3", AgentSort::AgentId, false), 0, 10)
        .await
        .unwrap();
    assert_eq!(ids(found), ["dash_3"]);
    let page = store
        .search_agents(&search("dash", AgentSort::AgentId, false), 1, 1)
        .await
        .unwrap();
    assert_eq!(ids(page), ["dash-2"]);
    let total = store
        .count_search(&search("dash-", AgentSort::AgentId, false))
        .await
        .unwrap();
    assert_eq!(total, 2);

    let sample = [("1.0.0".to_string(), 2), ("1.1.0".to_string(), 1)];
    store
        .record_version_sample(10_000, &sample, 0)
        .await
        .unwrap();
    store
        .record_version_sample(70_000, &sample[..1], 0)
        .await
        .unwrap();
    assert_eq!(store.version_samples(0).await.unwrap().len(), 3);
    // Older samples go with the next write.
    store
        .record_version_sample(130_000, &sample[..1], 60_000)
        .await
        .unwrap();
    let kept = store.version_samples(0).await.unwrap();
    assert_eq!(
        kept,
        [
            (70_000, "1.0.0".to_string(), 2),
            (130_000, "1.0.0".to_string(), 2)
        ]
    );
}

#[tokio::test]
async fn sqlite_serves_the_dashboards_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    dashboard_reads(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_serves_the_dashboards_reads() {
    let db = TestPostgres::create().await;
    let store = Store::open(&db.url).await.unwrap();
    dashboard_reads(&store).await;
    store.close().await;
    db.drop_database().await;
}
