//! The audit log: who asked for what, and how it ended. A change's record is written by
//! `insert_events!` in the change's own transaction (from its admin event's `audit`); a
//! refusal or a dry run, which change nothing, get a transaction of their own.

use drover_rules::{AuditResult, AuditRole};

use super::{Store, on_connection};
use crate::error::Result;

/// What the audit log keeps of one admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at_ms: i64,
    pub actor: String,
    pub role: AuditRole,
    /// The API method, e.g. `SetChannelVersion`.
    pub action: String,
    /// What it acted on: a channel, group, agent, or the channel of a rollout.
    pub target: String,
    pub result: AuditResult,
    /// The change in words, or why it was refused.
    pub detail: String,
}

/// A stored record, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub audit_id: i64,
    pub record: AuditRecord,
}

pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_log \
    (at_ms, actor, role, action, target, result, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Inserts one record on `$tx` (a transaction or a pool).
macro_rules! insert_audit {
    ($tx:expr, $record:expr) => {{
        let record: &$crate::store::AuditRecord = $record;
        sqlx::query($crate::store::audit::INSERT_AUDIT)
            .bind(record.at_ms)
            .bind(&record.actor)
            .bind(record.role.as_str())
            .bind(&record.action)
            .bind(&record.target)
            .bind(record.result.as_str())
            .bind(&record.detail)
            .execute($tx)
            .await?;
    }};
}
pub(super) use insert_audit;

type AuditTuple = (i64, i64, String, String, String, String, String, String);

impl Store {
    /// Records a request that changed nothing (refused, or a dry run).
    pub async fn record_audit(&self, record: &AuditRecord) -> Result<()> {
        let _write = self.write_gate().await;
        on_connection!(self, conn => insert_audit!(conn, record));
        self.count_writes(1);
        Ok(())
    }

    /// Up to `limit` records at or after `since_ms`, newest first.
    pub async fn audit_since(&self, since_ms: i64, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditTuple> = on_connection!(self, conn => {
            sqlx::query_as(
                "SELECT audit_id, at_ms, actor, role, action, target, result, detail \
                 FROM audit_log WHERE at_ms >= $1 ORDER BY at_ms DESC, audit_id DESC LIMIT $2",
            )
            .bind(since_ms)
            .bind(i64::from(limit))
            .fetch_all(conn)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(audit_id, at_ms, actor, role, action, target, result, detail)| AuditEntry {
                    audit_id,
                    record: AuditRecord {
                        at_ms,
                        actor,
                        // Written from the enums; an unknown text (a newer coordinator's) reads
                        // as the most and the least cautious value respectively.
                        role: AuditRole::parse(&role).unwrap_or(AuditRole::Admin),
                        action,
                        target,
                        result: AuditResult::parse(&result).unwrap_or(AuditResult::Refused),
                        detail,
                    },
                },
            )
            .collect())
    }
}
