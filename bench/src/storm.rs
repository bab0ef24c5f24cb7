//! `drover-loadgen storm`: a whole fleet reports at once. N updaters (each its own
//! connection) hold a session; at one instant every one of them sends an update report and
//! the heartbeat that follows it, as a real updater does after an install. Measured: when
//! 99% and 100% of the reports were durable and acknowledged; admin-command and API-read
//! latency sampled during the storm; then an end-to-end change (an admin sets the channel,
//! every updater "installs" at once and reports) until 99% / 100% have reported; then a
//! rollback of a rollout that moved everyone (`storm/rollback.rs`), with each report's lag
//! from the install finishing to its ack, and when the API shows the fleet back. Baseline,
//! same run, same database: the raw rate of batched inserts of report-sized rows. In the
//! default mode (TLS, each updater enrolled before the clock starts); `--insecure` for the
//! labelled plaintext comparison.

mod baseline;
mod rollback;
mod updater;

use std::{
    sync::{Arc, OnceLock, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
use drover_tests::{CoordinatorBuilder, CoordinatorProcess, admin_request, use_bin_dir};
use serde_json::json;

use crate::{
    load::FleetTls,
    ms,
    sampler::{Admin, Sampler},
    stats,
};
use updater::{Fleet, Phase, Wave};

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
    let coordinator = crate::in_mode(builder, args.insecure).start().await;
    let mode = crate::mode(args.insecure);
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

    let fleet = Fleet::new(n);
    for index in 0..n {
        tokio::spawn(updater::updater(
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
    let (storm_p50, storm_p99, storm_all) = wait_acks(fleet.acked(Phase::Storm), n, started).await;
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
    fleet.follow(Phase::EndToEnd);
    let sampler = Sampler::start(&coordinator, admin.clone());
    let changed = Instant::now();
    set_channel(&mut admin, &url, "bench", "1.2.0").await?;
    let (e2e_p50, e2e_p99, e2e_all) = wait_acks(fleet.acked(Phase::EndToEnd), n, changed).await;
    let e2e_samples = sampler.stop().await;
    println!(
        "end to end: admin change → 50% of {n} reported in {:.0} ms, 99% in {:.0} ms, 100% in {:.0} ms; {}",
        ms(e2e_p50),
        ms(e2e_p99),
        ms(e2e_all),
        e2e_samples.text()
    );

    let e2e_lags = fleet.report_lags(Phase::EndToEnd);
    println!(
        "end to end: report lag (finished → acknowledged) {}",
        text_percentiles(&e2e_lags)
    );
    let e2e_lags = lag_percentiles(e2e_lags);

    // 3. A rollback of a rollout that moved everyone: how long each report takes to land.
    let rollback = rollback::measure(&fleet, &mut admin, &url, n).await?;
    println!("{}", rollback.text(n));

    // 4. Baseline: the raw batched-insert rate on the same database.
    let baseline = baseline::raw_insert_rate(&database, n).await?;
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
                        "report_lag_ms": e2e_lags,
                        "admin": e2e_samples.admin_json(), "read": e2e_samples.read_json() },
        "rollback": rollback.json(),
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

/// Waits until `expected` reports were acknowledged (or 120 s); returns (50%, 99%, 100%)
/// of those acknowledged, from `start`.
async fn wait_acks(
    acked: &[OnceLock<Instant>],
    expected: usize,
    start: Instant,
) -> (Duration, Duration, Duration) {
    let _ = crate::wait_until(
        "every report acknowledged",
        Duration::from_secs(120),
        || acked.iter().filter(|a| a.get().is_some()).count() >= expected,
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

/// A phase's report lags as "p50 … ms, p99 … ms, max … ms".
fn text_percentiles(lags: &[Duration]) -> String {
    let mut lags = lags.to_vec();
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} reports)",
        ms(stats::percentile(&mut lags, 50.0)),
        ms(stats::percentile(&mut lags, 99.0)),
        ms(stats::percentile(&mut lags, 100.0)),
        lags.len()
    )
}

fn lag_percentiles(mut lags: Vec<Duration>) -> serde_json::Value {
    json!({
        "p50": ms(stats::percentile(&mut lags, 50.0)),
        "p99": ms(stats::percentile(&mut lags, 99.0)),
        "max": ms(stats::percentile(&mut lags, 100.0)),
        "reports": lags.len(),
    })
}
