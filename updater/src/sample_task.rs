//! The sampling task: every `interval`, what the agent's process looked like (RSS, CPU), how
//! its probes did, and whether it restarted. One sample waits for the next heartbeat, so the
//! rate is bounded by the interval whatever the heartbeats do.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use drover_proto::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::{
    sample::{SampleSource, Seen, merged, parse_cpu_ticks, parse_rss_kib, sample},
    shared::Shared,
};

pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let Some(config) = shared.config.samples.clone() else {
        return;
    };
    let (pid_file, unit) = match &config.source {
        SampleSource::Process { pid_file, unit } => (pid_file.clone(), unit.clone()),
        SampleSource::Simulated {
            seed,
            leaky_versions,
        } => {
            return simulated(shared, shutdown, config.interval, *seed, leaky_versions).await;
        }
        SampleSource::Workload { api, workload } => {
            return pods(shared, shutdown, config.interval, api, workload).await;
        }
    };
    let mut seen: Option<Seen> = None;
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
        let span = last.elapsed();
        last = tokio::time::Instant::now();
        let now = read_process(pid_file.as_deref(), unit.as_deref()).await;
        let tally = std::mem::take(&mut *shared.probe_tally.lock());
        let sample = sample(span, seen, now, tally);
        if now.is_some() {
            seen = now;
        }
        publish(&shared, sample);
    }
}

/// Hands a sample to the next heartbeat. One not sent yet (heartbeats slower than samples)
/// is merged with it, not replaced: restarts and exposure must not be lost, or a rate would
/// be judged on a fraction of the time.
fn publish(shared: &Shared, sample: pb::HealthSample) {
    let mut pending = shared.pending_sample.lock();
    *pending = Some(match pending.take() {
        Some(older) => merged(older, sample),
        None => sample,
    });
}

async fn read_process(pid_file: Option<&std::path::Path>, unit: Option<&str>) -> Option<Seen> {
    let (pid, unit_restarts) = if let Some(unit) = unit {
        let run = crate::unit_watch::read(unit).await.ok()?;
        (u32::try_from(run.main_pid).ok()?, run.restarts)
    } else {
        let text = tokio::fs::read_to_string(pid_file?).await.ok()?;
        (text.trim().parse().ok()?, 0)
    };
    if pid == 0 {
        return None;
    }
    Some(Seen {
        pid,
        unit_restarts,
        cpu_ticks: cpu_ticks(pid),
        rss_kib: rss_kib(pid),
    })
}

/// A workload's samples: its pods' restarts since the last sample (pods that are new since
/// then start at their count), and the probe's results.
async fn pods(
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    interval: Duration,
    api: &crate::kube::KubeApi,
    workload: &crate::kube::WorkloadRef,
) {
    let mut before: Option<BTreeMap<String, u64>> = None;
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let span = last.elapsed();
        last = tokio::time::Instant::now();
        let now = pod_restarts(api, workload).await;
        if let Err(err) = &now {
            tracing::debug!(error = %err, "cannot read the workload's pods for a health sample");
        }
        let now = now.ok();
        let tally = std::mem::take(&mut *shared.probe_tally.lock());
        let mut sample = sample(span, None, None, tally);
        if let (Some(b), Some(n)) = (&before, &now) {
            let restarts: u64 = n
                .iter()
                .filter_map(|(pod, count)| Some(count.saturating_sub(*b.get(pod)?)))
                .sum();
            sample.restarts = u32::try_from(restarts).unwrap_or(u32::MAX);
            sample.span_ms = u32::try_from(span.as_millis()).unwrap_or(u32::MAX);
        }
        if now.is_some() {
            before = now;
        }
        publish(&shared, sample);
    }
}

async fn pod_restarts(
    api: &crate::kube::KubeApi,
    workload: &crate::kube::WorkloadRef,
) -> Result<BTreeMap<String, u64>, String> {
    let current = api.workload(workload).await?;
    let pods = api
        .pods(&workload.namespace, &current.label_selector())
        .await?;
    Ok(pods
        .iter()
        .map(|p| (p.metadata.name.clone(), p.restarts()))
        .collect())
}

/// A simulated agent's samples: its own level (from `seed`), 2 % noise, +50 % RSS on a
/// leaky version.
async fn simulated(
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    interval: Duration,
    seed: u64,
    leaky_versions: &[String],
) {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let rss_kib = rng.random_range(40_000.0..60_000.0);
    let latency_ms = rng.random_range(3.0..8.0);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let version = shared.state.lock().await.agent_version.clone();
        let leaking = version.is_some_and(|v| leaky_versions.contains(&v));
        let factor = if leaking { 1.5 } else { 1.0 };
        let noise = |rng: &mut StdRng| 1.0 + rng.random_range(-0.02..0.02);
        let span_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
        let sample = pb::HealthSample {
            span_ms,
            rss_kib: Some((rss_kib * factor * noise(&mut rng)) as u64),
            cpu_percent: Some(2.0 * noise(&mut rng)),
            probe_latency_ms: Some(latency_ms * noise(&mut rng)),
            probes_ok: (span_ms / 1_000).max(1),
            probes_failed: 0,
            restarts: 0,
        };
        publish(&shared, sample);
    }
}

/// `VmRSS` of /proc/<pid>/status, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss_kib(&status)
}

/// utime + stime of /proc/<pid>/stat, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}
