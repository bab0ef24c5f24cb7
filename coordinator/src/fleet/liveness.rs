//! Background work of the fleet: batched last-seen flushes, settings refreshes, and the
//! rollout reconcile loop.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Fleet;
use crate::domain::now_ms;

/// Runs until `shutdown`; flushes liveness one last time on the way out.
pub async fn run_background_tasks(fleet: Arc<Fleet>, shutdown: CancellationToken) {
    let mut flush = tokio::time::interval(fleet.config.liveness_flush_interval);
    let mut refresh = tokio::time::interval(fleet.config.view_refresh_interval);
    let mut reconcile = tokio::time::interval(fleet.config.reconcile_interval);
    for timer in [&mut flush, &mut refresh, &mut reconcile] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        let reconcile_due = async {
            tokio::select! {
                _ = reconcile.tick() => {}
                _ = fleet.reconcile_now.notified() => {}
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = reconcile_due => {
                if let Err(err) = fleet.reconcile_rollouts().await {
                    tracing::warn!(error = %err, "rollout reconcile failed; retrying on the next tick");
                }
            }
            _ = flush.tick() => flush_liveness(&fleet).await,
            _ = refresh.tick() => {
                let refreshed = fleet.refresh_settings().await.map(|changed| if changed { fleet.push_all(); });
                if let Err(err) = refreshed {
                    tracing::warn!(error = %err, "could not refresh channels from the store");
                }
            }
        }
    }
    flush_liveness(&fleet).await;
}

/// Writes last-seen for every agent heard from since the previous flush, in a few statements.
pub async fn flush_liveness(fleet: &Fleet) {
    let now = now_ms();
    let sessions = fleet.sessions.all();
    let due: Vec<_> = sessions
        .iter()
        .filter(|s| {
            let live = s.live.lock();
            live.last_seen_ms > live.flushed_seen_ms
        })
        .collect();
    if due.is_empty() {
        return;
    }
    let ids: Vec<String> = due.iter().map(|s| s.agent_id.clone()).collect();
    match fleet.store().touch_agents(&ids, now).await {
        Ok(()) => {
            for session in due {
                let mut live = session.live.lock();
                live.flushed_seen_ms = live.last_seen_ms;
            }
        }
        // Not fatal: last-seen is advisory; the next flush retries.
        Err(err) => tracing::warn!(error = %err, agents = ids.len(), "liveness flush failed"),
    }
}
