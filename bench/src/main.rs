//! drover-loadgen: measures a coordinator under simulated fleets. Prints every number it
//! measures, plus a JSON summary on the last line. Not a test: it asserts nothing.
#![forbid(unsafe_code)]

mod churn;
mod echo;
mod enrolled;
mod fleet;
mod idle;
mod load;
mod loader;
mod replicas;
mod sampler;
mod scale;
mod stats;
mod storm;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use clap::Parser;

/// How a scenario's coordinators are spoken to: the default mode, or plaintext
/// (`--insecure`), which every scenario offers as a labelled comparison.
fn mode(insecure: bool) -> &'static str {
    if insecure {
        "plaintext (--insecure)"
    } else {
        "TLS, enrolled identities"
    }
}

/// `builder` in that mode.
fn in_mode(
    builder: drover_tests::CoordinatorBuilder,
    insecure: bool,
) -> drover_tests::CoordinatorBuilder {
    if insecure {
        builder.insecure()
    } else {
        builder
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
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("echo-server") => {
            // The memory baseline runs the echo server in a process of its own.
            stats::raise_fd_limit()?;
            let addr = echo::serve(args.get(2).map(Path::new)).await?;
            println!("{addr}");
            std::future::pending::<()>().await;
            Ok(())
        }
        Some("storm") => storm::run(storm::StormArgs::parse_from(args.iter().skip(1))).await,
        Some("churn") => churn::run(churn::ChurnArgs::parse_from(args.iter().skip(1))).await,
        Some("loader") => loader::run(loader::LoaderArgs::parse_from(args.iter().skip(1))).await,
        Some("dashboard") => {
            scale::dashboard(scale::ScaleArgs::parse_from(args.iter().skip(1))).await
        }
        Some("fence") => scale::fence(scale::ScaleArgs::parse_from(args.iter().skip(1))).await,
        Some("replicas") => {
            replicas::run(replicas::ReplicasArgs::parse_from(args.iter().skip(1))).await
        }
        _ => fleet::run(fleet::FleetArgs::parse()).await,
    }
}
