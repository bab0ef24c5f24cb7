//! What admins read: agents merged with their live sessions, the fleet summary, the answer
//! to "why hasn't agent X updated?", and the event log.

use semver::Version;

use super::Fleet;
use crate::{
    domain::{
        AgentFilter, AgentRecord, SummaryRow, directive::Directive, validate,
        version::check_constraints,
    },
    error::{DroverError, Result},
    store::Event,
};

/// An agent as admins see it: the stored record merged with its live session, if any.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentView {
    #[serde(flatten)]
    pub record: AgentRecord,
    pub connected: bool,
    pub pinned: bool,
    pub directive: Directive,
    /// The updater's own last decision, when connected.
    pub updater_decision: Option<(String, String)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetSummary {
    pub rows: Vec<SummaryRow>,
    pub total_agents: u64,
    pub connected_agents: u64,
    pub control_plane_version: Option<Version>,
    pub out_of_compliance: u64,
    /// Agents by condition (`AgentCondition`), every condition named.
    pub conditions: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {
    pub agent_id: String,
    pub current_version: Option<String>,
    pub target_version: Option<Version>,
    pub reason: String,
    pub text: String,
}

/// Whether `version` breaks the control-plane constraints (unknown versions do not).
fn out_of_compliance(version: Option<&str>, control_plane: Option<&Version>) -> bool {
    match (version.and_then(|v| Version::parse(v).ok()), control_plane) {
        (Some(v), Some(cp)) => check_constraints(&v, cp).is_err(),
        _ => false,
    }
}

impl Fleet {
    pub async fn agent(&self, agent_id: &str) -> Result<AgentView> {
        validate::identifier("agent_id", agent_id)?;
        let record = self.store().get_agent(agent_id).await?.ok_or_else(|| {
            let like = self.inventory.agents_like(agent_id);
            let like: Vec<&str> = like.iter().map(String::as_str).collect();
            DroverError::NotFound(format!(
                "no agent '{agent_id}' is known{}; `droverctl agents list` shows the known ones",
                super::rollouts::did_you_mean(&like)
            ))
        })?;
        Ok(self.agent_view(record))
    }

    /// One page of agents, and the id to continue after (none when the list is done).
    /// With `only_out_of_compliance` the store cannot compare versions, so it reads on
    /// until the page is full or the fleet is done: a page is never empty while later pages
    /// would have agents.
    pub async fn agents(
        &self,
        filter: &AgentFilter,
        after_id: &str,
        limit: u32,
        only_out_of_compliance: bool,
    ) -> Result<(Vec<AgentView>, u64, Option<String>)> {
        if !only_out_of_compliance {
            let records = self.store().list_agents(filter, after_id, limit).await?;
            let next = (records.len() as u32 == limit)
                .then(|| records.last().map(|r| r.agent_id.clone()))
                .flatten();
            let views = records.into_iter().map(|r| self.agent_view(r)).collect();
            return Ok((views, self.store().count_agents(filter).await?, next));
        }
        let cp = self.view().control_plane.clone();
        // Reads in pages of at least 1,000: the filter may keep few of them.
        let scan = limit.max(1_000);
        let mut views = Vec::new();
        let mut cursor = after_id.to_string();
        let next = 'scan: loop {
            let records = self.store().list_agents(filter, &cursor, scan).await?;
            let done = (records.len() as u32) < scan;
            for record in records {
                cursor = record.agent_id.clone();
                let view = self.agent_view(record);
                if out_of_compliance(view.record.agent_version.as_deref(), cp.as_ref()) {
                    views.push(view);
                    if views.len() as u32 == limit {
                        break 'scan Some(cursor);
                    }
                }
            }
            if done {
                break None;
            }
        };
        Ok((views, self.count_out_of_compliance(filter).await?, next))
    }

    async fn count_out_of_compliance(&self, filter: &AgentFilter) -> Result<u64> {
        let cp = self.view().control_plane.clone();
        let rows = self.store().fleet_summary().await?;
        let matching = |r: &&SummaryRow| {
            filter.group.as_ref().is_none_or(|g| *g == r.group)
                && filter.health.is_none_or(|h| h == r.health)
        };
        if filter.channel.is_some() || filter.agent_version.is_some() {
            // The summary has no channel; count by paging instead (rare: a filtered audit).
            let mut count = 0;
            let mut after = String::new();
            loop {
                let page = self.store().list_agents(filter, &after, 1000).await?;
                count += page
                    .iter()
                    .filter(|a| out_of_compliance(a.agent_version.as_deref(), cp.as_ref()))
                    .count() as u64;
                match page.last() {
                    Some(last) if page.len() == 1000 => after = last.agent_id.clone(),
                    _ => return Ok(count),
                }
            }
        }
        Ok(rows
            .iter()
            .filter(matching)
            .filter(|r| out_of_compliance(Some(&r.agent_version), cp.as_ref()))
            .map(|r| r.count)
            .sum())
    }

    /// Agents by (version, group, channel, health), from memory (for `/metrics`).
    pub fn agent_tally(
        &self,
    ) -> std::collections::HashMap<(String, String, String, crate::domain::Health), u64> {
        self.inventory.tally()
    }

    pub(super) fn agent_view(&self, mut record: AgentRecord) -> AgentView {
        let session = self.sessions.get(&record.agent_id);
        let mut updater_decision = None;
        if let Some(session) = &session {
            let live = session.live.lock();
            record.health = live.health;
            record.updater_state = live.updater_state;
            record.agent_version = live.agent_version.clone();
            record.last_seen_ms = live.last_seen_ms;
            if !live.decision_reason.is_empty() {
                updater_decision =
                    Some((live.decision_reason.clone(), live.decision_detail.clone()));
            }
        }
        let directive = self.directive_for(&record.agent_id, &record.channel, &record.group);
        AgentView {
            pinned: self.pins.read().contains(&record.agent_id),
            connected: session.is_some(),
            updater_decision,
            directive,
            record,
        }
    }

    pub async fn summary(&self) -> Result<FleetSummary> {
        let rows = self.store().fleet_summary().await?;
        let cp = self.view().control_plane.clone();
        Ok(FleetSummary {
            total_agents: rows.iter().map(|r| r.count).sum(),
            out_of_compliance: rows
                .iter()
                .filter(|r| out_of_compliance(Some(&r.agent_version), cp.as_ref()))
                .map(|r| r.count)
                .sum(),
            rows,
            connected_agents: self.sessions.len() as u64,
            control_plane_version: cp,
            conditions: self.condition_counts(),
        })
    }

    pub async fn agents_per_channel(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        self.store().agents_per_channel().await
    }

    /// "Why hasn't agent X updated?" in plain words: the coordinator's side (channel or
    /// rollout) and the updater's own (windows, health, broken versions).
    pub async fn explain(&self, agent_id: &str) -> Result<Explanation> {
        let agent = self.agent(agent_id).await?;
        let d = &agent.directive;
        let current = agent.record.agent_version.clone();
        let mut text = match (&d.target_version, current.as_deref()) {
            (Some(t), Some(c)) if t.to_string() == c => {
                format!("{agent_id} runs {c}, which is what it should run.")
            }
            (Some(t), c) => format!(
                "{agent_id} runs {} and should run {t}.",
                c.unwrap_or("an unknown version")
            ),
            (None, c) => format!(
                "{agent_id} runs {} and is given no target.",
                c.unwrap_or("an unknown version")
            ),
        };
        text.push_str(&format!(
            " Coordinator: {} ({}).",
            d.reason_detail, d.reason
        ));
        if !d.rollout_id.is_empty() {
            text.push_str(&format!(" Governed by rollout {}.", d.rollout_id));
        }
        if agent.pinned {
            text.push_str(" The agent is pinned: `droverctl agents unpin` releases it.");
        }
        match (&agent.updater_decision, agent.connected) {
            (Some((reason, detail)), _) => {
                text.push_str(&format!(" Updater: {detail} ({reason})."))
            }
            (None, false) => {
                text.push_str(" The updater is not connected, so it acts on what it last received.")
            }
            (None, true) => {}
        }
        if let Some(health) = self.health_tracks.get(agent_id).and_then(|t| t.describe()) {
            text.push(' ');
            text.push_str(&health);
        }
        if let Some(report) = &agent.record.last_report {
            text.push_str(&format!(
                " Last update attempt: {}{}.",
                report.transition(),
                if report.error.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", report.error)
                }
            ));
        }
        // The newest claim not believed, if any of the agent's recent events (oldest first) is one.
        let recent = self.store().recent_events(agent_id, 50).await?;
        if let Some(claim) = recent
            .iter()
            .rev()
            .find(|event| event.text.starts_with(super::claims::CLAIM_PREFIX))
        {
            text.push_str(&format!(
                " Its updater reported something this coordinator never sent it, at {}, kept as \
                 a claim that moves nothing: {}.",
                drover_rules::time::rfc3339(claim.at_ms),
                &claim.text[super::claims::CLAIM_PREFIX.len()..]
            ));
        }
        Ok(Explanation {
            agent_id: agent_id.to_string(),
            current_version: current,
            target_version: d.target_version.clone(),
            reason: d.reason.to_string(),
            text,
        })
    }

    pub async fn events(&self, agent_id: &str, limit: u32) -> Result<Vec<Event>> {
        if !agent_id.is_empty() {
            validate::identifier("agent_id", agent_id)?;
        }
        self.store()
            .recent_events(agent_id, limit.clamp(1, 1000))
            .await
    }
}
