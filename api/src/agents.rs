//! Agents, their directives and reports, explanations and events.

use std::collections::BTreeMap;

use drover_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{explain_reason, time};

/// An agent's health, as its updater last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Unhealthy,
    Unknown,
}

impl Health {
    pub fn from_proto(value: i32) -> Self {
        match pb::AgentHealth::try_from(value) {
            Ok(pb::AgentHealth::Healthy) => Self::Healthy,
            Ok(pb::AgentHealth::Unhealthy) => Self::Unhealthy,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unknown => "unknown",
        }
    }
}

/// What the updater is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdaterState {
    Unspecified,
    Idle,
    Waiting,
    Downloading,
    Installing,
    Verifying,
    Reverting,
}

impl UpdaterState {
    pub fn from_proto(value: i32) -> Self {
        use pb::UpdaterState as P;
        match P::try_from(value).unwrap_or(P::Unspecified) {
            P::Unspecified => Self::Unspecified,
            P::Idle => Self::Idle,
            P::Waiting => Self::Waiting,
            P::Downloading => Self::Downloading,
            P::Installing => Self::Installing,
            P::Verifying => Self::Verifying,
            P::Reverting => Self::Reverting,
        }
    }
}

/// How an update attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOutcome {
    Unspecified,
    Succeeded,
    Failed,
    Reverted,
    Refused,
}

impl UpdateOutcome {
    pub fn from_proto(value: i32) -> Self {
        use pb::UpdateOutcome as P;
        match P::try_from(value).unwrap_or(P::Unspecified) {
            P::Unspecified => Self::Unspecified,
            P::Succeeded => Self::Succeeded,
            P::Failed => Self::Failed,
            P::Reverted => Self::Reverted,
            P::Refused => Self::Refused,
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Reverted)
    }
}

/// What the coordinator wants an agent to run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Directive {
    pub directive_id: String,
    pub target_version: String,
    /// Critical updates do not wait for the maintenance window.
    pub critical: bool,
    /// A reason code (see `ReasonCode`).
    pub reason: String,
    /// The reason code's one-line explanation.
    pub reason_explanation: String,
    /// The reason in plain words, with this agent's particulars.
    pub reason_detail: String,
    pub control_plane_version: String,
    pub rollout_id: String,
}

impl From<&pb::Directive> for Directive {
    fn from(d: &pb::Directive) -> Self {
        Self {
            directive_id: d.directive_id.clone(),
            target_version: d.target_version.clone(),
            critical: d.critical,
            reason: d.reason.clone(),
            reason_explanation: explain_reason(&d.reason),
            reason_detail: d.reason_detail.clone(),
            control_plane_version: d.control_plane_version.clone(),
            rollout_id: d.rollout_id.clone(),
        }
    }
}

/// One update attempt, as the updater reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub attempt_id: String,
    pub from_version: String,
    pub to_version: String,
    pub outcome: UpdateOutcome,
    pub error: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub directive_id: String,
    pub rollout_id: String,
}

impl From<&pb::UpdateReport> for Report {
    fn from(r: &pb::UpdateReport) -> Self {
        Self {
            attempt_id: r.attempt_id.clone(),
            from_version: r.from_version.clone(),
            to_version: r.to_version.clone(),
            outcome: UpdateOutcome::from_proto(r.outcome),
            error: r.error.clone(),
            started_at: time(r.started_at.as_ref()),
            finished_at: time(r.finished_at.as_ref()),
            directive_id: r.directive_id.clone(),
            rollout_id: r.rollout_id.clone(),
        }
    }
}

/// Everything known about one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub agent_id: String,
    pub hostname: String,
    pub group: String,
    pub channel: String,
    pub agent_version: String,
    pub updater_version: String,
    pub health: Health,
    pub updater_state: UpdaterState,
    pub connected: bool,
    /// Pinned agents keep their version: rollouts pass them by.
    pub pinned: bool,
    /// The updater's own last decision, a reason code (see `ReasonCode`).
    pub updater_decision: String,
    pub updater_decision_explanation: String,
    pub updater_decision_detail: String,
    pub labels: BTreeMap<String, String>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub directive: Option<Directive>,
    pub next_window_start: Option<String>,
    pub next_window_end: Option<String>,
    pub last_report: Option<Report>,
    /// Set on the answer of a changing call (or its dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<crate::Effect>,
}

impl From<&pb::Agent> for Agent {
    fn from(a: &pb::Agent) -> Self {
        Self {
            agent_id: a.agent_id.clone(),
            hostname: a.hostname.clone(),
            group: a.group.clone(),
            channel: a.channel.clone(),
            agent_version: a.agent_version.clone(),
            updater_version: a.updater_version.clone(),
            health: Health::from_proto(a.health),
            updater_state: UpdaterState::from_proto(a.updater_state),
            connected: a.connected,
            pinned: a.pinned,
            updater_decision: a.updater_decision.clone(),
            updater_decision_explanation: explain_reason(&a.updater_decision),
            updater_decision_detail: a.updater_decision_detail.clone(),
            labels: a
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            first_seen: time(a.first_seen.as_ref()),
            last_seen: time(a.last_seen.as_ref()),
            directive: a.directive.as_ref().map(Directive::from),
            next_window_start: time(a.next_window_start.as_ref()),
            next_window_end: time(a.next_window_end.as_ref()),
            last_report: a.last_report.as_ref().map(Report::from),
            effect: a.effect.as_ref().map(crate::Effect::from),
        }
    }
}

/// One page of agents. Ask for the next with `after=next_after`; none when this is the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPage {
    pub agents: Vec<Agent>,
    pub total_matching: u64,
    pub next_after: Option<String>,
    /// With `q`, `reason` or `sort` (offset paging): the next page's `offset`; none on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

impl From<&pb::ListAgentsResponse> for AgentPage {
    fn from(page: &pb::ListAgentsResponse) -> Self {
        Self {
            agents: page.agents.iter().map(Agent::from).collect(),
            total_matching: page.total_matching,
            next_after: (!page.next_page_token.is_empty()).then(|| page.next_page_token.clone()),
            next_offset: None,
        }
    }
}

/// Why an agent runs what it runs, or why it has not updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentExplanation {
    pub agent_id: String,
    pub current_version: String,
    pub target_version: String,
    /// A reason code (see `ReasonCode`).
    pub reason: String,
    pub reason_explanation: String,
    /// Plain words, with this agent's particulars.
    pub explanation: String,
}

impl From<&pb::AgentExplanation> for AgentExplanation {
    fn from(e: &pb::AgentExplanation) -> Self {
        Self {
            agent_id: e.agent_id.clone(),
            current_version: e.current_version.clone(),
            target_version: e.target_version.clone(),
            reason: e.reason.clone(),
            reason_explanation: explain_reason(&e.reason),
            explanation: e.explanation.clone(),
        }
    }
}

/// One entry of the event log: an admin change, a rollout transition or an update report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub event_id: i64,
    pub at: Option<String>,
    /// Text rather than the enum, so a newer coordinator's kinds still show.
    #[schema(value_type = drover_rules::EventKind)]
    pub kind: String,
    pub rollout_id: String,
    pub group: String,
    pub agent_id: String,
    pub actor: String,
    pub text: String,
}

impl From<&pb::Event> for Event {
    fn from(e: &pb::Event) -> Self {
        Self {
            event_id: e.event_id,
            at: time(e.at.as_ref()),
            kind: e.kind.clone(),
            rollout_id: e.rollout_id.clone(),
            group: e.group.clone(),
            agent_id: e.agent_id.clone(),
            actor: e.actor.clone(),
            text: e.text.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_carry_their_explanation_and_unknown_text_stays_visible() {
        let directive = pb::Directive {
            reason: "outside_window".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(Directive::from(&directive)).unwrap();
        assert_eq!(json["reason"], "outside_window");
        assert!(
            json["reason_explanation"]
                .as_str()
                .unwrap()
                .contains("window")
        );

        let newer = pb::Directive {
            reason: "from_a_newer_coordinator".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(Directive::from(&newer)).unwrap();
        assert_eq!(json["reason"], "from_a_newer_coordinator");
        assert_eq!(json["reason_explanation"], "");
    }

    #[test]
    fn enums_are_lower_case_words_and_unknown_fields_are_refused() {
        let agent = Agent::from(&pb::Agent {
            health: pb::AgentHealth::Unhealthy as i32,
            updater_state: pb::UpdaterState::Downloading as i32,
            ..Default::default()
        });
        let json = serde_json::to_value(&agent).unwrap();
        assert_eq!(
            (&json["health"], &json["updater_state"]),
            (
                &serde_json::json!("unhealthy"),
                &serde_json::json!("downloading")
            )
        );
        let mut extra = json.clone();
        extra["colour"] = serde_json::json!("blue");
        assert!(serde_json::from_value::<Agent>(extra).is_err());
        assert_eq!(serde_json::from_value::<Agent>(json).unwrap(), agent);
    }
}
