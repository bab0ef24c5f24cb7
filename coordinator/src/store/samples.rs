//! The version timeline: one sample of agents by version per minute, bounded by age.

use super::{Store, on_connection};
use crate::error::Result;

/// Rows one timeline read returns at most (720 h of samples with a few versions each).
const MAX_SAMPLE_ROWS: i64 = 200_000;

impl Store {
    /// Writes one sample (version → agents) at `at_ms` and deletes samples before
    /// `delete_before_ms`, in one transaction.
    pub async fn record_version_sample(
        &self,
        at_ms: i64,
        counts: &[(String, u64)],
        delete_before_ms: i64,
    ) -> Result<()> {
        let _write = self.write_gate().await;
        on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            for (version, agents) in counts {
                sqlx::query(
                    "INSERT INTO version_samples (at_ms, agent_version, agents) VALUES ($1, $2, $3) \
                     ON CONFLICT (at_ms, agent_version) DO UPDATE SET agents = excluded.agents",
                )
                .bind(at_ms)
                .bind(version)
                .bind(i64::try_from(*agents).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM version_samples WHERE at_ms < $1")
                .bind(delete_before_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        self.count_writes(counts.len() as u64 + 1);
        Ok(())
    }

    /// Samples at or after `since_ms`, oldest first: (at, version, agents).
    pub async fn version_samples(&self, since_ms: i64) -> Result<Vec<(i64, String, u64)>> {
        let rows: Vec<(i64, String, i64)> = on_connection!(self, conn => {
            sqlx::query_as(
                "SELECT at_ms, agent_version, agents FROM version_samples WHERE at_ms >= $1 \
                 ORDER BY at_ms, agent_version LIMIT $2",
            )
            .bind(since_ms)
            .bind(MAX_SAMPLE_ROWS)
            .fetch_all(conn)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(at, version, n)| (at, version, n.max(0) as u64))
            .collect())
    }
}
