//! Validation at the edge: a typo in a group, channel or agent name is refused with the
//! close matches, and a refused request changes nothing.

use drover_tests::{
    CoordinatorBuilder, create_rollout, droverctl, droverctl_json, simulate, wait_connected,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typos_are_refused_with_close_matches_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
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
    let (ok, _, stderr) =
        create_rollout(&url, "edge", &["dev:canaries=1", "prdo:canaries=1"], &[]).await;
    assert!(!ok);
    assert!(
        stderr.contains("group 'prdo'") && stderr.contains("did you mean 'prod'"),
        "{stderr}"
    );
    // And a mistyped channel.
    let (ok, _, stderr) = create_rollout(&url, "egde", &["dev"], &[]).await;
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

/// `agents list --out-of-compliance`: the first page holds the out-of-compliance agents even
/// when every agent before them in id order complies (it used to come back empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_compliance_pages_are_never_empty_before_the_end() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .start()
        .await;
    let url = coordinator.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "2.0.0"]).await;
    let fleet = |prefix: &str, count: &str, channel: &str, version: &str, log: &str| {
        let dir = root.path().join(log);
        std::fs::create_dir_all(&dir).unwrap();
        simulate(
            &url,
            &dir,
            &[
                "--count",
                count,
                "--groups",
                "dev",
                "--channel",
                channel,
                "--versions",
                version,
                "--id-prefix",
                prefix,
                "--ramp-up-secs",
                "0",
                "--recheck-secs",
                "3600",
            ],
        )
    };
    // 30 compliant agents first in id order, then 3 more than one major below 2.0.0 (on a
    // channel with no version, so nothing moves them).
    let _compliant = fleet("a", "30", "edge", "2.0.0", "a");
    let _behind = fleet("z", "3", "legacy", "0.9.0", "z");
    wait_connected(&url, 33).await;
    let page = droverctl_json(
        &url,
        &["agents", "list", "--out-of-compliance", "--limit", "5"],
    )
    .await;
    let ids: Vec<&str> = page["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["z-00000", "z-00001", "z-00002"], "{page}");
    assert_eq!(page["total_matching"], 3);
}

/// #22 item 7: weekdays outside 1–7 are refused (they were taken as other days), and an
/// unknown channel's error does not echo a 10,000-character name back.
#[tokio::test]
async fn impossible_weekdays_and_huge_names_are_refused_plainly() {
    use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
    use drover_tests::{admin_request, grpc_channel};
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .start()
        .await;
    let url = coordinator.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let mut admin = AdminServiceClient::new(grpc_channel(&url).await.unwrap());
    for days in [vec![0], vec![1, 99, 8]] {
        let request = pb::CreateRolloutRequest {
            channel: "edge".into(),
            start_version: "1.0.0".into(),
            target_version: "1.1.0".into(),
            groups: vec![pb::RolloutGroupSpec {
                name: "dev".into(),
                days: days.clone(),
                ..Default::default()
            }],
            dry_run: true,
            ..Default::default()
        };
        let status = admin
            .create_rollout(admin_request(&url, request))
            .await
            .expect_err("an impossible weekday");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{days:?}");
        assert!(
            status.message().contains("is not a weekday"),
            "{}",
            status.message()
        );
    }
    let huge = "c".repeat(10_000);
    let status = admin
        .get_rollout_status(admin_request(&url, pb::RolloutRef { channel: huge }))
        .await
        .expect_err("no such channel");
    assert!(status.message().len() < 400, "{}", status.message().len());
}
