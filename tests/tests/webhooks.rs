//! Webhook alerts from a real coordinator to an HTTP receiver in the test: rollouts that
//! finish and halt, a receiver that fails twice before it answers, and receivers that
//! never answer or always fail, which must not slow a rollout; an HTTPS receiver trusted
//! only through `--webhook-ca-file`; bad flags refused at start.

use std::time::{Duration, Instant};

use drover_tests::{
    Behaviour, CoordinatorBuilder, CoordinatorProcess, Receiver, create_rollout, droverctl_json,
    eventually, https_receiver, simulate, wait_connected,
};
use serde_json::Value;

const FLEET: u64 = 10;
const WAIT: Duration = Duration::from_secs(60);

/// A coordinator posting to `hooks` and FLEET simulated agents in group dev on `stable`
/// (1.0.0; `broken` versions fail their health gate).
async fn start(
    root: &std::path::Path,
    hooks: &[&str],
    broken: &str,
) -> (CoordinatorProcess, tokio::process::Child) {
    let args: Vec<&str> = hooks.iter().flat_map(|hook| ["--webhook", hook]).collect();
    start_with(root, &args, broken).await
}

/// [`start`] with the coordinator's webhook flags given as they are.
async fn start_with(
    root: &std::path::Path,
    flags: &[&str],
    broken: &str,
) -> (CoordinatorProcess, tokio::process::Child) {
    let mut builder = CoordinatorBuilder::sqlite(root)
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("200")
        .arg("--heartbeat-secs")
        .arg("2");
    for flag in flags {
        builder = builder.arg(*flag);
    }
    let c = builder.start().await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "stable", "1.0.0"]).await;
    let count = FLEET.to_string();
    let fleet = simulate(
        &url,
        root,
        &[
            "--count",
            &count,
            "--groups",
            "dev",
            "--channel",
            "stable",
            "--versions",
            "1.0.0",
            "--broken-versions",
            broken,
            "--unhealthy-fraction",
            "0",
            "--ramp-up-secs",
            "0",
            "--recheck-secs",
            "3600",
        ],
    );
    wait_connected(&url, FLEET).await;
    (c, fleet)
}

async fn wait_status(c: &CoordinatorProcess, status: &str) -> Value {
    eventually(&format!("the rollout is {status}"), WAIT, async || {
        let s = droverctl_json(&c.grpc_url(), &["rollout", "status", "--channel", "stable"]).await;
        (s["status"] == status).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_rollout_posts_started_then_done() {
    let root = tempfile::tempdir().unwrap();
    let (receiver, hook) = Receiver::start(Behaviour::Answer).await;
    let (c, _fleet) = start(root.path(), &[&hook], "9.9.9").await;
    let (ok, _, stderr) = create_rollout(&c.grpc_url(), "stable", &["dev"], &["--immediate"]).await;
    assert!(ok, "{stderr}");
    let status = wait_status(&c, "done").await;
    let rollout_id = status["rollout_id"].as_str().unwrap();

    let done = receiver.wait_for("rollout_done").await;
    let started = receiver.wait_for("rollout_started").await;
    assert_eq!(receiver.kinds(), ["rollout_started", "rollout_done"]);
    for post in [&started, &done] {
        assert_eq!(post["rollout_id"], rollout_id, "{post}");
        assert_eq!(post["channel"], "stable", "{post}");
        assert_eq!(post["from"], "1.0.0", "{post}");
        assert_eq!(post["to"], "1.1.0", "{post}");
        let at = post["at"].as_str().unwrap();
        assert!(at.len() == 20 && at.ends_with('Z'), "RFC 3339: {post}");
    }
    assert!(
        started["detail"].as_str().unwrap().contains("created by"),
        "{started}"
    );
    let metrics = drover_tests::http(c.addresses.http, "GET", "/metrics")
        .await
        .1;
    assert!(
        metrics.contains("drover_webhook_deliveries_total{result=\"delivered\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_canary_halts_the_rollout_and_posts_halted() {
    let root = tempfile::tempdir().unwrap();
    let (receiver, hook) = Receiver::start(Behaviour::Answer).await;
    let (c, _fleet) = start(root.path(), &[&hook], "1.1.0").await;
    let groups = ["dev:canaries=2"];
    let (ok, _, stderr) = create_rollout(&c.grpc_url(), "stable", &groups, &["--immediate"]).await;
    assert!(ok, "{stderr}");
    wait_status(&c, "halted").await;
    let halted = receiver.wait_for("rollout_halted").await;
    assert_eq!(halted["reason"], "group_halted", "{halted}");
    assert!(
        halted["detail"]
            .as_str()
            .unwrap()
            .contains("group dev halted"),
        "{halted}"
    );
    assert_eq!(receiver.kinds(), ["rollout_started", "rollout_halted"]);

    // An admin rolls it back: that is an alert too.
    droverctl_json(
        &c.grpc_url(),
        &["rollout", "rollback", "--channel", "stable"],
    )
    .await;
    let rolled_back = receiver.wait_for("rollout_rolled_back").await;
    assert!(
        rolled_back["detail"].as_str().unwrap().contains("(by "),
        "{rolled_back}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_twice_still_gets_the_alert() {
    let root = tempfile::tempdir().unwrap();
    let (receiver, hook) = Receiver::start(Behaviour::FailFirst(2)).await;
    let (c, _fleet) = start(root.path(), &[&hook], "9.9.9").await;
    let (ok, _, stderr) = create_rollout(&c.grpc_url(), "stable", &["dev"], &["--immediate"]).await;
    assert!(ok, "{stderr}");
    receiver.wait_for("rollout_done").await;
    // Two 500s, then the third attempt answered; the done alert came after, once.
    let started = "rollout_started".to_string();
    let expected = [
        started.clone(),
        started.clone(),
        started,
        "rollout_done".into(),
    ];
    assert_eq!(receiver.kinds(), expected);
    let metrics = drover_tests::http(c.addresses.http, "GET", "/metrics")
        .await
        .1;
    assert!(
        metrics.contains("drover_webhook_deliveries_total{result=\"retried\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_that_hang_or_fail_do_not_slow_a_rollout() {
    let root = tempfile::tempdir().unwrap();
    let (hanging, hang_url) = Receiver::start(Behaviour::Hang).await;
    let (failing, fail_url) = Receiver::start(Behaviour::Always500).await;
    let (good, good_url) = Receiver::start(Behaviour::Answer).await;
    let hooks = [hang_url.as_str(), fail_url.as_str(), good_url.as_str()];
    let (c, _fleet) = start(root.path(), &hooks, "9.9.9").await;
    let began = Instant::now();
    let (ok, _, stderr) = create_rollout(&c.grpc_url(), "stable", &["dev"], &["--immediate"]).await;
    assert!(ok, "{stderr}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "creating the rollout took {:?}",
        began.elapsed()
    );
    wait_status(&c, "done").await;
    let took = began.elapsed();
    // Ten simulated agents finish an immediate rollout in a few seconds; a hanging
    // receiver's 5-second timeouts and retries (about a minute) must not show here.
    assert!(took < Duration::from_secs(20), "the rollout took {took:?}");
    // The good receiver hears of it while the others still fail.
    good.wait_for("rollout_done").await;
    assert!(hanging.kinds().contains(&"rollout_started".to_string()));
    eventually("the failing receiver was retried", WAIT, async || {
        (failing.kinds().len() >= 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_is_trusted_through_the_webhook_ca_file() {
    let root = tempfile::tempdir().unwrap();
    let (posts, hook, ca_file) = https_receiver(root.path()).await;
    let (c, _fleet) = start_with(
        root.path(),
        &["--webhook", &hook, "--webhook-ca-file", &ca_file],
        "9.9.9",
    )
    .await;
    let (ok, _, stderr) = create_rollout(&c.grpc_url(), "stable", &["dev"], &["--immediate"]).await;
    assert!(ok, "{stderr}");
    eventually("the started alert over https", WAIT, async || {
        let posts = posts.lock();
        posts
            .iter()
            .any(|p| p["kind"] == "rollout_started")
            .then_some(())
    })
    .await;
    drop(c);

    // Without the CA file the receiver's certificate is not trusted: nothing arrives.
    let before = posts.lock().len();
    let other = tempfile::tempdir().unwrap();
    let (c, _fleet) = start_with(other.path(), &["--webhook", &hook], "9.9.9").await;
    let (ok, _, stderr) = create_rollout(&c.grpc_url(), "stable", &["dev"], &["--immediate"]).await;
    assert!(ok, "{stderr}");
    eventually(
        "an untrusted receiver's post fails and is retried",
        WAIT,
        async || {
            let metrics = drover_tests::http(c.addresses.http, "GET", "/metrics")
                .await
                .1;
            metrics
                .contains("drover_webhook_deliveries_total{result=\"retried\"}")
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        posts.lock().len(),
        before,
        "a post arrived over untrusted TLS"
    );
}

#[tokio::test]
async fn bad_webhook_flags_are_refused_at_start_saying_what_to_give() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing.pem");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--webhook", "ftp://example.com/hook"],
            "give an http:// or https:// URL",
        ),
        (
            &["--webhook", "not a url"],
            "give an http:// or https:// URL",
        ),
        (
            &[
                "--webhook",
                "https://example.com/hook",
                "--webhook-ca-file",
                missing.to_str().unwrap(),
            ],
            "cannot read --webhook-ca-file",
        ),
    ];
    for (args, says) in cases {
        let out = tokio::process::Command::new(drover_tests::bin("drover-coordinator"))
            .arg("--database")
            .arg(root.path().join("db.sqlite").to_str().unwrap())
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// #22 item 3: an agent enrolling into a group a rollout is updating is visible — in its
/// enrolment event, a metric and a webhook alert — and is held, not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolment_into_an_updating_group_is_announced() {
    let root = tempfile::tempdir().unwrap();
    let (receiver, hook) = Receiver::start(Behaviour::Answer).await;
    let c = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("200")
        .arg("--webhook")
        .arg(&hook)
        .start()
        .await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "stable", "1.0.0"]).await;
    // One member whose install never ends within the test: the group stays active.
    let _fleet = simulate(
        &url,
        root.path(),
        &[
            "--count",
            "1",
            "--groups",
            "dev",
            "--channel",
            "stable",
            "--versions",
            "1.0.0",
            "--install-ms",
            "600000",
            "--unhealthy-fraction",
            "0",
            "--ramp-up-secs",
            "0",
        ],
    );
    wait_connected(&url, 1).await;
    let (ok, _, stderr) = create_rollout(&url, "stable", &["dev"], &["--immediate"]).await;
    assert!(ok, "{stderr}");
    let started = receiver.wait_for("rollout_started").await;

    let token = drover_tests::enrol::join_token(&url, &["dev"], 1).expect("TLS");
    drover_tests::enrol::enrol_in_memory_with(&url, "latecomer", "dev", &token)
        .await
        .expect("the enrolment itself is honest");

    let alert = receiver.wait_for("enrolled_during_rollout").await;
    assert_eq!(alert["rollout_id"], started["rollout_id"], "{alert}");
    assert_eq!(alert["reason"], "joined_after_start", "{alert}");
    let detail = alert["detail"].as_str().unwrap();
    assert!(
        detail.contains("agent latecomer enrolled into group dev") && detail.contains("waits"),
        "{detail}"
    );
    let events = droverctl_json(&url, &["events", "--limit", "20"]).await;
    assert!(
        events.to_string().contains("joined_after_start"),
        "the enrolment event says so: {events}"
    );
    let metrics = drover_tests::http(c.addresses.http, "GET", "/metrics")
        .await
        .1;
    assert!(
        metrics.contains("drover_enrolments_during_rollout_total 1"),
        "{metrics}"
    );
}
