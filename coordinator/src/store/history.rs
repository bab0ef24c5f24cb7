//! History reads (issue #10): every rollout ever started, a rollout's events, an agent's
//! update reports and events. Read-only, bounded by the caller's limit, newest first.

use drover_rules::EventKind;

use super::{
    Store, on_connection,
    rollouts::{EVENT_COLUMNS, EventTuple, ROLLOUT_COLUMNS, RolloutTuple, event, row},
};
use crate::{
    domain::{UpdateOutcome, UpdateReport},
    error::{DroverError, Result},
    store::{Event, RolloutRow},
};

/// An update report as stored, with the time the coordinator committed it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReport {
    pub report: UpdateReport,
    pub received_ms: i64,
}

type ReportTuple = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
    i64,
);

impl Store {
    /// Up to `limit` rollouts, newest first (by creation, then id), continuing after
    /// `(created_ms, rollout_id)` when given.
    pub async fn rollouts_page(
        &self,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<RolloutRow>> {
        let (after_ms, after_id) = after.unwrap_or((i64::MAX, ""));
        // Without a cursor every row qualifies: created_ms < i64::MAX.
        let sql = format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts \
             WHERE created_ms < $1 OR (created_ms = $1 AND rollout_id < $2) \
             ORDER BY created_ms DESC, rollout_id DESC LIMIT $3"
        );
        let rows: Vec<RolloutTuple> = on_connection!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(after_ms)
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(conn)
                .await?
        });
        Ok(rows.into_iter().map(row).collect())
    }

    /// The newest `limit` events of a rollout that are not agents' update reports (those
    /// belong to the agents' histories), oldest first.
    pub async fn rollout_events(&self, rollout_id: &str, limit: u32) -> Result<Vec<Event>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE rollout_id = $1 AND kind <> $2 \
             ORDER BY event_id DESC LIMIT $3"
        );
        let rows: Vec<EventTuple> = on_connection!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(rollout_id)
                .bind(EventKind::Update.as_str())
                .bind(i64::from(limit))
                .fetch_all(conn)
                .await?
        });
        let mut events: Vec<Event> = rows.into_iter().map(event).collect();
        events.reverse();
        Ok(events)
    }

    /// The agent's newest `limit` update reports, newest first (by the updater's finish time).
    pub async fn agent_reports(&self, agent_id: &str, limit: u32) -> Result<Vec<StoredReport>> {
        let rows: Vec<ReportTuple> = on_connection!(self, conn => {
            sqlx::query_as(
                "SELECT attempt_id, from_version, to_version, outcome, error, started_ms, \
                 finished_ms, directive_id, rollout_id, received_ms FROM update_reports \
                 WHERE agent_id = $1 ORDER BY finished_ms DESC, attempt_id DESC LIMIT $2",
            )
            .bind(agent_id)
            .bind(i64::from(limit))
            .fetch_all(conn)
            .await?
        });
        rows.into_iter()
            .map(
                |(
                    attempt_id,
                    from_version,
                    to_version,
                    outcome,
                    error,
                    started_ms,
                    finished_ms,
                    directive_id,
                    rollout_id,
                    received_ms,
                )| {
                    let outcome = UpdateOutcome::parse(&outcome).ok_or_else(|| {
                        DroverError::Internal(format!(
                            "report {attempt_id} of agent {agent_id} has the unknown outcome \
                             '{outcome}' in the store"
                        ))
                    })?;
                    Ok(StoredReport {
                        report: UpdateReport {
                            attempt_id,
                            from_version,
                            to_version,
                            outcome,
                            error,
                            started_ms,
                            finished_ms,
                            directive_id,
                            rollout_id,
                        },
                        received_ms,
                    })
                },
            )
            .collect()
    }
}
