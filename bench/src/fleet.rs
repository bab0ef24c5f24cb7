//! `drover-loadgen` (no subcommand): one coordinator under N simulated updaters, in the
//! default mode: TLS, every updater enrolled with a join token before any clock starts,
//! within the coordinator's per-agent budgets. `--insecure` runs the same steps in
//! plaintext, as a labelled comparison. The baseline is a bare tonic server speaking the
//! same messages over the same TLS (`echo.rs`), given the same connections in the same run.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use clap::Parser;
use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
use drover_tests::{CoordinatorBuilder, CoordinatorProcess, admin_request, use_bin_dir};
use serde_json::{Value, json};

use crate::{
    enrolled,
    load::{self, FleetTls, Pace},
    ms, stats, wait_until,
};

#[derive(Parser, Debug)]
#[command(
    name = "drover-loadgen",
    about = "Measure a Drover coordinator under a simulated fleet (see BENCHMARKS.md)."
)]
pub struct FleetArgs {
    /// Simulated updaters, each its own connection and stream.
    #[arg(long, default_value_t = 2000)]
    updaters: usize,
    /// Spread connections over 127.0.0.1 … 127.0.0.N.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// `sqlite` (a fresh file) or a PostgreSQL URL naming a database the loadgen may fill.
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value_t = 10)]
    heartbeat_secs: u64,
    /// How long to watch steady-state heartbeats for database writes (longer than the 15 s
    /// liveness flush, so flushes are counted).
    #[arg(long, default_value_t = 35)]
    steady_secs: u64,
    /// How long the fleet heartbeats at its budget's pace (step 4 and its baseline).
    #[arg(long, default_value_t = 15)]
    budget_secs: u64,
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// The updater measured idle: as shipped, from its own profile
    /// (`cargo build --profile updater -p drover-updater`).
    #[arg(long, default_value = "target/updater/drover-updater")]
    updater_bin: PathBuf,
    #[arg(long)]
    skip_restart: bool,
    /// Plaintext, no enrolment: a labelled comparison with the default mode.
    #[arg(long)]
    insecure: bool,
}

/// Heartbeats at the pace the per-agent budget allows (5 per interval; 4 leaves margin).
fn budget_pace(interval: Duration) -> Pace {
    Pace {
        every: interval / 4,
        timed: true,
    }
}

pub async fn run(args: FleetArgs) -> anyhow::Result<()> {
    let fd_limit = stats::raise_fd_limit()?;
    use_bin_dir(&args.bin_dir);
    let work = tempfile::tempdir()?;
    let mode = crate::mode(args.insecure);
    let backend = if args.database == "sqlite" {
        "sqlite"
    } else {
        "postgres"
    };
    println!(
        "drover-loadgen: {} updaters, {backend}, {mode}, {} source addresses, fd limit {fd_limit}",
        args.updaters, args.sources
    );
    let mut coordinator = start(&args, work.path()).await;
    let url = coordinator.grpc_url();
    set_channel(&url, "1.0.0").await?;
    let n = args.updaters as u64;
    let interval = Duration::from_secs(args.heartbeat_secs);

    let (tls, enrol_s) = enrol(&coordinator, args.updaters).await?;
    if tls.is_some() {
        println!("0. enrolled {n} updaters in {enrol_s:.1} s (before any clock)");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = stats::rss_kib(coordinator.pid())?;

    // 1. Connected updaters and memory per updater.
    let shared = load::Shared::with_tls(
        url.clone(),
        args.sources,
        interval,
        args.updaters,
        tls.clone(),
    );
    let connect_started = Instant::now();
    let fleet = spawn_fleet(&shared, args.updaters).await;
    wait_until("every updater connected", Duration::from_secs(600), || {
        shared.live.load(Ordering::Relaxed) >= n
    })
    .await?;
    let connect_s = connect_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_loaded = stats::rss_kib(coordinator.pid())?;
    let kib_per_updater = rss_loaded.saturating_sub(rss_idle) as f64 / n as f64;
    println!(
        "1. connected: {n} in {connect_s:.1} s; coordinator RSS {rss_idle} KiB idle → {rss_loaded} KiB: {kib_per_updater:.1} KiB per updater"
    );

    // 2. Database writes per steady-state heartbeat.
    let before = coordinator_stats(&coordinator).await?;
    tokio::time::sleep(Duration::from_secs(args.steady_secs)).await;
    let after = coordinator_stats(&coordinator).await?;
    let delta = |key: &str| {
        let value = |stats: &Value| stats[key].as_u64().unwrap_or(0);
        value(&after).saturating_sub(value(&before))
    };
    let (beats, writes) = (delta("heartbeats"), delta("store_write_statements"));
    let writes_per_heartbeat = writes as f64 / beats.max(1) as f64;
    println!(
        "2. steady state over {} s: {beats} heartbeats, {writes} write statements: {writes_per_heartbeat:.5} writes per heartbeat",
        args.steady_secs
    );

    // 3. Push latency: a channel change until each updater holds the directive.
    let push = push(&url, &shared, n).await?;
    println!(
        "3. push: {}/{n} updaters held the new directive; p50 {:.1} ms, p99 {:.1} ms, 100% {:.1} ms",
        push["held"],
        push["p50"].as_f64().unwrap_or_default(),
        push["p99"].as_f64().unwrap_or_default(),
        push["p100"].as_f64().unwrap_or_default()
    );

    // 4. Heartbeats at the budget's pace: CPU per heartbeat and ack latency.
    let budget = Duration::from_secs(args.budget_secs);
    let cost = heartbeat_cost(&shared, coordinator.pid(), interval, budget).await?;
    println!(
        "4. heartbeats at the per-agent budget ({:?} each): coordinator {}",
        budget_pace(interval).every,
        cost.line()
    );

    // 5. Reconnect storm: SIGKILL, restart on the same ports and store.
    let mut restart = json!(null);
    if !args.skip_restart {
        let errors_before = shared.errors.load(Ordering::Relaxed);
        coordinator.kill9().await;
        wait_until(
            "every session noticed the kill",
            Duration::from_secs(120),
            || shared.live.load(Ordering::Relaxed) == 0,
        )
        .await?;
        let restarted = Instant::now();
        coordinator.restart().await;
        let back = wait_until(
            "every updater reconnected",
            Duration::from_secs(600),
            || shared.live.load(Ordering::Relaxed) >= n,
        )
        .await;
        let back = restarted.elapsed().as_secs_f64() * f64::from(u8::from(back.is_ok()));
        let errors = shared.errors.load(Ordering::Relaxed) - errors_before;
        let refusals = refusal_counts(&coordinator.log());
        println!(
            "5. restart: all {n} back {back:.1} s after the restart began (0: not all within 600 s); {errors} failed attempts on the way; store failures logged by the coordinator: {refusals}"
        );
        restart = json!({ "all_back_s": back, "failed_attempts": errors, "store_failures_logged": refusals });
    }

    // 6. An idle real updater.
    let idle =
        crate::idle::idle_updater(&args.updater_bin, &args.bin_dir, &url, work.path()).await?;
    println!("6. idle updater: {idle}");

    // 7. The baseline: a bare tonic echo server, same TLS, same connections, same pace.
    for updater in &fleet {
        updater.abort();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tls_dir = coordinator
        .tls
        .as_ref()
        .and_then(|tls| tls.ca_file.parent().map(Path::to_path_buf));
    let echo = echo_baseline(&args, tls_dir.as_deref(), tls, budget).await?;
    let echo_kib = echo.0;
    println!(
        "7. bare tonic echo ({mode}): {echo_kib:.1} KiB per connection (coordinator/echo {:.2}); heartbeats at the budget: echo {}; CPU per heartbeat coordinator/echo {:.2}",
        kib_per_updater / echo_kib.max(0.001),
        echo.1.line(),
        cost.cpu_us_per_heartbeat / echo.1.cpu_us_per_heartbeat.max(0.001)
    );

    let summary = json!({
        "mode": mode, "backend": backend, "updaters": n,
        "enrol_s": enrol_s, "connect_s": connect_s,
        "coordinator_kib_per_updater": kib_per_updater, "echo_kib_per_connection": echo_kib,
        "writes_per_steady_heartbeat": writes_per_heartbeat,
        "push_ms": push,
        "heartbeats_at_budget": { "coordinator": cost.json(), "echo": echo.1.json(),
            "cpu_ratio": cost.cpu_us_per_heartbeat / echo.1.cpu_us_per_heartbeat.max(0.001) },
        "restart": restart,
        "idle_updater": idle,
    });
    println!("{summary}");
    // The coordinator's log outlives the run's temporary directory, for what went wrong.
    let kept = std::env::temp_dir().join("drover-loadgen-coordinator.log");
    std::fs::write(&kept, coordinator.log())?;
    println!("coordinator log: {}", kept.display());
    Ok(())
}

async fn start(args: &FleetArgs, dir: &Path) -> CoordinatorProcess {
    let builder = if args.database == "sqlite" {
        CoordinatorBuilder::sqlite(dir)
    } else {
        CoordinatorBuilder::with_database(dir, &args.database)
    }
    .control_plane("2.0.0")
    .arg("--heartbeat-secs")
    .arg(args.heartbeat_secs.to_string())
    .env("RUST_LOG", "warn");
    crate::in_mode(builder, args.insecure).start().await
}

pub(crate) async fn set_channel(url: &str, version: &str) -> anyhow::Result<()> {
    let mut admin = AdminServiceClient::new(drover_tests::grpc_channel(url).await?);
    let request = pb::SetChannelVersionRequest {
        name: "bench".into(),
        version: version.into(),
        ..Default::default()
    };
    admin
        .set_channel_version(admin_request(url, request))
        .await?;
    Ok(())
}

/// Every updater's certificate (none in plaintext), and how long enrolling took.
async fn enrol(
    coordinator: &CoordinatorProcess,
    count: usize,
) -> anyhow::Result<(Option<FleetTls>, f64)> {
    let Some(ready) = &coordinator.tls else {
        return Ok((None, 0.0));
    };
    let started = Instant::now();
    let agents = enrolled::enrol_fleet(&coordinator.grpc_url(), count).await?;
    let tls = FleetTls {
        server_ca_pem: Arc::new(std::fs::read(&ready.ca_file)?),
        agents: Arc::new(agents),
    };
    Ok((Some(tls), started.elapsed().as_secs_f64()))
}

async fn spawn_fleet(shared: &Arc<load::Shared>, count: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let mut fleet = Vec::with_capacity(count);
    for index in 0..count {
        fleet.push(tokio::spawn(load::updater(shared.clone(), index)));
        if index % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    fleet
}

pub(crate) async fn coordinator_stats(coordinator: &CoordinatorProcess) -> anyhow::Result<Value> {
    let token = drover_tests::token_for(&coordinator.grpc_url());
    stats_as(coordinator, token.as_deref()).await
}

/// `/api/v1/stats` with an admin `token` (replicas share the first one's admin).
pub(crate) async fn stats_as(
    coordinator: &CoordinatorProcess,
    token: Option<&str>,
) -> anyhow::Result<Value> {
    let (status, body) =
        drover_tests::http_as(coordinator.addresses.http, "GET", "/api/v1/stats", token).await;
    anyhow::ensure!(status == 200, "GET /api/v1/stats answered {status}: {body}");
    Ok(serde_json::from_str(&body)?)
}

async fn push(url: &str, shared: &load::Shared, n: u64) -> anyhow::Result<Value> {
    *shared.push_target.lock() = "1.0.1".into();
    let pushed = Instant::now();
    set_channel(url, "1.0.1").await?;
    let held = || {
        shared
            .push_seen
            .iter()
            .filter(|s| s.get().is_some())
            .count() as u64
    };
    let _ = wait_until(
        "every updater holds the push",
        Duration::from_secs(120),
        || held() >= n,
    )
    .await;
    let mut latencies: Vec<Duration> = shared
        .push_seen
        .iter()
        .filter_map(|s| s.get().map(|t| *t - pushed))
        .collect();
    Ok(json!({
        "held": latencies.len(),
        "p50": ms(stats::percentile(&mut latencies, 50.0)),
        "p99": ms(stats::percentile(&mut latencies, 99.0)),
        "p100": ms(stats::percentile(&mut latencies, 100.0)),
    }))
}

/// What heartbeats at the budget's pace cost a server process.
struct HeartbeatCost {
    per_second: f64,
    cpu_us_per_heartbeat: f64,
    cpu_share: f64,
    ack_p50: Duration,
    ack_p99: Duration,
}

impl HeartbeatCost {
    fn line(&self) -> String {
        format!(
            "{:.0} heartbeats/s, {:.1} µs CPU each ({:.1} % of one core), ack p50 {:.2} ms, p99 {:.2} ms",
            self.per_second,
            self.cpu_us_per_heartbeat,
            self.cpu_share * 100.0,
            ms(self.ack_p50),
            ms(self.ack_p99)
        )
    }

    fn json(&self) -> Value {
        json!({
            "per_s": self.per_second, "cpu_us_per_heartbeat": self.cpu_us_per_heartbeat,
            "cpu_share": self.cpu_share, "ack_p50_ms": ms(self.ack_p50), "ack_p99_ms": ms(self.ack_p99),
        })
    }
}

/// The fleet heartbeats (asking for acks) at the budget's pace for `window`, after one
/// period to settle; the server process `pid`'s CPU over the window, per heartbeat sent.
async fn heartbeat_cost(
    shared: &load::Shared,
    pid: u32,
    interval: Duration,
    window: Duration,
) -> anyhow::Result<HeartbeatCost> {
    let pace = budget_pace(interval);
    shared.set_pace(pace);
    tokio::time::sleep(pace.every).await;
    shared.ack_latencies.lock().clear();
    let (cpu_before, beats_before, started) = (
        stats::cpu_time(pid)?,
        shared.heartbeats.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let cpu = stats::cpu_time(pid)? - cpu_before;
    let beats = shared.heartbeats.load(Ordering::Relaxed) - beats_before;
    let elapsed = started.elapsed();
    shared.set_pace(Pace {
        every: interval,
        timed: false,
    });
    let mut acks = std::mem::take(&mut *shared.ack_latencies.lock());
    Ok(HeartbeatCost {
        per_second: beats as f64 / elapsed.as_secs_f64(),
        cpu_us_per_heartbeat: cpu.as_secs_f64() * 1e6 / beats.max(1) as f64,
        cpu_share: cpu.as_secs_f64() / elapsed.as_secs_f64(),
        ack_p50: stats::percentile(&mut acks, 50.0),
        ack_p99: stats::percentile(&mut acks, 99.0),
    })
}

/// Store failures the coordinator logged, by class (busy vs unreachable). One line may
/// stand for a whole failed batch of Hellos, and the Hello admission's own refusals are not
/// logged: the loader's failed attempts count every refusal.
fn refusal_counts(log: &str) -> Value {
    let count = |needle: &str| log.lines().filter(|line| line.contains(needle)).count();
    json!({
        "busy": count("problem=Busy"),
        "unreachable": count("problem=Unreachable"),
    })
}

/// The echo server in a process of its own, over the coordinator's TLS: memory per
/// connection, then the cost of heartbeats at the same pace.
async fn echo_baseline(
    args: &FleetArgs,
    tls_dir: Option<&Path>,
    tls: Option<FleetTls>,
    window: Duration,
) -> anyhow::Result<(f64, HeartbeatCost)> {
    let echo = crate::start_echo(tls_dir).await?;
    let (pid, url) = (echo.pid, echo.url.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = stats::rss_kib(pid)?;
    let interval = Duration::from_secs(args.heartbeat_secs);
    let shared = load::Shared::with_tls(url, args.sources, interval, args.updaters, tls);
    let fleet = spawn_fleet(&shared, args.updaters).await;
    let n = args.updaters as u64;
    wait_until(
        "every echo connection open",
        Duration::from_secs(300),
        || shared.live.load(Ordering::Relaxed) >= n,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = stats::rss_kib(pid)?;
    let cost = heartbeat_cost(&shared, pid, interval, window).await?;
    for updater in fleet {
        updater.abort();
    }
    drop(echo);
    Ok((loaded.saturating_sub(idle) as f64 / n as f64, cost))
}
