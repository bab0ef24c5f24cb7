//! `drover-loadgen loader`: one process of simulated updaters for the replicas benchmark
//! (each process here may hold at most 20,000 open files, so 100,000 updaters need several).
//! Updater `i` (from `--offset`) connects to replica `i mod R`. In the default mode
//! (`--ca-file`) the loader first enrols its updaters, each at the replica it will use, or
//! reads their credentials from `--certs` if an earlier loader left them there. It prints
//! `{"enrolled": N}` and waits for `connect`; then one JSON line of counters every 200 ms.
//! The parent drives it over stdin:
//!
//! - `connect`: start the updaters.
//! - `push VERSION AT_MS`: from now on, note when each updater first holds a directive
//!   for VERSION; `AT_MS` is when the change was sent (Unix ms).
//! - `latencies`: print `{"latencies_ms": [...]}` (Unix-clock delay of each updater, in
//!   order, `null` for one that does not hold the pushed version), then carry on.

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use clap::Parser;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    enrolled,
    load::{self, FleetTls},
};

#[derive(Parser, Debug)]
pub struct LoaderArgs {
    /// The replicas' gRPC URLs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    urls: Vec<String>,
    /// The first updater's index (its id is `load-{index:06}`).
    #[arg(long)]
    offset: usize,
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 8)]
    sources: u8,
    #[arg(long, default_value_t = 10)]
    heartbeat_secs: u64,
    /// The replicas' CA: mutual TLS with enrolled identities (none: plaintext).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Where the updaters' credentials are kept: read if present, else enrolled and saved.
    #[arg(long, requires = "ca_file")]
    certs: Option<PathBuf>,
    /// Join tokens, `GROUP=SECRET` comma-separated, for enrolling.
    #[arg(long, value_delimiter = ',')]
    tokens: Vec<String>,
}

/// The loader's TLS: its updaters' credentials, enrolled now or read back.
async fn fleet_tls(args: &LoaderArgs) -> anyhow::Result<Option<FleetTls>> {
    let Some(ca_file) = &args.ca_file else {
        return Ok(None);
    };
    let ca = std::fs::read(ca_file)?;
    let agents = match &args.certs {
        Some(path) if path.exists() => enrolled::load(path)?,
        certs => {
            let tokens: Vec<(String, String)> = args
                .tokens
                .iter()
                .filter_map(|t| t.split_once('='))
                .map(|(g, s)| (g.to_string(), s.to_string()))
                .collect();
            let agents =
                enrolled::enrol_range(&args.urls, &ca, &tokens, args.offset, args.count).await?;
            if let Some(path) = certs {
                enrolled::save(path, &agents)?;
            }
            agents
        }
    };
    anyhow::ensure!(
        agents.len() >= args.count,
        "{} credentials for {} updaters",
        agents.len(),
        args.count
    );
    Ok(Some(FleetTls {
        server_ca_pem: Arc::new(ca),
        agents: Arc::new(agents),
    }))
}

pub async fn run(args: LoaderArgs) -> anyhow::Result<()> {
    crate::stats::raise_fd_limit()?;
    let tls = fleet_tls(&args).await?;
    println!("{}", serde_json::json!({ "enrolled": args.count }));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let Some(line) = lines.next_line().await? else {
            return Ok(());
        };
        if line.trim() == "connect" {
            break;
        }
    }
    let shared = load::Shared::spread(
        args.urls.clone(),
        args.sources,
        Duration::from_secs(args.heartbeat_secs),
        args.count,
        args.offset,
        tls,
    );
    for local in 0..args.count {
        tokio::spawn(load::updater(shared.clone(), local));
        if local % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    let pushed_at = Arc::new(parking_lot::Mutex::new(0i64));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let seen = shared.push_seen.iter().filter(|s| s.get().is_some()).count();
                println!(
                    "{}",
                    serde_json::json!({
                        "live": shared.live.load(Ordering::Relaxed),
                        "errors": shared.errors.load(Ordering::Relaxed),
                        "heartbeats": shared.heartbeats.load(Ordering::Relaxed),
                        "push_seen": seen,
                    })
                );
            }
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["push", version, at] => {
                        *pushed_at.lock() = at.parse().unwrap_or_default();
                        *shared.push_target.lock() = (*version).to_string();
                    }
                    ["latencies"] => {
                        let at = *pushed_at.lock();
                        // In updater order (`null`: not held), so the parent can tell which
                        // replica each updater was on.
                        let delays: Vec<Option<i64>> = shared
                            .push_seen_unix_ms
                            .iter()
                            .map(|s| s.get().map(|seen| seen - at))
                            .collect();
                        println!("{}", serde_json::json!({ "latencies_ms": delays }));
                    }
                    _ => anyhow::bail!("unknown command {line:?}"),
                }
            }
        }
    }
}
