//! History: every rollout ever started, one rollout's timelines, one agent's past.

use drover_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Event, Report, Rollout};

/// One page of every rollout ever started, newest first. Ask for the next with
/// `after=next_after`; none when this is the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutPage {
    pub rollouts: Vec<Rollout>,
    pub next_after: Option<String>,
}

impl From<&pb::ListRolloutsResponse> for RolloutPage {
    fn from(page: &pb::ListRolloutsResponse) -> Self {
        Self {
            rollouts: page.rollouts.iter().map(Rollout::from).collect(),
            next_after: (!page.next_page_token.is_empty()).then(|| page.next_page_token.clone()),
        }
    }
}

/// One rollout with its timelines: the rollout-wide one first (group ""), then one per group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutDetail {
    pub rollout: Option<Rollout>,
    pub timelines: Vec<Timeline>,
    /// True when older timeline entries were left out (see `limit`).
    pub truncated: bool,
}

/// One group's events (started, canaries, done or halted, by whom), oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeline {
    pub group: String,
    pub events: Vec<Event>,
}

impl From<&pb::RolloutDetail> for RolloutDetail {
    fn from(d: &pb::RolloutDetail) -> Self {
        Self {
            rollout: d.rollout.as_ref().map(Rollout::from),
            timelines: d
                .timelines
                .iter()
                .map(|t| Timeline {
                    group: t.group.clone(),
                    events: t.events.iter().map(Event::from).collect(),
                })
                .collect(),
            truncated: d.truncated,
        }
    }
}

/// An agent's update attempts and the decisions about it, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentHistory {
    pub agent_id: String,
    /// What the agent runs now (empty when unknown).
    pub agent_version: String,
    pub group: String,
    pub channel: String,
    pub reports: Vec<Report>,
    pub events: Vec<Event>,
}

impl From<&pb::AgentHistory> for AgentHistory {
    fn from(h: &pb::AgentHistory) -> Self {
        Self {
            agent_id: h.agent_id.clone(),
            agent_version: h.agent_version.clone(),
            group: h.group.clone(),
            channel: h.channel.clone(),
            reports: h.reports.iter().map(Report::from).collect(),
            events: h.events.iter().map(Event::from).collect(),
        }
    }
}
