//! `drover-loadgen churn`: real updaters (the updater crate's own session code, N in this
//! process) in the default mode: each enrolled with a join token before any clock starts
//! (its credentials kept where the simulation reads them), then speaking mutual TLS (`--insecure`: plaintext, a labelled comparison). Measures, against
//! a baseline from the same run:
//!
//! 1. the coordinator's memory per connected updater, against a bare tonic echo server
//!    (same TLS) holding the same real updaters' connections;
//! 2. admin churn: how many stay connected under an admin change every second, and
//!    heartbeats per second, next to a quiet phase with no changes;
//! 3. SIGKILL and restart on the same store and ports until every updater is back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
use drover_tests::{CoordinatorBuilder, CoordinatorProcess, admin_request, use_bin_dir};
use drover_updater::simulate::{self, SimulatedEnrolment, SimulationConfig};
use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tonic::transport::Certificate;

use crate::{enrolled, fleet::coordinator_stats, stats};
use drover_proto::v1::enrolment_service_client::EnrolmentServiceClient;

#[derive(Parser, Debug)]
#[command(name = "drover-loadgen churn")]
pub struct ChurnArgs {
    #[arg(long, default_value_t = 10_000)]
    updaters: usize,
    /// How long the admin changes go on, one a second.
    #[arg(long, default_value_t = 300)]
    duration_secs: u64,
    /// The baseline before the churn: same fleet, no admin changes.
    #[arg(long, default_value_t = 60)]
    quiet_secs: u64,
    #[arg(long, default_value_t = 10)]
    heartbeat_secs: u64,
    /// Connections are opened over this span.
    #[arg(long, default_value_t = 30)]
    ramp_secs: u64,
    #[arg(long, default_value = "target/release")]
    bin_dir: std::path::PathBuf,
    /// Plaintext, no enrolment: a labelled comparison with the default mode.
    #[arg(long)]
    insecure: bool,
}

const CHANNEL: &str = "churn";
const VERSIONS: [&str; 2] = ["1.0.1", "1.0.2"];

#[derive(Default)]
struct Phase {
    samples: u64,
    min_connected: u64,
    below_fleet: u64,
    heartbeats: u64,
    pushed: u64,
    changes: u64,
}

async fn counters(c: &CoordinatorProcess) -> anyhow::Result<(u64, u64, u64)> {
    let s = coordinator_stats(c).await?;
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    Ok((
        n("connected_updaters"),
        n("heartbeats"),
        n("directives_pushed"),
    ))
}

/// Samples the coordinator once a second for `secs`, making an admin change first when
/// `admin` is given.
async fn phase(
    c: &CoordinatorProcess,
    fleet: u64,
    secs: u64,
    mut admin: Option<&mut AdminServiceClient<tonic::transport::Channel>>,
) -> anyhow::Result<Phase> {
    let url = c.grpc_url();
    let (_, beats_before, pushed_before) = counters(c).await?;
    let mut out = Phase {
        min_connected: u64::MAX,
        ..Phase::default()
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let end = Instant::now() + Duration::from_secs(secs);
    tick.tick().await;
    while Instant::now() < end {
        tick.tick().await;
        if let Some(admin) = admin.as_deref_mut() {
            // The channel starts on VERSIONS[0], so every change is a real one.
            let version = VERSIONS[((out.changes + 1) % 2) as usize].to_string();
            let change = pb::SetChannelVersionRequest {
                name: CHANNEL.into(),
                version,
                ..Default::default()
            };
            admin
                .set_channel_version(admin_request(&url, change))
                .await?;
            out.changes += 1;
        }
        let (connected, _, _) = counters(c).await?;
        out.samples += 1;
        out.min_connected = out.min_connected.min(connected);
        if connected < fleet {
            out.below_fleet += 1;
        }
    }
    let (_, beats_after, pushed_after) = counters(c).await?;
    out.heartbeats = beats_after - beats_before;
    out.pushed = pushed_after - pushed_before;
    Ok(out)
}

/// Waits (up to 600 s) until `connected()` reaches `n`; how long that took.
async fn until_connected(
    n: u64,
    mut connected: impl AsyncFnMut() -> u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let now = connected().await;
        if now >= n {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {now} of {n} connected after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(args: ChurnArgs) -> anyhow::Result<()> {
    let fd_limit = stats::raise_fd_limit()?;
    use_bin_dir(&args.bin_dir);
    let work = tempfile::tempdir()?;
    let mode = crate::mode(args.insecure);
    println!(
        "drover-loadgen churn: {} real updaters, {mode}, heartbeat {} s, fd limit {fd_limit}",
        args.updaters, args.heartbeat_secs
    );
    let builder = CoordinatorBuilder::sqlite(work.path())
        .control_plane("2.0.0")
        .arg("--heartbeat-secs")
        .arg(args.heartbeat_secs.to_string())
        .env("RUST_LOG", "warn");
    let mut coordinator = crate::in_mode(builder, args.insecure).start().await;
    let url = coordinator.grpc_url();
    let mut admin = AdminServiceClient::new(drover_tests::grpc_channel(&url).await?);
    quiet_channel(&mut admin, &url).await?;
    let enrolling = Instant::now();
    let (ca, enrolment) = tls(&coordinator, work.path(), args.updaters).await?;
    if enrolment.is_some() {
        println!(
            "0. enrolled {} updaters in {:.1} s (before any clock)",
            args.updaters,
            enrolling.elapsed().as_secs_f64()
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = stats::rss_kib(coordinator.pid())?;

    let shutdown = CancellationToken::new();
    let config = SimulationConfig {
        coordinator: drover_updater::address::Coordinators::parse(&url)?,
        coordinator_ca: ca.clone(),
        count: args.updaters,
        groups: vec![CHANNEL.into()],
        channel: CHANNEL.into(),
        versions: vec!["1.0.0".into()],
        unhealthy_fraction: 0.0,
        broken_versions: Vec::new(),
        broken_on: None,
        install_time: None,
        id_prefix: "churn".into(),
        ramp_up: Duration::from_secs(args.ramp_secs),
        recheck_interval: None,
        seed: 7,
        sample_interval: None,
        leaky_versions: Vec::new(),
    };
    let fleet = tokio::spawn(simulate::run_enrolled(
        config.clone(),
        enrolment.clone(),
        shutdown.clone(),
    ));
    let n = args.updaters as u64;
    let connect =
        until_connected(n, async || counters(&coordinator).await.map_or(0, |c| c.0)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kib_per_updater =
        stats::rss_kib(coordinator.pid())?.saturating_sub(rss_idle) as f64 / n as f64;
    println!(
        "1. connected: {n} in {:.1} s ({}-s ramp); coordinator {kib_per_updater:.1} KiB per updater",
        connect.as_secs_f64(),
        args.ramp_secs
    );

    let quiet = phase(&coordinator, n, args.quiet_secs, None).await?;
    let churn = phase(&coordinator, n, args.duration_secs, Some(&mut admin)).await?;
    let rate = |p: &Phase| p.heartbeats as f64 / p.samples.max(1) as f64;
    let expected = n as f64 / args.heartbeat_secs as f64;
    println!(
        "2. quiet {} s: connected min {}/{n}; heartbeats {:.0}/s (fleet/interval = {expected:.0}/s)",
        quiet.samples,
        quiet.min_connected,
        rate(&quiet)
    );
    println!(
        "   churn {} s: {} admin changes, {} directives pushed; connected min {}/{n}, below {n} in {} of {} samples; heartbeats {:.0}/s: ratio churn/quiet {:.2}",
        churn.samples,
        churn.changes,
        churn.pushed,
        churn.min_connected,
        churn.below_fleet,
        churn.samples,
        rate(&churn),
        rate(&churn) / rate(&quiet).max(1.0)
    );

    coordinator.kill9().await;
    let restarted = Instant::now();
    coordinator.restart().await;
    until_connected(n, async || counters(&coordinator).await.map_or(0, |c| c.0)).await?;
    let back_s = restarted.elapsed().as_secs_f64();
    println!("3. SIGKILL and restart: all {n} back after {back_s:.1} s");

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), fleet).await;
    let tls_dir = coordinator
        .tls
        .as_ref()
        .and_then(|tls| tls.ca_file.parent().map(std::path::Path::to_path_buf));
    drop(coordinator);
    let echo_kib = echo_per_connection(config, enrolment, tls_dir.as_deref()).await?;
    let ratio = kib_per_updater / echo_kib.max(0.001);
    println!(
        "1. memory: coordinator {kib_per_updater:.1} KiB per updater; bare tonic echo ({mode}) holding the same {n} real updaters: {echo_kib:.1} KiB per connection; ratio {ratio:.2}"
    );
    println!(
        "{}",
        json!({
            "updaters": n, "mode": mode,
            "heartbeat_secs": args.heartbeat_secs,
            "connect_s": connect.as_secs_f64(),
            "kib_per_updater": kib_per_updater, "echo_kib_per_connection": echo_kib,
            "memory_ratio": ratio,
            "quiet": { "secs": quiet.samples, "min_connected": quiet.min_connected, "heartbeats_per_s": rate(&quiet) },
            "churn": { "secs": churn.samples, "admin_changes": churn.changes, "directives_pushed": churn.pushed,
                "min_connected": churn.min_connected, "samples_below_fleet": churn.below_fleet,
                "heartbeats_per_s": rate(&churn) },
            "restart_all_back_s": back_s,
        })
    );
    Ok(())
}

/// The channel on VERSIONS[0], with its group's window twelve hours away: every push is
/// a decision to wait, never an install, so nothing but the timer makes an updater send a
/// heartbeat.
async fn quiet_channel(
    admin: &mut AdminServiceClient<tonic::transport::Channel>,
    url: &str,
) -> anyhow::Result<()> {
    let channel = pb::SetChannelVersionRequest {
        name: CHANNEL.into(),
        version: VERSIONS[0].into(),
        ..Default::default()
    };
    admin
        .set_channel_version(admin_request(url, channel))
        .await?;
    let hour = (SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() / 3600 + 12) % 24;
    let schedule = pb::SetScheduleRequest {
        group: CHANNEL.into(),
        days: (1..=7).collect(),
        start_minute_utc: (hour * 60) as u32,
        duration: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        ..Default::default()
    };
    admin.set_schedule(admin_request(url, schedule)).await?;
    Ok(())
}

/// The CA the updaters trust and their identities: every updater enrolled now, before any
/// clock starts, its credentials kept where the simulation (and the echo baseline after
/// it) reads them; neither in plaintext.
async fn tls(
    coordinator: &CoordinatorProcess,
    work: &std::path::Path,
    count: usize,
) -> anyhow::Result<(Option<Certificate>, Option<SimulatedEnrolment>)> {
    use futures::StreamExt;
    let Some(ready) = &coordinator.tls else {
        return Ok((None, None));
    };
    let url = coordinator.grpc_url();
    let token = enrolled::join_token(&url, CHANNEL, count).await?;
    let keep_in = work.join("identities");
    std::fs::create_dir_all(&keep_in)?;
    let ca = std::fs::read(&ready.ca_file)?;
    let channel = crate::load::connect(&url, None, Some((&ca, None))).await?;
    let enrolled = futures::stream::iter(0..count)
        .map(|i| {
            let (client, token, keep_in) = (
                EnrolmentServiceClient::new(channel.clone()),
                token.clone(),
                keep_in.clone(),
            );
            async move {
                // The simulation names agent i so (`simulate.rs`).
                let agent_id = format!("churn-{i:05}");
                let cert = enrolled::enrol_one(client, &agent_id, CHANNEL, &token).await?;
                let text = drover_updater::identity::credentials(&cert.cert_pem, &cert.key_pem);
                std::fs::write(keep_in.join(format!("{agent_id}.pem")), text)?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    enrolled.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok((
        Some(Certificate::from_pem(ca)),
        Some(SimulatedEnrolment {
            token,
            keep_in: Some(keep_in),
        }),
    ))
}

/// RSS per connection of a bare echo server (its own process, over the coordinator's TLS
/// from `tls_dir`) holding the same real updaters, with their kept identities.
async fn echo_per_connection(
    mut config: SimulationConfig,
    enrolment: Option<SimulatedEnrolment>,
    tls_dir: Option<&std::path::Path>,
) -> anyhow::Result<f64> {
    let echo = crate::start_echo(tls_dir).await?;
    let pid = echo.pid;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle, fds_idle) = (stats::rss_kib(pid)?, stats::open_fds(pid)?);
    config.coordinator = drover_updater::address::Coordinators::parse(&echo.url)?;
    let n = config.count as u64;
    let shutdown = CancellationToken::new();
    let fleet = tokio::spawn(simulate::run_enrolled(config, enrolment, shutdown.clone()));
    // The echo counts nothing: its open connections are its open files.
    until_connected(n, async || {
        stats::open_fds(pid).map_or(0, |fds| fds.saturating_sub(fds_idle))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loaded = stats::rss_kib(pid)?;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), fleet).await;
    Ok(loaded.saturating_sub(idle) as f64 / n as f64)
}
