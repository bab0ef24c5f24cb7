//! drover-echo: the baseline of drover-loadgen's memory and heartbeat comparisons, a bare
//! tonic + rustls server speaking drover.v1 (`echo.rs`), in a process of its own. A binary
//! of its own so that it keeps the system allocator, as the coordinator does, while
//! drover-loadgen's simulated fleet uses another.
#![forbid(unsafe_code)]

#[path = "../echo.rs"]
mod echo;
#[allow(dead_code)]
#[path = "../stats.rs"]
mod stats;

use std::path::Path;

/// Serves on an ephemeral loopback port, over mutual TLS with the coordinator's `tls/`
/// directory if one is given, and prints the address.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One rustls provider (ring) for the process: the build has two (see use_ring_crypto).
    drover_updater::connection::use_ring_crypto();
    let tls_dir = std::env::args().nth(1);
    stats::raise_fd_limit()?;
    let addr = echo::serve(tls_dir.as_deref().map(Path::new)).await?;
    println!("{addr}");
    std::future::pending::<()>().await;
    Ok(())
}
