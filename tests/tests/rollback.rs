//! `rollout rollback` is urgent by default: the rolled-back agents are sent the start
//! version as a critical directive (they install at once, windows or not), and the rollout
//! shows `rolling_back` until they run it again, then `rolledback`.

use std::time::Duration;

use drover_tests::{
    CoordinatorBuilder, create_rollout, droverctl_json, eventually, simulate, simulate_fleet,
    utc_hour_now, wait_connected,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_goes_out_at_once_and_ends_when_the_agents_are_back() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("100")
        .start()
        .await;
    let url = coordinator.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let mut fleet = simulate_fleet(&url, root.path(), 6, "dev,prod", "edge");
    wait_connected(&url, 6).await;
    // dev's window is open now (two hours from this hour); prod's opens twelve hours away.
    let hour = utc_hour_now();
    let dev = format!("dev:canaries=1,start={hour},window=2");
    let prod = format!("prod:canaries=1,start={},window=1", (hour + 12) % 24);
    assert!(
        create_rollout(&url, "edge", &[&dev, &prod], &[]).await.0,
        "rollout create failed"
    );
    let status = |url: String| async move {
        droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await
    };
    eventually("dev done, prod waiting", WAIT, async || {
        let s = status(url.clone()).await;
        let state = |name: &str| -> Option<Value> {
            s["groups"]
                .as_array()?
                .iter()
                .find(|g| g["name"] == name)
                .map(|g| g["state"].clone())
        };
        (state("dev")? == "done" && state("prod")? == "unstarted").then_some(())
    })
    .await;
    let dev_agents: Vec<String> = droverctl_json(&url, &["agents", "list", "--group", "dev"]).await
        ["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dev_agents.len(), 3);

    // The fleet goes away first, so the dev agents stay on 1.1.0 while we look.
    fleet.kill().await.unwrap();
    wait_connected(&url, 0).await;

    let rolled = droverctl_json(&url, &["rollout", "rollback", "--channel", "edge"]).await;
    assert_eq!(rolled["status"], "rolling_back", "{rolled}");
    // The rollout still governs them, with an urgent (critical) directive to go back.
    for id in &dev_agents {
        let agent = droverctl_json(&url, &["agents", "show", id]).await;
        assert_eq!(agent["agent_version"], "1.1.0", "{agent}");
        let directive = &agent["directive"];
        assert_eq!(directive["target_version"], "1.0.0", "{agent}");
        assert_eq!(directive["reason"], "rolledback", "{agent}");
        assert_eq!(directive["critical"], true, "{agent}");
    }
    // They come back (the simulated fleet restarts on 1.0.0), and the rollback ends.
    let _fleet = simulate_fleet(&url, root.path(), 6, "dev,prod", "edge");
    let done = eventually(
        "every agent back on 1.0.0, rollout rolled back",
        WAIT,
        async || {
            let summary = droverctl_json(&url, &["fleet", "summary"]).await;
            let s = status(url.clone()).await;
            (summary["by_version"]["1.0.0"] == 6 && s["status"] == "rolledback").then_some(s)
        },
    )
    .await;
    assert_eq!(done["status"], "rolledback");
    let events = droverctl_json(&url, &["events", "--limit", "200"]).await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"] == "every group rolled back to 1.0.0 at once"),
        "{events}"
    );
}

/// Lowering the control plane below a running rollout's target halts it with the reason, so
/// `rollout status` says why nothing moves (it used to stall silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_below_the_target_halts_the_rollout_with_its_reason() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("100")
        .start()
        .await;
    let url = coordinator.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let _fleet = simulate(
        &url,
        root.path(),
        &[
            "--count",
            "4",
            "--groups",
            "dev",
            "--channel",
            "edge",
            "--versions",
            "1.0.0",
            "--ramp-up-secs",
            "0",
            "--recheck-secs",
            "3600",
        ],
    );
    wait_connected(&url, 4).await;
    // A window twelve hours away: the rollout stays unstarted, and active.
    let group = format!(
        "dev:canaries=1,start={},window=1",
        (utc_hour_now() + 12) % 24
    );
    assert!(
        create_rollout(&url, "edge", &[&group], &[]).await.0,
        "rollout create failed"
    );
    droverctl_json(&url, &["control-plane", "set", "1.0.5"]).await;
    let halted = eventually("the rollout halted", WAIT, async || {
        let s = droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await;
        (s["groups"][0]["state"] == "halted").then_some(s)
    })
    .await;
    let note = halted["groups"][0]["note"].as_str().unwrap();
    assert!(
        note.contains("no longer allowed") && note.contains("1.0.5"),
        "{halted}"
    );
}
