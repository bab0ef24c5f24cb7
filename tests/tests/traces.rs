//! One trace per rollout, across processes: a real coordinator and real `drover-updater`
//! processes export OTLP to a receiver built from the official protobuf definitions (no
//! collector runs here), and the spans must chain rollout → group → agent attempt →
//! updater steps, with the attributes operators search by; a halted rollout ends its spans
//! with an error and the reason. With the receiver gone, updates go at normal speed.

use std::time::{Duration, Instant};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, UpdaterBuilder, UpdaterProcess, create_rollout,
    droverctl_json, eventually,
    otlp::{OtlpReceiver, ReceivedSpan},
    wait_connected,
};

const WAIT: Duration = Duration::from_secs(60);

/// Exports quickly (the batch processor's delay), to `endpoint`.
fn otel(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ]
}

async fn coordinator(root: &std::path::Path, endpoint: Option<&str>) -> CoordinatorProcess {
    let mut builder = CoordinatorBuilder::sqlite(root)
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("100");
    for (key, value) in endpoint.map(otel).unwrap_or_default() {
        builder = builder.env(key, value);
    }
    let c = builder.start().await;
    droverctl_json(&c.grpc_url(), &["channels", "set", "edge", "1.0.0"]).await;
    c
}

/// Two real updaters per group (dev, prod); each installs with a command that fails for
/// `broken` (if any), so a canary can fail for real.
fn updaters(
    c: &CoordinatorProcess,
    root: &std::path::Path,
    endpoint: Option<&str>,
    broken: Option<&str>,
) -> Vec<UpdaterProcess> {
    let install = match broken {
        Some(version) => format!("test \"$DROVER_TARGET_VERSION\" != {version}"),
        None => "true".to_string(),
    };
    let mut started = Vec::new();
    for (i, group) in ["dev", "dev", "prod", "prod"].iter().enumerate() {
        let id = format!("{group}-{i}");
        let mut builder = UpdaterBuilder::new(&c.grpc_url(), &root.join(&id), &id)
            .arg("--group", *group)
            .arg("--channel", "edge")
            .arg("--agent-version", "1.0.0")
            .arg("--install-command", install.clone())
            .arg("--health-command", "true")
            .arg("--health-interval-ms", "200")
            .arg("--health-grace-secs", "5")
            .arg("--health-stable-secs", "1");
        for (key, value) in endpoint.map(otel).unwrap_or_default() {
            builder = builder.env(key, value);
        }
        if endpoint.is_some() {
            builder = builder.env("DROVER_LOG_FORMAT", "json");
        }
        started.push(builder.start());
    }
    started
}

/// Rolls `edge` from 1.0.0 to 1.1.0 over dev then prod (one canary each, windows
/// ignored) and waits until the rollout shows `status`.
async fn roll_out_until(url: &str, status: &str) {
    let groups = ["dev:canaries=1", "prod:canaries=1"];
    assert!(
        create_rollout(url, "edge", &groups, &["--immediate"])
            .await
            .0,
        "rollout create failed"
    );
    eventually(&format!("the rollout is {status}"), WAIT, async || {
        let s = droverctl_json(url, &["rollout", "status", "--channel", "edge"]).await;
        (s["status"] == status).then_some(())
    })
    .await;
}

fn find<'a>(spans: &'a [ReceivedSpan], name: &str, parent: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.name == name && s.parent_span_id == parent)
        .collect()
}

async fn rollout_trace_id(url: &str) -> String {
    let status = droverctl_json(url, &["rollout", "status", "--channel", "edge"]).await;
    let id = status["rollout_id"].as_str().unwrap().to_string();
    let shown = droverctl_json(url, &["rollout", "show", &id]).await;
    let trace = shown["rollout"]["trace_id"].as_str().unwrap().to_string();
    assert_eq!(trace.len(), 32, "{shown}");
    trace
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_is_one_trace_from_the_coordinator_down_to_each_updaters_steps() {
    let root = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.endpoint();
    let c = coordinator(root.path(), Some(&endpoint)).await;
    let url = c.grpc_url();
    let updaters = updaters(&c, root.path(), Some(&endpoint), None);
    wait_connected(&url, 4).await;
    roll_out_until(&url, "done").await;
    let trace = rollout_trace_id(&url).await;
    // JSON log lines written inside the attempt carry its trace id.
    let logged = updaters.iter().any(|u| {
        u.log().lines().any(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|v| v["trace_id"] == trace.as_str() && v["span_id"].is_string())
        })
    });
    assert!(logged, "no updater JSON log line names the trace {trace}");

    let spans = eventually("the whole trace arrives", WAIT, async || {
        let spans: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect();
        // An updater's attempt ends (and is exported) after its steps: after the health
        // gate's stability period, so wait for the attempts, not only their installs.
        let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
        let root = spans.iter().any(|s| s.name == "rollout");
        (root && count("install") >= 4 && count("update_attempt") >= 4).then_some(spans)
    })
    .await;
    let rollout = find(&spans, "rollout", "")[0];
    assert_eq!(rollout.service, "drover-coordinator");
    assert_eq!(rollout.attribute("deployment.status"), Some("done"));
    assert_eq!(rollout.attribute("deployment.name"), Some("edge"));
    assert_eq!(rollout.attribute("service.version"), Some("1.1.0"));
    assert_ne!(rollout.status_code, 2, "a done rollout is not an error");
    let groups = find(&spans, "rollout.group", &rollout.span_id);
    let mut names: Vec<&str> = groups
        .iter()
        .map(|g| g.attribute("drover.group").unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dev", "prod"]);
    for group in groups {
        let attempts = find(&spans, "agent_update", &group.span_id);
        assert_eq!(attempts.len(), 2, "two agents in {}", group.span_id);
        for attempt in attempts {
            assert_eq!(attempt.attribute("drover.outcome"), Some("succeeded"));
            assert_eq!(attempt.attribute("drover.to"), Some("1.1.0"));
            assert!(attempt.attribute("drover.agent_id").is_some());
            // The updater's side continues the same trace under the attempt.
            let updater = find(&spans, "update_attempt", &attempt.span_id);
            assert_eq!(
                updater.len(),
                1,
                "the updater's attempt under {}",
                attempt.span_id
            );
            assert_eq!(updater[0].service, "drover-updater");
            let install = find(&spans, "install", &updater[0].span_id);
            assert_eq!(install.len(), 1, "its install step");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_rollout_ends_its_spans_with_an_error_and_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.endpoint();
    let c = coordinator(root.path(), Some(&endpoint)).await;
    let url = c.grpc_url();
    let _updaters = updaters(&c, root.path(), Some(&endpoint), Some("1.1.0"));
    wait_connected(&url, 4).await;
    roll_out_until(&url, "halted").await;
    let trace = rollout_trace_id(&url).await;
    let spans = eventually("the halted spans arrive", WAIT, async || {
        let spans: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect();
        let root = spans.iter().any(|s| s.name == "rollout");
        let failed = |name: &str| spans.iter().any(|s| s.name == name && s.status_code == 2);
        (root && failed("install") && failed("update_attempt")).then_some(spans)
    })
    .await;
    let rollout = find(&spans, "rollout", "")[0];
    assert_eq!(rollout.status_code, 2, "{rollout:?}");
    assert_eq!(rollout.attribute("deployment.status"), Some("halted"));
    assert!(rollout.status_message.contains("dev"), "{rollout:?}");
    let dev = find(&spans, "rollout.group", &rollout.span_id);
    assert_eq!(dev.len(), 1, "only dev ended (halted)");
    assert_eq!(dev[0].status_code, 2);
    assert_eq!(dev[0].attribute("drover.phase"), Some("halted"));
    let attempt = find(&spans, "agent_update", &dev[0].span_id);
    assert_eq!(attempt.len(), 1, "the canary's attempt");
    assert_eq!(attempt[0].status_code, 2);
    let outcome = attempt[0].attribute("drover.outcome");
    assert!(
        matches!(outcome, Some("failed" | "reverted")),
        "{:?}",
        attempt[0]
    );
    let updater = find(&spans, "update_attempt", &attempt[0].span_id);
    assert_eq!(updater.len(), 1);
    assert_eq!(updater[0].status_code, 2, "{:?}", updater[0]);
}

/// How long a two-group rollout over four real updaters takes, with OTLP pointed at
/// `endpoint` (None: tracing off); with `drops`, also waits for `/metrics` to count the
/// coordinator's lost spans.
async fn rollout_seconds(endpoint: Option<&str>, drops: bool) -> f64 {
    let root = tempfile::tempdir().unwrap();
    let c = coordinator(root.path(), endpoint).await;
    let url = c.grpc_url();
    let _updaters = updaters(&c, root.path(), endpoint, None);
    wait_connected(&url, 4).await;
    let started = Instant::now();
    roll_out_until(&url, "done").await;
    let took = started.elapsed().as_secs_f64();
    if drops {
        eventually("/metrics counts the dropped spans", WAIT, async || {
            let (_, body) = drover_tests::http(c.addresses.http, "GET", "/metrics").await;
            let dropped: u64 = body
                .lines()
                .find_map(|l| l.strip_prefix("drover_trace_spans_dropped_total "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            (dropped > 0).then_some(())
        })
        .await;
    }
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_receiver_down_or_stalled_updates_go_at_normal_speed() {
    let baseline = rollout_seconds(None, false).await;
    // Nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let down = rollout_seconds(Some(&format!("http://{closed}")), true).await;
    // Accepts connections and never answers: the harder case.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_addr = stalled.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = stalled.accept().await {
            open.push(socket);
        }
    });
    let slow = rollout_seconds(Some(&format!("http://{stalled_addr}")), false).await;
    held.abort();
    println!(
        "rollout: {baseline:.2} s without tracing, {down:.2} s receiver down, {slow:.2} s receiver stalled"
    );
    // Generous bounds (the machine is shared): a blocked export would take 10 s or more.
    assert!(
        down < baseline * 2.0 + 5.0,
        "down {down:.2} s vs {baseline:.2} s"
    );
    assert!(
        slow < baseline * 2.0 + 5.0,
        "stalled {slow:.2} s vs {baseline:.2} s"
    );
}
