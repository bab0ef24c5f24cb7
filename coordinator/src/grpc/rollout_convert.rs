//! Proto ↔ domain for rollouts, plans, explanations and events.

use drover_proto::v1 as pb;
use drover_rules::Weekdays;

use super::convert::{report_to_proto, timestamp};
use crate::{
    domain::version::parse_version,
    error::{DroverError, Result},
    fleet::{ActiveRollout, AgentHistory, Effect, Explanation, RolloutDetail},
    rollout::{GroupPlan, GroupSpec, RolloutSpec, Strategy},
    store::Event,
};

pub fn spec_from_proto(request: pb::CreateRolloutRequest) -> Result<RolloutSpec> {
    let strata = super::strata_convert::spec_from_request(&request)?;
    let strategy = match pb::RolloutStrategy::try_from(request.strategy) {
        Ok(pb::RolloutStrategy::TimeBased) => Strategy::TimeBased,
        Ok(pb::RolloutStrategy::HaltOnError) | Ok(pb::RolloutStrategy::Unspecified) => {
            Strategy::HaltOnError
        }
        Err(_) => {
            return Err(DroverError::invalid(format!(
                "unknown strategy {}",
                request.strategy
            )));
        }
    };
    let groups = request
        .groups
        .into_iter()
        .map(|g| {
            let days = if g.days.is_empty() {
                Weekdays::ALL
            } else {
                Weekdays::from_days(super::convert::weekdays_from_proto(&g.days).map_err(
                    |err| {
                        DroverError::invalid(format!(
                            "group '{}': {err}",
                            crate::domain::validate::truncate_for_message(&g.name)
                        ))
                    },
                )?)
            };
            Ok(GroupSpec {
                name: g.name,
                days,
                start_hour: g.start_hour_utc,
                window_hours: if g.window_hours == 0 {
                    24
                } else {
                    g.window_hours
                },
                wait_hours: g.wait_hours,
                canary_count: g.canary_count,
            })
        })
        .collect::<Result<_>>()?;
    Ok(RolloutSpec {
        rollout_id: String::new(),
        channel: request.channel,
        start_version: parse_version(&request.start_version)?,
        target_version: parse_version(&request.target_version)?,
        strategy,
        groups,
        done_threshold_pct: if request.done_threshold_percent == 0 {
            90
        } else {
            request.done_threshold_percent
        },
        failure_threshold: if request.failure_threshold == 0 {
            1
        } else {
            request.failure_threshold
        },
        max_in_flight: request.max_in_flight,
        immediate: request.immediate,
        verdict: super::verdict_convert::spec_from_proto(request.verdict),
        strata,
        canary_seed: request.canary_seed,
    })
}

fn strategy_to_proto(strategy: Strategy) -> pb::RolloutStrategy {
    match strategy {
        Strategy::HaltOnError => pb::RolloutStrategy::HaltOnError,
        Strategy::TimeBased => pb::RolloutStrategy::TimeBased,
    }
}

pub fn status_to_proto(rollout: &ActiveRollout) -> pb::RolloutStatus {
    let groups = rollout
        .spec
        .groups
        .iter()
        .zip(&rollout.state.groups)
        .zip(&rollout.counts)
        .enumerate()
        .map(|(index, ((spec, state), counts))| pb::RolloutGroupStatus {
            name: spec.name.clone(),
            state: state.phase.as_str().to_string(),
            note: state.note.clone(),
            canaries: state.canaries.clone(),
            initial: state.initial_count,
            present: counts.present,
            on_target: counts.on_target,
            healthy: counts.healthy,
            failed: counts.failed,
            started_at: state.started_ms.and_then(timestamp),
            done_at: state.done_ms.and_then(timestamp),
            agents_affected: 0,
            verdict: rollout
                .live_verdicts
                .get(index)
                .and_then(Option::as_ref)
                .or(state.verdict.as_ref())
                .map(super::verdict_convert::group_verdict_to_proto),
        })
        .collect();
    pb::RolloutStatus {
        rollout_id: rollout.spec.rollout_id.clone(),
        channel: rollout.spec.channel.clone(),
        start_version: rollout.spec.start_version.to_string(),
        target_version: rollout.spec.target_version.to_string(),
        strategy: strategy_to_proto(rollout.spec.strategy) as i32,
        status: rollout.shown_status().as_str().to_string(),
        paused: rollout.state.paused,
        groups,
        created_at: timestamp(rollout.created_ms),
        effect: None,
        plan: None,
        trace_id: rollout
            .trace
            .map(|t| t.trace_id.to_string())
            .unwrap_or_default(),
        verdict: rollout
            .spec
            .verdict
            .enabled
            .then(|| super::verdict_convert::settings_to_proto(&rollout.spec.verdict)),
        strata: Some(super::strata_convert::settings_to_proto(
            &rollout.spec.strata,
            rollout.spec.rank_seed(),
        )),
        held_strata: rollout
            .state
            .held_strata
            .iter()
            .map(super::strata_convert::held_to_proto)
            .collect(),
        // Filled by the caller, which can see the fleet (`AdminApi::with_stop_acks`).
        stop_acks: None,
        trace_sampled: rollout.trace.is_some_and(|t| t.sampled),
    }
}

pub fn plan_to_proto(plans: Vec<GroupPlan>) -> pb::RolloutPlan {
    pb::RolloutPlan {
        groups: plans
            .into_iter()
            .map(|p| pb::RolloutGroupPlan {
                strata: super::strata_convert::coverage_to_proto(&p),
                canaries: p.canaries,
                name: p.group,
                agents: p.agents,
                starts_at: p.starts_ms.and_then(timestamp),
                done_at: p.done_ms.and_then(timestamp),
            })
            .collect(),
    }
}

pub fn explanation_to_proto(e: Explanation) -> pb::AgentExplanation {
    pb::AgentExplanation {
        agent_id: e.agent_id,
        current_version: e.current_version.unwrap_or_default(),
        target_version: e.target_version.map(|v| v.to_string()).unwrap_or_default(),
        reason: e.reason,
        explanation: e.text,
    }
}

pub fn event_to_proto(e: Event) -> pb::Event {
    pb::Event {
        event_id: e.event_id,
        at: timestamp(e.at_ms),
        kind: e.kind,
        rollout_id: e.rollout_id,
        group: e.group,
        agent_id: e.agent_id,
        actor: e.actor,
        text: e.text,
    }
}

pub fn detail_to_proto(detail: RolloutDetail) -> pb::RolloutDetail {
    pb::RolloutDetail {
        rollout: Some(status_to_proto(&detail.rollout)),
        timelines: detail
            .timelines
            .into_iter()
            .map(|t| pb::RolloutTimeline {
                group: t.group,
                events: t.events.into_iter().map(event_to_proto).collect(),
            })
            .collect(),
        truncated: detail.truncated,
    }
}

pub fn agent_history_to_proto(history: AgentHistory) -> pb::AgentHistory {
    let record = history.agent.record;
    pb::AgentHistory {
        agent_id: record.agent_id,
        agent_version: record.agent_version.unwrap_or_default(),
        group: record.group,
        channel: record.channel,
        reports: history
            .reports
            .iter()
            .map(|r| report_to_proto(&r.report))
            .collect(),
        events: history.events.into_iter().map(event_to_proto).collect(),
    }
}

/// A rollout as a verb left it (or, for a dry run, would leave it), with the verb's effect.
pub fn steered_to_proto(rollout: &ActiveRollout, effect: &Effect) -> pb::RolloutStatus {
    let mut status = status_to_proto(rollout);
    for (group, affected) in status.groups.iter_mut().zip(&effect.groups) {
        group.agents_affected = *affected;
    }
    status.effect = Some(pb::Effect {
        dry_run: effect.dry_run,
        summary: effect.summary.clone(),
        agents_affected: effect.agents_affected,
    });
    if effect.dry_run && !effect.plan.is_empty() {
        status.plan = Some(plan_to_proto(effect.plan.clone()));
    }
    status
}
