//! Group commit of what updaters send: many agents' hellos, status changes and reports
//! (each report with its event) in one transaction and a handful of set-based statements, so a whole group
//! reporting at once costs a few fsyncs, not one per report. The rules are the same as one
//! at a time (`record_report`): reports are stored once per (agent, attempt), a success
//! moves the version only from its `from_version`, and the last report only moves forward.
//!
//! The caller guarantees each agent appears at most once per batch, so the set-based
//! updates never have to choose between two rows for one agent.

use std::collections::HashSet;

use serde::Serialize;

use super::{NewEvent, ReportRecorded, Store, on_connection};
use crate::{
    domain::{AgentIdentity, AgentStatus, UpdateOutcome, UpdateReport},
    error::{DroverError, Result},
    failpoint::failpoint,
};

/// One agent's write in a batch.
#[derive(Debug, Clone)]
pub enum AgentWrite {
    /// A session opened: who the agent is (insert, or update keeping `first_seen_ms`).
    Hello {
        /// Boxed, like a report: much larger than a status change.
        identity: Box<AgentIdentity>,
        now_ms: i64,
        /// The replica that holds the session (`agents.connected_on`); `None` outside one.
        replica: Option<std::sync::Arc<str>>,
    },
    /// A session ended on `replica`: the agent is no longer connected there (unless a newer
    /// session, here or on another replica, already said otherwise).
    Disconnected {
        agent_id: String,
        replica: std::sync::Arc<str>,
    },
    /// A heartbeat changed health, updater state or version.
    Status {
        agent_id: String,
        health: crate::domain::Health,
        updater_state: crate::domain::UpdaterState,
        agent_version: Option<String>,
        now_ms: i64,
    },
    Report {
        agent_id: String,
        /// Boxed: a report is much larger than a status change.
        report: Box<UpdateReport>,
        received_ms: i64,
        event: NewEvent,
    },
    /// The updater acknowledged a rollout's stop epoch (only ever forward, per rollout).
    Ack {
        agent_id: String,
        rollout_id: String,
        epoch: u64,
    },
}

impl AgentWrite {
    pub fn status(agent_id: &str, status: AgentStatus<'_>, now_ms: i64) -> Self {
        Self::Status {
            agent_id: agent_id.to_string(),
            health: status.health,
            updater_state: status.updater_state,
            agent_version: status.agent_version.map(str::to_string),
            now_ms,
        }
    }

    pub fn agent_id(&self) -> &str {
        match self {
            Self::Hello { identity, .. } => &identity.agent_id,
            Self::Status { agent_id, .. }
            | Self::Report { agent_id, .. }
            | Self::Ack { agent_id, .. }
            | Self::Disconnected { agent_id, .. } => agent_id,
        }
    }
}

/// What one write did: the report's outcome for a report, `None` for the others.
pub type AgentWriteOutcome = Option<ReportRecorded>;

#[derive(Serialize)]
struct HelloRow<'a> {
    agent_id: &'a str,
    hostname: &'a str,
    group_name: &'a str,
    channel: &'a str,
    installer: &'a str,
    agent_version: Option<String>,
    updater_version: &'a str,
    labels_json: String,
    health: &'a str,
    now_ms: i64,
    connected_on: Option<&'a str>,
}

#[derive(Serialize)]
struct AckRow<'a> {
    agent_id: &'a str,
    rollout_id: &'a str,
    epoch: i64,
}

#[derive(Serialize)]
struct DisconnectRow<'a> {
    agent_id: &'a str,
    replica: &'a str,
}

#[derive(Serialize)]
struct StatusRow<'a> {
    agent_id: &'a str,
    health: &'a str,
    updater_state: &'a str,
    agent_version: Option<&'a str>,
    now_ms: i64,
}

#[derive(Serialize)]
struct ReportRow<'a> {
    agent_id: &'a str,
    attempt_id: &'a str,
    from_version: &'a str,
    to_version: &'a str,
    outcome: &'a str,
    error: &'a str,
    started_ms: i64,
    finished_ms: i64,
    directive_id: &'a str,
    rollout_id: &'a str,
    received_ms: i64,
    report_json: String,
}

#[derive(Serialize)]
struct EventRow<'a> {
    at_ms: i64,
    kind: &'a str,
    rollout_id: &'a str,
    group_name: &'a str,
    agent_id: &'a str,
    actor: &'a str,
    text: &'a str,
}

mod sql;

fn json<T: Serialize>(rows: &T) -> Result<String> {
    serde_json::to_string(rows).map_err(|err| DroverError::Internal(err.to_string()))
}

impl Store {
    /// Commits a batch of agent writes in one transaction; returns each write's outcome in
    /// order. Each agent id appears at most once (the writer guarantees it).
    pub async fn write_agent_batch(&self, writes: &[AgentWrite]) -> Result<Vec<AgentWriteOutcome>> {
        self.timed(
            crate::metrics::StoreOp::AgentBatch,
            self.write_agent_batch_untimed(writes),
        )
        .await
    }

    async fn write_agent_batch_untimed(
        &self,
        writes: &[AgentWrite],
    ) -> Result<Vec<AgentWriteOutcome>> {
        let mut hellos = Vec::new();
        let mut statuses = Vec::new();
        let mut reports = Vec::new();
        let mut gone = Vec::new();
        let mut acks = Vec::new();
        for write in writes {
            match write {
                AgentWrite::Ack {
                    agent_id,
                    rollout_id,
                    epoch,
                } => acks.push(AckRow {
                    agent_id,
                    rollout_id,
                    epoch: i64::try_from(*epoch).unwrap_or(i64::MAX),
                }),
                AgentWrite::Disconnected { agent_id, replica } => {
                    gone.push(DisconnectRow { agent_id, replica })
                }
                AgentWrite::Hello {
                    identity,
                    now_ms,
                    replica,
                } => hellos.push(HelloRow {
                    agent_id: &identity.agent_id,
                    hostname: &identity.hostname,
                    group_name: &identity.group,
                    channel: &identity.channel,
                    installer: identity.installer.as_str(),
                    agent_version: identity.agent_version.as_ref().map(ToString::to_string),
                    updater_version: &identity.updater_version,
                    labels_json: json(&identity.labels)?,
                    health: identity.health.as_str(),
                    now_ms: *now_ms,
                    connected_on: replica.as_deref(),
                }),
                AgentWrite::Status {
                    agent_id,
                    health,
                    updater_state,
                    agent_version,
                    now_ms,
                } => statuses.push(StatusRow {
                    agent_id,
                    health: health.as_str(),
                    updater_state: updater_state.as_str(),
                    agent_version: agent_version.as_deref(),
                    now_ms: *now_ms,
                }),
                AgentWrite::Report {
                    agent_id,
                    report,
                    received_ms,
                    ..
                } => reports.push(ReportRow {
                    agent_id,
                    attempt_id: &report.attempt_id,
                    from_version: &report.from_version,
                    to_version: &report.to_version,
                    outcome: report.outcome.as_str(),
                    error: &report.error,
                    started_ms: report.started_ms,
                    finished_ms: report.finished_ms,
                    directive_id: &report.directive_id,
                    rollout_id: &report.rollout_id,
                    received_ms: *received_ms,
                    report_json: json(&**report)?,
                }),
            }
        }
        let postgres = self.backend_name() == "postgres";
        let pick = |pg: &'static str, lite: &'static str| if postgres { pg } else { lite };
        let hellos_json = json(&hellos)?;
        let statuses_json = json(&statuses)?;
        let reports_json = json(&reports)?;
        let gone_json = json(&gone)?;
        let acks_json = json(&acks)?;
        let _write = self.agent_rows_gate().await;
        let (new_agents, moved_agents, statements) = on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let mut statements = 0;
            if !hellos.is_empty() {
                sqlx::query(pick(sql::PG_HELLO, sql::SQLITE_HELLO))
                    .bind(&hellos_json)
                    .execute(&mut *tx)
                    .await?;
                statements += 1;
            }
            if !gone.is_empty() {
                sqlx::query(pick(sql::PG_DISCONNECT, sql::SQLITE_DISCONNECT))
                    .bind(&gone_json)
                    .execute(&mut *tx)
                    .await?;
                statements += 1;
            }
            if !acks.is_empty() {
                sqlx::query(pick(sql::PG_ACKS, sql::SQLITE_ACKS))
                    .bind(&acks_json)
                    .execute(&mut *tx)
                    .await?;
                statements += 1;
            }
            if !statuses.is_empty() {
                sqlx::query(pick(sql::PG_STATUS, sql::SQLITE_STATUS))
                    .bind(&statuses_json)
                    .execute(&mut *tx)
                    .await?;
                statements += 1;
            }
            let mut new_agents = HashSet::new();
            let mut moved_agents = HashSet::new();
            if !reports.is_empty() {
                let inserted: Vec<(String,)> = sqlx::query_as(pick(sql::PG_REPORTS, sql::SQLITE_REPORTS))
                    .bind(&reports_json)
                    .fetch_all(&mut *tx)
                    .await?;
                statements += 1;
                new_agents = inserted.into_iter().map(|(id,)| id).collect();
                failpoint!("report.before_event");
                let fresh: Vec<&AgentWrite> = writes
                    .iter()
                    .filter(|w| matches!(w, AgentWrite::Report { .. }) && new_agents.contains(w.agent_id()))
                    .collect();
                if !fresh.is_empty() {
                    let (events, last, moves) = fresh_rows(&fresh);
                    sqlx::query(pick(sql::PG_EVENTS, sql::SQLITE_EVENTS))
                        .bind(json(&events)?)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(pick(sql::PG_LAST_REPORT, sql::SQLITE_LAST_REPORT))
                        .bind(json(&last)?)
                        .execute(&mut *tx)
                        .await?;
                    statements += 2;
                    if !moves.is_empty() {
                        let moved: Vec<(String,)> = sqlx::query_as(pick(sql::PG_VERSION, sql::SQLITE_VERSION))
                            .bind(json(&moves)?)
                            .fetch_all(&mut *tx)
                            .await?;
                        statements += 1;
                        moved_agents = moved.into_iter().map(|(id,)| id).collect();
                    }
                }
            }
            tx.commit().await?;
            (new_agents, moved_agents, statements)
        });
        self.count_writes(statements);
        Ok(writes
            .iter()
            .map(|write| match write {
                AgentWrite::Hello { .. }
                | AgentWrite::Status { .. }
                | AgentWrite::Ack { .. }
                | AgentWrite::Disconnected { .. } => None,
                AgentWrite::Report { agent_id, .. } => Some(ReportRecorded {
                    new: new_agents.contains(agent_id),
                    version_moved: moved_agents.contains(agent_id),
                }),
            })
            .collect())
    }
}

#[derive(Serialize)]
struct LastReportRow<'a> {
    agent_id: &'a str,
    report_json: String,
    finished_ms: i64,
}

#[derive(Serialize)]
struct MoveRow<'a> {
    agent_id: &'a str,
    from_version: &'a str,
    to_version: &'a str,
    finished_ms: i64,
}

/// The rows the newly stored reports add: their events, last-report candidates and version
/// moves (successes that change the version).
fn fresh_rows<'a>(
    fresh: &[&'a AgentWrite],
) -> (Vec<EventRow<'a>>, Vec<LastReportRow<'a>>, Vec<MoveRow<'a>>) {
    let mut events = Vec::new();
    let mut last = Vec::new();
    let mut moves = Vec::new();
    for write in fresh {
        let AgentWrite::Report {
            agent_id,
            report,
            event,
            ..
        } = write
        else {
            continue;
        };
        events.push(EventRow {
            at_ms: event.at_ms,
            kind: event.kind.as_str(),
            rollout_id: &event.rollout_id,
            group_name: &event.group,
            agent_id: &event.agent_id,
            actor: &event.actor,
            text: &event.text,
        });
        last.push(LastReportRow {
            agent_id,
            report_json: serde_json::to_string(&**report).unwrap_or_default(),
            finished_ms: report.finished_ms,
        });
        if report.outcome == UpdateOutcome::Succeeded && report.from_version != report.to_version {
            moves.push(MoveRow {
                agent_id,
                from_version: &report.from_version,
                to_version: &report.to_version,
                finished_ms: report.finished_ms,
            });
        }
    }
    (events, last, moves)
}
