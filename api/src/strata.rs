//! Strata and stops: how a rollout stratifies its fleet, the strata it holds, a plan's
//! coverage, and who has heard the rollout's latest stop.

use drover_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time;

/// The labels whose values make strata, and what a failure stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrataSettings {
    /// Empty: no strata. `installer` is the agent's installer kind.
    pub labels: Vec<String>,
    /// A stratum with at least this many agents in a group gets a canary there.
    pub min_agents: u32,
    #[schema(value_type = drover_rules::HaltScope)]
    pub halt_scope: String,
    pub halt_scope_explanation: String,
    /// What orders agents for canaries and install slots.
    pub canary_seed: String,
}

impl From<&pb::StrataSettings> for StrataSettings {
    fn from(s: &pb::StrataSettings) -> Self {
        Self {
            labels: s.labels.clone(),
            min_agents: s.min_agents,
            halt_scope: s.halt_scope.clone(),
            halt_scope_explanation: drover_rules::HaltScope::parse(&s.halt_scope)
                .map(|code| code.explain().to_string())
                .unwrap_or_default(),
            canary_seed: s.canary_seed.clone(),
        }
    }
}

/// A stratum held after a failure confined to it: its agents install nothing new.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeldStratum {
    pub stratum: String,
    pub since: Option<String>,
    pub note: String,
}

impl From<&pb::HeldStratum> for HeldStratum {
    fn from(h: &pb::HeldStratum) -> Self {
        Self {
            stratum: h.stratum.clone(),
            since: time(h.since.as_ref()),
            note: h.note.clone(),
        }
    }
}

/// One row of a plan's coverage matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StratumCoverage {
    pub stratum: String,
    /// Its agents still to update.
    pub agents: u64,
    pub needs_canary: bool,
    pub held: bool,
    /// The canary picked from it; absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
}

impl From<&pb::StratumCoverage> for StratumCoverage {
    fn from(c: &pb::StratumCoverage) -> Self {
        Self {
            stratum: c.stratum.clone(),
            agents: c.agents,
            needs_canary: c.needs_canary,
            held: c.held,
            canary: (!c.canary.is_empty()).then(|| c.canary.clone()),
        }
    }
}

/// Who has heard a rollout's latest stop (a halt, pause, rollback or held stratum).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopAcks {
    /// Raised by every stop; updaters start no install under an older one.
    pub epoch: u64,
    pub stopped_at: Option<String>,
    pub acknowledged: u64,
    /// Connected, not acknowledged yet.
    pub not_yet: u64,
    /// Not connected: they hear it when they reconnect.
    pub unreachable: u64,
    /// At most 20 agents that have not acknowledged, connected ones first.
    pub stragglers: Vec<Straggler>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Straggler {
    pub agent_id: String,
    #[schema(value_type = drover_rules::AckState)]
    pub state: String,
}

impl From<&pb::StopAcks> for StopAcks {
    fn from(a: &pb::StopAcks) -> Self {
        Self {
            epoch: a.epoch,
            stopped_at: time(a.stopped_at.as_ref()),
            acknowledged: a.acknowledged,
            not_yet: a.not_yet,
            unreachable: a.unreachable,
            stragglers: a
                .stragglers
                .iter()
                .map(|s| Straggler {
                    agent_id: s.agent_id.clone(),
                    state: s.state.clone(),
                })
                .collect(),
        }
    }
}
