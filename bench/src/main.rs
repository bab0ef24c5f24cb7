//! drover-loadgen: measures a coordinator under simulated fleets. Prints every number it
//! measures, plus a JSON summary on the last line. Not a test: it asserts nothing.
#![forbid(unsafe_code)]

mod churn;
mod echo;
mod load;
mod loader;
mod replicas;
mod scale;
mod stats;
mod storm;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
use serde_json::json;
use tokio::process::{Child, Command};

#[derive(Parser, Debug)]
#[command(
    name = "drover-loadgen",
    about = "Measure a Drover coordinator under a simulated fleet (see BENCHMARKS.md)."
)]
struct Args {
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
    #[arg(long, default_value_t = 64)]
    throughput_streams: usize,
    #[arg(long, default_value_t = 10)]
    throughput_secs: u64,
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    #[arg(long)]
    skip_storm: bool,
}

struct Coordinator {
    child: Child,
    args: Vec<String>,
    grpc: String,
    http: String,
    bin: PathBuf,
    ready: PathBuf,
}

impl Coordinator {
    async fn start(bin: &Path, args: Vec<String>, dir: &Path) -> anyhow::Result<Self> {
        let ready = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let child = Command::new(bin)
            .args(&args)
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("coordinator.log"))?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {}; build it with cargo build --release",
                    bin.display()
                )
            })?;
        let started = Instant::now();
        let addresses: serde_json::Value = loop {
            if let Ok(bytes) = std::fs::read(&ready) {
                break serde_json::from_slice(&bytes)?;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the coordinator did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(Self {
            child,
            args,
            grpc: format!("http://{}", addresses["grpc"].as_str().unwrap_or_default()),
            http: addresses["http"].as_str().unwrap_or_default().to_string(),
            bin: bin.to_path_buf(),
            ready,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    async fn stats(&self) -> anyhow::Result<serde_json::Value> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&self.http).await?;
        stream
            .write_all(b"GET /api/v1/stats HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok(serde_json::from_str(
            response
                .split_once("\r\n\r\n")
                .map(|(_, b)| b)
                .unwrap_or("{}"),
        )?)
    }
}

/// A benchmark coordinator's flags: this database, ports chosen by the kernel, control plane
/// 2.0.0 (every scenario's versions are below it) and this heartbeat interval. Plaintext
/// (`--insecure`, loopback only) so the numbers stay comparable with earlier runs and the
/// bare echo baseline; TLS's cost per connection is in DEPENDENCIES.md's measurements.
fn coordinator_args(database: &str, heartbeat_secs: u64) -> Vec<String> {
    [
        "--database",
        database,
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--control-plane-version",
        "2.0.0",
        "--heartbeat-secs",
        &heartbeat_secs.to_string(),
        "--insecure",
    ]
    .map(str::to_string)
    .to_vec()
}

/// The coordinator's `--database` for `--database sqlite` (a fresh file in `work`) or a
/// PostgreSQL URL, and the backend's name.
fn database(arg: &str, work: &Path) -> (String, &'static str) {
    if arg == "sqlite" {
        let url = format!("sqlite://{}", work.join("bench.db").display());
        (url, "sqlite")
    } else {
        (arg.to_string(), "postgres")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while !done() {
        anyhow::ensure!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("echo-server") {
        // The memory baseline runs the echo server in a process of its own.
        stats::raise_fd_limit()?;
        let addr = echo::serve().await?;
        println!("{addr}");
        std::future::pending::<()>().await;
    }
    match std::env::args().nth(1).as_deref() {
        Some("storm") => {
            return storm::run(storm::StormArgs::parse_from(std::env::args().skip(1))).await;
        }
        Some("churn") => {
            return churn::run(churn::ChurnArgs::parse_from(std::env::args().skip(1))).await;
        }
        Some("loader") => {
            return loader::run(loader::LoaderArgs::parse_from(std::env::args().skip(1))).await;
        }
        Some("dashboard") => {
            return scale::dashboard(scale::ScaleArgs::parse_from(std::env::args().skip(1))).await;
        }
        Some("fence") => {
            return scale::fence(scale::ScaleArgs::parse_from(std::env::args().skip(1))).await;
        }
        Some("replicas") => {
            return replicas::run(replicas::ReplicasArgs::parse_from(std::env::args().skip(1)))
                .await;
        }
        _ => {}
    }
    let args = Args::parse();
    let fd_limit = stats::raise_fd_limit()?;
    let work = std::env::temp_dir().join(format!("drover-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let (database, backend) = database(&args.database, &work);
    println!(
        "drover-loadgen: {} updaters, {backend}, {} source addresses, fd limit {fd_limit}",
        args.updaters, args.sources
    );

    let coordinator_args = coordinator_args(&database, args.heartbeat_secs);
    let mut coordinator = Coordinator::start(
        &args.bin_dir.join("drover-coordinator"),
        coordinator_args,
        &work,
    )
    .await?;
    let mut admin = AdminServiceClient::new(load::connect(&coordinator.grpc, None).await?);
    admin
        .set_channel_version(pb::SetChannelVersionRequest {
            name: "bench".into(),
            version: "1.0.0".into(),
            ..Default::default()
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = stats::rss_kib(coordinator.pid())?;

    // 1. Connected updaters and memory per updater.
    let shared = load::Shared::new(
        coordinator.grpc.clone(),
        args.sources,
        Duration::from_secs(args.heartbeat_secs),
        args.updaters,
    );
    let connect_started = Instant::now();
    let mut fleet = Vec::with_capacity(args.updaters);
    for index in 0..args.updaters {
        fleet.push(tokio::spawn(load::updater(shared.clone(), index)));
        if index % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    let n = args.updaters as u64;
    wait_until("every updater connected", Duration::from_secs(600), || {
        shared.live.load(Ordering::Relaxed) >= n
    })
    .await?;
    let connect_time = connect_started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_loaded = stats::rss_kib(coordinator.pid())?;
    let per_updater_kib = (rss_loaded.saturating_sub(rss_idle)) as f64 / n as f64;
    println!(
        "1. connected: {n} in {:.1} s; coordinator RSS {rss_idle} KiB idle → {rss_loaded} KiB: {per_updater_kib:.1} KiB per updater",
        connect_time.as_secs_f64()
    );

    // 4. Database writes per steady-state heartbeat.
    let before = coordinator.stats().await?;
    tokio::time::sleep(Duration::from_secs(args.steady_secs)).await;
    let after = coordinator.stats().await?;
    let delta = |key: &str| {
        after[key]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(before[key].as_u64().unwrap_or(0))
    };
    let (beats, writes) = (delta("heartbeats"), delta("store_write_statements"));
    let writes_per_heartbeat = writes as f64 / beats.max(1) as f64;
    println!(
        "4. steady state over {} s: {beats} heartbeats, {writes} write statements: {writes_per_heartbeat:.5} writes per heartbeat",
        args.steady_secs
    );

    // 3. Push latency.
    *shared.push_target.lock() = "1.0.1".into();
    let pushed = Instant::now();
    admin
        .set_channel_version(pb::SetChannelVersionRequest {
            name: "bench".into(),
            version: "1.0.1".into(),
            ..Default::default()
        })
        .await?;
    let seen = |fraction: f64| {
        let need = ((n as f64) * fraction).ceil() as usize;
        shared
            .push_seen
            .iter()
            .filter(|s| s.get().is_some())
            .count()
            >= need
    };
    let _ = wait_until(
        "every updater holds the push",
        Duration::from_secs(120),
        || seen(1.0),
    )
    .await;
    let mut latencies: Vec<Duration> = shared
        .push_seen
        .iter()
        .filter_map(|s| s.get().map(|t| *t - pushed))
        .collect();
    let held = latencies.len();
    let (p50, p99, p100) = (
        stats::percentile(&mut latencies, 50.0),
        stats::percentile(&mut latencies, 99.0),
        stats::percentile(&mut latencies, 100.0),
    );
    println!(
        "3. push: {held}/{n} updaters held the new directive; p50 {:.1} ms, p99 {:.1} ms, 100% {:.1} ms",
        ms(p50),
        ms(p99),
        ms(p100)
    );

    // 2. Heartbeat throughput against the coordinator, then the bare echo baseline.
    let secs = Duration::from_secs(args.throughput_secs);
    let (acks, mut lat) = load::closed_loop(
        &coordinator.grpc,
        args.throughput_streams,
        secs,
        args.sources,
    )
    .await?;
    let coordinator_rate = acks as f64 / secs.as_secs_f64();
    let (c50, c99) = (
        stats::percentile(&mut lat, 50.0),
        stats::percentile(&mut lat, 99.0),
    );
    let echo = echo::serve().await?;
    let (echo_acks, mut echo_lat) = load::closed_loop(
        &format!("http://{echo}"),
        args.throughput_streams,
        secs,
        args.sources,
    )
    .await?;
    let echo_rate = echo_acks as f64 / secs.as_secs_f64();
    let (e50, e99) = (
        stats::percentile(&mut echo_lat, 50.0),
        stats::percentile(&mut echo_lat, 99.0),
    );
    println!(
        "2. heartbeats, {} closed-loop streams: coordinator {coordinator_rate:.0}/s (p50 {:.2} ms, p99 {:.2} ms), \
         bare tonic echo {echo_rate:.0}/s (p50 {:.2} ms, p99 {:.2} ms): ratio {:.2}",
        args.throughput_streams,
        ms(c50),
        ms(c99),
        ms(e50),
        ms(e99),
        coordinator_rate / echo_rate.max(1.0)
    );

    // 5. Reconnect storm.
    let mut storm = json!(null);
    if !args.skip_storm {
        let errors_before = shared.errors.load(Ordering::Relaxed);
        coordinator.child.start_kill()?;
        coordinator.child.wait().await?;
        wait_until(
            "every session noticed the kill",
            Duration::from_secs(120),
            || shared.live.load(Ordering::Relaxed) == 0,
        )
        .await?;
        let mut restart_args = coordinator.args.clone();
        let grpc = coordinator.grpc.trim_start_matches("http://").to_string();
        restart_args[3] = grpc;
        restart_args[5] = coordinator.http.clone();
        let restarted = Instant::now();
        coordinator = Coordinator::start(&coordinator.bin, restart_args, &work).await?;
        let _ = &coordinator.ready;
        wait_until(
            "every updater reconnected",
            Duration::from_secs(600),
            || shared.live.load(Ordering::Relaxed) >= n,
        )
        .await?;
        let back = restarted.elapsed();
        let errors = shared.errors.load(Ordering::Relaxed) - errors_before;
        println!(
            "5. reconnect storm: all {n} back {:.1} s after the restart began; {errors} failed attempts on the way",
            back.as_secs_f64()
        );
        storm = json!({ "all_back_s": back.as_secs_f64(), "failed_attempts": errors });
    }

    // 6. An idle updater, and binary sizes.
    let state = work.join("idle-updater");
    let mut idle = Command::new(args.bin_dir.join("drover-updater"))
        .args([
            "run",
            "--coordinator",
            &coordinator.grpc,
            "--agent-id",
            "idle-1",
            "--channel",
            "bench",
            "--install-command",
            "true",
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--agent-version")
        .arg("1.0.1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = idle.id().unwrap_or_default();
    let cpu_before = stats::cpu_time(pid)?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let cpu = stats::cpu_time(pid)? - cpu_before;
    let updater_rss = stats::rss_kib(pid)?;
    idle.start_kill()?;
    let size = |name: &str| {
        std::fs::metadata(args.bin_dir.join(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let sizes = json!({
        "drover-coordinator": size("drover-coordinator"),
        "drover-updater": size("drover-updater"),
        "droverctl": size("droverctl"),
    });
    println!(
        "6. idle updater: RSS {updater_rss} KiB, CPU {:.3} % over 20 s; binaries {sizes}",
        cpu.as_secs_f64() / 20.0 * 100.0
    );

    // 7. Memory baseline: the same number of connections to a bare tonic echo server in a
    // process of its own (last, because these simulated updaters keep retrying afterwards).
    // This process may hold only so many sockets: close the first fleet's before opening more.
    for updater in &fleet {
        updater.abort();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let echo_kib = echo_memory_per_connection(&args, n).await?;
    println!(
        "7. bare tonic echo process: {echo_kib:.1} KiB per connection; coordinator/echo memory ratio {:.2}",
        per_updater_kib / echo_kib.max(0.001)
    );

    let summary = json!({
        "echo_kib_per_connection": echo_kib,
        "backend": backend,
        "updaters": n,
        "connect_s": connect_time.as_secs_f64(),
        "coordinator_kib_per_updater": per_updater_kib,
        "writes_per_steady_heartbeat": writes_per_heartbeat,
        "push_ms": { "p50": ms(p50), "p99": ms(p99), "p100": ms(p100), "held": held },
        "heartbeats_per_s": { "coordinator": coordinator_rate, "echo": echo_rate, "ratio": coordinator_rate / echo_rate.max(1.0),
            "coordinator_p50_ms": ms(c50), "coordinator_p99_ms": ms(c99), "echo_p50_ms": ms(e50), "echo_p99_ms": ms(e99) },
        "reconnect_storm": storm,
        "idle_updater": { "rss_kib": updater_rss, "cpu_percent": cpu.as_secs_f64() / 20.0 * 100.0 },
        "binary_bytes": sizes,
    });
    println!("{summary}");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

async fn echo_memory_per_connection(args: &Args, n: u64) -> anyhow::Result<f64> {
    use tokio::io::AsyncBufReadExt;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("echo-server")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("echo server stdout")?;
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await?;
    let url = format!("http://{}", line.trim());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap_or_default();
    let idle = stats::rss_kib(pid)?;
    let shared = load::Shared::new(
        url,
        args.sources,
        Duration::from_secs(args.heartbeat_secs),
        n as usize,
    );
    for index in 0..n as usize {
        tokio::spawn(load::updater(shared.clone(), index));
    }
    wait_until(
        "every echo connection open",
        Duration::from_secs(180),
        || shared.live.load(Ordering::Relaxed) >= n,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = stats::rss_kib(pid)?;
    child.start_kill()?;
    Ok(loaded.saturating_sub(idle) as f64 / n as f64)
}
