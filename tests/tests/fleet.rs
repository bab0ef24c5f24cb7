//! The fleet end to end: a real coordinator process, real updater processes over TCP, and
//! droverctl, on both store backends.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, TestPostgres, UpdaterBuilder, UpdaterProcess,
    droverctl, droverctl_json, eventually,
};
use serde_json::Value;

/// Updaters re-check only hourly here, so anything they learn within seconds came by push.
const NO_RECHECK: &str = "3600";

fn start_updaters(
    coordinator: &CoordinatorProcess,
    root: &Path,
    count: usize,
) -> Vec<UpdaterProcess> {
    (0..count)
        .map(|i| {
            let dir = root.join(format!("updater-{i:03}"));
            let installed = dir.join("installed-version");
            UpdaterBuilder::new(&coordinator.grpc_url(), &dir, &format!("agent-{i:03}"))
                .arg("--group", ["dev", "staging", "prod"][i % 3])
                .arg("--channel", "beta")
                .arg("--agent-version", "1.0.0")
                .arg("--recheck-secs", NO_RECHECK)
                .arg(
                    "--install-command",
                    format!(
                        "printf %s \"$DROVER_TARGET_VERSION\" > {}",
                        installed.display()
                    ),
                )
                .start()
        })
        .collect()
}

async fn connected(url: &str) -> u64 {
    droverctl_json(url, &["fleet", "summary"]).await["connected_agents"]
        .as_u64()
        .unwrap_or(0)
}

/// The scenario of issue 2's "done when": push to every updater, the summary shows it, and a
/// SIGKILL of the coordinator loses no agent record.
async fn push_then_crash(mut coordinator: CoordinatorProcess, root: &Path, count: usize) {
    let url = coordinator.grpc_url();
    droverctl_json(&url, &["control-plane", "set", "2.0.0"]).await;
    droverctl_json(&url, &["channels", "set", "beta", "1.0.0"]).await;
    let updaters = start_updaters(&coordinator, root, count);
    eventually(
        "every updater connected",
        Duration::from_secs(60),
        async || (connected(&url).await == count as u64).then_some(()),
    )
    .await;

    let pushed_at = Instant::now();
    droverctl_json(&url, &["channels", "set", "beta", "1.1.0"]).await;
    eventually(
        "every updater holds the 1.1.0 directive",
        Duration::from_secs(20),
        async || {
            updaters
                .iter()
                .all(|u| u.state()["directive"]["target_version"] == "1.1.0")
                .then_some(())
        },
    )
    .await;
    let push_latency = pushed_at.elapsed();
    for updater in &updaters {
        let state = updater.state();
        assert_eq!(
            state["directive"]["source"], "push",
            "{} learned by polling",
            state["agent_id"]
        );
    }
    eprintln!("{count} updaters held the new directive {push_latency:?} after `channels set`");

    let summary = eventually(
        "the summary shows the fleet on 1.1.0",
        Duration::from_secs(30),
        async || {
            let summary = droverctl_json(&url, &["fleet", "summary"]).await;
            (summary["by_version"]["1.1.0"] == count as u64).then_some(summary)
        },
    )
    .await;
    let per_group: u64 = summary["by_group"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(per_group, count as u64);
    for updater in &updaters {
        let installed =
            std::fs::read_to_string(updater.state_dir.join("installed-version")).unwrap();
        assert_eq!(
            installed, "1.1.0",
            "the install command ran with the target version"
        );
    }

    coordinator.kill9().await;
    coordinator.restart().await;
    let agents = droverctl_json(&url, &["agents", "list", "--all", "--limit", "7"]).await;
    assert_eq!(agents["total_matching"], count as u64);
    let listed = agents["agents"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        count,
        "paging with --all returns every agent once"
    );
    assert!(
        listed.iter().all(|a| a["agent_version"] == "1.1.0"),
        "versions survived SIGKILL"
    );
    eventually(
        "every updater reconnected after the restart",
        Duration::from_secs(60),
        async || (connected(&url).await == count as u64).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_updaters_get_a_push_and_survive_a_coordinator_sigkill_on_sqlite() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .arg("--heartbeat-secs")
        .arg("2")
        .arg("--liveness-flush-secs")
        .arg("1")
        .start()
        .await;
    push_then_crash(coordinator, root.path(), 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updaters_get_a_push_and_survive_a_coordinator_sigkill_on_postgres() {
    let db = TestPostgres::create().await;
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::with_database(root.path(), &db.url)
        .arg("--heartbeat-secs")
        .arg("2")
        .start()
        .await;
    push_then_crash(coordinator, root.path(), 20).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_made_while_the_coordinator_is_down_arrives_after_it_returns() {
    let root = tempfile::tempdir().unwrap();
    let mut coordinator = CoordinatorBuilder::sqlite(root.path()).start().await;
    let url = coordinator.grpc_url();
    droverctl_json(&url, &["control-plane", "set", "2.0.0"]).await;
    droverctl_json(&url, &["channels", "set", "beta", "1.0.0"]).await;
    let started = root.path().join("install-started");
    let updater = UpdaterBuilder::new(&url, &root.path().join("u"), "slow-1")
        .arg("--channel", "beta")
        .arg("--agent-version", "1.0.0")
        .arg(
            "--install-command",
            format!("touch {}; sleep 3", started.display()),
        )
        .start();
    eventually("connected", Duration::from_secs(30), async || {
        (connected(&url).await == 1).then_some(())
    })
    .await;

    droverctl_json(&url, &["channels", "set", "beta", "1.1.0"]).await;
    eventually("the install started", Duration::from_secs(10), async || {
        started.exists().then_some(())
    })
    .await;
    coordinator.kill9().await;
    eventually(
        "the install finished and its report waits",
        Duration::from_secs(15),
        async || {
            let state = updater.state();
            (state["agent_version"] == "1.1.0"
                && state["pending_reports"]
                    .as_array()
                    .is_some_and(|p| p.len() == 1))
            .then_some(())
        },
    )
    .await;

    coordinator.restart().await;
    let agent = eventually(
        "the report reached the coordinator",
        Duration::from_secs(60),
        async || {
            let agent = droverctl_json(&url, &["agents", "show", "slow-1"]).await;
            (agent["last_report"]["outcome"] == "succeeded").then_some(agent)
        },
    )
    .await;
    assert_eq!(agent["agent_version"], "1.1.0");
    eventually(
        "the acknowledged report is no longer pending",
        Duration::from_secs(10),
        async || {
            updater.state()["pending_reports"]
                .as_array()
                .is_some_and(|p| p.is_empty())
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updater_restart_keeps_its_identity_and_status_tells_the_story() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("3.1.0")
        .start()
        .await;
    let url = coordinator.grpc_url();
    let dir = root.path().join("u");
    // No --agent-id: the updater generates one and must keep it.
    let start = || {
        drover_tests::UpdaterBuilder::new(&url, &dir, "ignored")
            .arg("--channel", "stable/rolling")
            .arg("--agent-version", "3.0.0")
            .arg("--install-command", "true")
    };
    let mut updater = start().start();
    eventually("installed 3.1.0", Duration::from_secs(30), async || {
        (updater.state()["agent_version"] == "3.1.0").then_some(())
    })
    .await;
    let first_id = updater.state()["agent_id"].clone();
    updater.kill9().await;
    let updater = start().start();
    eventually("reconnected", Duration::from_secs(30), async || {
        (connected(&url).await == 1).then_some(())
    })
    .await;
    assert_eq!(updater.state()["agent_id"], first_id);
    let agents = droverctl_json(&url, &["agents", "list"]).await;
    assert_eq!(
        agents["total_matching"], 1,
        "a restart is the same agent, not a new one"
    );

    let status = tokio::process::Command::new(drover_tests::bin("drover-updater"))
        .args(["status", "--state-dir"])
        .arg(&dir)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for expected in [
        "current version:  3.1.0",
        "target version:   3.1.0",
        "follows_control_plane",
        "wait (up_to_date)",
    ] {
        assert!(
            text.contains(expected),
            "status lacks {expected:?}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn droverctl_refuses_bad_versions_with_a_clear_error_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path()).start().await;
    let url = coordinator.grpc_url();

    let (ok, _, stderr) = droverctl(&url, &["channels", "set", "beta", "1.0.0"]).await;
    assert!(
        !ok && stderr.contains("control-plane version is not set"),
        "{stderr}"
    );
    droverctl_json(&url, &["control-plane", "set", "v15.2.0"]).await;
    droverctl_json(&url, &["channels", "set", "beta", "15.1.0"]).await;

    let cases: [(&[&str], &str); 5] = [
        (&["channels", "set", "beta", "15.x"], "MAJOR.MINOR.PATCH"),
        (
            &["channels", "set", "beta", "15.3.0"],
            "above the control plane",
        ),
        (
            &["channels", "set", "beta", "13.9.9"],
            "more than one major version below",
        ),
        (
            &["channels", "set", "default", "15.0.0"],
            "follows the control-plane version",
        ),
        (
            &["channels", "set", "has space", "15.0.0"],
            "channel 'has space' is invalid",
        ),
    ];
    for (args, expected) in cases {
        let (ok, _, stderr) = droverctl(&url, args).await;
        assert!(!ok, "{args:?} must fail");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
    }
    let channels = droverctl_json(&url, &["channels", "list"]).await;
    let beta = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "beta")
        .unwrap();
    assert_eq!(
        beta["version"], "15.1.0",
        "refused requests changed nothing"
    );

    let (ok, _, stderr) = droverctl(&url, &["agents", "show", "nobody"]).await;
    assert!(
        !ok && stderr.contains("no agent 'nobody' is known"),
        "{stderr}"
    );
    let (ok, _, stderr) = droverctl("http://127.0.0.1:1", &["fleet", "summary"]).await;
    assert!(
        !ok && stderr.contains("cannot reach the coordinator"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_edge_serves_the_dashboard_health_and_json() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("1.0.0")
        .start()
        .await;
    let (status, body) = http_get(&coordinator, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    // Readiness is a real check (a store write, every task running): it may take a moment.
    eventually("/readyz 200", Duration::from_secs(10), async || {
        (http_get(&coordinator, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    let (status, body) = http_get(&coordinator, "/livez").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = http_get(&coordinator, "/").await;
    assert!(status == 200 && body.contains("<title>Drover</title>"));
    let (status, body) = http_get(&coordinator, "/api/v1/fleet/summary").await;
    let summary: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, &summary["control_plane_version"]),
        (200, &Value::from("1.0.0"))
    );
    let (status, body) = http_get(&coordinator, "/api/v1/agents?health=sideways").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not one of healthy, unhealthy, unknown"));
    assert_eq!(
        coordinator.terminate().await.code(),
        Some(0),
        "SIGTERM shuts down cleanly"
    );
}

async fn http_get(coordinator: &CoordinatorProcess, path: &str) -> (u16, String) {
    drover_tests::http(coordinator.addresses.http, "GET", path).await
}
