//! The dashboard in a real browser (Debian's chromium driven by `tests/browser/dashboard.mjs`
//! with playwright-core) against a real coordinator and simulated fleets, plus the live
//! stream read raw.

use std::{path::Path, time::Duration};

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, create_rollout, dashboard_script, droverctl_json,
    eventually, simulate, wait_connected,
};
use serde_json::Value;

const HOUR: i64 = 3_600_000;
/// Monday 2026-11-23 01:00 UTC on the manual rollout clock: dev's window is open.
const START: i64 = 1_795_392_000_000 + HOUR;
const WAIT: Duration = Duration::from_secs(90);

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
}

async fn coordinator(root: &Path, insecure: bool) -> CoordinatorProcess {
    let builder = CoordinatorBuilder::sqlite(root);
    let builder = if insecure {
        builder.insecure()
    } else {
        builder
    };
    builder
        .testing()
        .control_plane("2.0.0")
        .arg("--manual-clock-start-ms")
        .arg(START.to_string())
        .arg("--reconcile-ms")
        .arg("200")
        .arg("--heartbeat-secs")
        .arg("2")
        .arg("--version-sample-secs")
        .arg("2")
        .start()
        .await
}

fn fleet(
    c: &CoordinatorProcess,
    root: &Path,
    count: &str,
    versions: &str,
) -> tokio::process::Child {
    let args = [
        "--count",
        count,
        "--groups",
        "dev,staging,prod",
        "--channel",
        "edge",
        "--versions",
        versions,
        "--unhealthy-fraction",
        "0",
        "--ramp-up-secs",
        "5",
        "--recheck-secs",
        "3600",
        // Health samples, so the rollout card shows each group's health verdict.
        "--sample-secs",
        "1",
    ];
    simulate(&c.grpc_url(), root, &args)
}

/// Runs the browser script in `mode`; returns its JSON report (asserting it passed).
async fn browser(c: &CoordinatorProcess, mode: &str, viewer: &str) -> Value {
    dashboard_script(c, mode, viewer, &[]).await
}

/// Overview counts move live while a rollout advances; a pause from the page (dry run
/// confirmed first) pauses the rollout and is audited; a viewer sees no action buttons and
/// its forged action is refused; every view is saved as a screenshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_rollout_live_and_pauses_it_by_role() {
    let root = tempfile::tempdir().unwrap();
    let c = coordinator(root.path(), false).await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let _fleet = fleet(&c, root.path(), "30", "1.0.0");
    // A channel outside any rollout whose next release (1.1.1) its agents fail to install:
    // the browser script sets it with droverctl and looks for the failures on Overview.
    droverctl_json(&url, &["channels", "set", "side", "1.0.0"]).await;
    let side_dir = root.path().join("side");
    std::fs::create_dir_all(&side_dir).unwrap();
    let _side = simulate(
        &url,
        &side_dir,
        &[
            "--count",
            "10",
            "--groups",
            "dev",
            "--channel",
            "side",
            "--versions",
            "1.0.0",
            "--broken-versions",
            "1.1.1",
            "--id-prefix",
            "side",
            "--recheck-secs",
            "3600",
        ],
    );
    wait_connected(&url, 40).await;
    let groups = [
        "dev:canaries=1,start=1,window=2",
        "staging:canaries=1,start=5,window=2",
        "prod:canaries=1,start=9,window=2",
    ];
    assert!(create_rollout(&url, "edge", &groups, &[]).await.0);
    let last = parking_lot::Mutex::new(Value::Null);
    drover_tests::eventually_explained(
        "dev done",
        WAIT,
        async || {
            let s = droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await;
            let done = s["groups"][0]["state"] == "done";
            *last.lock() = s;
            done.then_some(())
        },
        || format!("{:#}", last.lock()["groups"][0]),
    )
    .await;
    let viewer = droverctl_json(
        &url,
        &["admins", "create", "--name", "v", "--role", "viewer"],
    )
    .await;
    let report = browser(&c, "full", viewer["token"].as_str().unwrap()).await;

    let live = &report["overview_live"];
    assert!(
        live["on_target_after"].as_u64() > live["on_target_before"].as_u64(),
        "{report}"
    );
    assert_eq!(report["viewer_action_buttons"], 0);
    // The side channel's failed release, set with droverctl, is on Overview in time.
    assert!(
        report["droverctl_shown_ms"].as_u64() <= Some(2000),
        "{report}"
    );
    let look = &report["needs_a_look"];
    assert!(
        look["failing"].as_u64().unwrap_or(0) + look["reverted"].as_u64().unwrap_or(0) >= 10,
        "{report}"
    );
    assert_eq!(report["viewer_forged_post"]["status"], 403);
    // dev's health verdict, shown on its card: RSS judged on its agents (those sampled before
    // their install: most of its 10) and passed.
    let rows = report["verdict_rows"].as_array().unwrap();
    let rss = rows
        .iter()
        .find(|r| r[0] == "rss")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(rss[1], "pass", "{report}");
    let judged: u32 = rss[5].as_str().unwrap().parse().unwrap();
    assert!((5..=10).contains(&judged), "{report}");
    // What the page did, seen by droverctl: paused, and in the audit log with its dry run.
    let status = droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await;
    assert_eq!(status["paused"], true, "{status}");
    // The pause was a stop; the card counted who heard it, as droverctl does.
    let stop = &report["stop"];
    let card = |key: &str| stop[key].as_str().and_then(|v| v.parse::<u64>().ok());
    assert!(card("stopEpoch") >= Some(1), "{report}");
    assert!(
        card("acknowledged") > Some(0) && card("notYet") == Some(0),
        "{report}"
    );
    assert!(
        stop["text"].as_str().unwrap().contains("acknowledged"),
        "{report}"
    );
    let audit = droverctl_json(&url, &["audit", "--limit", "200"]).await;
    let entries = audit.as_array().unwrap();
    let pause = |result: &str| {
        entries
            .iter()
            .any(|a| a["action"] == "PauseRollout" && a["result"] == result)
    };
    assert!(pause("ok") && pause("dry_run"), "{audit:#}");
    let refused = entries
        .iter()
        .any(|a| a["action"] == "ResumeRollout" && a["result"] == "refused" && a["actor"] == "v");
    assert!(refused, "the viewer's forged resume is audited: {audit:#}");
    for name in [
        "login",
        "overview",
        "rollouts",
        "agents",
        "agent-detail",
        "events",
        "overview-failing",
        "desktop-rollouts",
        "phone-overview",
        "phone-360-agents",
    ] {
        let path = workspace().join(format!("target/screenshots/{name}.png"));
        assert!(path.exists(), "{} was saved", path.display());
    }
}

/// The agent table's version filter shows exactly the agents on that version, and together
/// the filters cover the fleet: 300 agents over TLS with enrolled identities. How fast it
/// filters 10,000 agents is a measurement, not a test: `drover-loadgen dashboard` (see
/// BENCHMARKS.md); here the times are only printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_table_filters_by_version_and_reason() {
    const AGENTS: u64 = 300;
    let root = tempfile::tempdir().unwrap();
    let c = coordinator(root.path(), false).await;
    let url = c.grpc_url();
    // No version on the channel: the agents keep the three versions they start with.
    let _fleet = fleet(&c, root.path(), &AGENTS.to_string(), "1.0.0,1.1.0,0.9.0");
    wait_connected(&url, AGENTS).await;
    let report = dashboard_script(&c, "filter", "", &[("DROVER_EXPECT_AGENTS", "300")]).await;
    assert_eq!(report["total_agents"], AGENTS, "{report}");
    let runs = report["filter_runs"].as_array().expect("filter runs");
    assert_eq!(
        runs.len(),
        7,
        "three versions, none, three again: {report:#}"
    );
    eprintln!(
        "filtering {AGENTS} agents by version: slowest {} ms; by reason: slowest {} ms",
        report["filter_max_ms"], report["reason_max_ms"]
    );
}

/// Sends `GET /api/v1/stream` on `stream` with `token`; returns the stream and what came
/// back up to the response head's end (and whatever of the body came with it).
async fn stream_on<S>(mut stream: S, token: &str) -> (S, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET /api/v1/stream HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("a response head within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "the stream closed: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..n]);
    }
    (stream, String::from_utf8_lossy(&seen).into_owned())
}

async fn open_stream(addr: std::net::SocketAddr) -> (tokio::net::TcpStream, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream_on(tcp, "any").await
}

/// A stream opened with a token ends soon after the token is revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_its_open_stream() {
    use tokio::io::AsyncReadExt;
    let root = tempfile::tempdir().unwrap();
    let c = coordinator(root.path(), false).await;
    let url = c.grpc_url();
    let created = droverctl_json(
        &url,
        &["admins", "create", "--name", "tab", "--role", "viewer"],
    )
    .await;
    let token = created["token"].as_str().unwrap();
    let tcp = tokio::net::TcpStream::connect(c.addresses.http)
        .await
        .unwrap();
    let ca = drover_tests::ca_file_for(&url).expect("a TLS coordinator");
    let name = rustls_pki_types::ServerName::IpAddress(c.addresses.http.ip().into());
    let tls = drover_tests::tls_connector(&ca)
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut stream, head) = stream_on(tls, token).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    droverctl_json(&url, &["admins", "revoke", "tab"]).await;
    let mut buffer = [0u8; 8192];
    let mut body = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    // The response ends with chunked encoding's last chunk (the connection may stay open).
    while !(body.starts_with("0\r\n\r\n") || body.contains("\r\n0\r\n\r\n")) {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await;
        match read {
            Err(_) => panic!("the stream still runs 15 s after its token was revoked: {body:?}"),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => body.push_str(&String::from_utf8_lossy(&buffer[..n])),
        }
    }
}

/// The stream sends the current summary on connect, then events as they happen; at most
/// 100 are open at once and the next is refused with a message saying what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_snapshots_and_events_and_is_bounded() {
    use tokio::io::AsyncReadExt;
    let root = tempfile::tempdir().unwrap();
    let c = coordinator(root.path(), true).await;
    let url = c.grpc_url();
    let (mut first, head) = open_stream(c.addresses.http).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let mut body = head;
    let mut buffer = [0u8; 8192];
    while !(body.contains("event: summary") && body.contains("event: event")) {
        let n = tokio::time::timeout(Duration::from_secs(10), first.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("summary and the channel's event within 10 s: {body}"))
            .expect("read");
        assert!(n > 0, "the stream closed: {body}");
        body.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    assert!(body.contains("edge"), "{body}");
    let mut open = vec![first];
    for _ in 1..100 {
        let (stream, head) = open_stream(c.addresses.http).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        open.push(stream);
    }
    let (_, refused) = open_stream(c.addresses.http).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("close a dashboard tab"), "{refused}");
    // A closed stream frees its place.
    drop(open.pop());
    eventually("a place after one stream closed", WAIT, async || {
        let (stream, head) = open_stream(c.addresses.http).await;
        head.starts_with("HTTP/1.1 200").then_some(stream)
    })
    .await;
}
