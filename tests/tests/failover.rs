//! Updaters that fail over: two coordinator replicas on one PostgreSQL database, sharing
//! one CA, and a real updater given both addresses. SIGKILL the replica it is connected to
//! and it carries on with the other; a report made while it fails over, and one committed
//! by a replica that died before acknowledging it, are each recorded exactly once.

use std::{path::Path, time::Duration};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, TestPostgres, UpdaterBuilder, UpdaterProcess,
    eventually, token_for,
};
use serde_json::Value;

const AGENT: &str = "roamer-1";
/// How long a failover may take: the session's end is seen at once (the socket closes),
/// and the other address is tried without waiting for a backoff.
const FAILOVER: Duration = Duration::from_secs(20);

async fn connected(c: &CoordinatorProcess, root: &Path, token: &str) -> u64 {
    c.ctl(root, token, &["fleet", "summary"]).await["connected_agents"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until exactly one report to `version` and one update event for it are stored
/// (read through `c`), and the updater has nothing left to send.
async fn recorded_once(
    c: &CoordinatorProcess,
    root: &Path,
    token: &str,
    updater: &UpdaterProcess,
    version: &str,
) {
    let history = eventually(
        &format!("the report of {version} recorded and acknowledged"),
        Duration::from_secs(60),
        async || {
            let history = c.ctl(root, token, &["agents", "history", AGENT]).await;
            let acked = updater.state()["pending_reports"]
                .as_array()
                .is_some_and(|p| p.is_empty());
            (history["agent_version"] == version && acked).then_some(history)
        },
    )
    .await;
    let reports: Vec<&Value> = history["reports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["to_version"] == version)
        .collect();
    assert_eq!(reports.len(), 1, "one report of {version}: {history:#}");
    assert_eq!(reports[0]["outcome"], "succeeded", "{history:#}");
    let events = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "update" && e["text"].as_str().unwrap().contains(version))
        .count();
    assert_eq!(events, 1, "one update event for {version}: {history:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updater_fails_over_between_replicas_and_no_report_is_lost_or_doubled() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let db = TestPostgres::create().await;
    let (dir_a, dir_b) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let a = CoordinatorBuilder::with_database(&dir_a, &db.url)
        .start()
        .await;
    let token = token_for(&a.grpc_url()).expect("the first replica's bootstrap token");
    a.ctl(root, &token, &["control-plane", "set", "2.0.0"])
        .await;
    a.ctl(root, &token, &["channels", "set", "beta", "1.0.0"])
        .await;
    let b = CoordinatorBuilder::replica_of(&dir_a, &dir_b, &db.url)
        .start()
        .await;
    assert_eq!(
        a.tls.as_ref().unwrap().ca_pin,
        b.tls.as_ref().unwrap().ca_pin,
        "one CA for both replicas"
    );

    // The second by name: `localhost` is resolved at each connect and its certificate
    // checked for the name (both replicas' certificate names it).
    let both = format!(
        "{},https://localhost:{}",
        a.grpc_url(),
        b.addresses.grpc.port()
    );
    let state = root.join("updater");
    let started = |version: &str| state.join(format!("started-{version}"));
    // An install starts, then waits for the test to let it finish.
    let release = |version: &str| {
        std::fs::write(state.join(format!("release-{version}")), "").expect("release file")
    };
    let updater = UpdaterBuilder::new(&both, &state, AGENT)
        .arg("--channel", "beta")
        .arg("--agent-version", "1.0.0")
        .arg("--recheck-secs", "3600")
        .arg(
            "--install-command",
            format!(
                "cd {} && touch started-$DROVER_TARGET_VERSION && \
                 while [ ! -e release-$DROVER_TARGET_VERSION ]; do sleep 0.1; done",
                state.display()
            ),
        )
        .start();
    let mut replicas = [a, b];

    // 1. Connected to one replica (either may be first); SIGKILL it: the other has it.
    let on = eventually("connected to a replica", FAILOVER, async || {
        for (i, c) in replicas.iter().enumerate() {
            if connected(c, root, &token).await == 1 {
                return Some(i);
            }
        }
        None
    })
    .await;
    let other = 1 - on;
    replicas[on].kill9().await;
    eventually(
        "the updater reconnected to the other replica",
        FAILOVER,
        async || (connected(&replicas[other], root, &token).await == 1).then_some(()),
    )
    .await;
    let other_url = replicas[other].grpc_url();
    eventually("the updater says where it is", FAILOVER, async || {
        updater
            .log()
            .lines()
            .any(|l| l.contains("connected to the coordinator") && l.contains(&other_url))
            .then_some(())
    })
    .await;
    replicas[on].restart().await;

    // 2. A report made while failing over: the install runs, its replica dies meanwhile,
    // and the report reaches the other replica once.
    let (on, other) = (other, on);
    replicas[on]
        .ctl(root, &token, &["channels", "set", "beta", "1.1.0"])
        .await;
    eventually("the install of 1.1.0 started", FAILOVER, async || {
        started("1.1.0").exists().then_some(())
    })
    .await;
    // Replicas re-read each other's channel changes every 5 s; until then the other would
    // still serve 1.0.0.
    eventually("the other replica knows 1.1.0", FAILOVER, async || {
        let channels = replicas[other]
            .ctl(root, &token, &["channels", "list"])
            .await;
        channels
            .as_array()?
            .iter()
            .any(|c| c["name"] == "beta" && c["version"] == "1.1.0")
            .then_some(())
    })
    .await;
    replicas[on].kill9().await;
    release("1.1.0");
    eventually("failed over during the install", FAILOVER, async || {
        (connected(&replicas[other], root, &token).await == 1).then_some(())
    })
    .await;
    recorded_once(&replicas[other], root, &token, &updater, "1.1.0").await;

    // 3. A report committed by a replica that dies before acknowledging it: resent to the
    // other replica, which finds it stored and only acknowledges it.
    replicas[on]
        .restart_with_failpoints("report.before_ack=crash")
        .await;
    replicas[other].kill9().await;
    eventually("on the armed replica", FAILOVER, async || {
        (connected(&replicas[on], root, &token).await == 1).then_some(())
    })
    .await;
    replicas[on]
        .ctl(root, &token, &["channels", "set", "beta", "1.2.0"])
        .await;
    eventually("the install of 1.2.0 started", FAILOVER, async || {
        started("1.2.0").exists().then_some(())
    })
    .await;
    replicas[other].restart().await; // reads 1.2.0 as it starts
    release("1.2.0");
    let log = replicas[on].wait_crash(Duration::from_secs(30)).await;
    assert!(log.contains("failpoint report.before_ack"), "{log}");
    eventually("failed over after the crash", FAILOVER, async || {
        (connected(&replicas[other], root, &token).await == 1).then_some(())
    })
    .await;
    recorded_once(&replicas[other], root, &token, &updater, "1.2.0").await;

    drop((replicas, updater));
    db.drop_database().await;
}
