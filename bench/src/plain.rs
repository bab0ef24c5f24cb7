//! The plaintext coordinator the older scenarios (`churn`, `replicas`) start:
//! `--insecure` on loopback, so their figures stay comparable with earlier runs. The
//! default run (`fleet.rs`) starts its coordinator through the test harness instead, in the
//! default mode.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use tokio::process::{Child, Command};

pub struct Coordinator {
    pub child: Child,
    pub args: Vec<String>,
    pub grpc: String,
    pub http: String,
}

impl Coordinator {
    pub async fn start(bin: &Path, args: Vec<String>, dir: &Path) -> anyhow::Result<Self> {
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
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    pub async fn stats(&self) -> anyhow::Result<serde_json::Value> {
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
pub fn coordinator_args(database: &str, heartbeat_secs: u64) -> Vec<String> {
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
