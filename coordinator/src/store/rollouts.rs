//! Rollouts, the event log (rollout transitions, admin actions, update outcomes) and pins.

use super::{Store, on_backend};
use crate::error::{DroverError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRow {
    pub rollout_id: String,
    pub channel: String,
    pub spec_json: String,
    pub state_json: String,
    pub status: String,
    pub created_ms: i64,
    pub updated_ms: i64,
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewEvent {
    pub at_ms: i64,
    pub kind: &'static str,
    pub rollout_id: String,
    pub group: String,
    pub agent_id: String,
    pub actor: String,
    pub text: String,
}

type RolloutTuple = (String, String, String, String, String, i64, i64);

fn row(
    (rollout_id, channel, spec_json, state_json, status, created_ms, updated_ms): RolloutTuple,
) -> RolloutRow {
    RolloutRow {
        rollout_id,
        channel,
        spec_json,
        state_json,
        status,
        created_ms,
        updated_ms,
    }
}

macro_rules! insert_events {
    ($tx:expr, $events:expr) => {
        for event in $events {
            sqlx::query(
                "INSERT INTO events (at_ms, kind, rollout_id, group_name, agent_id, actor, text) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(event.at_ms)
            .bind(event.kind)
            .bind(&event.rollout_id)
            .bind(&event.group)
            .bind(&event.agent_id)
            .bind(&event.actor)
            .bind(&event.text)
            .execute(&mut *$tx)
            .await?;
        }
    };
}

impl Store {
    /// Creates a rollout and its creation event in one transaction.
    pub async fn create_rollout(&self, rollout: &RolloutRow, events: &[NewEvent]) -> Result<()> {
        on_backend!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO rollouts (rollout_id, channel, spec_json, state_json, status, created_ms, updated_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&rollout.rollout_id)
            .bind(&rollout.channel)
            .bind(&rollout.spec_json)
            .bind(&rollout.state_json)
            .bind(&rollout.status)
            .bind(rollout.created_ms)
            .bind(rollout.updated_ms)
            .execute(&mut *tx)
            .await?;
            insert_events!(tx, events);
            tx.commit().await?;
        });
        self.count_writes(1 + events.len() as u64);
        Ok(())
    }

    /// Saves a rollout's new state and status with the events that explain the change.
    pub async fn save_rollout(
        &self,
        rollout_id: &str,
        state_json: &str,
        status: &str,
        now_ms: i64,
        events: &[NewEvent],
    ) -> Result<()> {
        let updated = on_backend!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE rollouts SET state_json = $2, status = $3, updated_ms = $4 WHERE rollout_id = $1",
            )
            .bind(rollout_id)
            .bind(state_json)
            .bind(status)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            insert_events!(tx, events);
            tx.commit().await?;
            updated
        });
        self.count_writes(1 + events.len() as u64);
        if updated == 0 {
            return Err(DroverError::NotFound(format!(
                "rollout {rollout_id} does not exist"
            )));
        }
        Ok(())
    }

    pub async fn active_rollouts(&self) -> Result<Vec<RolloutRow>> {
        let rows: Vec<RolloutTuple> = on_backend!(self, pool => {
            sqlx::query_as(
                "SELECT rollout_id, channel, spec_json, state_json, status, created_ms, updated_ms \
                 FROM rollouts WHERE status = 'active' ORDER BY created_ms",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(row).collect())
    }

    pub async fn add_events(&self, events: &[NewEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        on_backend!(self, pool => {
            let mut tx = pool.begin().await?;
            insert_events!(tx, events);
            tx.commit().await?;
        });
        self.count_writes(events.len() as u64);
        Ok(())
    }

    /// The newest `limit` events, oldest first; only the agent's when `agent_id` is not empty.
    pub async fn recent_events(&self, agent_id: &str, limit: u32) -> Result<Vec<Event>> {
        type Row = (i64, i64, String, String, String, String, String, String);
        let rows: Vec<Row> = on_backend!(self, pool => {
            sqlx::query_as(
                "SELECT event_id, at_ms, kind, rollout_id, group_name, agent_id, actor, text FROM events \
                 WHERE ($1 = '' OR agent_id = $1) ORDER BY event_id DESC LIMIT $2",
            )
            .bind(agent_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        let mut events: Vec<Event> = rows
            .into_iter()
            .map(
                |(event_id, at_ms, kind, rollout_id, group, agent_id, actor, text)| Event {
                    event_id,
                    at_ms,
                    kind,
                    rollout_id,
                    group,
                    agent_id,
                    actor,
                    text,
                },
            )
            .collect();
        events.reverse();
        Ok(events)
    }

    pub async fn pin_agent(&self, agent_id: &str, note: &str, now_ms: i64) -> Result<()> {
        on_backend!(self, pool => {
            sqlx::query(
                "INSERT INTO agent_pins (agent_id, pinned_at_ms, note) VALUES ($1, $2, $3) \
                 ON CONFLICT (agent_id) DO UPDATE SET note = excluded.note",
            )
            .bind(agent_id)
            .bind(now_ms)
            .bind(note)
            .execute(pool)
            .await?;
        });
        self.count_writes(1);
        Ok(())
    }

    /// Returns whether the agent was pinned.
    pub async fn unpin_agent(&self, agent_id: &str) -> Result<bool> {
        let removed = on_backend!(self, pool => {
            sqlx::query("DELETE FROM agent_pins WHERE agent_id = $1")
                .bind(agent_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        self.count_writes(1);
        Ok(removed > 0)
    }

    pub async fn pinned_agents(&self) -> Result<std::collections::HashSet<String>> {
        let rows: Vec<(String,)> = on_backend!(self, pool => {
            sqlx::query_as("SELECT agent_id FROM agent_pins").fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
