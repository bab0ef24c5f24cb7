//! Operations on the store itself rather than the fleet: the readiness write probe and
//! retention (pruning old events and update reports in small batches).

use super::{Store, on_connection};
use crate::error::Result;

/// A table kept by age and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneTable {
    Events,
    /// Update reports; an agent's newest report is never pruned.
    Reports,
    Audit,
}

impl PruneTable {
    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Reports => "update_reports",
            Self::Audit => "audit_log",
        }
    }
}

/// Which rows of a table a pruning pass removes, fixed when the pass starts.
#[derive(Debug, Clone, Copy)]
pub struct Pruned {
    pub table: PruneTable,
    /// Rows older than this (Unix ms) go.
    pub older_than_ms: i64,
    /// Rows at or below this position go, so at most the configured count remains: an
    /// event id, or a report's receive time (rows received in the same millisecond as the
    /// cutoff go too). `i64::MIN` when the table holds no more than the count.
    pub count_cutoff: i64,
}

const EVENTS_BATCH: &str = "DELETE FROM events WHERE event_id IN (\
     SELECT event_id FROM events WHERE at_ms < $1 OR event_id <= $2 \
     ORDER BY event_id LIMIT $3)";

// The count limit applies to records of requests that changed nothing (refusals, dry runs),
// so a flood of refused requests can never push the record of a real change out; changes
// go by age only.
const AUDIT_BATCH: &str = "DELETE FROM audit_log WHERE audit_id IN (\
     SELECT audit_id FROM audit_log WHERE at_ms < $1 OR (result <> 'ok' AND audit_id <= $2) \
     ORDER BY audit_id LIMIT $3)";

// The EXISTS keeps each agent's newest report (by receive time, then attempt id).
// Attempt ids are unique per agent only, so rows are named by (agent, attempt).
const REPORTS_BATCH: &str = "DELETE FROM update_reports WHERE (agent_id, attempt_id) IN (\
     SELECT r.agent_id, r.attempt_id FROM update_reports r \
     WHERE (r.received_ms < $1 OR r.received_ms <= $2) \
       AND EXISTS (SELECT 1 FROM update_reports n WHERE n.agent_id = r.agent_id \
                   AND (n.received_ms > r.received_ms \
                        OR (n.received_ms = r.received_ms AND n.attempt_id > r.attempt_id))) \
     ORDER BY r.received_ms LIMIT $3)";

impl Store {
    /// Proves the store accepts a write: upserts the one row of `readiness_probe`. Not
    /// counted in `write_statements`, which measures the fleet's load on the store.
    pub async fn probe_write(&self, now_ms: i64) -> Result<()> {
        self.timed(
            crate::metrics::StoreOp::ReadinessProbe,
            self.probe_write_untimed(now_ms),
        )
        .await
    }

    async fn probe_write_untimed(&self, now_ms: i64) -> Result<()> {
        let _write = self.write_gate().await;
        on_connection!(self, conn => {
            sqlx::query(
                "INSERT INTO readiness_probe (probe, checked_at_ms) VALUES ('write', $1) \
                 ON CONFLICT (probe) DO UPDATE SET checked_at_ms = excluded.checked_at_ms",
            )
            .bind(now_ms)
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    /// Fixes what a pruning pass over `table` removes: rows older than `older_than_ms`, and
    /// the oldest beyond the newest `keep` rows.
    pub async fn plan_prune(
        &self,
        table: PruneTable,
        older_than_ms: i64,
        keep: u64,
    ) -> Result<Pruned> {
        let offset = i64::try_from(keep).unwrap_or(i64::MAX);
        let sql = match table {
            PruneTable::Events => {
                "SELECT event_id FROM events ORDER BY event_id DESC LIMIT 1 OFFSET $1"
            }
            PruneTable::Reports => {
                "SELECT received_ms FROM update_reports ORDER BY received_ms DESC LIMIT 1 OFFSET $1"
            }
            PruneTable::Audit => {
                "SELECT audit_id FROM audit_log WHERE result <> 'ok' \
                 ORDER BY audit_id DESC LIMIT 1 OFFSET $1"
            }
        };
        let cutoff: Option<(i64,)> = on_connection!(self, conn => {
            sqlx::query_as(sql).bind(offset).fetch_optional(conn).await?
        });
        let count_cutoff = cutoff.map_or(i64::MIN, |(position,)| position);
        Ok(Pruned {
            table,
            older_than_ms,
            count_cutoff,
        })
    }

    /// Deletes at most `batch` rows the plan names, oldest first; returns how many went.
    pub async fn prune_batch(&self, plan: &Pruned, batch: u32) -> Result<u64> {
        self.timed(
            crate::metrics::StoreOp::Prune,
            self.prune_batch_untimed(plan, batch),
        )
        .await
    }

    async fn prune_batch_untimed(&self, plan: &Pruned, batch: u32) -> Result<u64> {
        let sql = match plan.table {
            PruneTable::Events => EVENTS_BATCH,
            PruneTable::Reports => REPORTS_BATCH,
            PruneTable::Audit => AUDIT_BATCH,
        };
        let _write = self.write_gate().await;
        let deleted = on_connection!(self, conn => {
            sqlx::query(sql)
                .bind(plan.older_than_ms)
                .bind(plan.count_cutoff)
                .bind(i64::from(batch))
                .execute(conn)
                .await?
                .rows_affected()
        });
        if deleted > 0 {
            self.count_writes(1);
        }
        Ok(deleted)
    }
}
