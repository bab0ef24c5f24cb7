//! Verifiable halts with real processes, in the default mode: a stop (here a pause) raises
//! the rollout's epoch; connected updaters acknowledge it, disconnected ones are listed as
//! unreachable until they come back and hear it; `rollout status`, `/metrics` and the API
//! say who is where.

use std::time::Duration;

use drover_tests::{
    CoordinatorBuilder, droverctl, droverctl_json, eventually, http_as, simulate_fleet_with,
    wait_connected,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn fleet(url: &str, dir: &std::path::Path, prefix: &str, count: u32) -> tokio::process::Child {
    std::fs::create_dir_all(dir).unwrap();
    let extra = ["--unhealthy-fraction", "0", "--install-ms", "200"];
    simulate_fleet_with(url, dir, count, "prod", "stable", prefix, &extra)
}

async fn status(url: &str) -> Value {
    droverctl_json(url, &["rollout", "status", "--channel", "stable"]).await
}

fn acks(status: &Value) -> (u64, u64, u64, u64) {
    let a = &status["stop_acks"];
    let n = |key: &str| a[key].as_u64().unwrap_or(u64::MAX);
    (
        n("epoch"),
        n("acknowledged"),
        n("not_yet"),
        n("unreachable"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stop_is_acknowledged_and_stragglers_are_named() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("200")
        .start()
        .await;
    let (url, addr) = (c.grpc_url(), c.addresses.http);
    droverctl_json(&url, &["channels", "set", "stable", "1.0.0"]).await;
    let _here = fleet(&url, &root.path().join("here"), "here", 20);
    let mut away = fleet(&url, &root.path().join("away"), "away", 4);
    wait_connected(&url, 24).await;
    let create = [
        "rollout",
        "create",
        "--channel",
        "stable",
        "--from",
        "1.0.0",
        "--to",
        "1.1.0",
        "--group",
        "prod",
        "--immediate",
        "--max-in-flight",
        "2",
        "--no-verdict",
    ];
    droverctl_json(&url, &create).await;
    assert!(
        status(&url).await["stop_acks"].is_null(),
        "no stop yet, nothing to acknowledge"
    );

    // Four updaters go away; then the operator pauses the rollout: a stop.
    away.kill().await.unwrap();
    wait_connected(&url, 20).await;
    droverctl_json(&url, &["rollout", "pause", "--channel", "stable"]).await;
    let paused = eventually(
        "the 20 connected updaters acknowledge the pause",
        WAIT,
        async || {
            let s = status(&url).await;
            (acks(&s) == (1, 20, 0, 4)).then_some(s)
        },
    )
    .await;
    let stragglers = paused["stop_acks"]["stragglers"].as_array().unwrap();
    assert_eq!(stragglers.len(), 4);
    for s in stragglers {
        assert!(s["agent_id"].as_str().unwrap().starts_with("away"), "{s}");
        assert_eq!(s["state"], "unreachable");
    }
    let (ok, text, _) = droverctl(&url, &["rollout", "status", "--channel", "stable"]).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("stop epoch 1") && text.contains("20 acknowledged, 0 not yet, 4 unreachable"),
        "{text}"
    );
    assert!(text.contains("stragglers: away-"), "{text}");

    // The same counts on /metrics, for alerting.
    let viewer = droverctl_json(
        &url,
        &["admins", "create", "--name", "prom", "--role", "viewer"],
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = http_as(addr, "GET", "/metrics", Some(&viewer)).await;
    assert_eq!(code, 200);
    for line in [
        "drover_rollout_stop_epoch{channel=\"stable\"} 1",
        "drover_rollout_stop_acks{channel=\"stable\",state=\"acknowledged\"} 20",
        "drover_rollout_stop_acks{channel=\"stable\",state=\"not_yet\"} 0",
        "drover_rollout_stop_acks{channel=\"stable\",state=\"unreachable\"} 4",
    ] {
        assert!(body.lines().any(|l| l == line), "no `{line}` in:\n{body}");
    }

    // The four come back and hear the stop as they reconnect.
    let _back = fleet(&url, &root.path().join("away"), "away", 4);
    eventually("the four that were away acknowledge it", WAIT, async || {
        (acks(&status(&url).await) == (1, 24, 0, 0)).then_some(())
    })
    .await;
    // A resume is no stop; the next pause is the second.
    droverctl_json(&url, &["rollout", "resume", "--channel", "stable"]).await;
    assert_eq!(acks(&status(&url).await).0, 1);
    droverctl_json(&url, &["rollout", "pause", "--channel", "stable"]).await;
    eventually("all 24 acknowledge the second stop", WAIT, async || {
        (acks(&status(&url).await) == (2, 24, 0, 0)).then_some(())
    })
    .await;
}
