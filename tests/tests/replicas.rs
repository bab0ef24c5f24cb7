//! Replicas on one PostgreSQL share their changes through the change feed (LISTEN/NOTIFY):
//! an admin change made on replica A reaches the updaters connected to replica B at once —
//! B's periodic re-read is turned off here (`--view-refresh-secs 3600`), so only the feed
//! can carry it — and a revocation on A cuts the agent's live stream on B. Rollouts shared
//! between replicas, with one reconciler, are in `reconciler.rs`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, TestPostgres, bin, droverctl_json, enrol, eventually,
    token_for,
};

const WAIT: Duration = Duration::from_secs(30);

async fn replica(dir: &Path, db: &str) -> CoordinatorProcess {
    std::fs::create_dir_all(dir).unwrap();
    CoordinatorBuilder::with_database(dir, db)
        .control_plane("2.0.0")
        .arg("--view-refresh-secs")
        .arg("3600")
        .arg("--reconcile-ms")
        .arg("200")
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_reaches_updaters_on_another_at_once() {
    let root = tempfile::tempdir().unwrap();
    let db = TestPostgres::create().await;
    let a = replica(&root.path().join("a"), &db.url).await;
    let b = replica(&root.path().join("b"), &db.url).await;
    let (url_a, url_b) = (a.grpc_url(), b.grpc_url());
    let token = token_for(&url_a).expect("A made the bootstrap admin");
    droverctl_json(&url_a, &["channels", "set", "edge", "1.0.0"]).await;

    // Five simulated updaters on B, enrolled with a token made on A (one shared store).
    let secret = enrol::join_token(&url_a, &["dev"], 5).unwrap();
    let log = std::fs::File::create(root.path().join("simulate.log")).unwrap();
    let _fleet = tokio::process::Command::new(bin("drover-updater"))
        .args(["simulate", "--coordinator", &url_b, "--ca-file"])
        .arg(&b.tls.as_ref().unwrap().ca_file)
        .args(["--count", "5", "--groups", "dev", "--channel", "edge"])
        .args([
            "--versions",
            "1.0.0",
            "--ramp-up-secs",
            "0",
            "--recheck-secs",
            "3600",
        ])
        .args(["--unhealthy-fraction", "0", "--id-prefix", "onb"])
        .env("DROVER_JOIN_TOKEN", secret)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("five updaters connected to B", WAIT, async || {
        let s = b.ctl(root.path(), &token, &["fleet", "summary"]).await;
        (s["connected_agents"] == 5).then_some(())
    })
    .await;

    // A channel change on A: B pushes it to its updaters, which install it.
    let started = Instant::now();
    droverctl_json(&url_a, &["channels", "set", "edge", "1.1.0"]).await;
    eventually("B's updaters run 1.1.0", WAIT, async || {
        let agents = droverctl_json(&url_a, &["agents", "list", "--version", "1.1.0"]).await;
        (agents["total_matching"] == 5).then_some(())
    })
    .await;
    let took = started.elapsed();
    println!("change on A → all 5 updaters on B installed it: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "the feed carried it, not a periodic re-read: {took:?}"
    );

    // A revocation on A cuts the agent's live stream on B.
    droverctl_json(&url_a, &["agents", "revoke", "onb-00000"]).await;
    eventually("B cut the revoked agent", WAIT, async || {
        let s = b.ctl(root.path(), &token, &["fleet", "summary"]).await;
        (s["connected_agents"] == 4).then_some(())
    })
    .await;
    drop((a, b));
    db.drop_database().await;
}
