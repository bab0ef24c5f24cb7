//! Plan before you act: run the engine forward over the current inventory, assuming every
//! agent that is served the target installs it and stays healthy, and report when each group
//! would start and finish. Changes nothing.

use semver::Version;

use super::{AgentSnapshot, HOUR_MS, Phase, RolloutSpec, RolloutState, reconcile};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupPlan {
    pub group: String,
    pub agents: u64,
    pub phase_now: Phase,
    pub starts_ms: Option<i64>,
    pub done_ms: Option<i64>,
}

/// Looks ahead at most this far.
const HORIZON_HOURS: i64 = 60 * 24;

pub fn plan(
    now_ms: i64,
    spec: &RolloutSpec,
    state: &RolloutState,
    fleet: &[AgentSnapshot],
    control_plane: Option<&Version>,
) -> Vec<GroupPlan> {
    let mut plans: Vec<GroupPlan> = spec
        .groups
        .iter()
        .zip(&state.groups)
        .map(|(g, s)| GroupPlan {
            group: g.name.clone(),
            agents: 0,
            phase_now: s.phase,
            starts_ms: s.started_ms,
            done_ms: s.done_ms,
        })
        .collect();
    for agent in fleet {
        plans[spec.group_of(&agent.group)].agents += 1;
    }
    let mut fleet = fleet.to_vec();
    let mut state = RolloutState {
        paused: false,
        ..state.clone()
    };
    // Windows open and waits end on whole hours, so stepping hour by hour sees every change;
    // a few passes at each instant let canary → active → done settle.
    let mut now = now_ms;
    for step in 0..HORIZON_HOURS {
        for _ in 0..4 {
            let out = reconcile(now, spec, &state, &fleet, control_plane);
            for (before, (after, plan)) in state
                .groups
                .iter()
                .zip(out.state.groups.iter().zip(plans.iter_mut()))
            {
                if before.phase == Phase::Unstarted && after.phase != Phase::Unstarted {
                    plan.starts_ms = Some(now);
                }
                if before.phase != Phase::Done && after.phase == Phase::Done {
                    plan.done_ms = Some(now);
                }
            }
            for agent in &mut fleet {
                if let Some(target) = &out.decisions[&agent.agent_id].target {
                    agent.version = Some(target.clone());
                }
            }
            state = out.state;
        }
        if state.finished() || state.groups.iter().any(|g| g.phase == Phase::Halted) {
            break;
        }
        now = (now_ms.div_euclid(HOUR_MS) + step + 1) * HOUR_MS;
    }
    plans
}

#[cfg(test)]
mod tests {
    use drover_rules::Weekdays;

    use super::*;
    use crate::{
        domain::Health,
        rollout::{GroupSpec, Strategy},
    };

    #[test]
    fn plans_each_group_after_the_previous_one_and_its_wait() {
        let v = |t: &str| Version::parse(t).unwrap();
        let group = |name: &str, start_hour, wait_hours| GroupSpec {
            name: name.into(),
            days: Weekdays::ALL,
            start_hour,
            window_hours: 2,
            wait_hours,
            canary_count: 1,
        };
        let spec = RolloutSpec {
            rollout_id: "r".into(),
            channel: "c".into(),
            start_version: v("1.0.0"),
            target_version: v("1.1.0"),
            strategy: Strategy::HaltOnError,
            groups: vec![group("dev", 2, 0), group("prod", 2, 24)],
            done_threshold_pct: 90,
            failure_threshold: 1,
            max_in_flight: 0,
            immediate: false,
        };
        let fleet: Vec<AgentSnapshot> = ["dev", "dev", "prod", "prod", "prod"]
            .iter()
            .enumerate()
            .map(|(i, g)| AgentSnapshot {
                agent_id: format!("a{i}"),
                group: (*g).into(),
                version: Some(v("1.0.0")),
                health: Health::Healthy,
                connected: true,
                pinned: false,
                failed_target: false,
            })
            .collect();
        let monday = 1_795_392_000_000;
        let plans = plan(
            monday,
            &spec,
            &RolloutState::new(&spec),
            &fleet,
            Some(&v("1.1.0")),
        );
        assert_eq!((plans[0].agents, plans[1].agents), (2, 3));
        assert_eq!(plans[0].starts_ms, Some(monday + 2 * HOUR_MS));
        let dev_done = plans[0].done_ms.unwrap();
        // Done at 02:00 Monday, so prod waits until 02:00 Tuesday, which is in its window.
        assert_eq!(plans[1].starts_ms, Some(dev_done + 24 * HOUR_MS));
        assert!(plans[1].done_ms.is_some());
    }
}
