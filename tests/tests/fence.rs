//! Pause and rollback fenced against the reconciler (#10): once the call returns, no group
//! starts and no agent is sent the abandoned target, with 200 simulated agents reporting.
//! The same at 2,000 agents, with the verbs' latency, is `drover-loadgen fence` (see
//! BENCHMARKS.md): scale and speed are measurements, not tests.

use std::time::Duration;

use drover_tests::{
    CoordinatorBuilder, create_rollout, directives_by_agent, droverctl_json, eventually, fencing,
    simulate_logging, wait_connected,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

fn group<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no group {name}: {status}"))
}

/// Once the first directive with `reason` reached an agent, every later one is `allowed`
/// (target, reason): no directive computed before the verb arrived after its own.
fn fenced(log: &str, reason: &str, agents: usize, allowed: impl Fn(&str, &str) -> bool) {
    let fencing = fencing(log, reason, allowed);
    assert!(
        fencing.violations.is_empty(),
        "{}",
        fencing.violations.join("\n")
    );
    assert_eq!(
        fencing.reached, agents,
        "agents that got a {reason} directive"
    );
}

async fn timed_verb(url: &str, args: &[&str]) -> Duration {
    let started = std::time::Instant::now();
    droverctl_json(url, args).await;
    started.elapsed()
}

/// 200 simulated agents mid-rollout, reporting: once `pause` returns no group starts and
/// no agent is sent the target; the same for `rollback`. Prints both calls' latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_rollback_are_fenced_against_the_reconciler() {
    const AGENTS: usize = 200;
    /// On the target before each verb: mid-way through dev's ~100 agents.
    const MOVED: u64 = 20;
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("100")
        .arg("--heartbeat-secs")
        .arg("2")
        .start()
        .await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let args = [
        "--count",
        &AGENTS.to_string(),
        "--groups",
        "dev,prod",
        "--channel",
        "edge",
        "--versions",
        "1.0.0",
        "--unhealthy-fraction",
        "0",
        "--ramp-up-secs",
        "2",
        "--recheck-secs",
        "3600",
    ];
    let _fleet = simulate_logging(
        &url,
        root.path(),
        &args,
        "warn,drover_updater::manager=info,drover_updater::simulate=info",
    );
    wait_connected(&url, AGENTS as u64).await;
    // Immediate, 5 agents of a group at a time: slow enough to pause mid-way.
    let (ok, _, err) = create_rollout(
        &url,
        "edge",
        &["dev:canaries=2", "prod:canaries=2"],
        &["--immediate", "--max-in-flight", "5"],
    )
    .await;
    assert!(ok, "{err}");
    let status = |url: String| async move {
        droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await
    };
    eventually(&format!("{MOVED} agents on the target"), WAIT, async || {
        let s = status(url.clone()).await;
        (group(&s, "dev")["on_target"].as_u64()? >= MOVED).then_some(())
    })
    .await;
    let log_path = root.path().join("simulate.log");
    let pause = timed_verb(&url, &["rollout", "pause", "--channel", "edge"]).await;
    let paused = status(url.clone()).await;
    // Every agent hears of the pause (its directive's reason changes).
    eventually("every agent got the paused directive", WAIT, async || {
        let log = std::fs::read_to_string(&log_path).ok()?;
        let by_agent = directives_by_agent(&log);
        let reached = by_agent
            .values()
            .filter(|d| d.iter().any(|(_, r)| r == "rollout_paused"))
            .count();
        (reached == AGENTS).then_some(())
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    // A held agent keeps its own version: whoever runs 1.1.0 holds it, nobody moves to it.
    fenced(&log, "rollout_paused", AGENTS, |_, r| r == "rollout_paused");
    let still = status(url.clone()).await;
    for name in ["dev", "prod"] {
        assert_eq!(
            group(&still, name)["state"],
            group(&paused, name)["state"],
            "{still}"
        );
    }
    let on_target = |s: &Value| {
        group(s, "dev")["on_target"].as_u64().unwrap()
            + group(s, "prod")["on_target"].as_u64().unwrap()
    };
    let held = still;
    let events = droverctl_json(&url, &["events", "--limit", "1000"]).await;
    let events = events.as_array().unwrap();
    let at = events
        .iter()
        .rposition(|e| e["text"] == "rollout paused")
        .expect("pause event");
    for e in &events[at..] {
        assert!(e["kind"] != "rollout", "a transition after the pause: {e}");
    }

    // Resume, let it move again, and roll back while agents report.
    let resumed_at = std::fs::metadata(&log_path).unwrap().len() as usize;
    droverctl_json(&url, &["rollout", "resume", "--channel", "edge"]).await;
    eventually("more agents on the target", WAIT, async || {
        let s = status(url.clone()).await;
        (on_target(&s) >= on_target(&held) + MOVED).then_some(())
    })
    .await;
    let rollback = timed_verb(&url, &["rollout", "rollback", "--channel", "edge"]).await;
    eventually("every agent got the rollback", WAIT, async || {
        let log = std::fs::read_to_string(&log_path).ok()?;
        let by_agent = directives_by_agent(&log[resumed_at..]);
        let reached = by_agent
            .values()
            .filter(|d| d.iter().any(|(_, r)| r == "rolledback"))
            .count();
        (reached == AGENTS).then_some(())
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    fenced(&log[resumed_at..], "rolledback", AGENTS, |t, _| {
        t == "Some(\"1.0.0\")"
    });
    eventually("every agent back on 1.0.0", WAIT, async || {
        let s = droverctl_json(&url, &["fleet", "summary"]).await;
        (s["by_version"]["1.0.0"] == AGENTS as u64).then_some(())
    })
    .await;
    views_agree_once_reports_settle(&url, AGENTS).await;
    println!(
        "verb latency with {AGENTS} agents reporting (droverctl process included): \
         pause {pause:?}, rollback {rollback:?}"
    );
}

/// #20 item 5: after a rollback, the agent list shows each agent's newest report (by the
/// updater's finish time), whatever order reports and heartbeats arrived in. A heartbeat can
/// carry the version back before its report lands, so this waits for the reports first.
async fn views_agree_once_reports_settle(url: &str, agents: usize) {
    let list = eventually(
        "every reporting agent's last report names its version",
        WAIT,
        async || {
            let list = droverctl_json(url, &["agents", "list", "--limit", "1000"]).await;
            let list = list["agents"].as_array()?.clone();
            (list.len() == agents
                && list.iter().all(|a| {
                    a["last_report"].is_null()
                        || a["last_report"]["to_version"] == a["agent_version"]
                }))
            .then_some(list)
        },
    )
    .await;
    let rolled_back: Vec<&Value> = list
        .iter()
        .filter(|a| a["last_report"]["from_version"] == "1.1.0")
        .collect();
    assert!(!rolled_back.is_empty(), "no agent reported a rollback");
    for agent in rolled_back.iter().take(10) {
        let id = agent["agent_id"].as_str().unwrap();
        let history = droverctl_json(url, &["agents", "history", id]).await;
        assert_eq!(
            history["reports"][0]["attempt_id"], agent["last_report"]["attempt_id"],
            "the list's last report is not the newest stored one: {history}"
        );
    }
}
