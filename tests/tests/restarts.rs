//! A coordinator SIGKILLed and restarted again and again during a rollout (SQLite and
//! PostgreSQL), with simulated updaters installing as it dies (each install takes 1.5 s)
//! and the restarted coordinator's first rollout pass held back 2 s (a crash point), so the
//! updaters reconnect mid-install, before it has decided anything: no agent is ever
//! directed back to a version older than one it was sent for the same rollout, none
//! installs twice, and the rollout finishes. What a restarted coordinator has not decided
//! yet it answers with "hold what you have", never with the version it last knew (#24).

use std::time::Duration;

use drover_tests::{
    CoordinatorBuilder, TestPostgres, create_rollout, directives_by_agent, droverctl_json,
    eventually, simulate_logging, wait_connected,
};

const AGENTS: u64 = 24;
const KILLS: usize = 6;
/// Held back on every restart: the first rollout pass after it.
const SLOW_FIRST_PASS: &str = "reconcile.first_pass=delay(2000)";
const WAIT: Duration = Duration::from_secs(120);

/// Install decisions per agent in a `simulate_logging` log: (agent, version) pairs.
fn installs(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|l| l.contains("decision") && l.contains("action=\"install\""))
        .filter_map(|line| {
            let agent = line.split("sim{agent=").nth(1)?.split('}').next()?;
            let detail = line.split("detail=").nth(1)?;
            let version = ["1.0.0", "1.1.0"]
                .into_iter()
                .find(|v| detail.contains(v))?;
            Some((agent.to_string(), version.to_string()))
        })
        .collect()
}

async fn kill_during_rollout(database: Option<&str>) {
    let root = tempfile::tempdir().unwrap();
    let builder = match database {
        Some(url) => CoordinatorBuilder::with_database(root.path(), url),
        None => CoordinatorBuilder::sqlite(root.path()),
    };
    let mut c = builder
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("100")
        .arg("--heartbeat-secs")
        .arg("2")
        .start()
        .await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let count = AGENTS.to_string();
    let _fleet = simulate_logging(
        &url,
        root.path(),
        &[
            "--count",
            &count,
            "--groups",
            "dev",
            "--channel",
            "edge",
            "--versions",
            "1.0.0",
            "--unhealthy-fraction",
            "0",
            "--ramp-up-secs",
            "0",
            "--recheck-secs",
            "3600",
            "--install-ms",
            "1500",
        ],
        "warn,drover_updater::manager=info,drover_updater::simulate=info",
    );
    wait_connected(&url, AGENTS).await;
    let (ok, _, err) = create_rollout(
        &url,
        "edge",
        &["dev:canaries=1"],
        &["--immediate", "--max-in-flight", "3"],
    )
    .await;
    assert!(ok, "{err}");
    let on_target = async || {
        let summary = droverctl_json(&url, &["fleet", "summary"]).await;
        summary["by_version"]["1.1.0"].as_u64().unwrap_or_default()
    };
    let mut killed_at = Vec::new();
    for _ in 0..KILLS {
        // Kill each time another agent has updated: mid-rollout, with others installing.
        let seen = on_target().await;
        if seen + 3 >= AGENTS {
            break;
        }
        eventually("another agent updated", WAIT, async || {
            (on_target().await > seen).then_some(())
        })
        .await;
        killed_at.push(on_target().await);
        c.restart_with_failpoints(SLOW_FIRST_PASS).await;
    }
    println!("killed at {killed_at:?} of {AGENTS} updated");
    assert!(
        killed_at.len() >= KILLS / 2,
        "killed mid-rollout: {killed_at:?}"
    );
    eventually("every agent on 1.1.0", WAIT, async || {
        (on_target().await == AGENTS).then_some(())
    })
    .await;

    let log = std::fs::read_to_string(root.path().join("simulate.log")).unwrap();
    let mut backwards = Vec::new();
    for (agent, directives) in directives_by_agent(&log) {
        let Some(first) = directives
            .iter()
            .position(|(target, _)| target == "Some(\"1.1.0\")")
        else {
            continue;
        };
        if let Some(back) = directives[first..]
            .iter()
            .find(|(target, _)| target == "Some(\"1.0.0\")")
        {
            backwards.push(format!(
                "{agent}: sent {back:?} after 1.1.0: {directives:?}"
            ));
        }
    }
    assert!(backwards.is_empty(), "{}", backwards.join("\n"));
    let installs = installs(&log);
    let downgrades: Vec<_> = installs.iter().filter(|(_, v)| v == "1.0.0").collect();
    assert!(downgrades.is_empty(), "installed 1.0.0: {downgrades:?}");
    let mut per_agent = std::collections::HashMap::<&str, usize>::new();
    for (agent, _) in &installs {
        *per_agent.entry(agent).or_default() += 1;
    }
    let twice: Vec<_> = per_agent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "agents that installed twice: {twice:?}");
    assert_eq!(per_agent.len() as u64, AGENTS, "every agent installed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restarts_never_send_an_agent_back() {
    kill_during_rollout(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_never_send_an_agent_back() {
    let db = TestPostgres::create().await;
    kill_during_rollout(Some(&db.url)).await;
}
