//! Reports by hand: acknowledged after commit, deduplicated by attempt, refused by their
//! ack when they can never be stored (the session goes on), per agent, never moving an
//! agent back, with sane times.

use drover_tests::droverctl_json;

use super::*;

#[tokio::test]
async fn reports_are_acknowledged_after_commit_and_deduplicated_by_attempt() {
    let (_root, coordinator) = start().await;
    let mut session = welcomed(&coordinator, "rep-1").await;
    let report = pb::UpdateReport {
        attempt_id: "attempt-1".into(),
        from_version: "1.0.0".into(),
        to_version: "1.2.0".into(),
        outcome: pb::UpdateOutcome::Succeeded as i32,
        started_at: Some(seconds_ago(20)),
        finished_at: Some(seconds_ago(10)),
        ..Default::default()
    };
    for _ in 0..2 {
        session
            .up
            .send(msg(Up::Report(report.clone())))
            .await
            .unwrap();
        let Down::ReportAck(ack) = next(&mut session).await.unwrap() else {
            panic!("expected an ack")
        };
        assert_eq!(ack.attempt_id, "attempt-1");
        assert_eq!(ack.refused, "", "stored");
    }
    let agent = droverctl_json(&coordinator.grpc_url(), &["agents", "show", "rep-1"]).await;
    assert_eq!(agent["agent_version"], "1.2.0");
    assert_eq!(agent["last_report"]["attempt_id"], "attempt-1");

    // A report that can never be stored is refused by its ack, and the session goes on
    // (#21: dpkg's `\r` in an error locked an agent out when this ended the session).
    let mut bad = report.clone();
    bad.attempt_id = "attempt-2".into();
    bad.to_version = "latest".into();
    let why = refused(&mut session, bad).await;
    assert!(why.contains("to_version"), "{why}");
    let mut progress = report.clone();
    progress.attempt_id = "attempt-3".into();
    progress.outcome = pb::UpdateOutcome::Failed as i32;
    progress.error = "Reading database ... 5%\rReading database ... 100%".into();
    let why = refused(&mut session, progress).await;
    assert!(why.contains("U+000D"), "{why}");
    let agent = droverctl_json(&coordinator.grpc_url(), &["agents", "show", "rep-1"]).await;
    assert_eq!(
        agent["last_report"]["attempt_id"], "attempt-1",
        "the bad reports changed nothing"
    );
    let mut good = report.clone();
    good.attempt_id = "attempt-4".into();
    good.from_version = "1.2.0".into();
    good.finished_at = Some(seconds_ago(5));
    let Down::ReportAck(ack) = send_report(&mut session, good).await.unwrap() else {
        panic!("expected an ack")
    };
    assert_eq!(
        (ack.attempt_id.as_str(), ack.refused.as_str()),
        ("attempt-4", "")
    );
    let agent = droverctl_json(&coordinator.grpc_url(), &["agents", "show", "rep-1"]).await;
    assert_eq!(
        agent["last_report"]["attempt_id"], "attempt-4",
        "the same session stored it"
    );
}

/// Sends `report` and expects it refused by its ack; returns why.
async fn refused(session: &mut Session, report: pb::UpdateReport) -> String {
    let attempt_id = report.attempt_id.clone();
    match send_report(session, report).await {
        Ok(Down::ReportAck(ack)) => {
            assert_eq!(ack.attempt_id, attempt_id);
            assert!(!ack.refused.is_empty(), "{attempt_id} was stored");
            ack.refused
        }
        other => panic!("{attempt_id}: expected a refusing ack, got {other:?}"),
    }
}

fn seconds_ago(seconds: i64) -> prost_types::Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    prost_types::Timestamp {
        seconds: now - seconds,
        nanos: 0,
    }
}

async fn send_report(
    session: &mut Session,
    report: pb::UpdateReport,
) -> Result<Down, tonic::Status> {
    session.up.send(msg(Up::Report(report))).await.unwrap();
    next(session).await
}

#[tokio::test]
async fn reports_are_per_agent_never_move_an_agent_back_and_have_sane_times() {
    let (_root, coordinator) = start().await;
    let url = coordinator.grpc_url();
    let mut one = welcomed(&coordinator, "ord-1").await;
    let newer = pb::UpdateReport {
        attempt_id: "attempt-2".into(),
        from_version: "1.0.0".into(),
        to_version: "1.2.0".into(),
        outcome: pb::UpdateOutcome::Succeeded as i32,
        started_at: Some(seconds_ago(20)),
        finished_at: Some(seconds_ago(10)),
        ..Default::default()
    };
    assert!(matches!(
        send_report(&mut one, newer.clone()).await,
        Ok(Down::ReportAck(_))
    ));
    // An older attempt (1.0.0 → 1.1.0) arriving late, and an hour-old one from the
    // recorded version (1.2.0 → 1.1.0, #22 item 1): this coordinator never sent 1.1.0
    // (the channel follows the control plane at 1.2.0), so both are claims — refused to
    // the updater, kept as audited events — and move nothing back. (tests/tests/store.rs
    // checks that an older attempt for a target that was sent moves nothing back either.)
    let older = pb::UpdateReport {
        attempt_id: "attempt-1".into(),
        to_version: "1.1.0".into(),
        started_at: Some(seconds_ago(60)),
        finished_at: Some(seconds_ago(50)),
        ..newer.clone()
    };
    let why = refused(&mut one, older).await;
    assert!(why.contains("claim") && why.contains("1.1.0"), "{why}");
    let stale = pb::UpdateReport {
        attempt_id: "attempt-0".into(),
        from_version: "1.2.0".into(),
        to_version: "1.1.0".into(),
        started_at: Some(seconds_ago(3_700)),
        finished_at: Some(seconds_ago(3_600)),
        ..newer.clone()
    };
    refused(&mut one, stale).await;
    let agent = droverctl_json(&url, &["agents", "show", "ord-1"]).await;
    assert_eq!(agent["agent_version"], "1.2.0", "{agent}");
    assert_eq!(agent["last_report"]["attempt_id"], "attempt-2");
    let history = droverctl_json(&url, &["agents", "history", "ord-1"]).await;
    assert_eq!(history["reports"].as_array().unwrap().len(), 1, "{history}");

    // Another agent using the same attempt id is recorded as its own report.
    let mut two = welcomed(&coordinator, "ord-2").await;
    assert!(matches!(
        send_report(&mut two, newer.clone()).await,
        Ok(Down::ReportAck(_))
    ));
    let agent = droverctl_json(&url, &["agents", "show", "ord-2"]).await;
    assert_eq!(
        agent["agent_version"], "1.2.0",
        "not swallowed as ord-1's duplicate"
    );
    assert_eq!(agent["last_report"]["attempt_id"], "attempt-2");

    // Times far in the future, negative, overflowing or missing are refused, each by its
    // ack in one session.
    let mut session = welcomed(&coordinator, "ord-3").await;
    for (what, started, finished) in [
        ("future", seconds_ago(10), seconds_ago(-3 * 86_400)),
        (
            "negative",
            prost_types::Timestamp {
                seconds: -5,
                nanos: 0,
            },
            seconds_ago(1),
        ),
        (
            "overflowing",
            seconds_ago(10),
            prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            },
        ),
    ] {
        let bad = pb::UpdateReport {
            attempt_id: format!("bad-{what}"),
            started_at: Some(started),
            finished_at: Some(finished),
            ..newer.clone()
        };
        let why = refused(&mut session, bad).await;
        assert!(why.contains("_at"), "{what}: {why}");
    }
    let missing = pb::UpdateReport {
        attempt_id: "bad-missing".into(),
        started_at: None,
        ..newer.clone()
    };
    refused(&mut session, missing).await;
    let agent = droverctl_json(&url, &["agents", "show", "ord-3"]).await;
    assert!(
        agent["last_report"].is_null(),
        "no refused report was stored: {agent}"
    );
}

/// #22 item 2: a report for a target this coordinator never sent the agent is a claim:
/// refused to the updater, kept as an audited event that `agents why` shows, and it moves
/// no version, report or gate.
#[tokio::test]
async fn a_report_for_a_target_never_sent_is_kept_as_a_claim() {
    let (_root, coordinator) = start().await;
    let url = coordinator.grpc_url();
    let mut session = welcomed(&coordinator, "claim-1").await;
    let unsent = pb::UpdateReport {
        attempt_id: "made-up".into(),
        from_version: "1.0.0".into(),
        to_version: "99.0.0".into(),
        outcome: pb::UpdateOutcome::Succeeded as i32,
        started_at: Some(seconds_ago(20)),
        finished_at: Some(seconds_ago(10)),
        ..Default::default()
    };
    let why = refused(&mut session, unsent.clone()).await;
    assert!(
        why.contains("claim") && why.contains("targets 1.2.0"),
        "{why}"
    );
    // A failure for a rollout that never governed its channel cannot halt anything.
    let no_such_rollout = pb::UpdateReport {
        attempt_id: "made-up-failure".into(),
        to_version: "1.2.0".into(),
        outcome: pb::UpdateOutcome::Failed as i32,
        error: "it broke".into(),
        rollout_id: "r-000000000000".into(),
        ..unsent
    };
    let why = refused(&mut session, no_such_rollout).await;
    assert!(why.contains("does not govern"), "{why}");

    let agent = droverctl_json(&url, &["agents", "show", "claim-1"]).await;
    assert_eq!(agent["agent_version"], "1.0.0", "{agent}");
    assert!(agent["last_report"].is_null(), "{agent}");
    // `agents why` names the newest claim.
    let why = droverctl_json(&url, &["agents", "why", "claim-1"]).await;
    let text = why["explanation"]
        .as_str()
        .unwrap_or_else(|| panic!("{why}"));
    assert!(
        text.contains("never sent it") && text.contains("does not govern"),
        "{text}"
    );
    let audit = droverctl_json(&url, &["audit", "--limit", "50"]).await;
    let claims = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "ReportUpdate" && entry["result"] == "refused")
        .count();
    assert_eq!(claims, 2, "{audit}");
}
