//! Validation at the edge: a typo in a group, channel or agent name is refused with the
//! close matches, and a refused request changes nothing.

use drover_tests::{CoordinatorBuilder, droverctl, droverctl_json, simulate, wait_connected};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typos_are_refused_with_close_matches_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .arg("--control-plane-version")
        .arg("2.0.0")
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
            "dev,prod",
            "--channel",
            "edge",
            "--versions",
            "1.0.0",
            "--id-prefix",
            "web",
            "--ramp-up-secs",
            "0",
        ],
    );
    wait_connected(&url, 4).await;
    let events_before = droverctl_json(&url, &["events", "--limit", "1000"]).await;

    // A mistyped group would have folded prod's agents into the last group.
    let (ok, _, stderr) = droverctl(
        &url,
        &[
            "rollout",
            "create",
            "--channel",
            "edge",
            "--from",
            "1.0.0",
            "--to",
            "1.1.0",
            "--group",
            "dev:canaries=1",
            "--group",
            "prdo:canaries=1",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("group 'prdo'") && stderr.contains("did you mean 'prod'"),
        "{stderr}"
    );
    // And a mistyped channel.
    let (ok, _, stderr) = droverctl(
        &url,
        &[
            "rollout",
            "create",
            "--channel",
            "egde",
            "--from",
            "1.0.0",
            "--to",
            "1.1.0",
            "--group",
            "dev",
        ],
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("did you mean 'edge'"), "{stderr}");
    // A mistyped agent.
    let (ok, _, stderr) = droverctl(&url, &["agents", "pin", "web-0001"]).await;
    assert!(!ok);
    assert!(stderr.contains("did you mean 'web-00001'"), "{stderr}");
    // Names that look like paths.
    for bad in ["..", "a//b", "stable/../x"] {
        let (ok, _, stderr) = droverctl(&url, &["channels", "set", bad, "1.0.0"]).await;
        assert!(!ok, "{bad} accepted");
        assert!(stderr.contains("segments"), "{stderr}");
    }

    let rollouts = droverctl_json(&url, &["rollout", "list"]).await;
    assert_eq!(rollouts.as_array().map(Vec::len), Some(0), "{rollouts}");
    let events_after = droverctl_json(&url, &["events", "--limit", "1000"]).await;
    assert_eq!(
        events_before, events_after,
        "a refused request changes nothing"
    );

    // An accepted change answers with the channel as it now is, its agents counted.
    let edge = droverctl_json(&url, &["channels", "set", "edge", "1.0.1"]).await;
    assert_eq!(edge["agent_count"], 4, "{edge}");
}
