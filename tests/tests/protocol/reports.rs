//! Reports by hand: acknowledged after commit, deduplicated by attempt, refused by their
//! ack when they can never be stored (the session goes on), per agent, never moving an
//! agent back, with sane times.

use drover_tests::droverctl_json;

use super::*;

#[tokio::test]
async fn reports_are_acknowledged_after_commit_and_deduplicated_by_attempt() {
    let (_root, coordinator) = start().await;
    let mut session = open(&coordinator, msg(Up::Hello(hello("rep-1"))))
        .await
        .unwrap();
    next(&mut session).await.unwrap();
    next(&mut session).await.unwrap();
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
    good.to_version = "1.3.0".into();
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
        agent["agent_version"], "1.3.0",
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
    let mut one = open(&coordinator, msg(Up::Hello(hello("ord-1"))))
        .await
        .unwrap();
    next(&mut one).await.unwrap();
    next(&mut one).await.unwrap();
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
    // An older attempt (1.0.0 → 1.1.0, finished earlier) arriving late is stored and
    // acknowledged, but moves neither the version nor the last report back.
    let older = pb::UpdateReport {
        attempt_id: "attempt-1".into(),
        to_version: "1.1.0".into(),
        started_at: Some(seconds_ago(60)),
        finished_at: Some(seconds_ago(50)),
        ..newer.clone()
    };
    assert!(matches!(
        send_report(&mut one, older).await,
        Ok(Down::ReportAck(_))
    ));
    let agent = droverctl_json(&url, &["agents", "show", "ord-1"]).await;
    assert_eq!(agent["agent_version"], "1.2.0");
    assert_eq!(agent["last_report"]["attempt_id"], "attempt-2");
    // #22 item 1: an hour-old report that starts from the recorded version (1.2.0 → 1.1.0)
    // is stored, but an older attempt never moves the version: attempt order, not arrival.
    let stale = pb::UpdateReport {
        attempt_id: "attempt-0".into(),
        from_version: "1.2.0".into(),
        to_version: "1.1.0".into(),
        started_at: Some(seconds_ago(3_700)),
        finished_at: Some(seconds_ago(3_600)),
        ..newer.clone()
    };
    assert!(matches!(
        send_report(&mut one, stale).await,
        Ok(Down::ReportAck(_))
    ));
    let agent = droverctl_json(&url, &["agents", "show", "ord-1"]).await;
    assert_eq!(agent["agent_version"], "1.2.0", "{agent}");
    assert_eq!(agent["last_report"]["attempt_id"], "attempt-2");
    let history = droverctl_json(&url, &["agents", "history", "ord-1"]).await;
    assert_eq!(history["reports"].as_array().unwrap().len(), 3, "{history}");

    // Another agent using the same attempt id is recorded as its own report.
    let mut two = open(&coordinator, msg(Up::Hello(hello("ord-2"))))
        .await
        .unwrap();
    next(&mut two).await.unwrap();
    next(&mut two).await.unwrap();
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
    let mut session = open(&coordinator, msg(Up::Hello(hello("ord-3"))))
        .await
        .unwrap();
    next(&mut session).await.unwrap();
    next(&mut session).await.unwrap();
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
