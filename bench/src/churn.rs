//! `drover-loadgen churn`: real updaters (the updater crate's own session code, N in this
//! process) under an admin change every second. Reports how many stayed connected, sampled
//! each second from the coordinator, and heartbeats per second during the churn next to a
//! quiet phase of the same run (the baseline).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
use drover_updater::simulate::{self, SimulationConfig};
use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::{Coordinator, load};

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

async fn stats(c: &Coordinator) -> anyhow::Result<(u64, u64, u64)> {
    let s = c.stats().await?;
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
    c: &Coordinator,
    fleet: u64,
    secs: u64,
    mut admin: Option<&mut AdminServiceClient<tonic::transport::Channel>>,
) -> anyhow::Result<Phase> {
    let (_, beats_before, pushed_before) = stats(c).await?;
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
            admin
                .set_channel_version(pb::SetChannelVersionRequest {
                    name: CHANNEL.into(),
                    version,
                    ..Default::default()
                })
                .await?;
            out.changes += 1;
        }
        let (connected, _, _) = stats(c).await?;
        out.samples += 1;
        out.min_connected = out.min_connected.min(connected);
        if connected < fleet {
            out.below_fleet += 1;
        }
    }
    let (_, beats_after, pushed_after) = stats(c).await?;
    out.heartbeats = beats_after - beats_before;
    out.pushed = pushed_after - pushed_before;
    Ok(out)
}

pub async fn run(args: ChurnArgs) -> anyhow::Result<()> {
    let fd_limit = crate::stats::raise_fd_limit()?;
    let work = std::env::temp_dir().join(format!("drover-churn-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    println!(
        "drover-loadgen churn: {} real updaters, heartbeat {} s, fd limit {fd_limit}",
        args.updaters, args.heartbeat_secs
    );
    let database = format!("sqlite://{}", work.join("churn.db").display());
    let coordinator_args = crate::coordinator_args(&database, args.heartbeat_secs);
    let coordinator = Coordinator::start(
        &args.bin_dir.join("drover-coordinator"),
        coordinator_args,
        &work,
    )
    .await?;
    let mut admin = AdminServiceClient::new(load::connect(&coordinator.grpc, None, None).await?);
    admin
        .set_channel_version(pb::SetChannelVersionRequest {
            name: CHANNEL.into(),
            version: VERSIONS[0].into(),
            ..Default::default()
        })
        .await?;
    // A window twelve hours away: every push is a decision to wait, never an install, so
    // nothing but the timer makes an updater send a heartbeat.
    let hour = (SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() / 3600 + 12) % 24;
    admin
        .set_schedule(pb::SetScheduleRequest {
            group: CHANNEL.into(),
            days: (1..=7).collect(),
            start_minute_utc: (hour * 60) as u32,
            duration: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await?;

    let shutdown = CancellationToken::new();
    let fleet = tokio::spawn(simulate::run(
        SimulationConfig {
            coordinator: drover_updater::address::Coordinators::parse(&coordinator.grpc)?,
            // Benchmark coordinators run --insecure on loopback (see coordinator_args).
            coordinator_ca: None,
            count: args.updaters,
            groups: vec![CHANNEL.into()],
            channel: CHANNEL.into(),
            versions: vec!["1.0.0".into()],
            unhealthy_fraction: 0.0,
            broken_versions: Vec::new(),
            install_time: None,
            id_prefix: "churn".into(),
            ramp_up: Duration::from_secs(args.ramp_secs),
            recheck_interval: None,
            seed: 7,
        },
        shutdown.clone(),
    ));
    let n = args.updaters as u64;
    let started = Instant::now();
    loop {
        let (connected, _, _) = stats(&coordinator).await?;
        if connected >= n {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {connected} of {n} connected after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("connected: {n} in {:.1} s", started.elapsed().as_secs_f64());

    let quiet = phase(&coordinator, n, args.quiet_secs, None).await?;
    let churn = phase(&coordinator, n, args.duration_secs, Some(&mut admin)).await?;
    let rate = |p: &Phase| p.heartbeats as f64 / p.samples.max(1) as f64;
    let expected = n as f64 / args.heartbeat_secs as f64;
    println!(
        "quiet {} s: connected min {}/{n}; heartbeats {:.0}/s (fleet/interval = {expected:.0}/s)",
        quiet.samples,
        quiet.min_connected,
        rate(&quiet)
    );
    println!(
        "churn {} s: {} admin changes, {} directives pushed; connected min {}/{n}, below {n} in {} of {} samples; heartbeats {:.0}/s: ratio churn/quiet {:.2}",
        churn.samples,
        churn.changes,
        churn.pushed,
        churn.min_connected,
        churn.below_fleet,
        churn.samples,
        rate(&churn),
        rate(&churn) / rate(&quiet).max(1.0)
    );
    println!(
        "{}",
        json!({
            "updaters": n,
            "heartbeat_secs": args.heartbeat_secs,
            "quiet": { "secs": quiet.samples, "min_connected": quiet.min_connected, "heartbeats_per_s": rate(&quiet) },
            "churn": { "secs": churn.samples, "admin_changes": churn.changes, "directives_pushed": churn.pushed,
                "min_connected": churn.min_connected, "samples_below_fleet": churn.below_fleet,
                "heartbeats_per_s": rate(&churn) },
        })
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), fleet).await;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
