//! `drover-loadgen storm`: a whole fleet reports at once. N updaters (each its own
//! connection) hold a session; at one instant every one of them sends an update report and
//! the heartbeat that follows it, as a real updater does after an install. Measured: when
//! 99% and 100% of the reports were durable and acknowledged; admin-command and API-read
//! latency sampled during the storm; then an end-to-end change (an admin sets the channel,
//! every updater "installs" at once and reports) until 99% / 100% have reported. Baseline,
//! same run, same database: the raw rate of batched inserts of report-sized rows. In the
//! default mode (TLS, each updater enrolled before the clock starts); `--insecure` for the
//! labelled plaintext comparison.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use drover_proto::v1::{
    self as pb, admin_service_client::AdminServiceClient, coordinator_message::Kind as Down,
    updater_message::Kind as Up, updater_service_client::UpdaterServiceClient,
};
use drover_tests::{CoordinatorBuilder, CoordinatorProcess, admin_request, use_bin_dir};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    load::{self, FleetTls},
    ms,
    sampler::{Admin, Sampler},
    stats,
};

#[derive(clap::Parser, Debug)]
pub struct StormArgs {
    #[arg(long, default_value_t = 10_000)]
    pub updaters: usize,
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// `sqlite` (a fresh file) or a PostgreSQL URL naming an empty database.
    #[arg(long, default_value = "sqlite")]
    pub database: String,
    #[arg(long, default_value = "target/release")]
    pub bin_dir: std::path::PathBuf,
    /// Plaintext, no enrolment: a labelled comparison with the default mode.
    #[arg(long)]
    pub insecure: bool,
}

/// What the fleet does, shared with every simulated updater.
struct Fleet {
    /// Bumped to start a wave: every updater reports `from → to` of the wave.
    wave: watch::Sender<Option<Wave>>,
    live: AtomicU64,
    /// When each updater's storm report, then its end-to-end report, was acknowledged.
    storm_acked: Vec<OnceLock<Instant>>,
    e2e_acked: Vec<OnceLock<Instant>>,
    failed: AtomicU64,
    /// The end-to-end phase: updaters "install" the target a directive names, at once.
    follow_directives: AtomicBool,
}

#[derive(Clone, Debug)]
struct Wave {
    from: String,
    to: String,
}

pub async fn run(args: StormArgs) -> anyhow::Result<()> {
    let fd_limit = stats::raise_fd_limit()?;
    use_bin_dir(&args.bin_dir);
    let work = tempfile::tempdir()?;
    let n = args.updaters;
    let (builder, database, backend) = if args.database == "sqlite" {
        let file = work.path().join("drover.db");
        let url = format!("sqlite://{}", file.display());
        (CoordinatorBuilder::sqlite(work.path()), url, "sqlite")
    } else {
        let url = args.database.clone();
        (
            CoordinatorBuilder::with_database(work.path(), &url),
            url,
            "postgres",
        )
    };
    let builder = builder
        .control_plane("2.0.0")
        .arg("--heartbeat-secs")
        .arg("30")
        .env("RUST_LOG", "warn");
    let coordinator = if args.insecure {
        builder.insecure()
    } else {
        builder
    }
    .start()
    .await;
    let mode = if args.insecure {
        "plaintext (--insecure)"
    } else {
        "TLS, enrolled identities"
    };
    println!("drover-loadgen storm: {n} updaters, {backend}, {mode}, fd limit {fd_limit}");
    let url = coordinator.grpc_url();
    let mut admin = AdminServiceClient::new(drover_tests::grpc_channel(&url).await?);
    // The channel targets what the storm's reports claim (the coordinator believes a report
    // only for a target it sent); the simulated updaters do not follow it until phase 2.
    set_channel(&mut admin, &url, "bench", "1.1.0").await?;
    set_channel(&mut admin, &url, "other", "1.0.0").await?;
    let tls = match &coordinator.tls {
        Some(ready) => {
            let started = Instant::now();
            let agents = crate::enrolled::enrol_fleet(&url, n).await?;
            println!(
                "enrolled {n} updaters in {:.1} s (before any clock)",
                started.elapsed().as_secs_f64()
            );
            Some(FleetTls {
                server_ca_pem: Arc::new(std::fs::read(&ready.ca_file)?),
                agents: Arc::new(agents),
            })
        }
        None => None,
    };

    let (wave, _) = watch::channel(None);
    let fleet = Arc::new(Fleet {
        wave,
        live: AtomicU64::new(0),
        storm_acked: (0..n).map(|_| OnceLock::new()).collect(),
        e2e_acked: (0..n).map(|_| OnceLock::new()).collect(),
        failed: AtomicU64::new(0),
        follow_directives: AtomicBool::new(false),
    });
    for index in 0..n {
        tokio::spawn(updater(
            fleet.clone(),
            url.clone(),
            tls.clone(),
            args.sources,
            index,
        ));
        if index % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    crate::wait_until("every updater connected", Duration::from_secs(600), || {
        fleet.live.load(Ordering::Relaxed) >= n as u64
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. The storm: everyone reports 1.0.0 → 1.1.0 at once.
    let writes_before = write_statements(&coordinator).await?;
    let started = Instant::now();
    let sampler = Sampler::start(&coordinator, admin.clone());
    fleet.wave.send_replace(Some(Wave {
        from: "1.0.0".into(),
        to: "1.1.0".into(),
    }));
    let (storm_p50, storm_p99, storm_all) = wait_acks(&fleet.storm_acked, started).await;
    let storm_statements = write_statements(&coordinator)
        .await?
        .saturating_sub(writes_before);
    let storm_samples = sampler.stop().await;
    println!(
        "storm: 50% of {n} reports acknowledged in {:.0} ms, 99% in {:.0} ms, 100% in {:.0} ms \
         ({storm_statements} write statements); {}",
        ms(storm_p50),
        ms(storm_p99),
        ms(storm_all),
        storm_samples.text()
    );

    // 2. End to end: an admin change; every updater installs at once and reports.
    fleet.follow_directives.store(true, Ordering::Relaxed);
    let sampler = Sampler::start(&coordinator, admin.clone());
    let changed = Instant::now();
    set_channel(&mut admin, &url, "bench", "1.2.0").await?;
    let (e2e_p50, e2e_p99, e2e_all) = wait_acks(&fleet.e2e_acked, changed).await;
    let e2e_samples = sampler.stop().await;
    println!(
        "end to end: admin change → 50% of {n} reported in {:.0} ms, 99% in {:.0} ms, 100% in {:.0} ms; {}",
        ms(e2e_p50),
        ms(e2e_p99),
        ms(e2e_all),
        e2e_samples.text()
    );

    // 3. Baseline: the raw batched-insert rate on the same database.
    let baseline = raw_insert_rate(&database, n).await?;
    let storm_rate = n as f64 / storm_all.as_secs_f64().max(1e-9);
    println!(
        "baseline: raw batched inserts {baseline:.0} rows/s; storm {storm_rate:.0} reports/s \
         (ratio {:.2})",
        storm_rate / baseline.max(1.0)
    );
    let summary = json!({
        "mode": mode,
        "backend": backend,
        "updaters": n,
        "storm": { "p50_acked_ms": ms(storm_p50), "p99_acked_ms": ms(storm_p99),
                   "write_statements": storm_statements, "all_acked_ms": ms(storm_all),
                   "admin": storm_samples.admin_json(), "read": storm_samples.read_json() },
        "end_to_end": { "p50_reported_ms": ms(e2e_p50), "p99_reported_ms": ms(e2e_p99), "all_reported_ms": ms(e2e_all),
                        "admin": e2e_samples.admin_json(), "read": e2e_samples.read_json() },
        "baseline_raw_insert_rows_per_s": baseline,
        "storm_reports_per_s": storm_rate,
        "storm_to_raw_ratio": storm_rate / baseline.max(1.0),
        "failed_sessions_retried": fleet.failed.load(Ordering::Relaxed),
    });
    println!("{summary}");
    drop(coordinator);
    Ok(())
}

async fn write_statements(coordinator: &CoordinatorProcess) -> anyhow::Result<u64> {
    let (status, body) =
        drover_tests::http(coordinator.addresses.http, "GET", "/api/v1/stats").await;
    anyhow::ensure!(status == 200, "GET /api/v1/stats answered {status}: {body}");
    let stats: serde_json::Value = serde_json::from_str(&body)?;
    Ok(stats["store_write_statements"].as_u64().unwrap_or(0))
}

async fn set_channel(
    admin: &mut Admin,
    url: &str,
    name: &str,
    version: &str,
) -> anyhow::Result<()> {
    let request = pb::SetChannelVersionRequest {
        name: name.into(),
        version: version.into(),
        ..Default::default()
    };
    admin
        .set_channel_version(admin_request(url, request))
        .await
        .context("set the bench channel")?;
    Ok(())
}

/// Waits until every report was acknowledged (or 120 s); returns (50%, 99%, 100%) from
/// `start`.
async fn wait_acks(acked: &[OnceLock<Instant>], start: Instant) -> (Duration, Duration, Duration) {
    let _ = crate::wait_until(
        "every report acknowledged",
        Duration::from_secs(120),
        || acked.iter().all(|a| a.get().is_some()),
    )
    .await;
    let mut latencies: Vec<Duration> = acked
        .iter()
        .filter_map(|a| a.get().map(|t| *t - start))
        .collect();
    (
        stats::percentile(&mut latencies, 50.0),
        stats::percentile(&mut latencies, 99.0),
        stats::percentile(&mut latencies, 100.0),
    )
}

fn report(attempt: String, from: &str, to: &str) -> pb::UpdaterMessage {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let at = prost_types::Timestamp {
        seconds: now.as_secs() as i64,
        nanos: 0,
    };
    pb::UpdaterMessage {
        kind: Some(Up::Report(pb::UpdateReport {
            attempt_id: attempt,
            from_version: from.into(),
            to_version: to.into(),
            outcome: pb::UpdateOutcome::Succeeded as i32,
            started_at: Some(at),
            finished_at: Some(at),
            ..Default::default()
        })),
    }
}

fn heartbeat(version: &str) -> pb::UpdaterMessage {
    pb::UpdaterMessage {
        kind: Some(Up::Heartbeat(pb::Heartbeat {
            health: pb::AgentHealth::Healthy as i32,
            state: pb::UpdaterState::Idle as i32,
            agent_version: version.into(),
            ..Default::default()
        })),
    }
}

/// One updater; a failed session (a refused connect while 10k others connect, say) is
/// retried after a random pause, and counted.
async fn updater(fleet: Arc<Fleet>, url: String, tls: Option<FleetTls>, sources: u8, index: usize) {
    for _ in 0..30 {
        let mut welcomed = false;
        let result = session(&fleet, &url, tls.as_ref(), sources, index, &mut welcomed).await;
        if welcomed {
            fleet.live.fetch_sub(1, Ordering::Relaxed);
        }
        let Err(err) = result else { return };
        fleet.failed.fetch_add(1, Ordering::Relaxed);
        if welcomed {
            eprintln!("updater {index}: session lost: {err:#}");
        }
        let pause = rand::random::<u64>() % 1_000;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    eprintln!("updater {index}: gave up after 30 failed sessions");
}

async fn session(
    fleet: &Fleet,
    url: &str,
    tls: Option<&FleetTls>,
    sources: u8,
    index: usize,
    welcomed: &mut bool,
) -> anyhow::Result<()> {
    let source = load::source_address(sources, index);
    let tls = tls.map(|tls| (tls.server_ca_pem.as_slice(), tls.agents.get(index)));
    let mut client = UpdaterServiceClient::new(load::connect(url, Some(source), tls).await?);
    let (tx, rx) = mpsc::channel(8);
    let (agent_id, group) = load::agent(index);
    tx.send(pb::UpdaterMessage {
        kind: Some(Up::Hello(pb::Hello {
            agent_id: agent_id.clone(),
            hostname: "storm".into(),
            group: group.into(),
            channel: "bench".into(),
            installer: pb::InstallerKind::Simulated as i32,
            agent_version: "1.0.0".into(),
            updater_version: "storm".into(),
            health: pb::AgentHealth::Healthy as i32,
            ..Default::default()
        })),
    })
    .await?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    let mut waves = fleet.wave.subscribe();
    let mut version = "1.0.0".to_string();
    loop {
        tokio::select! {
            message = inbound.message() => {
                let Some(message) = message? else { anyhow::bail!("stream closed") };
                match message.kind {
                    Some(Down::Welcome(_)) => {
                        fleet.live.fetch_add(1, Ordering::Relaxed);
                        *welcomed = true;
                    }
                    Some(Down::ReportAck(ack)) => {
                        let acked = if ack.attempt_id.starts_with("e2e-") {
                            &fleet.e2e_acked
                        } else {
                            &fleet.storm_acked
                        };
                        let _ = acked[index].set(Instant::now());
                    }
                    Some(Down::Directive(d)) => {
                        let follow = fleet.follow_directives.load(Ordering::Relaxed);
                        if follow && !d.target_version.is_empty() && d.target_version != version {
                            // An instant install: report it and the heartbeat after it.
                            tx.send(report(format!("e2e-{agent_id}"), &version, &d.target_version)).await?;
                            version = d.target_version.clone();
                            tx.send(heartbeat(&version)).await?;
                        }
                    }
                    _ => {}
                }
            }
            changed = waves.changed() => {
                changed?;
                let Some(wave) = waves.borrow_and_update().clone() else { continue };
                tx.send(report(format!("storm-{agent_id}"), &wave.from, &wave.to)).await?;
                version = wave.to.clone();
                tx.send(heartbeat(&version)).await?;
            }
        }
    }
}

/// Rows per second of batched inserts (1,000 report-sized rows per transaction) into a
/// scratch table of the same database: what the disk and the engine give at best.
async fn raw_insert_rate(database: &str, rows: usize) -> anyhow::Result<f64> {
    const CHUNK: usize = 1_000;
    let values = |start: usize, end: usize| {
        (start..end)
            .map(|i| {
                format!(
                    "('agent-{i:06}', 'attempt-{i:06}', '1.0.0', '1.1.0', 'succeeded', '{}')",
                    "x".repeat(200)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let create = "CREATE TABLE baseline_reports (agent_id TEXT, attempt_id TEXT, \
        from_version TEXT, to_version TEXT, outcome TEXT, payload TEXT)";
    let insert = "INSERT INTO baseline_reports VALUES ";
    let started;
    if database.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database).await?;
        sqlx::query(create).execute(&pool).await?;
        started = Instant::now();
        for start in (0..rows).step_by(CHUNK) {
            let sql = format!("{insert}{}", values(start, (start + CHUNK).min(rows)));
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
        }
    } else {
        let options: sqlx::sqlite::SqliteConnectOptions = database.parse()?;
        let pool = sqlx::SqlitePool::connect_with(
            options
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full),
        )
        .await?;
        sqlx::query(create).execute(&pool).await?;
        started = Instant::now();
        for start in (0..rows).step_by(CHUNK) {
            let sql = format!("{insert}{}", values(start, (start + CHUNK).min(rows)));
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
        }
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64().max(1e-9))
}
