//! Webhook alerts from a real coordinator to an HTTP receiver in the test: rollouts that
//! finish and halt, a receiver that fails twice before it answers, and receivers that
//! never answer or always fail, which must not slow a rollout.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, create_rollout, droverctl_json, eventually, simulate,
    wait_connected,
};
use parking_lot::Mutex;
use serde_json::Value;

const FLEET: u64 = 10;
const WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
enum Behaviour {
    Answer,
    /// 500 to the first N posts, then 200.
    FailFirst(usize),
    Always500,
    /// Accepts the request and never answers.
    Hang,
}

#[derive(Clone)]
struct Receiver {
    behaviour: Behaviour,
    /// Every post that arrived (answered or not), in order.
    posts: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> (Self, String) {
        let receiver = Self {
            behaviour,
            posts: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn kinds(&self) -> Vec<String> {
        self.posts
            .lock()
            .iter()
            .map(|p| p["kind"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    async fn wait_for(&self, kind: &str) -> Value {
        eventually(&format!("a {kind} post"), WAIT, async || {
            let posts = self.posts.lock();
            posts.iter().find(|p| p["kind"] == kind).cloned()
        })
        .await
    }
}

async fn receive(State(r): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
    let seen = {
        let mut posts = r.posts.lock();
        posts.push(body);
        posts.len()
    };
    match r.behaviour {
        Behaviour::Answer => StatusCode::NO_CONTENT,
        Behaviour::FailFirst(n) if seen <= n => StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::FailFirst(_) => StatusCode::OK,
        Behaviour::Always500 => StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::Hang => std::future::pending().await,
    }
}

/// A coordinator posting to `hooks` and FLEET simulated agents in group dev on `stable`
/// (1.0.0; `broken` versions fail their health gate).
async fn start(
    root: &std::path::Path,
    hooks: &[&str],
    broken: &str,
) -> (CoordinatorProcess, tokio::process::Child) {
    let mut builder = CoordinatorBuilder::sqlite(root)
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("200")
        .arg("--heartbeat-secs")
        .arg("2");
    for hook in hooks {
        builder = builder.arg("--webhook").arg(*hook);
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
