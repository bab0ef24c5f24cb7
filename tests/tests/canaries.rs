//! Canaries after a restart: a coordinator whose agents have not reconnected yet must not
//! skip a group's canaries and hand the target to the whole group.

use std::time::Duration;

use drover_tests::{CoordinatorBuilder, droverctl_json, eventually, simulate, wait_connected};

const FLEET: u64 = 20;
const WAIT: Duration = Duration::from_secs(60);

fn start_fleet(url: &str, root: &std::path::Path) -> tokio::process::Child {
    simulate(
        url,
        root,
        &[
            "--count",
            "20",
            "--groups",
            "dev",
            "--channel",
            "stable",
            "--versions",
            "1.0.0",
            "--unhealthy-fraction",
            "0",
            "--ramp-up-secs",
            "1",
            "--recheck-secs",
            "3600",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_waits_for_connected_canaries_instead_of_updating_everyone() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("200")
        .arg("--heartbeat-secs")
        .arg("2")
        .start()
        .await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "stable", "1.0.0"]).await;
    let mut fleet = start_fleet(&url, root.path());
    wait_connected(&url, FLEET).await;
    // The agents are known but gone, as right after a coordinator restart.
    fleet.kill().await.unwrap();
    wait_connected(&url, 0).await;

    droverctl_json(
        &url,
        &[
            "rollout",
            "create",
            "--channel",
            "stable",
            "--from",
            "1.0.0",
            "--to",
            "1.1.0",
            "--immediate",
            "--group",
            "dev:canaries=2",
        ],
    )
    .await;
    let why = eventually(
        "the agents are told to wait for canaries",
        WAIT,
        async || {
            let why = droverctl_json(&url, &["agents", "why", "sim-00003"]).await;
            (why["reason"] == "canary_waiting").then_some(why)
        },
    )
    .await;
    assert!(
        why["explanation"]
            .as_str()
            .unwrap()
            .contains("2 connected healthy"),
        "{why}"
    );
    let status = droverctl_json(&url, &["rollout", "status", "--channel", "stable"]).await;
    let dev = &status["groups"][0];
    assert_eq!(dev["state"], "unstarted", "{status}");
    assert!(
        dev["note"].as_str().unwrap().contains("waits for 2"),
        "{status}"
    );

    // Once they are back the group starts with its canaries and finishes.
    let _fleet = start_fleet(&url, root.path());
    let done = eventually("the rollout finished", WAIT, async || {
        let s = droverctl_json(&url, &["rollout", "status", "--channel", "stable"]).await;
        (s["status"] == "done").then_some(s)
    })
    .await;
    assert_eq!(done["groups"][0]["canaries"].as_array().unwrap().len(), 2);
    let events = droverctl_json(&url, &["events", "--limit", "100"]).await;
    let texts: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("dev: unstarted → canary")),
        "{texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("dev: unstarted → active")),
        "{texts:?}"
    );
}
