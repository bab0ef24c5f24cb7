//! `drover-loadgen loader`: one process of simulated updaters for the replicas benchmark
//! (each process here may hold at most 20,000 open files, so 100,000 updaters need several).
//! Updater `i` (from `--offset`) connects to replica `i mod R`. The parent drives it over
//! stdin and reads its counters from stdout, one JSON line every 200 ms:
//!
//! - stdin `push VERSION AT_MS`: from now on, note when each updater first holds a
//!   directive for VERSION; `AT_MS` is when the change was sent (Unix ms).
//! - stdin `latencies`: print `{"latencies_ms": [...]}` (Unix-clock delay of each updater,
//!   in order, `null` for one that does not hold the pushed version), then carry on.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use clap::Parser;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::load;

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
}

pub async fn run(args: LoaderArgs) -> anyhow::Result<()> {
    crate::stats::raise_fd_limit()?;
    let shared = load::Shared::spread(
        args.urls.clone(),
        args.sources,
        Duration::from_secs(args.heartbeat_secs),
        args.count,
        args.offset,
    );
    for local in 0..args.count {
        tokio::spawn(load::updater(shared.clone(), local));
        if local % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    let pushed_at = Arc::new(parking_lot::Mutex::new(0i64));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
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
