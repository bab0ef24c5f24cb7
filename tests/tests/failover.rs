//! Updaters that fail over: two coordinator replicas on one PostgreSQL database, sharing
//! one CA, and a real updater given both addresses. SIGKILL the replica it is connected to
//! and it carries on with the other; a report made while it fails over, and one committed
//! by a replica that died before acknowledging it, are each recorded exactly once.

use std::{path::Path, time::Duration};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, TestPostgres, UpdaterBuilder, UpdaterProcess, bin,
    eventually, token_for,
};
use serde_json::Value;

const AGENT: &str = "roamer-1";
/// How long a failover may take: the session's end is seen at once (the socket closes),
/// and the other address is tried without waiting for a backoff.
const FAILOVER: Duration = Duration::from_secs(20);

/// `droverctl -o json` against `c` with the bootstrap admin's token (made by the first
/// replica, valid on both: credentials live in the shared store).
async fn ctl(c: &CoordinatorProcess, root: &Path, token: &str, args: &[&str]) -> Value {
    let tls = c.tls.as_ref().expect("a TLS coordinator");
    let profile = serde_json::json!({
        "coordinator": c.grpc_url(),
        "ca_file": tls.ca_file,
        "credentials": { "token": token },
    });
    let path = root.join(format!("profile-{}.json", c.addresses.grpc.port()));
    std::fs::write(&path, serde_json::to_vec(&profile).unwrap()).unwrap();
    let output = tokio::process::Command::new(bin("droverctl"))
        .arg("--profile")
        .arg(&path)
        .args(args)
        .args(["-o", "json"])
        .env_remove("DROVER_TOKEN")
        .output()
        .await
        .expect("run droverctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "droverctl {args:?} against {} failed: {}",
        c.grpc_url(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{args:?}: {err}: {stdout}"))
}

async fn connected(c: &CoordinatorProcess, root: &Path, token: &str) -> u64 {
    ctl(c, root, token, &["fleet", "summary"]).await["connected_agents"]
        .as_u64()
        .unwrap_or(0)
}

/// The second replica: its own data directory holding a copy of the first's CA (it signs
/// and verifies agents' certificates with it), and the first's server certificate.
fn second_replica(first: &Path, dir: &Path, database: &str) -> CoordinatorBuilder {
    let tls = first.join("drover-data/tls");
    let builder = CoordinatorBuilder::with_database(dir, database);
    let own = builder.data_dir().join("tls");
    std::fs::create_dir_all(&own).unwrap();
    for file in ["ca.pem", "ca-key.pem"] {
        std::fs::copy(tls.join(file), own.join(file)).unwrap();
    }
    let path = |file: &str| tls.join(file).display().to_string();
    builder
        .arg("--tls-cert")
        .arg(path("server.pem"))
        .arg("--tls-key")
        .arg(path("server-key.pem"))
        .arg("--tls-ca")
        .arg(path("ca.pem"))
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
            let history = ctl(c, root, token, &["agents", "history", AGENT]).await;
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
    ctl(&a, root, &token, &["control-plane", "set", "2.0.0"]).await;
    ctl(&a, root, &token, &["channels", "set", "beta", "1.0.0"]).await;
    let b = second_replica(&dir_a, &dir_b, &db.url).start().await;
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
    ctl(
        &replicas[on],
        root,
        &token,
        &["channels", "set", "beta", "1.1.0"],
    )
    .await;
    eventually("the install of 1.1.0 started", FAILOVER, async || {
        started("1.1.0").exists().then_some(())
    })
    .await;
    // Replicas re-read each other's channel changes every 5 s; until then the other would
    // still serve 1.0.0.
    eventually("the other replica knows 1.1.0", FAILOVER, async || {
        let channels = ctl(&replicas[other], root, &token, &["channels", "list"]).await;
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
    ctl(
        &replicas[on],
        root,
        &token,
        &["channels", "set", "beta", "1.2.0"],
    )
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
