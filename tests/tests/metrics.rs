//! `/metrics`: a real coordinator with a simulated fleet and a rollout, scraped over HTTPS
//! with the admin token; the output checked by `promtool check metrics` (Debian `prometheus`).

use std::time::Duration;

use drover_tests::{
    CoordinatorBuilder, create_rollout, droverctl_json, eventually, http, http_as, simulate_fleet,
    utc_hour_now, wait_connected,
};

const FLEET: u64 = 10;
const WAIT: Duration = Duration::from_secs(60);

/// One sample line: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Every sample line of a scrape.
fn samples(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("label=value");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            let value = value.parse().expect("a number");
            (name.to_string(), labels, value)
        })
        .collect()
}

/// The sum of `name`'s samples whose labels include every one of `want`.
fn sum(body: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    samples(body)
        .into_iter()
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, value)| value)
        .sum()
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let (status, body) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

fn promtool_check(body: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- body ---\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_fleet_and_a_rollout_and_pass_promtool() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("200")
        .arg("--heartbeat-secs")
        .arg("2")
        .start()
        .await;
    let (url, addr) = (c.grpc_url(), c.addresses.http);

    let (status, body) = http_as(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 401, "/metrics without a token: {body}");
    let viewer = droverctl_json(
        &url,
        &["admins", "create", "--name", "prom", "--role", "viewer"],
    )
    .await;
    let viewer = viewer["token"].as_str().unwrap().to_string();
    let (status, _) = http_as(addr, "GET", "/metrics", Some(&viewer)).await;
    assert_eq!(status, 200, "a viewer token scrapes");

    droverctl_json(&url, &["channels", "set", "stable", "1.0.0"]).await;
    let _fleet = simulate_fleet(&url, root.path(), FLEET as u32, "dev", "stable");
    wait_connected(&url, FLEET).await;
    let on = |version: &'static str| [("version", version), ("channel", "stable")];
    eventually(
        "metrics count the connected fleet on 1.0.0",
        WAIT,
        async || {
            let body = scrape(addr).await;
            (sum(&body, "drover_updaters_connected", &[]) == FLEET as f64
                && sum(&body, "drover_agents", &on("1.0.0")) == FLEET as f64)
                .then_some(())
        },
    )
    .await;

    // A rollout whose window is closed now: it waits, and says so per group.
    let closed = format!("dev:start={},window=1", (utc_hour_now() + 12) % 24);
    let (ok, _, stderr) = create_rollout(&url, "stable", &[&closed], &[]).await;
    assert!(ok, "{stderr}");
    let waiting = [
        ("channel", "stable"),
        ("group", "dev"),
        ("state", "waiting"),
    ];
    let body = eventually(
        "the rollout's group shows its agents waiting",
        WAIT,
        async || {
            let body = scrape(addr).await;
            (sum(&body, "drover_rollout_group_agents", &waiting) == FLEET as f64).then_some(body)
        },
    )
    .await;
    assert_eq!(sum(&body, "drover_rollouts", &[("status", "active")]), 1.0);
    assert_eq!(
        sum(&body, "drover_rollout_groups", &[("phase", "unstarted")]),
        1.0
    );
    promtool_check(&body);

    let start = [
        "rollout",
        "start-group",
        "--channel",
        "stable",
        "--group",
        "dev",
    ];
    droverctl_json(&url, &start).await;
    // Every agent reported success; most under the rollout, and on a slow machine the last
    // few may update under the channel once the rollout is done (90 % on the target). The
    // counter moves just after the report commits (and a heartbeat may carry the new
    // version first), so the count is part of what is waited for.
    let succeeded = [("outcome", "succeeded")];
    let under_rollout = [("outcome", "succeeded"), ("reason", "rollout")];
    let body = eventually("every agent is counted on 1.1.0", WAIT, async || {
        let body = scrape(addr).await;
        (sum(&body, "drover_agents", &on("1.1.0")) == FLEET as f64
            && sum(&body, "drover_agents", &on("1.0.0")) == 0.0
            && sum(&body, "drover_rollouts", &[]) == 0.0
            && sum(&body, "drover_update_reports_total", &succeeded) >= FLEET as f64)
            .then_some(body)
    })
    .await;
    assert!(sum(&body, "drover_update_reports_total", &under_rollout) > 0.0);
    for name in [
        "drover_heartbeats_total",
        "drover_directives_pushed_total",
        "drover_store_write_statements_total",
        "drover_reconcile_pass_seconds_count",
    ] {
        assert!(sum(&body, name, &[]) > 0.0, "{name} is 0:\n{body}");
    }
    let session = [("method", "Session"), ("code", "ok")];
    assert!(sum(&body, "drover_grpc_request_seconds_count", &session) >= FLEET as f64);
    let batches = [("op", "agent_batch")];
    assert!(sum(&body, "drover_store_calls_seconds_count", &batches) > 0.0);
    let scrapes = [("route", "/metrics"), ("status", "2xx")];
    assert!(sum(&body, "drover_http_request_seconds_count", &scrapes) > 0.0);
    let refused = [("route", "/metrics"), ("status", "4xx")];
    assert!(sum(&body, "drover_http_request_seconds_count", &refused) >= 1.0);

    // Agent ids appear in paths (`/api/v1/agents/{agent_id}`); never in a label.
    let (status, _) = http(addr, "GET", "/api/v1/agents/sim-00001").await;
    assert_eq!(status, 200);
    let body = scrape(addr).await;
    let route = [("route", "/api/v1/agents/{agent_id}")];
    assert!(
        sum(&body, "drover_http_request_seconds_count", &route) >= 1.0,
        "{body}"
    );
    for (name, labels, _) in samples(&body) {
        for (key, value) in labels {
            assert!(
                !value.starts_with("sim-"),
                "{name} has label {key}={value}, an agent id"
            );
        }
    }
    promtool_check(&body);

    // Prometheus asks for OpenMetrics and gets it.
    let openmetrics = fetch_openmetrics(addr, &viewer).await;
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
}

/// `/metrics` with `Accept: application/openmetrics-text`, as Prometheus scrapes.
async fn fetch_openmetrics(addr: std::net::SocketAddr, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = drover_tests::trust_for(&addr.to_string()).expect("a TLS coordinator");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let mut stream = drover_tests::tls_connector(&tls.ca_file)
        .connect(name, stream)
        .await
        .unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nAccept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes).await;
    let response = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.to_lowercase().contains("application/openmetrics-text"),
        "{head}"
    );
    body.to_string()
}
