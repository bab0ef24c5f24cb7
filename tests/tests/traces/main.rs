//! One trace per rollout, across processes, as Jaeger and Tempo users need it: a real
//! coordinator and real `drover-updater` processes export OTLP to a receiver built from the
//! official protobuf definitions (no collector runs here). The trace's root and group spans
//! arrive while the rollout runs, every span id is sent once and every parent exists, the
//! kinds draw coordinator → updater, phase changes and failures are span events, each
//! process names itself, sampling is decided once by the coordinator and followed by the
//! updaters, and only canaries, failures and a budget of the other agents are traced.

mod harness;
mod speed;

use std::collections::HashSet;

use drover_tests::{droverctl_json, eventually, otlp::event_attribute};
use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_is_one_live_trace_down_to_each_updaters_steps() {
    // A budget of 0: only canaries and failures are traced (one canary a group).
    let Traced {
        receiver,
        c,
        url,
        updaters,
        _root,
    } = traced(Setup {
        coordinator_args: &["--trace-agent-budget", "0"],
        ..Setup::default()
    })
    .await;
    create(&url).await;
    droverctl_json(&url, &["rollout", "pause", "--channel", "edge"]).await;
    let trace = rollout_trace_id(&url).await;
    // Live: while the rollout is paused, its root and first group are in the collector.
    eventually(
        "the root and dev's group span arrive while the rollout runs",
        WAIT,
        async || {
            let spans = in_trace(&receiver, &trace);
            let root = spans.iter().any(|s| s.name == "rollout");
            let dev = spans
                .iter()
                .any(|s| s.name == "rollout.group" && s.attribute("drover.group") == Some("dev"));
            let paused = spans.iter().any(|s| s.name == "rollout.change");
            (root && dev && paused).then_some(())
        },
    )
    .await;
    let status = droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await;
    assert_eq!(status["status"], "active", "{status}");
    droverctl_json(&url, &["rollout", "resume", "--channel", "edge"]).await;
    wait_status(&url, "done").await;
    eventually(
        "the rollout's end and both canaries' attempts arrive",
        WAIT,
        async || {
            let spans = in_trace(&receiver, &trace);
            let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
            (count("rollout.end") == 1 && count("update_attempt") >= 2).then_some(())
        },
    )
    .await;
    // Every span the updaters made has left: what is absent was never sampled.
    for updater in updaters {
        assert!(updater.terminate().await.success());
    }
    let spans = in_trace(&receiver, &trace);
    assert_sound(&spans);

    let rollout = one(&spans, "rollout", "");
    assert_eq!(rollout.service, "drover-coordinator");
    assert_eq!(rollout.kind, KIND_INTERNAL);
    assert_eq!(rollout.attribute("deployment.name"), Some("edge"));
    assert_eq!(rollout.attribute("drover.release.to"), Some("1.1.0"));
    assert_eq!(
        rollout.attribute("service.version"),
        None,
        "not the release's version"
    );
    // The pause and the resume moved no group: each is a change of the rollout.
    let changes = children(&spans, "rollout.change", &rollout.span_id);
    let texts: Vec<&str> = changes
        .iter()
        .flat_map(|c| c.events_named("drover.change"))
        .filter_map(|e| event_attribute(e, "drover.text"))
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains("paus") || texts[1].contains("paus"),
        "{texts:?}"
    );
    assert!(
        texts[0].contains("resum") || texts[1].contains("resum"),
        "{texts:?}"
    );
    let end = one(&spans, "rollout.end", &rollout.span_id);
    assert_eq!(end.attribute("deployment.status"), Some("succeeded"));
    assert_ne!(end.status_code, STATUS_ERROR);

    let groups = children(&spans, "rollout.group", &rollout.span_id);
    assert_eq!(groups.len(), 2, "dev and prod");
    let mut traced_agents = Vec::new();
    for group in groups {
        let started = phase_changes(group);
        assert_eq!(started, [("unstarted".to_string(), "canary".to_string())]);
        let phases = children(&spans, "rollout.group.phase", &group.span_id);
        let mut changes: Vec<(String, String)> =
            phases.iter().flat_map(|p| phase_changes(p)).collect();
        changes.sort();
        assert_eq!(
            changes,
            [
                ("active".into(), "done".into()),
                ("canary".into(), "active".into())
            ],
            "{}",
            group.attribute("drover.group").unwrap()
        );
        // Budget 0: the group's canary only, whose attempt is a CLIENT span …
        let attempts = children(&spans, "agent_update", &group.span_id);
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        let attempt = attempts[0];
        assert_eq!(attempt.kind, KIND_CLIENT);
        assert_eq!(attempt.attribute("drover.canary"), Some("true"));
        assert_eq!(attempt.attribute("drover.outcome"), Some("succeeded"));
        let agent = attempt.attribute("drover.agent_id").unwrap().to_string();
        // … continued by the updater's SERVER span, from the process named after it.
        let updater = one(&spans, "update_attempt", &attempt.span_id);
        assert_eq!(updater.service, "drover-updater");
        assert_eq!(updater.kind, KIND_SERVER);
        assert_eq!(
            updater.resource_attribute("service.instance.id"),
            Some(agent.as_str())
        );
        assert!(
            updater
                .resource_attribute("host.name")
                .is_some_and(|h| !h.is_empty())
        );
        one(&spans, "install", &updater.span_id);
        traced_agents.push(agent);
    }
    // The other two agents updated untraced: nothing of theirs in the trace.
    let attempts: HashSet<&str> = spans
        .iter()
        .filter_map(|s| s.attribute("drover.agent_id"))
        .collect();
    assert_eq!(
        attempts.len(),
        2,
        "{attempts:?} (traced: {traced_agents:?})"
    );
    for span in &spans {
        assert_eq!(
            span.resource_attribute("service.version"),
            Some(env!("CARGO_PKG_VERSION")),
            "{span:?}"
        );
    }

    // The coordinator's JSON log lines of the rollout's changes name their span.
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let logged = c.log().lines().any(|line| {
        serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| {
            v["trace_id"] == trace.as_str()
                && v["span_id"].as_str().is_some_and(|id| ids.contains(id))
        })
    });
    assert!(logged, "no coordinator JSON line names a span of {trace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_then_a_rollback_sends_each_span_once_with_errors_and_exceptions() {
    let Traced {
        receiver,
        url,
        _root,
        c: _c,
        updaters: _updaters,
    } = traced(Setup {
        broken: Some("1.1.0"),
        ..Setup::default()
    })
    .await;
    create(&url).await;
    wait_status(&url, "halted").await;
    droverctl_json(&url, &["rollout", "rollback", "--channel", "edge"]).await;
    wait_status(&url, "rolledback").await;
    let trace = rollout_trace_id(&url).await;
    let spans = eventually("the failure and the rollback arrive", WAIT, async || {
        let spans = in_trace(&receiver, &trace);
        let failed = |name: &str| {
            spans
                .iter()
                .any(|s| s.name == name && s.status_code == STATUS_ERROR)
        };
        let ended = spans.iter().any(|s| s.name == "rollout.end");
        (ended && failed("install") && failed("update_attempt")).then_some(spans)
    })
    .await;
    assert_sound(&spans);
    let rollout = one(&spans, "rollout", "");
    let end = one(&spans, "rollout.end", &rollout.span_id);
    assert_eq!(end.attribute("deployment.status"), Some("failed"));
    assert_eq!(end.status_code, STATUS_ERROR);
    // prod never started: the rollback is its first change (unstarted → rolledback).
    let groups = children(&spans, "rollout.group", &rollout.span_id);
    let group = |name: &str| {
        let found = groups
            .iter()
            .find(|g| g.attribute("drover.group") == Some(name));
        *found.unwrap_or_else(|| panic!("group {name} in {groups:#?}"))
    };
    assert_eq!(
        phase_changes(group("prod")),
        [("unstarted".to_string(), "rolledback".to_string())]
    );
    let dev = [group("dev")];
    let phases = children(&spans, "rollout.group.phase", &dev[0].span_id);
    let canary = phases
        .iter()
        .find(|p| p.attribute("drover.phase") == Some("canary"))
        .expect("the canary phase");
    assert_eq!(
        phase_changes(canary),
        [("canary".to_string(), "halted".to_string())]
    );
    assert_eq!(canary.status_code, STATUS_ERROR);
    assert!(canary.status_message.contains("dev"), "{canary:?}");
    let halted = phases
        .iter()
        .find(|p| p.attribute("drover.phase") == Some("halted"))
        .expect("the halted phase");
    assert_eq!(
        phase_changes(halted),
        [("halted".to_string(), "rolledback".to_string())]
    );

    let attempt = one(&spans, "agent_update", &dev[0].span_id);
    assert_eq!(attempt.status_code, STATUS_ERROR);
    let exception = attempt.events_named("exception");
    assert_eq!(exception.len(), 1, "{attempt:?}");
    assert!(matches!(
        event_attribute(exception[0], "exception.type"),
        Some("failed" | "reverted")
    ));
    let updater = one(&spans, "update_attempt", &attempt.span_id);
    assert_eq!(updater.status_code, STATUS_ERROR);
    assert_eq!(updater.events_named("exception").len(), 1, "{updater:?}");
    let install = one(&spans, "install", &updater.span_id);
    let exception = install.events_named("exception");
    assert!(
        event_attribute(exception[0], "exception.message").is_some_and(|m| !m.is_empty()),
        "{install:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_rollout_exports_nothing_even_from_updaters_set_to_sample_all() {
    let Traced {
        receiver,
        url,
        updaters,
        _root,
        c: _c,
    } = traced(Setup {
        coordinator_env: &[("OTEL_TRACES_SAMPLER", "always_off")],
        updater_env: &[("OTEL_TRACES_SAMPLER", "always_on")],
        ..Setup::default()
    })
    .await;
    create(&url).await;
    wait_status(&url, "done").await;
    let (trace, sampled) = rollout_trace(&url).await;
    assert!(!sampled, "rollout show says the trace was not sampled");
    // Each updater ran its attempt and reported it; stopping them sends what they queued.
    eventually("every agent is on 1.1.0", WAIT, async || {
        let agents = droverctl_json(&url, &["agents", "list"]).await;
        let on = agents["agents"]
            .as_array()?
            .iter()
            .filter(|a| a["agent_version"] == "1.1.0")
            .count();
        (on == 4).then_some(())
    })
    .await;
    for updater in updaters {
        assert!(updater.terminate().await.success());
    }
    let spans = in_trace(&receiver, &trace);
    assert!(
        spans.is_empty(),
        "an unsampled rollout's spans were exported: {spans:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_is_kept_whole_outside_the_traced_share() {
    // Nobody in the share and no canaries: only failures are traced.
    let Traced {
        receiver,
        url,
        _root,
        c: _c,
        updaters: _updaters,
    } = traced(Setup {
        coordinator_args: &["--trace-agent-budget", "0"],
        broken: Some("1.1.0"),
        ..Setup::default()
    })
    .await;
    let args = [
        "--immediate",
        "--failure-threshold",
        "100",
        "--strata",
        "none",
    ];
    let (ok, _, stderr) = drover_tests::create_rollout(&url, "edge", &["dev"], &args).await;
    assert!(ok, "{stderr}");
    let trace = rollout_trace_id(&url).await;
    let spans = eventually(
        "the four failed attempts arrive, with their steps",
        WAIT,
        async || {
            let spans = in_trace(&receiver, &trace);
            let failed = |name: &str| {
                spans
                    .iter()
                    .filter(|s| s.name == name && s.status_code == STATUS_ERROR)
                    .count()
            };
            (failed("update_attempt") == 4 && failed("install") == 4).then_some(spans)
        },
    )
    .await;
    assert_sound(&spans);
    let rollout = one(&spans, "rollout", "");
    let group = one(&spans, "rollout.group", &rollout.span_id);
    let attempts = children(&spans, "agent_update", &group.span_id);
    assert_eq!(attempts.len(), 4, "{attempts:#?}");
    for attempt in attempts {
        assert_eq!(attempt.attribute("drover.canary"), Some("false"));
        assert_eq!(attempt.status_code, STATUS_ERROR);
        let updater = one(&spans, "update_attempt", &attempt.span_id);
        assert_eq!(updater.flags & 1, 1, "sent as sampled: {updater:?}");
        one(&spans, "install", &updater.span_id);
    }
}
