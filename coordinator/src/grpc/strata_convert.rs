//! Proto ↔ domain for strata and stops: the create request's settings, a rollout's
//! settings, held strata and stop acknowledgements, and a plan's coverage matrix.

use drover_proto::v1 as pb;
use drover_rules::HaltScope;

use super::convert::timestamp;
use crate::{
    domain::validate::truncate_for_message,
    error::{DroverError, Result},
    fleet::stop_acks::StopAcks,
    rollout::{
        GroupPlan,
        strata::{HeldStratum, StrataSpec},
    },
};

/// The create request's strata settings, defaults filled in; checked by `StrataSpec::validate`.
pub fn spec_from_request(request: &pb::CreateRolloutRequest) -> Result<StrataSpec> {
    let mut strata = match request.strata.trim() {
        "" => StrataSpec::default_on(),
        "none" => StrataSpec::off(),
        list => StrataSpec {
            labels: list.split(',').map(|l| l.trim().to_string()).collect(),
            ..StrataSpec::off()
        },
    };
    if request.stratum_min_agents > 0 {
        strata.min_agents = request.stratum_min_agents;
    }
    strata.halt_scope = match request.halt_scope.as_str() {
        "" => HaltScope::Rollout,
        text => HaltScope::parse(text).ok_or_else(|| {
            DroverError::invalid(format!(
                "halt scope '{}' is not one of rollout, stratum",
                truncate_for_message(text)
            ))
        })?,
    };
    Ok(strata)
}

pub fn settings_to_proto(strata: &StrataSpec, seed: &str) -> pb::StrataSettings {
    pb::StrataSettings {
        labels: strata.labels.clone(),
        min_agents: strata.min_agents,
        halt_scope: strata.halt_scope.as_str().into(),
        canary_seed: seed.into(),
    }
}

pub fn held_to_proto(held: &HeldStratum) -> pb::HeldStratum {
    pb::HeldStratum {
        stratum: held.stratum.clone(),
        since: timestamp(held.since_ms),
        note: held.note.clone(),
    }
}

pub fn stop_acks_to_proto(acks: &StopAcks) -> pb::StopAcks {
    pb::StopAcks {
        epoch: acks.epoch,
        stopped_at: acks.stop_ms.and_then(timestamp),
        acknowledged: acks.acknowledged,
        not_yet: acks.not_yet,
        unreachable: acks.unreachable,
        stragglers: acks
            .stragglers
            .iter()
            .map(|(agent_id, state)| pb::Straggler {
                agent_id: agent_id.clone(),
                state: state.as_str().into(),
            })
            .collect(),
    }
}

pub fn coverage_to_proto(plan: &GroupPlan) -> Vec<pb::StratumCoverage> {
    plan.strata
        .iter()
        .map(|row| pb::StratumCoverage {
            stratum: row.coverage.stratum.clone(),
            agents: row.coverage.agents,
            needs_canary: row.coverage.needs_canary,
            held: row.coverage.held,
            canary: row.canary.clone().unwrap_or_default(),
        })
        .collect()
}
