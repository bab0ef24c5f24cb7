//! `drover-loadgen`'s idle-updater step: a real `drover-updater` (as shipped, enrolled, over
//! TLS) holding a session with nothing to do, its CPU over 20 s and its resident memory.

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::process::Command;

use crate::stats;

pub async fn idle_updater(
    updater_bin: &Path,
    bin_dir: &Path,
    url: &str,
    work: &Path,
) -> anyhow::Result<Value> {
    let state = work.join("idle-updater");
    if let Some((enrolled, stderr)) = drover_tests::enrol::enrol(url, &state, "idle-1", "default") {
        anyhow::ensure!(enrolled, "drover-updater enroll failed: {stderr}");
    }
    anyhow::ensure!(
        updater_bin.exists(),
        "{} is missing; build it with `cargo build --profile updater -p drover-updater`, or \
         name another with --updater-bin",
        updater_bin.display()
    );
    let mut command = Command::new(updater_bin);
    command.args([
        "run",
        "--coordinator",
        url,
        "--agent-id",
        "idle-1",
        "--channel",
        "bench",
    ]);
    if let Some(ca) = drover_tests::ca_file_for(url) {
        command.arg("--ca-file").arg(ca);
    }
    let mut idle = command
        .args(["--install-command", "true", "--agent-version", "1.0.1"])
        .arg("--state-dir")
        .arg(&state)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(5)).await; // a fixed measurement window
    let pid = idle.id().unwrap_or_default();
    let cpu_before = stats::cpu_time(pid)?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let cpu = stats::cpu_time(pid)? - cpu_before;
    let rss_kib = stats::rss_kib(pid)?;
    // Anonymous memory (heap, stacks) apart from the binary's and libraries' own pages.
    let anon_kib = stats::status_kib(pid, "RssAnon")?;
    let file_kib = stats::status_kib(pid, "RssFile")?;
    let threads = stats::status_kib(pid, "Threads")?;
    idle.start_kill()?;
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
    Ok(json!({
        "rss_kib": rss_kib, "rss_anon_kib": anon_kib, "rss_file_kib": file_kib,
        "threads": threads, "cpu_percent": cpu.as_secs_f64() / 20.0 * 100.0,
        "binary_bytes": { "drover-coordinator": size(&bin_dir.join("drover-coordinator")),
            "drover-updater (idle, as shipped)": size(updater_bin),
            "droverctl": size(&bin_dir.join("droverctl")) },
    }))
}
