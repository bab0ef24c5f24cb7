//! The updater protocol spoken by hand over gRPC: bounds, ordering rules, idempotency and
//! the cost of a heartbeat, against a real coordinator process.

use std::time::Duration;

use drover_proto::v1::{
    self as pb, coordinator_message::Kind as Down, updater_message::Kind as Up,
    updater_service_client::UpdaterServiceClient,
};
use drover_tests::{CoordinatorBuilder, CoordinatorProcess, droverctl_json, eventually};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

mod reports;

struct Session {
    up: mpsc::Sender<pb::UpdaterMessage>,
    down: Streaming<pb::CoordinatorMessage>,
}

fn hello(agent_id: &str) -> pb::Hello {
    pb::Hello {
        agent_id: agent_id.into(),
        hostname: "host".into(),
        group: "prod".into(),
        channel: "stable/rolling".into(),
        agent_version: "1.0.0".into(),
        health: pb::AgentHealth::Healthy as i32,
        ..Default::default()
    }
}

fn msg(kind: Up) -> pb::UpdaterMessage {
    pb::UpdaterMessage { kind: Some(kind) }
}

async fn open(
    coordinator: &CoordinatorProcess,
    first: pb::UpdaterMessage,
) -> Result<Session, tonic::Status> {
    // Speak as the agent the hello names (enrolled for it); a malformed hello is sent as
    // an enrolled probe, so the refusal under test is the hello's own.
    let (agent_id, group) = match &first.kind {
        Some(Up::Hello(h)) if enrollable(&h.agent_id) && enrollable(&h.group) => {
            (h.agent_id.clone(), h.group.clone())
        }
        _ => ("probe".to_string(), "prod".to_string()),
    };
    let channel = coordinator.agent_channel(&agent_id, &group).await;
    let mut client = UpdaterServiceClient::new(channel);
    let (up, rx) = mpsc::channel(16);
    up.send(first).await.unwrap();
    let down = client.session(ReceiverStream::new(rx)).await?.into_inner();
    Ok(Session { up, down })
}

/// A session for `agent_id` past its Welcome and first directive.
async fn welcomed(coordinator: &CoordinatorProcess, agent_id: &str) -> Session {
    let mut session = open(coordinator, msg(Up::Hello(hello(agent_id))))
        .await
        .unwrap();
    next(&mut session).await.unwrap();
    next(&mut session).await.unwrap();
    session
}

fn enrollable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

async fn next(session: &mut Session) -> Result<Down, tonic::Status> {
    let message = tokio::time::timeout(Duration::from_secs(10), session.down.message())
        .await
        .expect("a message within 10 s")?;
    Ok(message.and_then(|m| m.kind).expect("stream still open"))
}

async fn stat(coordinator: &CoordinatorProcess, name: &str) -> u64 {
    let (_, body) = drover_tests::http(coordinator.addresses.http, "GET", "/api/v1/stats").await;
    serde_json::from_str::<serde_json::Value>(&body).unwrap()[name]
        .as_u64()
        .unwrap_or_else(|| panic!("/api/v1/stats has no {name}: {body}"))
}

async fn store_writes(coordinator: &CoordinatorProcess) -> u64 {
    stat(coordinator, "store_write_statements").await
}

async fn start() -> (tempfile::TempDir, CoordinatorProcess) {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("1.2.0")
        // Long enough that no batched liveness flush lands inside a test.
        .arg("--liveness-flush-secs")
        .arg("3600")
        .start()
        .await;
    (root, coordinator)
}

#[tokio::test]
async fn malformed_hellos_are_refused_and_record_nothing() {
    let (_root, coordinator) = start().await;
    let heartbeat_first = msg(Up::Heartbeat(pb::Heartbeat::default()));
    let mut bad_labels = hello("ok-id");
    bad_labels.labels = (0..40).map(|i| (format!("k{i}"), "v".into())).collect();
    let mut bad_version = hello("ok-id");
    bad_version.agent_version = "one.two".into();
    let mut oversized = hello("ok-id");
    oversized.hostname = "h".repeat(100 * 1024);

    let cases = [
        (
            heartbeat_first,
            Code::FailedPrecondition,
            "first message of a session must be Hello",
        ),
        (
            msg(Up::Hello(hello("bad id!"))),
            Code::InvalidArgument,
            "agent_id 'bad id!' is invalid",
        ),
        (
            msg(Up::Hello(bad_labels)),
            Code::InvalidArgument,
            "at most 32 are allowed",
        ),
        (
            msg(Up::Hello(bad_version)),
            Code::InvalidArgument,
            "MAJOR.MINOR.PATCH",
        ),
        (
            msg(Up::Hello(oversized)),
            Code::OutOfRange,
            "message length too large",
        ),
    ];
    for (first, code, text) in cases {
        let status = match open(&coordinator, first).await {
            Err(status) => status,
            Ok(mut session) => next(&mut session).await.expect_err("the session must fail"),
        };
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().contains(text),
            "expected {text:?} in {:?}",
            status.message()
        );
    }
    let agents = droverctl_json(&coordinator.grpc_url(), &["agents", "list"]).await;
    assert_eq!(agents["total_matching"], 0, "refused hellos left no record");
}

#[tokio::test]
async fn welcome_comes_first_and_unchanged_heartbeats_cost_no_write() {
    let (_root, coordinator) = start().await;
    let mut session = open(&coordinator, msg(Up::Hello(hello("hb-1"))))
        .await
        .unwrap();
    let Down::Welcome(welcome) = next(&mut session).await.unwrap() else {
        panic!("Welcome must come first")
    };
    assert!(!welcome.session_id.is_empty());
    let Down::Directive(directive) = next(&mut session).await.unwrap() else {
        panic!("then the directive")
    };
    assert_eq!(
        (directive.target_version.as_str(), directive.reason.as_str()),
        ("1.2.0", "follows_control_plane")
    );

    let heartbeat = |health: pb::AgentHealth, sequence| {
        msg(Up::Heartbeat(pb::Heartbeat {
            health: health as i32,
            state: pb::UpdaterState::Idle as i32,
            agent_version: "1.0.0".into(),
            sequence,
            // The updater's own decision changes often; it is kept in memory, never written.
            decision_reason: format!("reason-{}", sequence % 3),
            decision_detail: String::new(),
            want_ack: false,
            progress: None,
            // Dropped spans are summed, bounded per heartbeat (u64::MAX cannot overflow it).
            spans_dropped: if sequence % 7 == 0 { u64::MAX } else { 0 },
            // Health samples are kept in memory too; one out of bounds (a petabyte of RSS)
            // is dropped, never the heartbeat or the session.
            sample: Some(pb::HealthSample {
                span_ms: 1_000,
                rss_kib: Some(if sequence % 5 == 0 { u64::MAX } else { 40_000 }),
                probe_latency_ms: Some(3.0),
                probes_ok: 5,
                ..Default::default()
            }),
        }))
    };
    // The first heartbeat sets the updater state (idle, as stored at hello): no change either.
    let before = store_writes(&coordinator).await;
    let heartbeats_before = stat(&coordinator, "heartbeats").await;
    // 19, then one more: a burst's worth (a session's heartbeat budget allows 20 at once).
    for sequence in 1..=19 {
        session
            .up
            .send(heartbeat(pb::AgentHealth::Healthy, sequence))
            .await
            .unwrap();
    }
    // Wait until the coordinator has handled all 19, then count.
    let handled = heartbeats_before + 19;
    eventually(
        "the 19 heartbeats handled",
        Duration::from_secs(10),
        async || (stat(&coordinator, "heartbeats").await >= handled).then_some(()),
    )
    .await;
    assert_eq!(
        store_writes(&coordinator).await - before,
        0,
        "19 unchanged heartbeats wrote nothing"
    );

    session
        .up
        .send(heartbeat(pb::AgentHealth::Unhealthy, 20))
        .await
        .unwrap();
    eventually(
        "the health change written",
        Duration::from_secs(10),
        async || (store_writes(&coordinator).await > before).then_some(()),
    )
    .await;
    assert_eq!(
        store_writes(&coordinator).await - before,
        1,
        "a health change is one write"
    );
    let agent = droverctl_json(&coordinator.grpc_url(), &["agents", "show", "hb-1"]).await;
    assert_eq!(agent["health"], "unhealthy");
}

#[tokio::test]
async fn a_second_session_for_the_same_agent_replaces_the_first() {
    let (_root, coordinator) = start().await;
    let mut first = open(&coordinator, msg(Up::Hello(hello("dup-1"))))
        .await
        .unwrap();
    next(&mut first).await.unwrap();
    let mut second = open(&coordinator, msg(Up::Hello(hello("dup-1"))))
        .await
        .unwrap();
    next(&mut second).await.unwrap();
    let ended = loop {
        match next(&mut first).await {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::Aborted);
    assert!(
        ended.message().contains("give each its own"),
        "{}",
        ended.message()
    );
}

#[tokio::test]
async fn an_updater_that_already_holds_the_directive_is_not_sent_it_again() {
    let (_root, coordinator) = start().await;
    let mut session = open(&coordinator, msg(Up::Hello(hello("held-1"))))
        .await
        .unwrap();
    next(&mut session).await.unwrap();
    let Down::Directive(directive) = next(&mut session).await.unwrap() else {
        panic!()
    };
    drop(session);

    let mut again = hello("held-1");
    again.last_directive_id = directive.directive_id.clone();
    let mut session = open(&coordinator, msg(Up::Hello(again))).await.unwrap();
    next(&mut session).await.unwrap();
    droverctl_json(&coordinator.grpc_url(), &["control-plane", "set", "1.3.0"]).await;
    let Down::Directive(changed) = next(&mut session).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        changed.target_version, "1.3.0",
        "the first directive after Welcome is the change, not a resend"
    );
}

#[tokio::test]
async fn polling_for_an_unknown_channel_says_how_to_fix_it() {
    let (_root, coordinator) = start().await;
    let mut client = UpdaterServiceClient::new(coordinator.agent_channel("p-1", "default").await);
    let response = client
        .get_target(pb::GetTargetRequest {
            agent_id: "p-1".into(),
            channel: "nightly".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let directive = response.directive.unwrap();
    assert_eq!(
        (directive.target_version.as_str(), directive.reason.as_str()),
        ("", "unknown_channel")
    );
    assert!(
        directive
            .reason_detail
            .contains("droverctl channels set nightly")
    );
}

/// A heartbeat's decision text is the updater's own words: control characters are cleaned,
/// and a status the coordinator cannot read (a malformed version) is ignored; neither costs
/// the session.
#[tokio::test]
async fn a_heartbeat_with_unreadable_parts_keeps_the_session() {
    let (_root, coordinator) = start().await;
    let url = coordinator.grpc_url();
    let mut session = open(&coordinator, msg(Up::Hello(hello("hb-1"))))
        .await
        .unwrap();
    next(&mut session).await.unwrap();
    next(&mut session).await.unwrap();
    let beat = |version: &str, detail: &str, sequence| {
        msg(Up::Heartbeat(pb::Heartbeat {
            health: pb::AgentHealth::Healthy as i32,
            agent_version: version.into(),
            sequence,
            decision_reason: "outside_window".into(),
            decision_detail: detail.into(),
            want_ack: true,
            ..Default::default()
        }))
    };
    session
        .up
        .send(beat("not a version", "ignored", 1))
        .await
        .unwrap();
    session
        .up
        .send(beat("1.0.0", "apt: 5%\r100%\u{1b}[0m done", 2))
        .await
        .unwrap();
    let Down::HeartbeatAck(ack) = next(&mut session).await.unwrap() else {
        panic!("expected the second heartbeat's ack")
    };
    assert_eq!(ack.sequence, 2, "the unreadable one is not acknowledged");
    let agent = eventually(
        "the decision is recorded",
        Duration::from_secs(30),
        async || {
            let agent = droverctl_json(&url, &["agents", "show", "hb-1"]).await;
            (agent["updater_decision"] == "outside_window").then_some(agent)
        },
    )
    .await;
    assert_eq!(
        agent["updater_decision_detail"], "apt: 5% 100% done",
        "{agent}"
    );
    assert_eq!(agent["agent_version"], "1.0.0", "{agent}");
    assert_eq!(agent["connected"], true, "{agent}");
}
