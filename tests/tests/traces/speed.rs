//! Tracing never slows updates: with the receiver down or stalled a rollout takes about as
//! long as without tracing, and both sides count (and say) the spans they lost.

use std::time::Instant;

use drover_tests::{eventually, metric_value, wait_connected};

use super::harness::*;

/// How long a two-group rollout over four real updaters takes, with OTLP pointed at
/// `endpoint` (None: tracing off); with `drops`, also waits for `/metrics` to count the
/// spans the coordinator and the updaters lost, and an updater's log to say so.
async fn rollout_seconds(endpoint: Option<&str>, drops: bool) -> f64 {
    let root = tempfile::tempdir().unwrap();
    let c = coordinator(root.path(), endpoint, &[], &[]).await;
    let url = c.grpc_url();
    let updaters = updaters(&c, root.path(), endpoint, None, &[]);
    wait_connected(&url, 4).await;
    let started = Instant::now();
    create(&url).await;
    wait_status(&url, "done").await;
    let took = started.elapsed().as_secs_f64();
    if drops {
        eventually(
            "/metrics counts both sides' dropped spans",
            WAIT,
            async || {
                let (_, body) = drover_tests::http(c.addresses.http, "GET", "/metrics").await;
                let coordinator = metric_value(&body, "drover_trace_spans_dropped_total");
                let updaters = metric_value(&body, "drover_updater_trace_spans_dropped_total");
                (coordinator > 0 && updaters > 0).then_some(())
            },
        )
        .await;
        let told = updaters
            .iter()
            .any(|u| u.log().contains("spans were dropped"));
        assert!(told, "no updater said it dropped spans");
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
