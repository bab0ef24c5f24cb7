//! A group's health verdict: whether its updated agents got worse, signal by signal.

use drover_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The health verdict as of the group's last transition or change of outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupVerdict {
    #[schema(value_type = drover_rules::VerdictOutcome)]
    pub outcome: String,
    pub outcome_explanation: String,
    /// What failed, or what is missing, in words.
    pub text: String,
    pub signals: Vec<SignalVerdict>,
}

/// One signal: its change on the updated agents (RSS and failed probes in %, CPU in points,
/// probe latency in ms, restarts as a rate ratio), with anytime-valid bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalVerdict {
    #[schema(value_type = drover_rules::HealthSignal)]
    pub signal: String,
    #[schema(value_type = drover_rules::VerdictOutcome)]
    pub outcome: String,
    pub effect: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub tolerance: f64,
    /// Updated agents judged, and agents not updated used as the comparison.
    pub updated: u32,
    pub compared: u32,
    /// The updated agents that moved the most: "agent-id value".
    pub worst: Vec<String>,
    pub text: String,
}

impl From<&pb::GroupVerdict> for GroupVerdict {
    fn from(v: &pb::GroupVerdict) -> Self {
        Self {
            outcome: v.outcome.clone(),
            outcome_explanation: drover_rules::VerdictOutcome::parse(&v.outcome)
                .map(|code| code.explain().to_string())
                .unwrap_or_default(),
            text: v.text.clone(),
            signals: v.signals.iter().map(SignalVerdict::from).collect(),
        }
    }
}

impl From<&pb::SignalVerdict> for SignalVerdict {
    fn from(s: &pb::SignalVerdict) -> Self {
        Self {
            signal: s.signal.clone(),
            outcome: s.outcome.clone(),
            effect: s.effect,
            low: s.low,
            high: s.high,
            tolerance: s.tolerance,
            updated: s.updated,
            compared: s.compared,
            worst: s.worst.clone(),
            text: s.text.clone(),
        }
    }
}
