//! The health task: probes the agent on a timer and publishes its health, counted through
//! `Thresholds`, to the heartbeats and the manager.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{health::Thresholds, shared::Shared};

pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let Some(config) = shared.config.health.clone() else {
        return;
    };
    let mut thresholds = Thresholds::new(config.failure_threshold, config.success_threshold);
    loop {
        let started = tokio::time::Instant::now();
        let result = config.probe.check(config.timeout).await;
        shared
            .probe_tally
            .lock()
            .add(result.is_ok(), started.elapsed());
        if let Err(err) = &result {
            tracing::debug!(error = %err, "health probe failed");
        }
        let health = thresholds.record(result.is_ok());
        let changed = shared
            .health
            .send_if_modified(|current| std::mem::replace(current, health) != health);
        if changed {
            tracing::info!(?health, "agent health changed");
            shared.wake_connection.notify_one();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
    }
}
