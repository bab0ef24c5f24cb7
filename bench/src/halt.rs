//! `drover-loadgen halt`: how fast a stop reaches a fleet, and whether any install starts
//! after it. N simulated updaters (the real protocol, acknowledging stops as real updaters
//! do: `halt/updater.rs`) follow a rollout that installs `--max-in-flight` per group at a
//! time; once `--halt-after-pct` of them updated, an admin pauses the rollout (a stop: its
//! epoch goes from 0 to 1). Measured from the moment the call is made: when each updater
//! first held a directive of the new epoch (p50, p99, p99.9, the share within 1 s and 3 s),
//! installs started after the call returned (the stop was committed by then), and the
//! coordinator's own count of acknowledgements. With `--replicas N` (PostgreSQL) the pause
//! goes to the reconciler's lease holder, which is SIGKILLed `--kill-leader-ms` after the
//! call returns: its updaters must reconnect elsewhere and hear the stop there. Default
//! mode (TLS, enrolled before any clock); `--insecure` as the labelled comparison.

mod updater;

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
use drover_tests::{CoordinatorBuilder, CoordinatorProcess, admin_request, droverctl, use_bin_dir};
use serde_json::json;

use crate::{load::FleetTls, ms, stats};
use updater::Fleet;

#[derive(clap::Parser, Debug)]
pub struct HaltArgs {
    #[arg(long, default_value_t = 10_000)]
    pub updaters: usize,
    /// Agents of each group (dev, staging, prod) installing at once.
    #[arg(long, default_value_t = 300)]
    pub max_in_flight: u32,
    /// How long each simulated install takes.
    #[arg(long, default_value_t = 2_000)]
    pub install_ms: u64,
    /// Pause once this share of the fleet has updated.
    #[arg(long, default_value_t = 20)]
    pub halt_after_pct: u64,
    /// `sqlite` (a fresh file) or a PostgreSQL URL naming an empty database (needed for
    /// `--replicas`).
    #[arg(long, default_value = "sqlite")]
    pub database: String,
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// With replicas: SIGKILL the lease holder this long after the pause returned.
    #[arg(long)]
    pub kill_leader_ms: Option<u64>,
    #[arg(long, default_value = "target/release")]
    pub bin_dir: std::path::PathBuf,
    #[arg(long)]
    pub insecure: bool,
}

async fn start(args: &HaltArgs, work: &std::path::Path) -> anyhow::Result<Vec<CoordinatorProcess>> {
    let mut replicas = Vec::new();
    let first = work.join("replica-0");
    for r in 0..args.replicas {
        let dir = work.join(format!("replica-{r}"));
        std::fs::create_dir_all(&dir)?;
        let builder = match (args.database.as_str(), r) {
            ("sqlite", _) => CoordinatorBuilder::sqlite(&dir),
            (url, 0) => CoordinatorBuilder::with_database(&dir, url),
            (url, _) if args.insecure => CoordinatorBuilder::with_database(&dir, url),
            (url, _) => CoordinatorBuilder::replica_of(&first, &dir, url),
        }
        .control_plane("2.0.0")
        .arg("--heartbeat-secs")
        .arg("30")
        .arg("--reconcile-ms")
        .arg("500")
        .env("RUST_LOG", "warn");
        replicas.push(crate::in_mode(builder, args.insecure).start().await);
    }
    Ok(replicas)
}

/// Polls the rollout's status every 20 ms (up to 30 s): when the coordinator counted 99 %,
/// 99.9 % and all of `n` acknowledged, in ms from `asked`, its last count, and when it
/// decided the stop (unix ms, its clock). Asked of the replica at `url` with the admin
/// credentials of the first (`first`: credentials live in the shared store).
async fn acknowledged_over_time(
    url: &str,
    first: &str,
    n: usize,
    asked: Instant,
) -> serde_json::Value {
    let (mut p99, mut p999, mut all) = (None, None, None);
    let mut last = serde_json::Value::Null;
    let mut stop_ms = None;
    let Ok(channel) = drover_tests::grpc_channel(url).await else {
        return json!({ "error": "cannot reach a live replica" });
    };
    let mut admin = AdminServiceClient::new(channel);
    while all.is_none() && asked.elapsed() < Duration::from_secs(30) {
        let request = pb::RolloutRef {
            channel: "bench".into(),
        };
        let status = admin
            .get_rollout_status(admin_request(first, request))
            .await;
        if let Some(acks) = status.ok().and_then(|s| s.into_inner().stop_acks) {
            stop_ms = acks
                .stopped_at
                .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
            last = json!({ "acknowledged": acks.acknowledged, "not_yet": acks.not_yet,
                           "unreachable": acks.unreachable, "epoch": acks.epoch });
            let acked = acks.acknowledged as usize;
            let now = ms(asked.elapsed());
            if acked * 100 >= n * 99 {
                p99.get_or_insert(now);
            }
            if acked * 1000 >= n * 999 {
                p999.get_or_insert(now);
            }
            if acked >= n {
                all = Some(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    json!({ "p99_ms": p99, "p999_ms": p999, "all_ms": all, "last": last, "stop_ms": stop_ms })
}

/// The replica holding the reconciler's lease: the one whose agents' `connected_on` names
/// the lease's holder (updater `r` connects to replica `r`).
async fn lease_holder(database: &str, replicas: usize) -> anyhow::Result<usize> {
    let pool = sqlx::PgPool::connect(database).await?;
    let (holder,): (String,) = sqlx::query_as("SELECT holder FROM reconciler_lease")
        .fetch_one(&pool)
        .await?;
    for r in 0..replicas {
        let (agent, _) = crate::load::agent(r);
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT connected_on FROM agents WHERE agent_id = $1")
                .bind(&agent)
                .fetch_optional(&pool)
                .await?;
        if row.and_then(|(c,)| c).as_deref() == Some(holder.as_str()) {
            return Ok(r);
        }
    }
    anyhow::bail!("no replica holds the lease ({holder})")
}

pub async fn run(args: HaltArgs) -> anyhow::Result<()> {
    let fd_limit = stats::raise_fd_limit()?;
    use_bin_dir(&args.bin_dir);
    let work = tempfile::tempdir()?;
    let n = args.updaters;
    let mut replicas = start(&args, work.path()).await?;
    let mode = crate::mode(args.insecure);
    println!(
        "drover-loadgen halt: {n} updaters, {} replica(s) on {}, {mode}, fd limit {fd_limit}",
        args.replicas,
        if args.database == "sqlite" {
            "SQLite"
        } else {
            "PostgreSQL"
        }
    );
    let urls: Vec<String> = replicas.iter().map(|r| r.grpc_url()).collect();
    let url = urls[0].clone();
    let (ok, _, err) = droverctl(&url, &["channels", "set", "bench", "1.0.0"]).await;
    anyhow::ensure!(ok, "channels set: {err}");
    let tls = match &replicas[0].tls {
        Some(ready) => {
            let started = Instant::now();
            let agents = crate::enrolled::enrol_fleet(&url, n).await?;
            println!(
                "enrolled {n} in {:.1} s (before any clock)",
                started.elapsed().as_secs_f64()
            );
            Some(FleetTls {
                server_ca_pem: Arc::new(std::fs::read(&ready.ca_file)?),
                agents: Arc::new(agents),
            })
        }
        None => None,
    };
    let fleet = Fleet::new(urls.clone(), tls, Duration::from_millis(args.install_ms), n);
    for index in 0..n {
        tokio::spawn(updater::updater(fleet.clone(), index));
        if index % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    crate::wait_until("every updater connected", Duration::from_secs(600), || {
        fleet.live.load(Ordering::Relaxed) >= n as u64
    })
    .await?;

    let create = format!(
        "rollout create --channel bench --from 1.0.0 --to 1.1.0 --strategy time-based \
         --group dev --group staging --group prod --immediate --max-in-flight {} \
         --no-verdict --strata none",
        args.max_in_flight
    );
    let create: Vec<&str> = create.split_whitespace().collect();
    let (ok, _, err) = droverctl(&url, &create).await;
    anyhow::ensure!(ok, "rollout create: {err}");
    let target = n as u64 * args.halt_after_pct / 100;
    let moving = crate::wait_until(
        "the rollout to move its share",
        Duration::from_secs(600),
        || fleet.installed.load(Ordering::Relaxed) >= target,
    )
    .await?;
    println!(
        "{} of {n} updated in {:.1} s; {} installing",
        fleet.installed.load(Ordering::Relaxed),
        moving.as_secs_f64(),
        fleet.installs.lock().len() as u64 - fleet.installed.load(Ordering::Relaxed)
    );

    // The stop, at the lease holder (which reconciles, and is killed after it).
    let leader = if args.replicas > 1 {
        lease_holder(&args.database, args.replicas).await?
    } else {
        0
    };
    let leader_url = urls[leader].clone();
    let mut admin = AdminServiceClient::new(drover_tests::grpc_channel(&leader_url).await?);
    fleet.measured_epoch.store(1, Ordering::Release);
    let asked = Instant::now();
    let request = pb::SteerRolloutRequest {
        channel: "bench".into(),
        dry_run: false,
    };
    admin
        .pause_rollout(admin_request(&leader_url, request))
        .await?;
    let returned = Instant::now();
    if let Some(after) = args.kill_leader_ms {
        tokio::time::sleep(Duration::from_millis(after)).await;
        replicas[leader].kill9().await;
        println!(
            "SIGKILLed replica {leader} (the lease holder) {after} ms after the pause returned"
        );
    }
    // The coordinator's own count, from a live replica, polled until all acknowledged.
    let live = (0..replicas.len())
        .find(|r| args.kill_leader_ms.is_none() || *r != leader)
        .unwrap_or(0);
    let counted = acknowledged_over_time(&urls[live], &url, n, asked).await;
    let heard = |fleet: &Fleet| fleet.heard.iter().filter(|h| h.get().is_some()).count();
    let _ = crate::wait_until(
        "every updater heard the stop",
        Duration::from_secs(30),
        || heard(&fleet) >= n,
    )
    .await;
    let mut latencies: Vec<Duration> = fleet
        .heard
        .iter()
        .filter_map(|h| h.get().map(|at| *at - asked))
        .collect();
    let within = |limit: Duration| {
        latencies.iter().filter(|d| **d <= limit).count() as f64 * 100.0 / n as f64
    };
    let (within_1s, within_3s) = (
        within(Duration::from_secs(1)),
        within(Duration::from_secs(3)),
    );
    let heard_all = latencies.len();
    let p = |latencies: &mut Vec<Duration>, q: f64| ms(stats::percentile(latencies, q));
    let (p50, p99, p999, max) = (
        p(&mut latencies, 50.0),
        p(&mut latencies, 99.0),
        p(&mut latencies, 99.9),
        p(&mut latencies, 100.0),
    );
    let installs = fleet.installs.lock().clone();
    let during_call = installs
        .iter()
        .filter(|(at, _, epoch)| *at > asked && *at <= returned && *epoch < 1)
        .count();
    let after_commit = installs
        .iter()
        .filter(|(at, _, epoch)| *at > returned && *epoch < 1)
        .count();
    let under_new = installs.iter().filter(|(_, _, epoch)| *epoch >= 1).count();
    // Against the moment the coordinator decided the stop (its clock, this machine's), just
    // before it committed it: installs from directives sent before the commit that began
    // after it.
    let stop_ms = counted["stop_ms"].as_i64();
    let after_decided: Vec<f64> = installs
        .iter()
        .filter(|(_, _, epoch)| *epoch < 1)
        .filter_map(|(_, wall, _)| {
            let wall_ms = wall.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
            let late = wall_ms - stop_ms?;
            (late > 0).then_some(late as f64)
        })
        .collect();
    println!(
        "stop (pause) call {:.0} ms; heard by {heard_all} of {n}: p50 {p50:.0} ms, p99 {p99:.0} \
         ms, p99.9 {p999:.0} ms, max {max:.0} ms; within 1 s {within_1s:.2} %, within 3 s \
         {within_3s:.2} %",
        ms(returned - asked)
    );
    println!(
        "installs started under the old epoch during the call: {during_call}, after it \
         returned: {after_commit}; after the stop's decision time (1 ms clock): {} (latest \
         {:.0} ms after); under the new epoch: {under_new}",
        after_decided.len(),
        after_decided.iter().copied().fold(0.0, f64::max)
    );
    let at = |key: &str| {
        counted[key]
            .as_f64()
            .map_or("never (30 s)".into(), |v| format!("{v:.0} ms"))
    };
    println!(
        "the coordinator counted 99 % acknowledged after {}, 99.9 % after {}, 100 % after {} \
         (last count: {})",
        at("p99_ms"),
        at("p999_ms"),
        at("all_ms"),
        counted["last"]
    );
    let summary = json!({
        "mode": mode,
        "updaters": n,
        "replicas": args.replicas,
        "killed_leader_after_ms": args.kill_leader_ms,
        "pause_call_ms": ms(returned - asked),
        "heard": heard_all,
        "p50_ms": p50, "p99_ms": p99, "p999_ms": p999, "max_ms": max,
        "within_1s_pct": within_1s, "within_3s_pct": within_3s,
        "installs_during_call": during_call,
        "installs_after_commit": after_commit,
        "installs_after_stop_decided": after_decided.len(),
        "installs_under_new_epoch": under_new,
        "coordinator_counts": counted,
        "failed_sessions_retried": fleet.failed.load(Ordering::Relaxed),
    });
    println!("{summary}");
    Ok(())
}
