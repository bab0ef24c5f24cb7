//! drover-loadgen: measures a coordinator under simulated fleets. Prints every number it
//! measures, plus a JSON summary on the last line. Not a test: it asserts nothing.
#![forbid(unsafe_code)]

mod churn;
mod enrolled;
mod fleet;
mod halt;
mod idle;
mod load;
mod loader;
mod replicas;
mod sampler;
mod scale;
mod stats;
mod storm;

use std::time::{Duration, Instant};

use clap::Parser;

/// The simulated fleet's allocator. glibc's spent half of the machine's CPU inside
/// `_int_malloc` in the six loader processes while 100k TLS sessions reconnected (perf,
/// BENCHMARKS.md), so the fleet, not the coordinators, set the pace. The coordinators and
/// the echo baseline (`drover-echo`, its own binary) keep glibc's: what they are compared
/// on is unchanged.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The echo baseline server (`drover-echo`, beside this binary) in a process of its own,
/// ended when this is dropped.
struct EchoServer {
    _process: tokio::process::Child,
    pid: u32,
    url: String,
}

/// Starts the echo server, over mutual TLS with the certificate, key and CA in `tls_dir` (a
/// coordinator's `tls/`) if given, and reads the address it prints first.
async fn start_echo(tls_dir: Option<&std::path::Path>) -> anyhow::Result<EchoServer> {
    use anyhow::Context;
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe()?;
    let mut command = tokio::process::Command::new(exe.with_file_name("drover-echo"));
    if let Some(dir) = tls_dir {
        command.arg(dir);
    }
    let mut process = command
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = process.stdout.take().context("the echo server's stdout")?;
    let addr = tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await?
        .context("the echo server's address")?;
    let scheme = if tls_dir.is_some() { "https" } else { "http" };
    Ok(EchoServer {
        pid: process.id().unwrap_or_default(),
        url: format!("{scheme}://{}", addr.trim()),
        _process: process,
    })
}

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
    // One rustls provider (ring) for the process: the build has two (see use_ring_crypto).
    drover_updater::connection::use_ring_crypto();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("storm") => storm::run(storm::StormArgs::parse_from(args.iter().skip(1))).await,
        Some("halt") => halt::run(halt::HaltArgs::parse_from(args.iter().skip(1))).await,
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
