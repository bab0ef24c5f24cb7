//! Admin verbs that mean exactly what they say (#10): `--dry-run` on every mutating verb
//! changes nothing and predicts the real change; `mark-done` leaves the next group to its
//! window unless `--now`. (Pause and rollback against the reconciler: `fence.rs`.)

use std::{collections::HashMap, time::Duration};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, create_rollout, droverctl, droverctl_json, eventually,
    http, simulate, wait_connected,
};
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;
/// Monday 2026-11-23 01:00 UTC on the coordinator's manual rollout clock.
const START: i64 = 1_795_392_000_000 + HOUR;
const WAIT: Duration = Duration::from_secs(90);

async fn coordinator(root: &std::path::Path) -> CoordinatorProcess {
    CoordinatorBuilder::sqlite(root)
        .testing()
        .control_plane("2.0.0")
        .arg("--manual-clock-start-ms")
        .arg(START.to_string())
        .arg("--reconcile-ms")
        .arg("100")
        .arg("--heartbeat-secs")
        .arg("2")
        .start()
        .await
}

fn fleet_args<'a>(count: &'a str, groups: &'a str) -> Vec<&'a str> {
    vec![
        "--count",
        count,
        "--groups",
        groups,
        "--channel",
        "edge",
        "--versions",
        "1.0.0",
        "--id-prefix",
        "sim",
        "--unhealthy-fraction",
        "0",
        "--ramp-up-secs",
        "0",
        "--recheck-secs",
        "3600",
    ]
}

async fn advance(c: &CoordinatorProcess, hours: i64) {
    let path = format!("/api/v1/testing/clock/advance?ms={}", hours * HOUR);
    let (status, body) = http(c.addresses.http, "POST", &path).await;
    assert_eq!(status, 200, "{body}");
}

/// Everything a dry run must leave alone: the event log, channels, schedules, the control
/// plane, rollouts, and every agent's directive and pin.
async fn fingerprint(url: &str) -> Value {
    let agents = droverctl_json(url, &["agents", "list", "--all"]).await;
    let directives: HashMap<String, Value> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let d = &a["directive"];
            let seen = json!([d["target_version"], d["critical"], d["reason"], a["pinned"]]);
            (a["agent_id"].as_str().unwrap().to_string(), seen)
        })
        .collect();
    json!({
        "events": droverctl_json(url, &["events", "--limit", "1000"]).await,
        "channels": droverctl_json(url, &["channels", "list"]).await,
        "schedules": droverctl_json(url, &["schedule", "list"]).await,
        "control_plane": droverctl_json(url, &["control-plane", "get"]).await,
        "rollouts": droverctl_json(url, &["rollout", "list"]).await,
        "directives": directives,
    })
}

/// Runs `args --dry-run`: asserts it changed nothing and says so; then runs `args` for
/// real and asserts the real effect is the one predicted. Returns (dry run, real) replies.
async fn dry_then_real(url: &str, args: &[&str]) -> (Value, Value) {
    let before = fingerprint(url).await;
    let mut dry_args = args.to_vec();
    dry_args.push("--dry-run");
    let dry = droverctl_json(url, &dry_args).await;
    assert_eq!(
        fingerprint(url).await,
        before,
        "{args:?} --dry-run changed something"
    );
    let effect = &dry["effect"];
    assert_eq!(effect["dry_run"], true, "{args:?}: {dry}");
    assert!(!effect["summary"].as_str().unwrap().is_empty(), "{dry}");
    let (ok, text, stderr) = droverctl(url, &dry_args).await;
    assert!(ok, "{stderr}");
    assert!(
        text.contains("dry run: nothing changed") && text.contains("would"),
        "{args:?}: {text}"
    );
    assert_eq!(
        fingerprint(url).await,
        before,
        "{args:?} --dry-run changed something"
    );

    let real = droverctl_json(url, args).await;
    assert_eq!(real["effect"]["dry_run"], false, "{real}");
    assert_eq!(
        real["effect"]["agents_affected"], effect["agents_affected"],
        "{args:?}: the real change differs from the dry run's prediction: {dry} vs {real}"
    );
    assert_eq!(real["effect"]["summary"], effect["summary"]);
    if let Some(groups) = dry["groups"].as_array() {
        for (d, r) in groups.iter().zip(real["groups"].as_array().unwrap()) {
            assert_eq!(
                d["agents_affected"], r["agents_affected"],
                "{dry} vs {real}"
            );
        }
    }
    let after = fingerprint(url).await;
    assert_ne!(after["events"], before["events"], "{args:?} wrote no event");
    (dry, real)
}

/// Both fail, with the same words: a dry run refuses exactly what the real call refuses.
async fn refused_alike(url: &str, args: &[&str]) {
    let mut dry_args = args.to_vec();
    dry_args.push("--dry-run");
    let before = fingerprint(url).await;
    let (dry_ok, _, dry_err) = droverctl(url, &dry_args).await;
    let (real_ok, _, real_err) = droverctl(url, args).await;
    assert!(!dry_ok && !real_ok, "{args:?} was accepted");
    assert_eq!(dry_err, real_err, "{args:?}");
    assert_eq!(
        fingerprint(url).await,
        before,
        "a refused {args:?} changed something"
    );
}

fn affected(reply: &Value) -> u64 {
    reply["effect"]["agents_affected"].as_u64().unwrap()
}

fn group<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no group {name}: {status}"))
}

/// Every mutating verb with --dry-run: nothing changes (events, settings, rollout state,
/// directives), the output says what would; the real call then does exactly that. The
/// fleet is known but disconnected, so nothing moves between the two calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dry_run_changes_nothing_and_predicts_the_real_change() {
    let root = tempfile::tempdir().unwrap();
    let c = coordinator(root.path()).await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let mut fleet = simulate(&url, root.path(), &fleet_args("20", "dev,prod"));
    wait_connected(&url, 20).await;
    fleet.kill().await.unwrap();
    wait_connected(&url, 0).await;

    let (_, real) = dry_then_real(&url, &["channels", "set", "edge", "1.0.1"]).await;
    assert_eq!(
        (real["version"].clone(), affected(&real)),
        (json!("1.0.1"), 20)
    );
    let (_, real) = dry_then_real(&url, &["channels", "set", "edge", "--critical", "true"]).await;
    assert_eq!(affected(&real), 20);
    droverctl_json(&url, &["channels", "set", "edge", "--critical", "false"]).await;
    refused_alike(&url, &["channels", "set", "edge", "3.0.0"]).await;

    let (dry, _) = dry_then_real(&url, &["control-plane", "set", "1.9.0"]).await;
    assert_eq!(dry["version"], "1.9.0");
    refused_alike(&url, &["control-plane", "set", "not-a-version"]).await;

    let set = [
        "schedule",
        "set",
        "--group",
        "dev",
        "--days",
        "daily",
        "--start",
        "02:00",
        "--duration",
        "1h",
    ];
    let (_, real) = dry_then_real(&url, &set).await;
    assert_eq!(affected(&real), 10, "the dev agents get the window");
    let (_, real) = dry_then_real(&url, &["schedule", "clear", "--group", "dev"]).await;
    assert_eq!(affected(&real), 10);
    refused_alike(&url, &["schedule", "clear", "--group", "dev"]).await;

    // 01:00: both windows are open; halt-on-error, so dev starts and prod waits for it.
    let create = [
        "rollout",
        "create",
        "--channel",
        "edge",
        "--from",
        "1.0.1",
        "--to",
        "1.1.0",
        "--group",
        "dev:canaries=0,start=1,window=2",
        "--group",
        "prod:canaries=0,start=1,window=2",
    ];
    let mut wrong_start = create.to_vec();
    wrong_start[5] = "1.0.0";
    refused_alike(&url, &wrong_start).await;
    let (dry, real) = dry_then_real(&url, &create).await;
    // dev is sent 1.1.0; prod never got 1.0.1 (disconnected) and is held on 1.0.0 instead.
    assert_eq!(affected(&real), 20, "{real}");
    assert_eq!(group(&real, "dev")["state"], "active", "{real}");
    assert_eq!(group(&real, "prod")["state"], "unstarted", "{real}");
    let plan = dry["plan"]["groups"]
        .as_array()
        .expect("a dry-run create shows the plan");
    assert_eq!(plan.len(), 2, "{dry}");
    assert_eq!(
        (plan[0]["name"].clone(), plan[0]["agents"].clone()),
        (json!("dev"), json!(10))
    );
    refused_alike(&url, &create).await; // one active rollout per channel

    let (dry, _) = dry_then_real(&url, &["rollout", "pause", "--channel", "edge"]).await;
    assert_eq!(
        dry["paused"], true,
        "the dry run shows the state that would result"
    );
    // Pausing a paused rollout (a retry) succeeds and writes nothing.
    let before = fingerprint(&url).await;
    let again = droverctl_json(&url, &["rollout", "pause", "--channel", "edge"]).await;
    assert!(
        again["effect"]["summary"]
            .as_str()
            .unwrap()
            .contains("already"),
        "{again}"
    );
    assert_eq!(
        fingerprint(&url).await,
        before,
        "a repeated pause wrote something"
    );
    let (dry, _) = dry_then_real(&url, &["rollout", "resume", "--channel", "edge"]).await;
    assert_eq!(dry["paused"], false);

    // prod waits for dev; starting it by hand sends its agents the target at once.
    let start = [
        "rollout",
        "start-group",
        "--channel",
        "edge",
        "--group",
        "prod",
    ];
    let (dry, real) = dry_then_real(&url, &start).await;
    assert_eq!(group(&dry, "prod")["state"], "active", "{dry}");
    assert_eq!(group(&real, "prod")["agents_affected"], 10, "{real}");
    assert_eq!(group(&real, "dev")["agents_affected"], 0, "{real}");
    refused_alike(&url, &start).await; // prod is active now

    // Pinning an agent of the active group keeps it off the target; unpinning gives it back.
    let (_, real) = dry_then_real(&url, &["agents", "pin", "sim-00000", "--note", "hold"]).await;
    assert_eq!(
        (real["pinned"].clone(), affected(&real)),
        (json!(true), 1),
        "{real}"
    );
    let (dry, real) = dry_then_real(&url, &["agents", "unpin", "sim-00000"]).await;
    assert_eq!(dry["pinned"], false, "{dry}");
    assert_eq!(
        (real["pinned"].clone(), affected(&real)),
        (json!(false), 1),
        "{real}"
    );
    refused_alike(&url, &["agents", "unpin", "sim-00000"]).await;

    // The group is counted done (its window semantics are the next test's).
    let mark = [
        "rollout",
        "mark-done",
        "--channel",
        "edge",
        "--group",
        "dev",
    ];
    let (dry, real) = dry_then_real(&url, &mark).await;
    for status in [&dry, &real] {
        assert_eq!(group(status, "dev")["state"], "done", "{status}");
        assert_eq!(group(status, "prod")["state"], "active", "{status}");
    }
    refused_alike(&url, &mark).await;
    refused_alike(
        &url,
        &[
            "rollout",
            "mark-done",
            "--channel",
            "edge",
            "--group",
            "prod",
            "--now",
        ],
    )
    .await;

    let (dry, real) = dry_then_real(&url, &["rollout", "rollback", "--channel", "edge"]).await;
    assert_eq!(group(&dry, "dev")["state"], "rolledback", "{dry}");
    assert_eq!(
        affected(&real),
        20,
        "dev goes back, prod's hold turns urgent: {real}"
    );
}

/// `mark-done` lets the next group start by its window; `--now` starts it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_done_waits_for_the_next_window_and_now_does_not() {
    let root = tempfile::tempdir().unwrap();
    let c = coordinator(root.path()).await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let _fleet = simulate(&url, root.path(), &fleet_args("20", "dev,prod"));
    wait_connected(&url, 20).await;
    let status = |url: String| async move {
        droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await
    };

    // 01:00: dev's window (01:00–02:00) is open, prod's (05:00–06:00) is not.
    let (ok, _, err) = create_rollout(
        &url,
        "edge",
        &[
            "dev:canaries=1,start=1,window=1",
            "prod:canaries=0,start=5,window=1",
        ],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    eventually("dev started", WAIT, async || {
        let s = status(url.clone()).await;
        (group(&s, "dev")["state"] != "unstarted").then_some(())
    })
    .await;
    droverctl_json(
        &url,
        &[
            "rollout",
            "mark-done",
            "--channel",
            "edge",
            "--group",
            "dev",
        ],
    )
    .await;
    // Passes keep running (dev's agents catch up on the target) and prod still waits.
    let s = eventually("dev's agents all on 1.1.0", WAIT, async || {
        let s = status(url.clone()).await;
        (group(&s, "dev")["on_target"] == 10).then_some(s)
    })
    .await;
    assert_eq!(
        group(&s, "prod")["state"],
        "unstarted",
        "prod started outside its window: {s}"
    );
    assert_eq!(group(&s, "prod")["on_target"], 0, "{s}");
    // 05:00: prod's window opens and it starts by the rules.
    advance(&c, 4).await;
    eventually("the rollout done in prod's window", WAIT, async || {
        let s = status(url.clone()).await;
        (s["status"] == "done").then_some(())
    })
    .await;

    // Again from 1.1.0, now 05:00: dev's window is open, prod's (10:00) is not; --now starts it.
    let (ok, _, err) = droverctl(
        &url,
        &[
            "rollout",
            "create",
            "--channel",
            "edge",
            "--from",
            "1.1.0",
            "--to",
            "1.2.0",
            "--group",
            "dev:canaries=1,start=5,window=1",
            "--group",
            "prod:canaries=0,start=10,window=1",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let marked = droverctl_json(
        &url,
        &[
            "rollout",
            "mark-done",
            "--channel",
            "edge",
            "--group",
            "dev",
            "--now",
        ],
    )
    .await;
    assert_eq!(group(&marked, "prod")["state"], "active", "{marked}");
    eventually(
        "prod (and the rollout) done outside its window",
        WAIT,
        async || {
            let s = status(url.clone()).await;
            (s["status"] == "done").then_some(())
        },
    )
    .await;
}
