//! Plan before you act: run the engine forward over the current inventory, assuming every
//! agent that is served the target installs it and stays healthy, and report when each group
//! would start and finish. Changes nothing.

use semver::Version;

use super::{
    AgentSnapshot, HOUR_MS, Phase, RolloutSpec, RolloutState, reconcile,
    strata::{StratumCoverage, coverage},
};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupPlan {
    pub group: String,
    pub agents: u64,
    pub phase_now: Phase,
    pub starts_ms: Option<i64>,
    pub done_ms: Option<i64>,
    /// The canaries it starts with: the group's own if it started, else those the engine
    /// picks from today's fleet, exactly as the real start would.
    pub canaries: Vec<String>,
    /// Its strata today, with the canary that covers each (the coverage matrix).
    pub strata: Vec<PlannedStratum>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedStratum {
    pub coverage: StratumCoverage,
    pub canary: Option<String>,
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
            canaries: s.canaries.clone(),
            strata: Vec::new(),
        })
        .collect();
    let mut members: Vec<Vec<&AgentSnapshot>> = vec![Vec::new(); spec.groups.len()];
    for agent in fleet {
        members[spec.group_of(&agent.group)].push(agent);
    }
    for (plan, members) in plans.iter_mut().zip(&members) {
        plan.agents = members.len() as u64;
        let left: Vec<&AgentSnapshot> = members
            .iter()
            .copied()
            .filter(|a| a.version.as_ref() != Some(&spec.target_version))
            .collect();
        plan.strata = coverage(&spec.strata, &state.held_strata, &left)
            .into_iter()
            .map(|coverage| PlannedStratum {
                coverage,
                canary: None,
            })
            .collect();
    }
    let stratum_of: std::collections::HashMap<&str, &str> = fleet
        .iter()
        .map(|a| (a.agent_id.as_str(), a.stratum.as_str()))
        .collect();
    let mut fleet = fleet.to_vec();
    let mut state = RolloutState {
        paused: false,
        ..state.clone()
    };
    // The engine depends on time only through window edges and waits, both on whole hours.
    // So at each instant a few passes let canary → active → done settle; once a pass changes
    // nothing, nothing changes until the next window edge or wait end, and the plan jumps
    // there instead of stepping hour by hour (22 s → well under a second at 10k agents).
    // The last whole hour looked at: now, then HORIZON_HOURS - 1 hours after it.
    let horizon = (now_ms.div_euclid(HOUR_MS) + HORIZON_HOURS - 1) * HOUR_MS;
    let mut now = now_ms;
    while now <= horizon {
        let mut settled = false;
        for _ in 0..4 {
            let out = reconcile(now, spec, &state, &fleet, control_plane);
            for (before, (after, plan)) in state
                .groups
                .iter()
                .zip(out.state.groups.iter().zip(plans.iter_mut()))
            {
                if before.phase == Phase::Unstarted && after.phase != Phase::Unstarted {
                    plan.starts_ms = Some(now);
                    plan.canaries = after.canaries.clone();
                }
                if before.phase != Phase::Done && after.phase == Phase::Done {
                    plan.done_ms = Some(now);
                }
            }
            let mut moved = false;
            for agent in &mut fleet {
                if let Some(target) = &out.decisions[&agent.agent_id].target
                    && agent.version.as_ref() != Some(target)
                {
                    agent.version = Some(target.clone());
                    moved = true;
                }
            }
            settled = !moved && out.state == state;
            state = out.state;
            if settled {
                break;
            }
        }
        if state.finished() || state.groups.iter().any(|g| g.phase == Phase::Halted) {
            break;
        }
        let next_hour = (now.div_euclid(HOUR_MS) + 1) * HOUR_MS;
        now = if settled {
            next_change(next_hour, spec, &state)
        } else {
            next_hour
        };
    }
    for plan in &mut plans {
        for row in &mut plan.strata {
            row.canary = plan
                .canaries
                .iter()
                .find(|c| stratum_of.get(c.as_str()) == Some(&row.coverage.stratum.as_str()))
                .cloned();
        }
    }
    plans
}

/// The first whole hour at or after `from` where a group's window opens or closes or a
/// group's wait ends: the only instants where a settled engine can decide differently.
fn next_change(from: i64, spec: &RolloutSpec, state: &RolloutState) -> i64 {
    let first_hour = from.div_euclid(HOUR_MS);
    let hour_of_day = |hour: i64| hour.rem_euclid(24);
    let edges: Vec<i64> = spec
        .groups
        .iter()
        .flat_map(|g| [g.start_hour, g.start_hour + g.window_hours])
        .map(|hour| i64::from(hour) % 24)
        .collect();
    let next_edge = (0..24)
        .map(|offset| first_hour + offset)
        .find(|hour| edges.contains(&hour_of_day(*hour)))
        .map(|hour| hour * HOUR_MS);
    let wait_ends = spec.groups.iter().enumerate().skip(1).flat_map(|(i, g)| {
        let previous = &state.groups[i - 1];
        let wait = i64::from(g.wait_hours) * HOUR_MS;
        [previous.started_ms, previous.done_ms]
            .into_iter()
            .flatten()
            .map(move |at| (at + wait + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS)
    });
    wait_ends
        .filter(|at| *at >= from)
        .chain(next_edge)
        .min()
        // Unreachable while a group has a window; without one nothing ever changes.
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use drover_rules::Weekdays;
    use proptest::prelude::{Strategy as Generator, any};

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
            verdict: crate::rollout::verdict::VerdictSpec::off(),
            strata: crate::rollout::strata::StrataSpec::off(),
            canary_seed: String::new(),
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
                failed_at_ms: None,
                joined_ms: 0,
                updated_at_ms: None,
                track: None,
                stratum: String::new(),
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

    /// The plan as it was computed before it learned to jump: every hour, four passes.
    fn plan_hour_by_hour(
        now_ms: i64,
        spec: &RolloutSpec,
        fleet: &[AgentSnapshot],
        control_plane: Option<&Version>,
    ) -> Vec<(Option<i64>, Option<i64>)> {
        let mut state = RolloutState::new(spec);
        let mut plans = vec![(None, None); spec.groups.len()];
        let mut fleet = fleet.to_vec();
        let mut now = now_ms;
        for step in 0..HORIZON_HOURS {
            for _ in 0..4 {
                let out = reconcile(now, spec, &state, &fleet, control_plane);
                for (i, (before, after)) in state.groups.iter().zip(&out.state.groups).enumerate() {
                    if before.phase == Phase::Unstarted && after.phase != Phase::Unstarted {
                        plans[i].0 = Some(now);
                    }
                    if before.phase != Phase::Done && after.phase == Phase::Done {
                        plans[i].1 = Some(now);
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

    fn arbitrary_rollout() -> impl Generator<Value = (RolloutSpec, Vec<AgentSnapshot>, i64)> {
        let group = (1u8..128, 0u32..24, 1u32..25, 0u32..72, 0u32..3);
        (
            proptest::collection::vec(group, 1..4),
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec((0usize..4, any::<bool>(), 0u8..10), 0..12),
            0i64..(14 * 24 * 60),
        )
            .prop_map(|(groups, time_based, immediate, agents, minutes)| {
                let v = |t: &str| Version::parse(t).unwrap();
                let groups: Vec<GroupSpec> = groups
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, (days, start_hour, window_hours, wait_hours, canaries))| GroupSpec {
                            name: format!("g{i}"),
                            days: Weekdays(days),
                            start_hour,
                            window_hours,
                            wait_hours,
                            canary_count: canaries,
                        },
                    )
                    .collect();
                let fleet = agents
                    .into_iter()
                    .enumerate()
                    .map(|(i, (group, connected, kind))| AgentSnapshot {
                        agent_id: format!("a{i}"),
                        group: format!("g{}", group % groups.len()),
                        version: Some(v(if kind == 0 { "1.1.0" } else { "1.0.0" })),
                        health: if kind == 1 {
                            Health::Unhealthy
                        } else {
                            Health::Healthy
                        },
                        connected: connected || kind > 5,
                        pinned: kind == 2,
                        failed_at_ms: None,
                        joined_ms: 0,
                        updated_at_ms: None,
                        track: None,
                        stratum: String::new(),
                    })
                    .collect();
                let spec = RolloutSpec {
                    rollout_id: "r".into(),
                    channel: "c".into(),
                    start_version: v("1.0.0"),
                    target_version: v("1.1.0"),
                    strategy: if time_based {
                        Strategy::TimeBased
                    } else {
                        Strategy::HaltOnError
                    },
                    groups,
                    done_threshold_pct: 90,
                    failure_threshold: 1,
                    max_in_flight: 0,
                    immediate,
                    verdict: crate::rollout::verdict::VerdictSpec::off(),
                    strata: crate::rollout::strata::StrataSpec::off(),
                    canary_seed: String::new(),
                };
                // 2026-11-23, a Monday, plus up to two weeks.
                (spec, fleet, 1_795_392_000_000 + minutes * 60_000)
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Jumping to the next window edge or wait end plans exactly what stepping every hour
        /// did, and it finishes (the horizon bounds it).
        #[test]
        fn jumping_plans_what_stepping_hour_by_hour_planned(
            (spec, fleet, now) in arbitrary_rollout()
        ) {
            let control_plane = Version::parse("1.1.0").unwrap();
            let fast = plan(now, &spec, &RolloutState::new(&spec), &fleet, Some(&control_plane));
            let slow = plan_hour_by_hour(now, &spec, &fleet, Some(&control_plane));
            let fast: Vec<_> = fast.iter().map(|p| (p.starts_ms, p.done_ms)).collect();
            proptest::prop_assert_eq!(fast, slow);
        }
    }
}
