//! Rollouts: their groups, counts and plans.

use drover_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time;

/// A rollout of one channel from a start version to a target, group by group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub rollout_id: String,
    pub channel: String,
    pub start_version: String,
    pub target_version: String,
    /// `halt_on_error` or `time_based`.
    pub strategy: String,
    #[schema(value_type = drover_rules::RolloutStatus)]
    pub status: String,
    pub status_explanation: String,
    pub paused: bool,
    pub created_at: Option<String>,
    pub groups: Vec<RolloutGroup>,
    /// Set on the answer of a changing call (or its dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<crate::Effect>,
    /// A dry-run create: when each group would start and finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<RolloutPlan>,
    /// The rollout's OpenTelemetry trace id (32 hex digits), to find it in a trace
    /// backend; absent for rollouts made before tracing existed and for dry runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Whether that trace is exported at all (decided when the rollout was created, by the
    /// coordinator's `OTEL_TRACES_SAMPLER`); absent with `trace_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_sampled: Option<bool>,
    /// How the rollout stratifies its fleet; absent on answers that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strata: Option<crate::StrataSettings>,
    /// Strata held after a failure confined to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_strata: Vec<crate::HeldStratum>,
    /// Who has heard the latest stop; absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_acks: Option<crate::StopAcks>,
}

/// One group of a rollout: where it stands, and how many of its agents are where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutGroup {
    pub name: String,
    #[schema(value_type = drover_rules::GroupPhase)]
    pub state: String,
    pub state_explanation: String,
    /// Why the group is where it is, with its particulars (e.g. what it waits for).
    pub note: String,
    pub canaries: Vec<String>,
    /// Agents in the group when it started.
    pub initial: u64,
    pub present: u64,
    pub on_target: u64,
    pub healthy: u64,
    pub failed: u64,
    pub started_at: Option<String>,
    pub done_at: Option<String>,
    /// Set by the verbs that change a rollout: this group's agents whose target changes (or
    /// would, for a dry run); 0 on reads.
    #[serde(default)]
    pub agents_affected: u64,
    /// The health verdict, once the group has been judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<crate::GroupVerdict>,
}

fn strategy_name(value: i32) -> String {
    match pb::RolloutStrategy::try_from(value) {
        Ok(pb::RolloutStrategy::HaltOnError) => "halt_on_error",
        Ok(pb::RolloutStrategy::TimeBased) => "time_based",
        _ => "unspecified",
    }
    .to_string()
}

impl From<&pb::RolloutStatus> for Rollout {
    fn from(s: &pb::RolloutStatus) -> Self {
        Self {
            rollout_id: s.rollout_id.clone(),
            channel: s.channel.clone(),
            start_version: s.start_version.clone(),
            target_version: s.target_version.clone(),
            strategy: strategy_name(s.strategy),
            status: s.status.clone(),
            status_explanation: drover_rules::RolloutStatus::parse(&s.status)
                .map(|code| code.explain().to_string())
                .unwrap_or_default(),
            paused: s.paused,
            created_at: time(s.created_at.as_ref()),
            groups: s.groups.iter().map(RolloutGroup::from).collect(),
            effect: s.effect.as_ref().map(crate::Effect::from),
            plan: s.plan.as_ref().map(RolloutPlan::from),
            trace_id: (!s.trace_id.is_empty()).then(|| s.trace_id.clone()),
            trace_sampled: (!s.trace_id.is_empty()).then_some(s.trace_sampled),
            strata: s.strata.as_ref().map(crate::StrataSettings::from),
            held_strata: s.held_strata.iter().map(crate::HeldStratum::from).collect(),
            stop_acks: s.stop_acks.as_ref().map(crate::StopAcks::from),
        }
    }
}

impl From<&pb::RolloutGroupStatus> for RolloutGroup {
    fn from(g: &pb::RolloutGroupStatus) -> Self {
        Self {
            name: g.name.clone(),
            state: g.state.clone(),
            state_explanation: drover_rules::GroupPhase::parse(&g.state)
                .map(|code| code.explain().to_string())
                .unwrap_or_default(),
            note: g.note.clone(),
            canaries: g.canaries.clone(),
            initial: g.initial,
            present: g.present,
            on_target: g.on_target,
            healthy: g.healthy,
            failed: g.failed,
            started_at: time(g.started_at.as_ref()),
            done_at: time(g.done_at.as_ref()),
            agents_affected: g.agents_affected,
            verdict: g.verdict.as_ref().map(crate::GroupVerdict::from),
        }
    }
}

/// When each group would start and finish, for today's inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    pub groups: Vec<GroupPlan>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPlan {
    pub name: String,
    pub agents: u64,
    /// None when the group never gets a window.
    pub starts_at: Option<String>,
    pub done_at: Option<String>,
    /// The canaries it would start with, picked as the real create picks them.
    #[serde(default)]
    pub canaries: Vec<String>,
    /// Its strata, largest first, with the canary covering each.
    #[serde(default)]
    pub strata: Vec<crate::StratumCoverage>,
}

impl From<&pb::RolloutPlan> for RolloutPlan {
    fn from(p: &pb::RolloutPlan) -> Self {
        Self {
            groups: p
                .groups
                .iter()
                .map(|g| GroupPlan {
                    name: g.name.clone(),
                    agents: g.agents,
                    starts_at: time(g.starts_at.as_ref()),
                    done_at: time(g.done_at.as_ref()),
                    canaries: g.canaries.clone(),
                    strata: g.strata.iter().map(crate::StratumCoverage::from).collect(),
                })
                .collect(),
        }
    }
}
