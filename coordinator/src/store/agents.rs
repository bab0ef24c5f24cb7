//! Agent records, update reports and the fleet summary.

use std::collections::BTreeMap;

use super::{AgentWrite, NewEvent, Store, on_connection};
use crate::{
    domain::{
        AgentFilter, AgentIdentity, AgentRecord, AgentStatus, Health, InstallerKind, SummaryRow,
        UpdateReport, UpdaterState,
    },
    error::{DroverError, Result},
};

/// What recording a report did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportRecorded {
    /// False for a resent report (this agent's attempt id was stored before): nothing written.
    pub new: bool,
    /// The agent's recorded version moved to the report's target (a success reported from
    /// the version the agent was recorded on).
    pub version_moved: bool,
}

/// How many ids one batched last-seen update carries.
const TOUCH_CHUNK: usize = 5_000;

#[derive(sqlx::FromRow)]
pub(super) struct AgentRow {
    agent_id: String,
    hostname: String,
    group_name: String,
    channel: String,
    installer: String,
    agent_version: Option<String>,
    updater_version: String,
    labels_json: String,
    health: String,
    updater_state: String,
    first_seen_ms: i64,
    last_seen_ms: i64,
    last_report_json: Option<String>,
}

impl AgentRow {
    pub(super) fn into_record(self) -> AgentRecord {
        AgentRecord {
            labels: serde_json::from_str(&self.labels_json).unwrap_or_default(),
            last_report: self
                .last_report_json
                .and_then(|json| serde_json::from_str(&json).ok()),
            installer: InstallerKind::parse(&self.installer).unwrap_or_default(),
            health: Health::parse(&self.health).unwrap_or_default(),
            updater_state: UpdaterState::parse(&self.updater_state).unwrap_or_default(),
            agent_id: self.agent_id,
            hostname: self.hostname,
            group: self.group_name,
            channel: self.channel,
            agent_version: self.agent_version,
            updater_version: self.updater_version,
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
        }
    }
}

pub(super) const AGENT_COLUMNS: &str = "agent_id, hostname, group_name, channel, installer, agent_version, \
    updater_version, labels_json, health, updater_state, first_seen_ms, last_seen_ms, last_report_json";

// Empty strings mean "no filter", so one static statement serves every filter combination.
pub(super) const FILTER: &str = "($1 = '' OR group_name = $1) AND ($2 = '' OR agent_version = $2) \
    AND ($3 = '' OR health = $3) AND ($4 = '' OR channel = $4)";

pub(super) struct FilterBinds {
    pub(super) group: String,
    pub(super) version: String,
    pub(super) health: String,
    pub(super) channel: String,
}

impl From<&AgentFilter> for FilterBinds {
    fn from(filter: &AgentFilter) -> Self {
        Self {
            group: filter.group.clone().unwrap_or_default(),
            version: filter.agent_version.clone().unwrap_or_default(),
            health: filter
                .health
                .map(|h| h.as_str().to_string())
                .unwrap_or_default(),
            channel: filter.channel.clone().unwrap_or_default(),
        }
    }
}

impl Store {
    /// Records who the agent is as its session opens. Keeps `first_seen_ms` and the last
    /// report. (A batch of one; the fleet batches hellos through its agent writer.)
    pub async fn upsert_agent(&self, agent: &AgentIdentity, now_ms: i64) -> Result<()> {
        let write = AgentWrite::Hello {
            identity: Box::new(agent.clone()),
            now_ms,
            replica: None,
        };
        self.write_agent_batch(&[write]).await?;
        Ok(())
    }

    /// Commits a change of health, updater state or version carried by a heartbeat (a
    /// batch of one; the fleet batches many through its agent writer).
    pub async fn update_agent_status(
        &self,
        agent_id: &str,
        status: AgentStatus<'_>,
        now_ms: i64,
    ) -> Result<()> {
        self.write_agent_batch(&[AgentWrite::status(agent_id, status, now_ms)])
            .await?;
        Ok(())
    }

    /// Batched liveness: marks every listed agent as seen at `now_ms`, a few statements in all.
    pub async fn touch_agents(&self, agent_ids: &[String], now_ms: i64) -> Result<()> {
        self.timed(
            crate::metrics::StoreOp::LivenessFlush,
            self.touch_agents_untimed(agent_ids, now_ms),
        )
        .await
    }

    async fn touch_agents_untimed(&self, agent_ids: &[String], now_ms: i64) -> Result<()> {
        let sql = match self.backend {
            super::Backend::Sqlite(_) => {
                "UPDATE agents SET last_seen_ms = $1 \
                 WHERE agent_id IN (SELECT value FROM json_each($2))"
            }
            super::Backend::Postgres(_) => {
                "UPDATE agents SET last_seen_ms = $1 \
                 WHERE agent_id IN (SELECT jsonb_array_elements_text($2::jsonb))"
            }
        };
        let _write = self.agent_rows_gate().await;
        for chunk in agent_ids.chunks(TOUCH_CHUNK) {
            let ids = serde_json::to_string(chunk)
                .map_err(|err| DroverError::Internal(err.to_string()))?;
            on_connection!(self, conn => {
                sqlx::query(sql)
                    .bind(now_ms)
                    .bind(&ids)
                    .execute(conn)
                    .await?;
            });
            self.count_writes(1);
        }
        Ok(())
    }

    /// Stores a report once per agent and attempt id, with its event, in one transaction
    /// (a batch of one; see `batch.rs` for the rules). A report can never move the agent
    /// backwards.
    pub async fn record_report(
        &self,
        agent_id: &str,
        report: &UpdateReport,
        now_ms: i64,
        event: &NewEvent,
    ) -> Result<ReportRecorded> {
        let write = AgentWrite::Report {
            agent_id: agent_id.to_string(),
            report: Box::new(report.clone()),
            received_ms: now_ms,
            event: event.clone(),
        };
        let outcome = self.write_agent_batch(&[write]).await?;
        Ok(outcome.into_iter().flatten().next().unwrap_or_default())
    }

    pub async fn get_agent(&self, agent_id: &str) -> Result<Option<AgentRecord>> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = $1");
        let row: Option<AgentRow> = on_connection!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(agent_id).fetch_optional(conn).await?
        });
        Ok(row.map(AgentRow::into_record))
    }

    /// Every agent's acknowledged stop epoch, for the inventory at start-up: (agent id,
    /// rollout id, epoch).
    pub async fn stop_acks(&self) -> Result<Vec<(String, String, i64)>> {
        let rows: Vec<(String, String, i64)> = on_connection!(self, conn => {
            sqlx::query_as(
                "SELECT agent_id, ack_rollout_id, ack_epoch FROM agents \
                 WHERE ack_rollout_id IS NOT NULL",
            )
            .fetch_all(conn)
            .await?
        });
        Ok(rows)
    }

    /// Every agent: read once at start-up into the fleet's in-memory inventory.
    pub async fn all_agents(&self) -> Result<Vec<AgentRecord>> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents");
        let rows: Vec<AgentRow> = on_connection!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(conn).await?
        });
        Ok(rows.into_iter().map(AgentRow::into_record).collect())
    }

    /// One page of agents in id order, starting after `after_id`.
    pub async fn list_agents(
        &self,
        filter: &AgentFilter,
        after_id: &str,
        limit: u32,
    ) -> Result<Vec<AgentRecord>> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE {FILTER} AND agent_id > $5 \
             ORDER BY agent_id LIMIT $6"
        );
        let binds = FilterBinds::from(filter);
        let rows: Vec<AgentRow> = on_connection!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&binds.group)
                .bind(&binds.version)
                .bind(&binds.health)
                .bind(&binds.channel)
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(conn)
                .await?
        });
        Ok(rows.into_iter().map(AgentRow::into_record).collect())
    }

    pub async fn count_agents(&self, filter: &AgentFilter) -> Result<u64> {
        let sql = format!("SELECT COUNT(*) FROM agents WHERE {FILTER}");
        let binds = FilterBinds::from(filter);
        let (count,): (i64,) = on_connection!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&binds.group)
                .bind(&binds.version)
                .bind(&binds.health)
                .bind(&binds.channel)
                .fetch_one(conn)
                .await?
        });
        Ok(count.max(0) as u64)
    }

    /// Counts by version × group × health; agents with no known version count as "unknown".
    pub async fn fleet_summary(&self) -> Result<Vec<SummaryRow>> {
        let rows: Vec<(Option<String>, String, String, i64)> = on_connection!(self, conn => {
            sqlx::query_as(
                "SELECT agent_version, group_name, health, COUNT(*) FROM agents \
                 GROUP BY agent_version, group_name, health \
                 ORDER BY agent_version, group_name, health",
            )
            .fetch_all(conn)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(version, group, health, count)| SummaryRow {
                agent_version: version.unwrap_or_else(|| "unknown".into()),
                group,
                health: Health::parse(&health).unwrap_or_default(),
                count: count.max(0) as u64,
            })
            .collect())
    }

    /// Agents per channel, for `channels list`.
    pub async fn agents_per_channel(&self) -> Result<BTreeMap<String, u64>> {
        let rows: Vec<(String, i64)> = on_connection!(self, conn => {
            sqlx::query_as("SELECT channel, COUNT(*) FROM agents GROUP BY channel")
                .fetch_all(conn)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(c, n)| (c, n.max(0) as u64))
            .collect())
    }
}
