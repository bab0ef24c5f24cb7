//! Pause and rollback fenced against the reconciler (#10): once the call returns, no group
//! starts and no agent is sent the abandoned target, with 2,000 simulated agents reporting.

use std::{collections::HashMap, time::Duration};

use drover_tests::{
    CoordinatorBuilder, create_rollout, droverctl_json, eventually, simulate_logging,
    wait_connected,
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

/// One agent's accepted directives in `log` (a `simulate_logging` log): (target, reason).
fn directives_by_agent(log: &str) -> HashMap<String, Vec<(String, String)>> {
    let mut by_agent: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for line in log.lines().filter(|l| l.contains("new directive")) {
        let field = |name: &str| -> Option<String> {
            let at = line.find(name)? + name.len();
            let rest = &line[at..];
            Some(
                rest.split_whitespace()
                    .next()?
                    .trim_end_matches(':')
                    .to_string(),
            )
        };
        let (Some(agent), Some(target), Some(reason)) = (
            field("sim{agent="),
            field("target_version="),
            field("reason="),
        ) else {
            continue;
        };
        by_agent
            .entry(agent.trim_end_matches('}').to_string())
            .or_default()
            .push((target, reason));
    }
    by_agent
}

/// Once the first directive with `reason` reached an agent, every later one is `allowed`
/// (target, reason): no directive computed before the verb arrived after its own.
fn fenced(log: &str, reason: &str, agents: usize, allowed: impl Fn(&str, &str) -> bool) {
    let by_agent = directives_by_agent(log);
    let mut reached = 0;
    for (agent, directives) in &by_agent {
        let Some(first) = directives.iter().position(|(_, r)| r == reason) else {
            continue;
        };
        reached += 1;
        for (target, r) in &directives[first..] {
            assert!(
                allowed(target, r),
                "{agent} was sent {target} ({r}) after its {reason} directive: {directives:?}"
            );
        }
    }
    assert_eq!(reached, agents, "agents that got a {reason} directive");
}

async fn timed_verb(url: &str, args: &[&str]) -> Duration {
    let started = std::time::Instant::now();
    droverctl_json(url, args).await;
    started.elapsed()
}

/// 2,000 simulated agents mid-rollout, reporting: once `pause` returns no group starts and
/// no agent is sent the target; the same for `rollback`. Prints both calls' latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_rollback_are_fenced_against_the_reconciler_at_2000_agents() {
    const AGENTS: usize = 2000;
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
        "2000",
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
    // Immediate, 20 agents of a group at a time: slow enough to pause mid-way.
    let (ok, _, err) = create_rollout(
        &url,
        "edge",
        &["dev:canaries=2", "prod:canaries=2"],
        &["--immediate", "--max-in-flight", "20"],
    )
    .await;
    assert!(ok, "{err}");
    let status = |url: String| async move {
        droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await
    };
    eventually("100 agents on the target", WAIT, async || {
        let s = status(url.clone()).await;
        (group(&s, "dev")["on_target"].as_u64()? >= 100).then_some(())
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
        (on_target(&s) >= on_target(&held) + 100).then_some(())
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
    println!(
        "verb latency with {AGENTS} agents reporting (droverctl process included): \
         pause {pause:?}, rollback {rollback:?}"
    );
    assert!(pause < Duration::from_secs(2) && rollback < Duration::from_secs(2));
}
