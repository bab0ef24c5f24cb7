//! A simulated fleet: many updaters in one process, each with its own real gRPC connection
//! to the coordinator, an in-memory state and a simulated installer. For demos and load.

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Health, StateStore, UpdaterConfig, backoff::Backoff, install::Installer};

#[derive(Debug, Clone)]
pub struct SimulationConfig {
    pub coordinator: String,
    /// The CA to trust for an `https://` coordinator.
    pub coordinator_ca: Option<tonic::transport::Certificate>,
    pub count: usize,
    pub groups: Vec<String>,
    pub channel: String,
    /// Initial agent versions, spread across the fleet.
    pub versions: Vec<String>,
    pub unhealthy_fraction: f64,
    pub broken_versions: Vec<String>,
    pub id_prefix: String,
    /// Connections are opened over this span, so the coordinator is not hit all at once.
    pub ramp_up: Duration,
    pub recheck_interval: Option<Duration>,
    pub seed: u64,
}

pub async fn run(config: SimulationConfig, shutdown: CancellationToken) {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut tasks = Vec::with_capacity(config.count);
    let step = config
        .ramp_up
        .checked_div(config.count.max(1) as u32)
        .unwrap_or_default();
    for i in 0..config.count {
        let agent_id = format!("{}-{i:05}", config.id_prefix);
        let group = config.groups[i % config.groups.len().max(1)].clone();
        let version = config.versions[rng.random_range(0..config.versions.len().max(1))].clone();
        let health = if rng.random_bool(config.unhealthy_fraction.clamp(0.0, 1.0)) {
            Health::Unhealthy
        } else {
            Health::Healthy
        };
        let updater = UpdaterConfig {
            coordinator: config.coordinator.clone(),
            coordinator_ca: config.coordinator_ca.clone(),
            hostname: format!("{agent_id}.sim"),
            group: group.clone(),
            channel: config.channel.clone(),
            labels: vec![("simulated".into(), "true".into())],
            installer: Installer::Simulated {
                broken_versions: config.broken_versions.clone(),
            },
            initial_agent_version: Some(version),
            recheck_interval: config.recheck_interval,
            backoff: Backoff::default(),
            health: None,
            initial_health: health,
            health_grace: Duration::from_secs(30),
            clock: crate::Clock::default(),
        };
        // Each updater's log lines name it, so a test can follow one agent's directives.
        let span = tracing::info_span!("sim", agent = %agent_id);
        let store = StateStore::Memory { agent_id };
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(
            async move {
                if let Err(err) = crate::run(updater, store, stop).await {
                    tracing::error!(error = format!("{err:#}"), "simulated updater stopped");
                }
            }
            .instrument(span),
        ));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(step) => {}
        }
    }
    futures::future::join_all(tasks).await;
}
