//! Rollouts, the event log (rollout transitions, admin actions, update outcomes) and pins.

use drover_rules::{EventKind, RolloutStatus};

use super::{Store, on_connection};
use crate::{
    error::{DroverError, Result},
    failpoint::failpoint,
};

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRow {
    pub rollout_id: String,
    pub channel: String,
    pub spec_json: String,
    pub state_json: String,
    pub status: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Bumped by every committed change; transitions are compare-and-set on it.
    pub revision: i64,
    /// The rollout's trace: `TRACEID-SPANID` in hex (None before tracing existed).
    pub trace_parent: Option<String>,
}

/// One rollout transition, committed as a unit: the new state, the events that explain it
/// and, when the rollout finishes on its target, the channel switch.
#[derive(Debug, Clone)]
pub struct RolloutCommit<'a> {
    pub rollout_id: &'a str,
    /// The revision the change was computed from; another revision in the store means
    /// someone else changed the rollout since, and nothing is written.
    pub expected_revision: i64,
    pub state_json: String,
    pub status: RolloutStatus,
    pub now_ms: i64,
    pub events: Vec<NewEvent>,
    /// `(channel, version)`: the channel serves the target from the same commit on.
    pub channel_switch: Option<(String, String)>,
    /// The reconciler's lease (several replicas): the commit is refused unless it is still
    /// the current one. `None`: the only replica (SQLite) or an admin's verb.
    pub fence: Option<&'a super::lease::Fence>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    pub event_id: i64,
    pub at_ms: i64,
    pub kind: String,
    pub rollout_id: String,
    pub group: String,
    pub agent_id: String,
    pub actor: String,
    pub text: String,
}

/// An event to append; the store assigns the id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub at_ms: i64,
    pub kind: EventKind,
    pub rollout_id: String,
    pub group: String,
    pub agent_id: String,
    pub actor: String,
    pub text: String,
    /// For an admin's change: its audit record, written in the same transaction.
    pub audit: Option<Box<super::AuditRecord>>,
}

/// Most events record an admin's action; the others say so.
impl Default for NewEvent {
    fn default() -> Self {
        Self {
            at_ms: 0,
            kind: EventKind::Admin,
            rollout_id: String::new(),
            group: String::new(),
            agent_id: String::new(),
            actor: String::new(),
            text: String::new(),
            audit: None,
        }
    }
}

pub(super) type RolloutTuple = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
);

pub(super) const ROLLOUT_COLUMNS: &str = "rollout_id, channel, spec_json, state_json, status, \
    created_ms, updated_ms, revision, trace_parent";

pub(super) fn row(
    (
        rollout_id,
        channel,
        spec_json,
        state_json,
        status,
        created_ms,
        updated_ms,
        revision,
        trace_parent,
    ): RolloutTuple,
) -> RolloutRow {
    RolloutRow {
        rollout_id,
        channel,
        spec_json,
        state_json,
        status,
        created_ms,
        updated_ms,
        revision,
        trace_parent,
    }
}

pub(super) type EventTuple = (i64, i64, String, String, String, String, String, String);

pub(super) const EVENT_COLUMNS: &str =
    "event_id, at_ms, kind, rollout_id, group_name, agent_id, actor, text";

pub(super) fn event(
    (event_id, at_ms, kind, rollout_id, group, agent_id, actor, text): EventTuple,
) -> Event {
    Event {
        event_id,
        at_ms,
        kind,
        rollout_id,
        group,
        agent_id,
        actor,
        text,
    }
}

/// Appends events inside an open transaction (`$tx`), so they commit with the change.
macro_rules! insert_events {
    ($tx:expr, $events:expr) => {
        for event in $events {
            sqlx::query(
                "INSERT INTO events (at_ms, kind, rollout_id, group_name, agent_id, actor, text) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(event.at_ms)
            .bind(event.kind.as_str())
            .bind(&event.rollout_id)
            .bind(&event.group)
            .bind(&event.agent_id)
            .bind(&event.actor)
            .bind(&event.text)
            .execute(&mut *$tx)
            .await?;
            if let Some(record) = &event.audit {
                $crate::store::audit::insert_audit!(&mut *$tx, record);
            }
        }
    };
}
pub(super) use insert_events;

impl Store {
    /// Events (with their audit records) that change no other state, in one transaction.
    pub async fn record_events(&self, events: &[NewEvent]) -> Result<()> {
        let _write = self.write_gate().await;
        on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            insert_events!(tx, events);
            tx.commit().await?;
        });
        self.count_writes(events.len() as u64 * 2);
        Ok(())
    }

    /// Creates a rollout and its creation event in one transaction. A second active rollout
    /// on the same channel is refused by the database itself.
    pub async fn create_rollout(&self, rollout: &RolloutRow, events: &[NewEvent]) -> Result<()> {
        self.timed(
            crate::metrics::StoreOp::RolloutCreate,
            self.create_rollout_untimed(rollout, events),
        )
        .await
    }

    async fn create_rollout_untimed(
        &self,
        rollout: &RolloutRow,
        events: &[NewEvent],
    ) -> Result<()> {
        let _write = self.write_gate().await;
        on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO rollouts (rollout_id, channel, spec_json, state_json, status, \
                 created_ms, updated_ms, trace_parent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&rollout.rollout_id)
            .bind(&rollout.channel)
            .bind(&rollout.spec_json)
            .bind(&rollout.state_json)
            .bind(&rollout.status)
            .bind(rollout.created_ms)
            .bind(rollout.updated_ms)
            .bind(&rollout.trace_parent)
            .execute(&mut *tx)
            .await;
            if let Err(sqlx::Error::Database(db)) = &inserted
                && db.is_unique_violation()
            {
                return Err(DroverError::FailedPrecondition(format!(
                    "channel '{}' already has an active rollout; finish or roll it back first",
                    rollout.channel
                )));
            }
            inserted?;
            insert_events!(tx, events);
            tx.commit().await?;
        });
        self.count_writes(1 + events.len() as u64);
        Ok(())
    }

    /// Commits one rollout transition (see [`RolloutCommit`]) as compare-and-set on its
    /// revision. Returns the new revision, or `None` when the stored revision was not the
    /// expected one: then nothing was written, not even the events.
    pub async fn commit_rollout(&self, change: &RolloutCommit<'_>) -> Result<Option<i64>> {
        self.timed(
            crate::metrics::StoreOp::RolloutCommit,
            self.commit_rollout_untimed(change),
        )
        .await
    }

    async fn commit_rollout_untimed(&self, change: &RolloutCommit<'_>) -> Result<Option<i64>> {
        let _write = self.write_gate().await;
        let applied = on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let fenced = match change.fence {
                Some(fence) => sqlx::query(super::lease::FENCE_CHECK)
                    .bind(super::lease::RECONCILER)
                    .bind(&fence.holder)
                    .bind(fence.token)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_none(),
                None => false,
            };
            if fenced {
                tracing::warn!(
                    rollout = change.rollout_id,
                    "this replica's reconciler lease is gone; its transition is not written"
                );
                return Ok(None);
            }
            let updated = sqlx::query(
                "UPDATE rollouts SET state_json = $3, status = $4, updated_ms = $5, \
                 revision = revision + 1 WHERE rollout_id = $1 AND revision = $2",
            )
            .bind(change.rollout_id)
            .bind(change.expected_revision)
            .bind(&change.state_json)
            .bind(change.status.as_str())
            .bind(change.now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
                failpoint!("rollout.commit.before_events");
                insert_events!(tx, &change.events);
                if let Some((channel, version)) = &change.channel_switch {
                    failpoint!("rollout.finish.before_channel_switch");
                    sqlx::query(
                        "UPDATE channels SET version = $2, updated_at_ms = $3 WHERE name = $1",
                    )
                    .bind(channel)
                    .bind(version)
                    .bind(change.now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            updated == 1
        });
        if !applied {
            return Ok(None);
        }
        self.count_writes(
            1 + change.events.len() as u64 + u64::from(change.channel_switch.is_some()),
        );
        Ok(Some(change.expected_revision + 1))
    }

    /// The most recently finished rollout of each channel (at most the last 1,000 finished
    /// rollouts are looked at), so `rollout status` still answers after a restart.
    pub async fn latest_finished_rollouts(&self) -> Result<Vec<RolloutRow>> {
        let sql = format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE status <> 'active' \
             ORDER BY updated_ms DESC LIMIT 1000"
        );
        let rows: Vec<RolloutTuple> = on_connection!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(conn).await?
        });
        let mut seen = std::collections::HashSet::new();
        Ok(rows
            .into_iter()
            .map(row)
            .filter(|r| seen.insert(r.channel.clone()))
            .collect())
    }

    pub async fn rollout(&self, rollout_id: &str) -> Result<Option<RolloutRow>> {
        let sql = format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE rollout_id = $1");
        let found: Option<RolloutTuple> = on_connection!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(rollout_id).fetch_optional(conn).await?
        });
        Ok(found.map(row))
    }

    pub async fn active_rollouts(&self) -> Result<Vec<RolloutRow>> {
        let sql = format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE status = 'active' ORDER BY created_ms"
        );
        let rows: Vec<RolloutTuple> = on_connection!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(conn).await?
        });
        Ok(rows.into_iter().map(row).collect())
    }

    /// The newest `limit` events, oldest first; only the agent's when `agent_id` is not empty.
    pub async fn recent_events(&self, agent_id: &str, limit: u32) -> Result<Vec<Event>> {
        let rows: Vec<EventTuple> = on_connection!(self, conn => {
            sqlx::query_as(
                "SELECT event_id, at_ms, kind, rollout_id, group_name, agent_id, actor, text FROM events \
                 WHERE ($1 = '' OR agent_id = $1) ORDER BY event_id DESC LIMIT $2",
            )
            .bind(agent_id)
            .bind(i64::from(limit))
            .fetch_all(conn)
            .await?
        });
        let mut events: Vec<Event> = rows.into_iter().map(event).collect();
        events.reverse();
        Ok(events)
    }

    /// Pins an agent; the event commits with it.
    pub async fn pin_agent(
        &self,
        agent_id: &str,
        note: &str,
        now_ms: i64,
        event: &NewEvent,
    ) -> Result<()> {
        let _write = self.write_gate().await;
        on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            sqlx::query(
                "INSERT INTO agent_pins (agent_id, pinned_at_ms, note) VALUES ($1, $2, $3) \
                 ON CONFLICT (agent_id) DO UPDATE SET note = excluded.note",
            )
            .bind(agent_id)
            .bind(now_ms)
            .bind(note)
            .execute(&mut *tx)
            .await?;
            insert_events!(tx, [event]);
            tx.commit().await?;
        });
        self.count_writes(2);
        Ok(())
    }

    /// Unpins an agent, with its event; returns whether it was pinned (if not, nothing is
    /// written).
    pub async fn unpin_agent(&self, agent_id: &str, event: &NewEvent) -> Result<bool> {
        let _write = self.write_gate().await;
        let removed = on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let removed = sqlx::query("DELETE FROM agent_pins WHERE agent_id = $1")
                .bind(agent_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if removed > 0 {
                insert_events!(tx, [event]);
                tx.commit().await?;
            }
            removed
        });
        self.count_writes(if removed > 0 { 2 } else { 0 });
        Ok(removed > 0)
    }

    pub async fn pinned_agents(&self) -> Result<std::collections::HashSet<String>> {
        let rows: Vec<(String,)> = on_connection!(self, conn => {
            sqlx::query_as("SELECT agent_id FROM agent_pins").fetch_all(conn).await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
