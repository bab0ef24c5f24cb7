//! History survives a restart (#10): a rollout that finished, one rolled back and one halted
//! all show in `rollout list --all` after the coordinator restarts, `rollout show ID` gives
//! each group's timeline with who acted, `agents history` gives an agent's attempts, and the
//! HTTP API answers with the same JSON as `droverctl -o json`. On SQLite and PostgreSQL.

use std::time::Duration;

use drover_tests::{
    CoordinatorBuilder, TestPostgres, droverctl, droverctl_json, eventually, http, simulate,
    utc_hour_now, wait_connected,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_rolled_back_and_halted_rollouts_survive_a_restart_on_sqlite() {
    let root = tempfile::tempdir().unwrap();
    history_survives_a_restart(CoordinatorBuilder::sqlite(root.path()), root.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_rolled_back_and_halted_rollouts_survive_a_restart_on_postgres() {
    let root = tempfile::tempdir().unwrap();
    let db = TestPostgres::create().await;
    history_survives_a_restart(
        CoordinatorBuilder::with_database(root.path(), &db.url),
        root.path(),
    )
    .await;
    db.drop_database().await;
}

/// `rollout create` on channel edge; returns the rollout id.
async fn create(url: &str, from: &str, to: &str, group: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "rollout",
        "create",
        "--channel",
        "edge",
        "--from",
        from,
        "--to",
        to,
        "--group",
        group,
    ];
    args.extend(extra);
    let created = droverctl_json(url, &args).await;
    created["rollout_id"].as_str().unwrap().to_string()
}

async fn wait_status(url: &str, rollout_id: &str, status: &str) -> Value {
    eventually(
        &format!("rollout {rollout_id} {status}"),
        WAIT,
        async || {
            let shown = droverctl_json(url, &["rollout", "show", rollout_id]).await;
            (shown["rollout"]["status"] == status).then_some(shown)
        },
    )
    .await
}

/// The timeline of `group` ("" for the rollout-wide one) in a `rollout show` answer.
fn timeline<'a>(shown: &'a Value, group: &str) -> &'a Vec<Value> {
    shown["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["group"] == group)
        .unwrap_or_else(|| panic!("no timeline for group '{group}': {shown}"))["events"]
        .as_array()
        .unwrap()
}

/// Waits until the HTTP route answers exactly what `droverctl -o json` prints (live counts
/// may move between the two reads, so it asks again until they agree).
async fn same_json_over_http(c: &drover_tests::CoordinatorProcess, path: &str, args: &[&str]) {
    let url = c.grpc_url();
    eventually(
        &format!("GET {path} equals droverctl {args:?}"),
        WAIT,
        async || {
            let ctl = droverctl_json(&url, args).await;
            let (status, body) = http(c.addresses.http, "GET", path).await;
            assert_eq!(status, 200, "GET {path}: {body}");
            let served: Value = serde_json::from_str(&body).unwrap();
            (served == ctl).then_some(())
        },
    )
    .await;
}

async fn history_survives_a_restart(builder: CoordinatorBuilder, root: &std::path::Path) {
    let mut c = builder
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("100")
        .start()
        .await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let _fleet = simulate(
        &url,
        root,
        &[
            "--count",
            "4",
            "--groups",
            "dev",
            "--channel",
            "edge",
            "--versions",
            "1.0.0",
            "--unhealthy-fraction",
            "0",
            "--ramp-up-secs",
            "0",
            "--recheck-secs",
            "3600",
        ],
    );
    wait_connected(&url, 4).await;

    // 1. Finishes: every agent moves to 1.1.0.
    let done = create(&url, "1.0.0", "1.1.0", "dev:canaries=1", &["--immediate"]).await;
    wait_status(&url, &done, "done").await;
    // 2. Rolled back before its window (twelve hours away) opens.
    let later = format!(
        "dev:canaries=1,start={},window=1",
        (utc_hour_now() + 12) % 24
    );
    let rolled = create(&url, "1.1.0", "1.2.0", &later, &[]).await;
    droverctl_json(&url, &["rollout", "rollback", "--channel", "edge"]).await;
    wait_status(&url, &rolled, "rolledback").await;
    // 3. Halted: the control plane is lowered below its target.
    let halted = create(&url, "1.1.0", "1.2.0", &later, &[]).await;
    droverctl_json(&url, &["control-plane", "set", "1.1.5"]).await;
    wait_status(&url, &halted, "halted").await;

    c.kill9().await;
    c.restart().await;
    wait_connected(&url, 4).await;

    // Every rollout, newest first, with its status.
    let page = droverctl_json(&url, &["rollout", "list", "--all"]).await;
    let listed: Vec<(&str, &str)> = page["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rollout_id"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (halted.as_str(), "halted"),
            (rolled.as_str(), "rolledback"),
            (done.as_str(), "done")
        ],
        "{page}"
    );
    assert!(page["next_after"].is_null(), "{page}");
    assert!(
        page["rollouts"][2]["created_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    // Bounded pages that continue where the last one stopped.
    let first = droverctl_json(&url, &["rollout", "list", "--all", "--limit", "2"]).await;
    assert_eq!(first["rollouts"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(first["next_after"], rolled.as_str(), "{first}");
    let rest = droverctl_json(
        &url,
        &[
            "rollout", "list", "--all", "--limit", "2", "--after", &rolled,
        ],
    )
    .await;
    assert_eq!(rest["rollouts"][0]["rollout_id"], done.as_str(), "{rest}");
    // Without --all: the active rollouts only, as before.
    let active = droverctl_json(&url, &["rollout", "list"]).await;
    assert_eq!(active.as_array().unwrap().len(), 1, "{active}");
    assert_eq!(active[0]["rollout_id"], halted.as_str(), "{active}");

    // Per-group timelines with who acted.
    let shown = droverctl_json(&url, &["rollout", "show", &done]).await;
    assert_eq!(shown["rollout"]["status"], "done", "{shown}");
    let created = &timeline(&shown, "")[0];
    assert_eq!(created["actor"], "bootstrap", "{shown}");
    assert!(
        created["text"]
            .as_str()
            .unwrap()
            .contains("rollout created"),
        "{shown}"
    );
    let dev = timeline(&shown, "dev");
    assert!(
        dev.iter()
            .any(|e| e["actor"] == "engine" && e["text"].as_str().unwrap().contains("canary")),
        "{shown}"
    );
    assert!(
        dev.iter()
            .any(|e| e["text"].as_str().unwrap().contains("done")),
        "{shown}"
    );
    let shown = droverctl_json(&url, &["rollout", "show", &rolled]).await;
    assert!(
        timeline(&shown, "")
            .iter()
            .any(|e| e["actor"] == "bootstrap"
                && e["text"].as_str().unwrap().contains("rolled back")),
        "{shown}"
    );
    let shown = droverctl_json(&url, &["rollout", "show", &halted]).await;
    assert!(
        timeline(&shown, "dev")
            .iter()
            .any(|e| e["text"].as_str().unwrap().contains("halted")),
        "{shown}"
    );
    let (ok, _, stderr) = droverctl(&url, &["rollout", "show", "r-000000000000"]).await;
    assert!(
        !ok && stderr.contains("no rollout 'r-000000000000'"),
        "{stderr}"
    );

    // An agent's attempts, newest first.
    let history = droverctl_json(&url, &["agents", "history", "sim-00000"]).await;
    assert_eq!(history["agent_version"], "1.1.0", "{history}");
    let report = &history["reports"][0];
    assert_eq!(report["from_version"], "1.0.0", "{history}");
    assert_eq!(report["to_version"], "1.1.0", "{history}");
    assert_eq!(report["outcome"], "succeeded", "{history}");
    assert_eq!(report["rollout_id"], done.as_str(), "{history}");
    assert!(
        !history["events"].as_array().unwrap().is_empty(),
        "{history}"
    );
    let (ok, _, stderr) = droverctl(&url, &["agents", "history", "sim-0000"]).await;
    assert!(!ok && stderr.contains("did you mean"), "{stderr}");

    // The HTTP API serves the same JSON.
    same_json_over_http(
        &c,
        "/api/v1/history/rollouts",
        &["rollout", "list", "--all"],
    )
    .await;
    same_json_over_http(&c, "/api/v1/rollouts", &["rollout", "list"]).await;
    same_json_over_http(
        &c,
        &format!("/api/v1/rollouts/{done}"),
        &["rollout", "show", &done],
    )
    .await;
    same_json_over_http(
        &c,
        "/api/v1/agents/sim-00000/history",
        &["agents", "history", "sim-00000"],
    )
    .await;
    let (status, _) = http(c.addresses.http, "GET", "/api/v1/rollouts/r-000000000000").await;
    assert_eq!(status, 404);
}
