//! What needs an operator's eye, inside a rollout or not: agents whose last update to the
//! version they should run failed or was reverted, agents behind their target, and agents
//! stuck behind it without a session. Decided in memory from the inventory and the current
//! decisions (no store read): Overview's strip, `fleet summary` and the agent filter.

use std::collections::{BTreeMap, HashMap};

use drover_rules::AgentCondition;

use super::{Fleet, directive_with};
use crate::domain::{UpdateOutcome, UpdateReport, directive::Directive};

/// The condition of one agent, from what it runs, what it is served, its last report and
/// whether it has a session; `None` when nothing needs a look.
pub fn classify(
    version: Option<&str>,
    directive: &Directive,
    last_report: Option<&UpdateReport>,
    connected: bool,
) -> Option<AgentCondition> {
    let target = directive.target_version.as_ref().map(ToString::to_string);
    if let Some(report) = last_report {
        // The failure still matters while the agent should run what failed: served it, or
        // held by the same rollout because of it (a rollback serves the start instead).
        let still_wanted = match &target {
            Some(target) => *target == report.to_version,
            None => !directive.rollout_id.is_empty() && directive.rollout_id == report.rollout_id,
        };
        if still_wanted && version != Some(report.to_version.as_str()) {
            match report.outcome {
                UpdateOutcome::Failed | UpdateOutcome::Refused => {
                    return Some(AgentCondition::Failing);
                }
                UpdateOutcome::Reverted => return Some(AgentCondition::Reverted),
                UpdateOutcome::Succeeded => {}
            }
        }
    }
    let target = target?;
    if version == Some(target.as_str()) {
        return None;
    }
    Some(if connected {
        AgentCondition::BehindTarget
    } else {
        AgentCondition::Stuck
    })
}

impl Fleet {
    /// Whether the agent has a session here, or on another replica that is alive.
    fn has_session(&self, agent_id: &str, connected_on: Option<&str>) -> bool {
        self.sessions.get(agent_id).is_some() || self.connected_elsewhere(connected_on)
    }

    /// Whether the agent, under its current `directive`, is in `condition` now (an agent
    /// the inventory does not know is in none).
    pub(super) fn in_condition(
        &self,
        agent_id: &str,
        directive: &Directive,
        condition: AgentCondition,
    ) -> bool {
        self.inventory.get(agent_id).is_some_and(|(_, entry)| {
            let connected = self.has_session(agent_id, entry.connected_on.as_deref());
            let version = entry.version.as_deref();
            classify(version, directive, entry.last_report.as_ref(), connected) == Some(condition)
        })
    }

    /// Agents by condition over the whole fleet, every condition named (0 included). This
    /// runs every second a dashboard is open, so it copies no agent: what decides
    /// directives is fetched first, the inventory is read under its lock taking no other,
    /// an off-rollout directive is decided once per channel and group, and sessions are
    /// looked up after, only for agents behind their target.
    pub fn condition_counts(&self) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> = AgentCondition::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), 0))
            .collect();
        let view = self.view();
        let rollouts = self.rollouts.read().clone();
        let pins = self.pins.read().clone();
        let mut behind: Vec<(String, Option<String>)> = Vec::new();
        self.inventory.visit_channels(|channel, agents| {
            let rollout = rollouts.get(channel).map(AsRef::as_ref);
            let mut by_group: HashMap<&str, Directive> = HashMap::new();
            for (agent_id, entry) in agents {
                let pinned = pins.contains(agent_id);
                let own;
                let directive = if pinned || rollout.is_some() {
                    own = directive_with(&view, rollout, pinned, agent_id, channel, &entry.group);
                    &own
                } else {
                    &*by_group.entry(&entry.group).or_insert_with(|| {
                        directive_with(&view, None, false, agent_id, channel, &entry.group)
                    })
                };
                let version = entry.version.as_deref();
                match classify(version, directive, entry.last_report.as_ref(), true) {
                    Some(AgentCondition::BehindTarget) => {
                        behind.push((agent_id.clone(), entry.connected_on.clone()));
                    }
                    Some(condition) => *counts.entry(condition.to_string()).or_default() += 1,
                    None => {}
                }
            }
        });
        for (agent_id, connected_on) in behind {
            let condition = if self.has_session(&agent_id, connected_on.as_deref()) {
                AgentCondition::BehindTarget
            } else {
                AgentCondition::Stuck
            };
            *counts.entry(condition.to_string()).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use drover_rules::ReasonCode;
    use semver::Version;

    use super::*;

    fn served(target: Option<&str>, rollout: &str) -> Directive {
        Directive {
            directive_id: String::new(),
            target_version: target.map(|t| Version::parse(t).unwrap()),
            critical: false,
            reason: ReasonCode::ChannelTarget,
            reason_detail: String::new(),
            control_plane_version: None,
            schedule: None,
            rollout_id: rollout.into(),
            rollout_epoch: 0,
        }
    }

    fn report(to: &str, outcome: UpdateOutcome, rollout: &str) -> UpdateReport {
        UpdateReport {
            attempt_id: "a".into(),
            from_version: "1.1.0".into(),
            to_version: to.into(),
            outcome,
            error: String::new(),
            started_ms: 0,
            finished_ms: 1,
            directive_id: String::new(),
            rollout_id: rollout.into(),
        }
    }

    #[test]
    fn a_channel_change_that_fails_shows_until_the_channel_moves_on() {
        let failed = report("1.1.1", UpdateOutcome::Failed, "");
        let reverted = report("1.1.1", UpdateOutcome::Reverted, "");
        let to_broken = served(Some("1.1.1"), "");
        let on = Some("1.1.0");
        assert_eq!(
            classify(on, &to_broken, Some(&failed), true),
            Some(AgentCondition::Failing)
        );
        assert_eq!(
            classify(on, &to_broken, Some(&reverted), false),
            Some(AgentCondition::Reverted)
        );
        // The channel went back to what the agent runs: nothing to look at.
        assert_eq!(
            classify(on, &served(Some("1.1.0"), ""), Some(&reverted), true),
            None
        );
        // A newer target: the old failure no longer matters; the agent is behind.
        assert_eq!(
            classify(on, &served(Some("1.2.0"), ""), Some(&failed), true),
            Some(AgentCondition::BehindTarget)
        );
    }

    #[test]
    fn a_rollout_holding_a_failed_agent_keeps_it_failing() {
        let failed = report("2.0.0", UpdateOutcome::Refused, "r-1");
        assert_eq!(
            classify(Some("1.0.0"), &served(None, "r-1"), Some(&failed), true),
            Some(AgentCondition::Failing)
        );
        // Another rollout's hold says nothing about this failure.
        assert_eq!(
            classify(Some("1.0.0"), &served(None, "r-2"), Some(&failed), true),
            None
        );
    }

    #[test]
    fn behind_is_stuck_without_a_session_and_held_agents_are_not_behind() {
        let to = served(Some("2.0.0"), "");
        assert_eq!(
            classify(Some("1.0.0"), &to, None, true),
            Some(AgentCondition::BehindTarget)
        );
        assert_eq!(
            classify(None, &to, None, false),
            Some(AgentCondition::Stuck)
        );
        assert_eq!(classify(Some("2.0.0"), &to, None, false), None);
        assert_eq!(
            classify(Some("1.0.0"), &served(None, "r-1"), None, false),
            None
        );
        let done = report("2.0.0", UpdateOutcome::Succeeded, "");
        assert_eq!(classify(Some("2.0.0"), &to, Some(&done), true), None);
    }
}
