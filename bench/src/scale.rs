//! `drover-loadgen dashboard` and `drover-loadgen fence`: the claims the black-box tests
//! prove at small scale (tests/tests/dashboard.rs, tests/tests/fence.rs), measured at the
//! fleet sizes they are about, with the same harness, in the default mode (TLS, enrolled
//! identities; `--insecure` for a labelled comparison). Prints what it measured and a JSON
//! summary on the last line; asserts nothing.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::Parser;
use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, create_rollout, dashboard_script, directives_by_agent,
    droverctl_json, eventually, fencing, simulate, simulate_logging, use_bin_dir, wait_connected,
};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
pub struct ScaleArgs {
    #[arg(long)]
    agents: Option<u64>,
    /// The same measurement at this many agents first, in the same run: the baseline the
    /// large fleet's numbers are divided by.
    #[arg(long, default_value_t = 300)]
    baseline_agents: u64,
    /// Plaintext on loopback, for comparison with earlier plaintext figures.
    #[arg(long)]
    insecure: bool,
    /// Where the built binaries are (the debug build is what the tests run).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
}

async fn coordinator(args: &ScaleArgs, dir: &std::path::Path) -> CoordinatorProcess {
    use_bin_dir(&args.bin_dir);
    let builder = CoordinatorBuilder::sqlite(dir)
        .control_plane("2.0.0")
        .arg("--reconcile-ms")
        .arg("100")
        .arg("--heartbeat-secs")
        .arg("2");
    crate::in_mode(builder, args.insecure).start().await
}

fn mode(args: &ScaleArgs) -> &'static str {
    crate::mode(args.insecure)
}

/// The agent table's filters over a fleet of three versions (default 10,000 agents), timed
/// in the page from the filter's change to the rendered rows; first at the baseline's size.
pub async fn dashboard(args: ScaleArgs) -> anyhow::Result<()> {
    let agents = args.agents.unwrap_or(10_000);
    let base = dashboard_once(&args, args.baseline_agents).await?;
    let big = dashboard_once(&args, agents).await?;
    let ratio = big.0 as f64 / base.0.max(1) as f64;
    println!(
        "version filter, slowest of 7: {} ms at {agents} agents, {} ms at {} (ratio {ratio:.1}); goal under 1000 ms",
        big.0, base.0, args.baseline_agents
    );
    println!(
        "reason filter, slowest of 3: {} ms at {agents} agents, {} ms at {}",
        big.1, base.1, args.baseline_agents
    );
    println!(
        "{}",
        json!({
            "bench": "dashboard", "agents": agents, "mode": mode(&args),
            "version_filter_max_ms": big.0, "reason_filter_max_ms": big.1,
            "baseline_agents": args.baseline_agents,
            "baseline_version_filter_max_ms": base.0, "baseline_reason_filter_max_ms": base.1,
        })
    );
    Ok(())
}

/// One fleet of `agents`: (slowest version filter, slowest reason filter), in ms.
async fn dashboard_once(args: &ScaleArgs, agents: u64) -> anyhow::Result<(u64, u64)> {
    let dir = tempfile::tempdir()?;
    let c = coordinator(args, dir.path()).await;
    let url = c.grpc_url();
    let started = Instant::now();
    let count = agents.to_string();
    let _fleet = simulate(
        &url,
        dir.path(),
        &[
            "--count",
            &count,
            "--groups",
            "dev,staging,prod",
            "--channel",
            "edge",
            "--versions",
            "1.0.0,1.1.0,0.9.0",
            "--ramp-up-secs",
            "5",
            "--recheck-secs",
            "3600",
        ],
    );
    wait_connected(&url, agents).await;
    println!(
        "{agents} agents connected in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        mode(args)
    );
    let report = dashboard_script(&c, "filter", "", &[("DROVER_EXPECT_AGENTS", &count)]).await;
    Ok((
        report["filter_max_ms"].as_u64().unwrap_or_default(),
        report["reason_max_ms"].as_u64().unwrap_or_default(),
    ))
}

fn group_on_target(status: &Value, name: &str) -> u64 {
    status["groups"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["name"] == name))
        .and_then(|g| g["on_target"].as_u64())
        .unwrap_or_default()
}

async fn timed(url: &str, verb: &str) -> Duration {
    let started = Instant::now();
    droverctl_json(url, &["rollout", verb, "--channel", "edge"]).await;
    started.elapsed()
}

/// Pause and rollback mid-rollout with every agent reporting (default 2,000), first at the
/// baseline's size: the verbs' latency (droverctl process included), how long until every
/// agent heard, and how many directives computed before a verb reached an agent after it
/// (should be 0).
pub async fn fence(args: ScaleArgs) -> anyhow::Result<()> {
    let agents = args.agents.unwrap_or(2000);
    let base = fence_once(&args, args.baseline_agents).await?;
    let big = fence_once(&args, agents).await?;
    for (n, f) in [(args.baseline_agents, &base), (agents, &big)] {
        println!("{n} agents reporting ({}):", mode(&args));
        println!(
            "  pause: call {:.0} ms, every agent heard after {:.0} ms, {} late directives",
            f.pause_ms, f.pause_heard_ms, f.pause_late
        );
        println!(
            "  rollback: call {:.0} ms, every agent heard after {:.0} ms, {} late directives",
            f.rollback_ms, f.rollback_heard_ms, f.rollback_late
        );
        println!(
            "  after the rollback: every agent listed on 1.0.0 after {:.0} ms ({} last reports \
             still older then), every last report settled after {:.0} ms",
            f.versions_back_ms, f.stale_when_back, f.reports_settled_ms
        );
    }
    println!(
        "ratio {agents} / {} agents: pause call {:.2}, rollback call {:.2}, every agent paused {:.2}, rolled back {:.2}",
        args.baseline_agents,
        big.pause_ms / base.pause_ms,
        big.rollback_ms / base.rollback_ms,
        big.pause_heard_ms / base.pause_heard_ms,
        big.rollback_heard_ms / base.rollback_heard_ms,
    );
    println!(
        "{}",
        json!({
            "bench": "fence", "agents": agents, "mode": mode(&args),
            "baseline_agents": args.baseline_agents, "run": big, "baseline": base,
        })
    );
    Ok(())
}

#[derive(serde::Serialize)]
struct FenceNumbers {
    pause_ms: f64,
    pause_heard_ms: f64,
    pause_late: usize,
    rollback_ms: f64,
    rollback_heard_ms: f64,
    rollback_late: usize,
    versions_back_ms: f64,
    stale_when_back: usize,
    reports_settled_ms: f64,
}

async fn fence_once(args: &ScaleArgs, agents: u64) -> anyhow::Result<FenceNumbers> {
    let wait = Duration::from_secs(60) + Duration::from_millis(50) * agents as u32;
    let dir = tempfile::tempdir()?;
    let c = coordinator(args, dir.path()).await;
    let url = c.grpc_url();
    droverctl_json(&url, &["channels", "set", "edge", "1.0.0"]).await;
    let count = agents.to_string();
    let _fleet = simulate_logging(
        &url,
        dir.path(),
        &[
            "--count",
            &count,
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
        ],
        "warn,drover_updater::manager=info,drover_updater::simulate=info",
    );
    wait_connected(&url, agents).await;
    let (ok, _, err) = create_rollout(
        &url,
        "edge",
        &["dev:canaries=2", "prod:canaries=2"],
        &["--immediate", "--max-in-flight", "20"],
    )
    .await;
    anyhow::ensure!(ok, "rollout create failed: {err}");
    let status = async || droverctl_json(&url, &["rollout", "status", "--channel", "edge"]).await;
    let moved = agents / 20;
    eventually("agents on the target", wait, async || {
        (group_on_target(&status().await, "dev") >= moved).then_some(())
    })
    .await;
    let log_path = dir.path().join("simulate.log");
    let heard = async |reason: &str, from: usize| {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        directives_by_agent(log.get(from..).unwrap_or_default())
            .values()
            .filter(|d| d.iter().any(|(_, r)| r == reason))
            .count() as u64
    };

    let pause = timed(&url, "pause").await;
    let asked = Instant::now();
    eventually("every agent paused", wait, async || {
        (heard("rollout_paused", 0).await == agents).then_some(())
    })
    .await;
    let pause_heard = asked.elapsed();
    let log = std::fs::read_to_string(&log_path)?;
    let paused = fencing(&log, "rollout_paused", |_, r| r == "rollout_paused");

    let resumed_at = std::fs::metadata(&log_path)?.len() as usize;
    droverctl_json(&url, &["rollout", "resume", "--channel", "edge"]).await;
    let held = group_on_target(&status().await, "dev") + group_on_target(&status().await, "prod");
    eventually("more agents on the target", wait, async || {
        let s = status().await;
        (group_on_target(&s, "dev") + group_on_target(&s, "prod") >= held + moved).then_some(())
    })
    .await;
    let rollback = timed(&url, "rollback").await;
    let asked = Instant::now();
    eventually("every agent rolled back", wait, async || {
        (heard("rolledback", resumed_at).await == agents).then_some(())
    })
    .await;
    let rollback_heard = asked.elapsed();
    eventually("every agent back on 1.0.0", wait, async || {
        let s = droverctl_json(&url, &["fleet", "summary"]).await;
        (s["by_version"]["1.0.0"] == agents).then_some(())
    })
    .await;
    let versions_back = asked.elapsed();
    let stale_when_back = stale_last_reports(&url).await;
    eventually(
        "every agent's last report names its version",
        wait,
        async || (stale_last_reports(&url).await == 0).then_some(()),
    )
    .await;
    let reports_settled = asked.elapsed();
    let log = std::fs::read_to_string(&log_path)?;
    let rolledback = fencing(&log[resumed_at..], "rolledback", |t, _| {
        t == "Some(\"1.0.0\")"
    });
    for violation in paused
        .violations
        .iter()
        .chain(&rolledback.violations)
        .take(5)
    {
        println!("violation: {violation}");
    }
    Ok(FenceNumbers {
        pause_ms: crate::ms(pause),
        pause_heard_ms: crate::ms(pause_heard),
        pause_late: paused.violations.len(),
        rollback_ms: crate::ms(rollback),
        rollback_heard_ms: crate::ms(rollback_heard),
        rollback_late: rolledback.violations.len(),
        versions_back_ms: crate::ms(versions_back),
        stale_when_back,
        reports_settled_ms: crate::ms(reports_settled),
    })
}

/// Agents whose last report names another version than the one they are listed on: a
/// heartbeat carried the version before the report landed (#20 item 5, #23's report lag).
async fn stale_last_reports(url: &str) -> usize {
    let list = droverctl_json(url, &["agents", "list", "--all"]).await;
    list["agents"].as_array().map_or(usize::MAX, |agents| {
        agents
            .iter()
            .filter(|a| {
                !a["last_report"].is_null() && a["last_report"]["to_version"] != a["agent_version"]
            })
            .count()
    })
}
