//! Retention: events, update reports and audit records are kept by age and by count, pruned by a
//! supervised task in small batches with pauses between them, so neither a long backlog
//! nor a steady fleet makes the store grow without bound or holds its write lock for long.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    domain::now_ms,
    error::Result,
    store::{PruneTable, Store},
};

#[derive(Debug, Clone)]
pub struct RetentionConfig {
    pub events_max_age: Duration,
    pub events_max_rows: u64,
    pub reports_max_age: Duration,
    pub reports_max_rows: u64,
    pub audit_max_age: Duration,
    pub audit_max_rows: u64,
    /// Rows per DELETE statement.
    pub batch: u32,
    /// Pause between two batches, so pruning never starves the fleet's own writes.
    pub pause: Duration,
    /// Time between pruning passes.
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events_max_age: Duration::from_secs(30 * 24 * 3600),
            events_max_rows: 1_000_000,
            reports_max_age: Duration::from_secs(90 * 24 * 3600),
            reports_max_rows: 1_000_000,
            audit_max_age: Duration::from_secs(365 * 24 * 3600),
            audit_max_rows: 1_000_000,
            batch: 1_000,
            pause: Duration::from_millis(200),
            interval: Duration::from_secs(600),
        }
    }
}

/// The supervised retention task: a pass at start, then one per interval.
pub async fn run_retention(
    store: Arc<Store>,
    config: RetentionConfig,
    shutdown: CancellationToken,
) {
    let mut timer = tokio::time::interval(config.interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        for (table, max_age, max_rows) in [
            (
                PruneTable::Events,
                config.events_max_age,
                config.events_max_rows,
            ),
            (
                PruneTable::Reports,
                config.reports_max_age,
                config.reports_max_rows,
            ),
            (
                PruneTable::Audit,
                config.audit_max_age,
                config.audit_max_rows,
            ),
        ] {
            match prune(&store, table, max_age, max_rows, &config, &shutdown).await {
                Ok(0) => {}
                Ok(rows) => tracing::info!(table = table.name(), rows, "pruned old rows"),
                // Not fatal: the next pass tries again.
                Err(err) => tracing::warn!(table = table.name(), error = %err, "pruning failed"),
            }
        }
    }
}

/// One pass over one table; returns the rows removed. Stops early on shutdown.
pub async fn prune(
    store: &Store,
    table: PruneTable,
    max_age: Duration,
    max_rows: u64,
    config: &RetentionConfig,
    shutdown: &CancellationToken,
) -> Result<u64> {
    let older_than_ms =
        now_ms().saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
    let plan = store.plan_prune(table, older_than_ms, max_rows).await?;
    let mut total = 0;
    loop {
        let deleted = store.prune_batch(&plan, config.batch).await?;
        total += deleted;
        if deleted < u64::from(config.batch) {
            return Ok(total);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(total),
            _ = tokio::time::sleep(config.pause) => {}
        }
    }
}
