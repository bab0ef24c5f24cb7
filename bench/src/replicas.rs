//! `drover-loadgen replicas`: many updaters across several coordinator replicas on one
//! PostgreSQL, from several loader processes (`loader.rs`), in the default mode: TLS, the
//! replicas sharing one CA (as `tests/src/replicas.rs` sets them up), every updater enrolled
//! at its replica before any clock starts; `--insecure` as a labelled comparison. Measures,
//! each with a baseline from the same run: memory per connected updater (against a bare tonic echo server
//! holding one replica's share of the same streams), an admin change on one replica until
//! 99 % and 100 % of the fleet hold it, every replica SIGKILLed and restarted until all
//! updaters are back, and store writes per steady heartbeat (the sum over replicas).

use std::{
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use drover_tests::{CoordinatorBuilder, CoordinatorProcess, use_bin_dir};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
};

use crate::{enrolled, fleet, ms, stats, wait_until};

#[derive(Parser, Debug)]
pub struct ReplicasArgs {
    #[arg(long, default_value_t = 100_000)]
    updaters: usize,
    #[arg(long, default_value_t = 6)]
    replicas: usize,
    #[arg(long, default_value_t = 6)]
    loaders: usize,
    /// A PostgreSQL database the benchmark may fill (replicas need PostgreSQL).
    #[arg(long)]
    database: String,
    #[arg(long, default_value_t = 8)]
    sources: u8,
    #[arg(long, default_value_t = 10)]
    heartbeat_secs: u64,
    /// Longer than the 15 s liveness flush, so flushes are counted.
    #[arg(long, default_value_t = 35)]
    steady_secs: u64,
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Plaintext, no enrolment: a labelled comparison with the default mode.
    #[arg(long)]
    insecure: bool,
}

/// A loader's TLS: trust `ca_file`, present the credentials in `certs` (enrolled with
/// `tokens` if the file is not there yet). `None` where one is expected: plaintext.
struct LoaderTls {
    ca_file: PathBuf,
    certs: PathBuf,
    tokens: Vec<(String, String)>,
}

/// One loader process: its stdin for commands, its latest counters.
struct Loader {
    child: Child,
    stdin: ChildStdin,
    latest: Arc<Mutex<Value>>,
    /// When the last push reached each of this loader's updaters (ms; `None`: not yet).
    latencies: Arc<Mutex<Option<Vec<Option<i64>>>>>,
    offset: usize,
}

impl Loader {
    async fn start(
        args: &ReplicasArgs,
        urls: &str,
        offset: usize,
        count: usize,
        tls: Option<&LoaderTls>,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["loader", "--urls", urls])
            .args([
                "--offset",
                &offset.to_string(),
                "--count",
                &count.to_string(),
            ])
            .args(["--sources", &args.sources.to_string()])
            .args(["--heartbeat-secs", &args.heartbeat_secs.to_string()]);
        if let Some(tls) = tls {
            command
                .arg("--ca-file")
                .arg(&tls.ca_file)
                .arg("--certs")
                .arg(&tls.certs);
            let tokens: Vec<String> = tls.tokens.iter().map(|(g, t)| format!("{g}={t}")).collect();
            if !tokens.is_empty() {
                command.arg("--tokens").arg(tokens.join(","));
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().context("loader stdin")?;
        let stdout = child.stdout.take().context("loader stdout")?;
        let latest = Arc::new(Mutex::new(json!({})));
        let latencies = Arc::new(Mutex::new(None));
        let (l, lat) = (latest.clone(), latencies.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(list) = value["latencies_ms"].as_array() {
                    *lat.lock() = Some(list.iter().map(Value::as_i64).collect());
                } else {
                    *l.lock() = value;
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            latest,
            latencies,
            offset,
        })
    }

    fn counter(&self, key: &str) -> u64 {
        self.latest.lock()[key].as_u64().unwrap_or(0)
    }

    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(self.stdin.flush().await?)
    }
}

fn total(loaders: &[Loader], key: &str) -> u64 {
    loaders.iter().map(|l| l.counter(key)).sum()
}

/// Waits (up to 900 s) until all `n` updaters are live, saying every 10 s how many are
/// and how many attempts failed.
async fn wait_all_live(
    loaders: &[Loader],
    n: u64,
    since: Instant,
    what: &str,
) -> anyhow::Result<Duration> {
    let mut said = Instant::now();
    wait_until(&format!("every updater {what}"), Duration::from_secs(900), || {
        let live = total(loaders, "live");
        if said.elapsed() >= Duration::from_secs(10) {
            said = Instant::now();
            let each: Vec<u64> = loaders.iter().map(|l| l.counter("live")).collect();
            println!(
                "   … {live} of {n} {what} after {:.0} s, {} failed attempts (per loader: {each:?})",
                since.elapsed().as_secs_f64(),
                total(loaders, "errors")
            );
        }
        live >= n
    })
    .await
}

fn rss_sum(replicas: &[CoordinatorProcess]) -> anyhow::Result<u64> {
    replicas.iter().map(|r| stats::rss_kib(r.pid())).sum()
}

/// Replica 0 makes the CA and the bootstrap admin; the others share its CA and server
/// certificate, as an operator's replicas do.
async fn start_replicas(
    args: &ReplicasArgs,
    work: &std::path::Path,
) -> anyhow::Result<Vec<CoordinatorProcess>> {
    use_bin_dir(&args.bin_dir);
    let first = work.join("replica-0");
    let mut replicas = Vec::new();
    for r in 0..args.replicas {
        let dir = work.join(format!("replica-{r}"));
        std::fs::create_dir_all(&dir)?;
        let builder = if r == 0 || args.insecure {
            CoordinatorBuilder::with_database(&dir, &args.database)
        } else {
            CoordinatorBuilder::replica_of(&first, &dir, &args.database)
        }
        .control_plane("2.0.0")
        .arg("--heartbeat-secs")
        .arg(args.heartbeat_secs.to_string())
        .arg("--reconcile-ms")
        .arg("2000")
        .env("RUST_LOG", "warn");
        replicas.push(crate::in_mode(builder, args.insecure).start().await);
    }
    Ok(replicas)
}

pub async fn run(args: ReplicasArgs) -> anyhow::Result<()> {
    let fd_limit = stats::raise_fd_limit()?;
    let n = args.updaters as u64;
    let work = tempfile::tempdir()?;
    let mode = crate::mode(args.insecure);
    println!(
        "drover-loadgen replicas: {n} updaters, {} replicas on PostgreSQL, {} loader processes, {mode}, fd limit {fd_limit}",
        args.replicas, args.loaders
    );
    let mut replicas = start_replicas(&args, work.path()).await?;
    let admin_url = replicas[0].grpc_url();
    fleet::set_channel(&admin_url, "1.0.0").await?;
    let urls: Vec<String> = replicas.iter().map(CoordinatorProcess::grpc_url).collect();
    let joined = urls.join(",");

    // 0. Enrol everyone, each loader its own share at the replicas it will use, with
    // tokens made before any loader starts.
    let per_loader = args.updaters.div_ceil(args.loaders);
    let ca_file = replicas[0].tls.as_ref().map(|tls| tls.ca_file.clone());
    let mut shares = Vec::new();
    for l in 0..args.loaders {
        let offset = l * per_loader;
        let count = per_loader.min(args.updaters.saturating_sub(offset));
        let tls = match &ca_file {
            Some(ca) => Some(LoaderTls {
                ca_file: ca.clone(),
                certs: work.path().join(format!("certs-{l}.json")),
                tokens: enrolled::join_tokens(&admin_url, count).await?,
            }),
            None => None,
        };
        shares.push((offset, count, tls));
    }
    let mut loaders = Vec::new();
    let enrol_started = Instant::now();
    for (offset, count, tls) in &shares {
        loaders.push(Loader::start(&args, &joined, *offset, *count, tls.as_ref()).await?);
    }
    wait_until("every updater enrolled", Duration::from_secs(1800), || {
        total(&loaders, "enrolled") >= n
    })
    .await?;
    let enrol_s = enrol_started.elapsed().as_secs_f64();
    if ca_file.is_some() {
        println!(
            "0. enrolled {n} updaters across {} replicas in {enrol_s:.1} s (before any clock)",
            args.replicas
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_sum(&replicas)?;

    // 1. Connect everyone.
    let connect_started = Instant::now();
    for loader in &mut loaders {
        loader.send("connect").await?;
    }
    wait_all_live(&loaders, n, connect_started, "connected").await?;
    let connect_time = connect_started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_loaded = rss_sum(&replicas)?;
    let per_updater = rss_loaded.saturating_sub(rss_idle) as f64 / n as f64;
    println!(
        "1. connected: {n} in {:.1} s; replicas' RSS {rss_idle} KiB idle → {rss_loaded} KiB: {per_updater:.1} KiB per updater",
        connect_time.as_secs_f64()
    );

    // 4. Store writes per steady heartbeat, over every replica.
    let before = stats_sum(&replicas).await?;
    tokio::time::sleep(Duration::from_secs(args.steady_secs)).await;
    let after = stats_sum(&replicas).await?;
    let (beats, writes) = (after.0 - before.0, after.1 - before.1);
    let writes_per_heartbeat = writes as f64 / beats.max(1) as f64;
    println!(
        "4. steady state over {} s: {beats} heartbeats, {writes} write statements over {} replicas: {writes_per_heartbeat:.5} writes per heartbeat",
        args.steady_secs, args.replicas
    );

    // 3. An admin change on replica 0 → every updater, wherever it is connected.
    let at = stats::unix_ms();
    for loader in &mut loaders {
        loader.send(&format!("push 1.0.1 {at}")).await?;
    }
    fleet::set_channel(&admin_url, "1.0.1").await?;
    let need99 = (n as f64 * 0.99).ceil() as u64;
    let _ = wait_until("99 % hold the change", Duration::from_secs(120), || {
        total(&loaders, "push_seen") >= need99
    })
    .await;
    let _ = wait_until("all hold the change", Duration::from_secs(60), || {
        total(&loaders, "push_seen") >= n
    })
    .await;
    for loader in &mut loaders {
        *loader.latencies.lock() = None;
        loader.send("latencies").await?;
    }
    wait_until("every loader's latencies", Duration::from_secs(60), || {
        loaders.iter().all(|l| l.latencies.lock().is_some())
    })
    .await?;
    // Updater `i` is on replica `i mod R`: replica 0's own updaters get the change without
    // the feed (the same-run baseline); the others hear it through the feed.
    let (mut direct, mut via_feed) = (Vec::new(), Vec::new());
    for loader in &loaders {
        let list = loader.latencies.lock().clone().unwrap_or_default();
        for (local, delay) in list.into_iter().enumerate() {
            let Some(delay) = delay else { continue };
            let delay = Duration::from_millis(delay.max(0) as u64);
            if (loader.offset + local) % args.replicas == 0 {
                direct.push(delay);
            } else {
                via_feed.push(delay);
            }
        }
    }
    let mut delays: Vec<Duration> = direct.iter().chain(&via_feed).copied().collect();
    let held = delays.len();
    let (p50, p99, p100) = (
        stats::percentile(&mut delays, 50.0),
        stats::percentile(&mut delays, 99.0),
        stats::percentile(&mut delays, 100.0),
    );
    let (d99, f99) = (
        stats::percentile(&mut direct, 99.0),
        stats::percentile(&mut via_feed, 99.0),
    );
    println!(
        "3. admin change on replica 0: {held}/{n} updaters across {} replicas held it; p50 {:.0} ms, p99 {:.0} ms, 100% {:.0} ms; \
         p99 on replica 0 itself (no feed) {:.0} ms, on the others (through the feed) {:.0} ms: ratio {:.2}",
        args.replicas,
        ms(p50),
        ms(p99),
        ms(p100),
        ms(d99),
        ms(f99),
        f99.as_secs_f64() / d99.as_secs_f64().max(0.001)
    );

    // 5. Every replica SIGKILLed, then restarted on the same ports.
    for replica in &mut replicas {
        replica.kill9().await;
    }
    wait_until(
        "every session noticed the kills",
        Duration::from_secs(300),
        || total(&loaders, "live") == 0,
    )
    .await?;
    let restarted = Instant::now();
    // All at once, as an operator's service manager restarts them.
    futures::future::join_all(replicas.iter_mut().map(CoordinatorProcess::restart)).await;
    let back = wait_all_live(&loaders, n, restarted, "back").await;
    let back_s = back
        .as_ref()
        .map(|_| restarted.elapsed().as_secs_f64())
        .ok();
    println!(
        "5. all {} replicas SIGKILLed and restarted: {} updaters back after {}",
        args.replicas,
        total(&loaders, "live"),
        back_s.map_or("(not all within 900 s)".into(), |s| format!("{s:.1} s"))
    );

    // 2. Baseline: a bare tonic echo server holding one replica's share of the streams.
    for loader in &mut loaders {
        loader.child.start_kill()?;
    }
    drop(loaders);
    drop(replicas);
    let share = args.updaters / args.replicas;
    // Loader 0's updaters again, with the credentials it kept.
    let echo_kib = echo_per_stream(&args, share, shares[0].2.as_ref()).await?;
    let ratio = per_updater / echo_kib.max(0.001);
    println!(
        "2. memory: {per_updater:.1} KiB per updater on the replicas; bare tonic echo holding {share} streams: {echo_kib:.1} KiB per stream; ratio {ratio:.2}"
    );
    println!(
        "{}",
        json!({
            "updaters": n,
            "mode": mode,
            "enrol_s": enrol_s,
            "replicas": args.replicas,
            "loaders": args.loaders,
            "connect_s": connect_time.as_secs_f64(),
            "kib_per_updater": per_updater,
            "echo_kib_per_stream": echo_kib,
            "memory_ratio": ratio,
            "writes_per_heartbeat": writes_per_heartbeat,
            "push_ms": { "p50": ms(p50), "p99": ms(p99), "p100": ms(p100), "held": held,
                "p99_replica0": ms(d99), "p99_others": ms(f99) },
            "all_back_s": back_s,
        })
    );
    Ok(())
}

/// Heartbeats and write statements, summed over the replicas' `/api/v1/stats`.
async fn stats_sum(replicas: &[CoordinatorProcess]) -> anyhow::Result<(u64, u64)> {
    let token = drover_tests::token_for(&replicas[0].grpc_url());
    let mut sum = (0, 0);
    for replica in replicas {
        let stats = fleet::stats_as(replica, token.as_deref()).await?;
        sum.0 += stats["heartbeats"].as_u64().unwrap_or(0);
        sum.1 += stats["store_write_statements"].as_u64().unwrap_or(0);
    }
    Ok(sum)
}

/// RSS per stream of a bare echo server (its own process, over the replicas' TLS if `tls`
/// is given: their certificates are beside the CA) holding `count` streams from one loader
/// process.
async fn echo_per_stream(
    args: &ReplicasArgs,
    count: usize,
    tls: Option<&LoaderTls>,
) -> anyhow::Result<f64> {
    let tls_dir = tls.and_then(|tls| tls.ca_file.parent());
    let echo = crate::start_echo(tls_dir).await?;
    let pid = echo.pid;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = stats::rss_kib(pid)?;
    let mut loader = Loader::start(args, &echo.url, 0, count, tls).await?;
    wait_until(
        "the echo loader's credentials",
        Duration::from_secs(60),
        || loader.counter("enrolled") >= count as u64,
    )
    .await?;
    loader.send("connect").await?;
    wait_until(
        "the echo server's streams",
        Duration::from_secs(600),
        || loader.counter("live") >= count as u64,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loaded = stats::rss_kib(pid)?;
    Ok(loaded.saturating_sub(idle) as f64 / count as f64)
}
