//! Background work of the fleet, as supervised tasks: the rollout reconcile loop, batched
//! last-seen flushes, settings refreshes, and a watch on the group-commit writer.

use std::{sync::Arc, time::Duration};

use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Fleet;
use crate::{
    domain::now_ms,
    supervisor::{Policy, Supervisor},
};

/// Spawns the fleet's background tasks. Each restarts after a failure: a pass that panics
/// on some state may well succeed on the next, and targets keep being served meanwhile
/// (readiness reports the task down until it runs again).
pub fn run_background_tasks(fleet: &Arc<Fleet>, supervisor: &Supervisor) {
    let f = fleet.clone();
    supervisor.spawn("reconciler", Policy::Restart, move |shutdown| {
        reconcile_loop(f.clone(), shutdown)
    });
    let f = fleet.clone();
    supervisor.spawn("liveness-flush", Policy::Restart, move |shutdown| {
        flush_loop(f.clone(), shutdown)
    });
    let feed = fleet.clone();
    supervisor.spawn("change-feed", Policy::Restart, move |shutdown| {
        let fleet = feed.clone();
        async move {
            if let Err(err) = super::change_feed::run(fleet, shutdown).await {
                tracing::warn!(error = %err, "the change feed stopped; restarting it");
            }
        }
    });
    let f = fleet.clone();
    supervisor.spawn("reconciler-lease", Policy::Restart, move |shutdown| {
        super::replicas::run_lease(f.clone(), shutdown)
    });
    let f = fleet.clone();
    supervisor.spawn("settings-refresh", Policy::Restart, move |shutdown| {
        refresh_loop(f.clone(), shutdown)
    });
    // The group-commit writer runs on its own (see `AgentWriter`); this watches it. If it
    // ends, no updater's write can commit: fail readiness and exit non-zero.
    let f = fleet.clone();
    supervisor.spawn("agent-writer", Policy::ExitProcess, move |shutdown| {
        let fleet = f.clone();
        async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = fleet.writer_ended() => {}
            }
        }
    });
}

fn every(period: Duration) -> Interval {
    let mut timer = tokio::time::interval(period);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

async fn reconcile_loop(fleet: Arc<Fleet>, shutdown: CancellationToken) {
    // Tests hold the first pass back, so updaters reconnect before any decision is made.
    crate::failpoint::pause_point!("reconcile.first_pass");
    let mut reconcile = every(fleet.config.reconcile_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = reconcile.tick() => {}
            _ = fleet.reconcile_now.notified() => {}
        }
        if let Err(err) = fleet.reconcile_rollouts().await {
            tracing::warn!(error = %err, "rollout reconcile failed; retrying on the next tick");
        }
    }
}

/// Flushes one last time on the way out.
async fn flush_loop(fleet: Arc<Fleet>, shutdown: CancellationToken) {
    let mut flush = every(fleet.config.liveness_flush_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = flush.tick() => flush_liveness(&fleet).await,
        }
    }
    flush_liveness(&fleet).await;
}

async fn refresh_loop(fleet: Arc<Fleet>, shutdown: CancellationToken) {
    let mut refresh = every(fleet.config.view_refresh_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = refresh.tick() => {}
        }
        match fleet.refresh_settings().await {
            Ok(true) => {
                fleet.push_all();
            }
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "could not refresh channels from the store"),
        }
        // Rollouts another replica changed, if its announcement was lost.
        if let Err(err) = fleet.check_rollouts_current().await {
            tracing::warn!(error = %err, "could not check rollouts against the store");
        }
        // Credentials created or revoked by another replica.
        if let Err(err) = fleet.reload_credentials().await {
            tracing::warn!(error = %err, "could not refresh admin credentials from the store");
        }
    }
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
