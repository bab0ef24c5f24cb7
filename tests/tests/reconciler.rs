//! One reconciler among three replicas on one PostgreSQL. A simulated fleet spread over the
//! replicas (each updater fails over between all three) follows a three-group rollout
//! that moves one agent at a time; the replica holding the reconciler lease is SIGKILLed
//! three times mid-rollout. Another replica takes the lease within its time, the killed
//! replica's updaters reconnect to the others, and the rollout finishes: every agent
//! updated once, every transition written once, never two active rollouts on the channel.
//! Before the kills, the leader is stopped (SIGSTOP) until another takes over, then woken:
//! it steps down (its commits would be refused by the fence, see `lease.rs`).

use std::{path::Path, time::Duration};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, TestPostgres, bin, enrol, eventually, http_as,
    token_for,
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// 16 per group, one at a time (about 0.4 s each here): the kills below, at 5, 14 and 23
/// updated, leave at least 25 agents (~10 s) to go, so each comes mid-rollout.
const AGENTS: u64 = 48;
const WAIT: Duration = Duration::from_secs(60);
/// The lease (`--reconciler-lease-secs`): a new reconciler within this after a kill.
const LEASE_SECS: &str = "3";

async fn start_replica(first: Option<&Path>, dir: &Path, db: &str) -> CoordinatorProcess {
    std::fs::create_dir_all(dir).unwrap();
    let builder = match first {
        None => CoordinatorBuilder::with_database(dir, db),
        Some(first) => CoordinatorBuilder::replica_of(first, dir, db),
    };
    builder
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("200")
        .arg("--reconciler-lease-secs")
        .arg(LEASE_SECS)
        .start()
        .await
}

/// Whether `c` says (in `/metrics`) it runs the rollout engine.
async fn leads(c: &CoordinatorProcess, token: &str) -> bool {
    let (status, body) = http_as(c.addresses.http, "GET", "/metrics", Some(token)).await;
    status == 200 && body.lines().any(|l| l == "drover_reconciler_leader 1")
}

/// The one live replica that leads; waits for there to be exactly one.
async fn leader(replicas: &[CoordinatorProcess], live: &[bool], token: &str) -> usize {
    eventually("exactly one replica leads", WAIT, async || {
        let mut leading = Vec::new();
        for (i, c) in replicas.iter().enumerate() {
            if live[i] && leads(c, token).await {
                leading.push(i);
            }
        }
        (leading.len() == 1).then(|| leading[0])
    })
    .await
}

async fn connected_total(
    replicas: &[CoordinatorProcess],
    live: &[bool],
    root: &Path,
    token: &str,
) -> u64 {
    let mut total = 0;
    for (i, c) in replicas.iter().enumerate() {
        if live[i] {
            total += c.ctl(root, token, &["fleet", "summary"]).await["connected_agents"]
                .as_u64()
                .unwrap_or(0);
        }
    }
    total
}

async fn on_target(c: &CoordinatorProcess, root: &Path, token: &str) -> u64 {
    c.ctl(root, token, &["agents", "list", "--version", "1.1.0"])
        .await["total_matching"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_reconcilers_replica_mid_rollout_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let db = TestPostgres::create().await;
    let first = root.join("a");
    let a = start_replica(None, &first, &db.url).await;
    let b = start_replica(Some(&first), &root.join("b"), &db.url).await;
    let c = start_replica(Some(&first), &root.join("c"), &db.url).await;
    let token = token_for(&a.grpc_url()).expect("A made the bootstrap admin");
    a.ctl(root, &token, &["channels", "set", "edge", "1.0.0"])
        .await;

    // One fleet, each updater given all three replicas (it picks one at random).
    let all = [&a, &b, &c].map(|r| r.grpc_url()).join(",");
    let secret =
        enrol::join_token(&a.grpc_url(), &["dev", "staging", "prod"], AGENTS as usize).unwrap();
    let log = std::fs::File::create(root.join("simulate.log")).unwrap();
    let _fleet = tokio::process::Command::new(bin("drover-updater"))
        .args(["simulate", "--coordinator", &all, "--ca-file"])
        .arg(&a.tls.as_ref().unwrap().ca_file)
        .args(["--count", &AGENTS.to_string(), "--channel", "edge"])
        .args(["--groups", "dev,staging,prod", "--versions", "1.0.0"])
        .args(["--ramp-up-secs", "0", "--recheck-secs", "3600"])
        .args(["--unhealthy-fraction", "0", "--id-prefix", "ha"])
        .env("DROVER_JOIN_TOKEN", secret)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut replicas = [a, b, c];
    let mut live = [true; 3];
    eventually("the fleet connected", WAIT, async || {
        (connected_total(&replicas, &live, root, &token).await == AGENTS).then_some(())
    })
    .await;

    // Created on B, whoever leads; a second rollout on the channel is refused on C.
    let create = |extra: &'static [&'static str]| {
        let mut args = vec![
            "rollout",
            "create",
            "--channel",
            "edge",
            "--from",
            "1.0.0",
            "--to",
            "1.1.0",
        ];
        args.extend([
            "--group",
            "dev:canaries=1",
            "--group",
            "staging",
            "--group",
            "prod",
        ]);
        args.extend(["--max-in-flight", "1", "--done-threshold", "100"]);
        args.extend(extra);
        args
    };
    let created = replicas[1].ctl(root, &token, &create(&[])).await;
    let rollout_id = created["rollout"]["rollout_id"]
        .as_str()
        .or_else(|| created["rollout_id"].as_str())
        .unwrap_or_else(|| panic!("a rollout id in {created:#}"))
        .to_string();
    let (second, _, refusal) = replicas[2].try_ctl(root, &token, &create(&[])).await;
    assert!(
        !second,
        "a second active rollout on the channel was accepted"
    );
    assert!(
        refusal.contains("active rollout") || refusal.contains("already"),
        "the refusal says why: {refusal}"
    );

    // Once the rollout has moved on: SIGSTOP the reconciler's replica (a stalled leader),
    // let another take over, and wake it: it must step down, and write nothing meanwhile.
    let lead = leader(&replicas, &live, &token).await;
    eventually("2 agents updated", WAIT, async || {
        (on_target(&replicas[(lead + 1) % 3], root, &token).await >= 2).then_some(())
    })
    .await;
    let pid = Pid::from_raw(replicas[lead].pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    live[lead] = false;
    let next = leader(&replicas, &live, &token).await;
    assert_ne!(next, lead);
    kill(pid, Signal::SIGCONT).unwrap();
    live[lead] = true;
    eventually("the woken replica stepped down", WAIT, async || {
        (!leads(&replicas[lead], &token).await).then_some(())
    })
    .await;
    assert_eq!(leader(&replicas, &live, &token).await, next);
    println!(
        "paused the reconciler (replica {lead}); replica {next} took over; {lead} stepped down on waking"
    );

    // Three times, once the rollout has moved on: SIGKILL the reconciler's replica.
    for (round, progress) in [5, 14, 23].into_iter().enumerate() {
        let lead = leader(&replicas, &live, &token).await;
        let witness = (lead + 1) % 3;
        eventually(&format!("{progress} agents updated"), WAIT, async || {
            (on_target(&replicas[witness], root, &token).await >= progress).then_some(())
        })
        .await;
        let status = replicas[witness]
            .ctl(root, &token, &["rollout", "status", "--channel", "edge"])
            .await;
        assert_eq!(
            status["status"], "active",
            "round {round}: the kill must come mid-rollout: {status:#}"
        );
        replicas[lead].kill9().await;
        let killed = std::time::Instant::now();
        live[lead] = false;
        let next = leader(&replicas, &live, &token).await;
        assert_ne!(next, lead);
        println!(
            "round {round}: killed the reconciler (replica {lead}) at {progress}+ agents updated; \
             replica {next} took over after {:?}",
            killed.elapsed()
        );
        eventually(
            "the killed replica's updaters reconnected",
            WAIT,
            async || {
                (connected_total(&replicas, &live, root, &token).await == AGENTS).then_some(())
            },
        )
        .await;
        replicas[lead].restart().await;
        live[lead] = true;
    }

    eventually(
        "the rollout finished",
        Duration::from_secs(120),
        async || {
            let status = replicas[0]
                .ctl(root, &token, &["rollout", "status", "--channel", "edge"])
                .await;
            (status["status"] == "done").then_some(())
        },
    )
    .await;
    assert_eq!(on_target(&replicas[2], root, &token).await, AGENTS);

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let reports: Vec<(String, i64)> = sqlx::query_as(
        "SELECT agent_id, count(*) FROM update_reports WHERE to_version = '1.1.0' \
         AND outcome = 'succeeded' GROUP BY agent_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        reports.len() as u64,
        AGENTS,
        "every agent's report: {reports:?}"
    );
    // No report lost (each attempt is stored once by its key), and no agent updated twice
    // to the target: across a leader kill, a hold used to name the version last seen, which
    // sent agents still installing back (#24); a hold now names no version.
    let twice: Vec<&(String, i64)> = reports.iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        twice.is_empty(),
        "agents that updated to the target more than once: {twice:?}"
    );
    let repeated: Vec<(String, i64)> = sqlx::query_as(
        "SELECT text, count(*) FROM events WHERE rollout_id = $1 AND actor = 'engine' \
         GROUP BY text HAVING count(*) > 1",
    )
    .bind(&rollout_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        repeated.is_empty(),
        "transitions written twice: {repeated:?}"
    );
    let texts: Vec<(String,)> = sqlx::query_as(
        "SELECT text FROM events WHERE rollout_id = $1 AND actor = 'engine' ORDER BY event_id",
    )
    .bind(&rollout_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    println!("the engine's transitions: {texts:?}");
    let transitions: (i64,) =
        sqlx::query_as("SELECT count(*) FROM events WHERE rollout_id = $1 AND actor = 'engine'")
            .bind(&rollout_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        transitions.0 >= 4,
        "the engine moved the rollout: {transitions:?}"
    );
    let rollouts: (i64,) = sqlx::query_as("SELECT count(*) FROM rollouts WHERE channel = 'edge'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rollouts.0, 1, "one rollout on the channel");
    pool.close().await;
    drop(replicas);
    db.drop_database().await;
}
