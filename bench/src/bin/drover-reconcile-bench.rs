//! The reconcile pass at N agents in the store, next to a same-run baseline: one read of
//! every agent from the same store — what each pass cost before the in-memory inventory.
//! Also `rollout plan` for a windowed rollout with day-long waits over the same agents.
//! Prints one JSON line. See BENCHMARKS.md.
#![forbid(unsafe_code)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use drover_coordinator::{
    fleet::{Caller, Fleet, FleetConfig},
    rollout::{GroupSpec, RolloutSpec, Strategy},
    store::Store,
};
use drover_rules::Weekdays;

#[derive(Parser)]
#[command(about = "Time the rollout reconcile pass at N agents (see BENCHMARKS.md).")]
struct Args {
    /// Agents in the store, all on the rolled-out channel.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Groups the agents are spread over (and the rollout's groups).
    #[arg(long, default_value_t = 4)]
    groups: usize,
    /// Timed passes (and baseline reads).
    #[arg(long, default_value_t = 20)]
    passes: usize,
    /// A PostgreSQL URL; default: a SQLite file in a temporary directory.
    #[arg(long)]
    database: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One rustls provider (ring) for the process: the build has two (see use_ring_crypto).
    drover_updater::connection::use_ring_crypto();
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let url = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let store = Arc::new(Store::open(&url).await?);
    fill(&url, args.agents, args.groups).await?;

    let started = Instant::now();
    let fleet = Fleet::new(store.clone(), FleetConfig::default()).await?;
    let load = started.elapsed();
    fleet
        .set_control_plane_version("2.0.0", &bench("SetControlPlaneVersion"), false)
        .await?;
    fleet
        .set_channel_version("edge", "1.0.0", &bench("SetChannelVersion"), false)
        .await?;
    let mut plans = Vec::with_capacity(3);
    for _ in 0..3 {
        let t = Instant::now();
        let plan = fleet.plan_rollout(windowed(spec(args.groups))).await?;
        plans.push(t.elapsed());
        anyhow::ensure!(
            plan.iter().all(|g| g.done_ms.is_some()),
            "the plan never finishes"
        );
    }
    fleet
        .create_rollout(spec(args.groups), &bench("CreateRollout"), false)
        .await?;

    let mut passes = Vec::with_capacity(args.passes);
    let mut reads = Vec::with_capacity(args.passes);
    for _ in 0..args.passes {
        let t = Instant::now();
        fleet.reconcile_rollouts().await?;
        passes.push(t.elapsed());
        let t = Instant::now();
        let all = store.all_agents().await?;
        reads.push(t.elapsed());
        anyhow::ensure!(all.len() == args.agents, "the store lost agents");
    }
    let (pass, read) = (median(&mut passes), median(&mut reads));
    println!(
        "{}",
        serde_json::json!({
            "backend": store.backend_name(),
            "agents": args.agents,
            "passes": args.passes,
            "pass_median_ms": ms(pass),
            "pass_max_ms": ms(*passes.iter().max().unwrap_or(&Duration::ZERO)),
            "baseline_full_read_median_ms": ms(read),
            "pass_to_full_read_ratio": pass.as_secs_f64() / read.as_secs_f64().max(1e-9),
            "inventory_load_at_start_ms": ms(load),
            "plan_median_ms": ms(median(&mut plans)),
            "plan_to_pass_ratio": median(&mut plans).as_secs_f64() / pass.as_secs_f64().max(1e-9),
        })
    );
    Ok(())
}

/// The bench's own admin changes, audited like any other.
fn bench(action: &'static str) -> Caller {
    Caller::operator("bench", action, "edge")
}

fn spec(groups: usize) -> RolloutSpec {
    RolloutSpec {
        rollout_id: String::new(),
        channel: "edge".into(),
        start_version: semver::Version::new(1, 0, 0),
        target_version: semver::Version::new(1, 1, 0),
        strategy: Strategy::HaltOnError,
        groups: (0..groups)
            .map(|g| GroupSpec {
                name: format!("g{g}"),
                days: Weekdays::parse("mon-sun").expect("weekdays"),
                start_hour: 0,
                window_hours: 24,
                wait_hours: 0,
                canary_count: 5,
            })
            .collect(),
        done_threshold_pct: 90,
        failure_threshold: 1,
        max_in_flight: 0,
        immediate: true,
        verdict: drover_coordinator::rollout::verdict::VerdictSpec::off(),
        strata: drover_coordinator::rollout::strata::StrataSpec::off(),
        canary_seed: String::new(),
    }
}

/// Each group in a two-hour window at 02:00 UTC, a day after the one before: what made a
/// plan step through weeks of hours.
fn windowed(mut spec: RolloutSpec) -> RolloutSpec {
    for group in &mut spec.groups {
        group.start_hour = 2;
        group.window_hours = 2;
        group.wait_hours = 24;
        // The bench's agents have no session, and canaries must be connected.
        group.canary_count = 0;
    }
    spec.immediate = false;
    spec
}

/// Inserts the agents straight into the tables, a few hundred rows per statement (the
/// coordinator's own path writes one agent per hello, which would dominate the run).
async fn fill(url: &str, agents: usize, groups: usize) -> anyhow::Result<()> {
    const CHUNK: usize = 500;
    let rows = |start: usize, end: usize| {
        (start..end)
            .map(|i| {
                format!(
                    "('a-{i:06}', 'a-{i:06}.bench', 'g{}', 'edge', 'command', '1.0.0', '0.1.0', \
                     '{{}}', 'healthy', 'idle', 1, 1)",
                    i % groups.max(1)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let insert = "INSERT INTO agents (agent_id, hostname, group_name, channel, installer, \
        agent_version, updater_version, labels_json, health, updater_state, first_seen_ms, \
        last_seen_ms) VALUES ";
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await?;
        for start in (0..agents).step_by(CHUNK) {
            let sql = format!("{insert}{}", rows(start, (start + CHUNK).min(agents)));
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
        }
    } else {
        let pool = sqlx::SqlitePool::connect(url).await?;
        for start in (0..agents).step_by(CHUNK) {
            let sql = format!("{insert}{}", rows(start, (start + CHUNK).min(agents)));
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
        }
    }
    Ok(())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}
