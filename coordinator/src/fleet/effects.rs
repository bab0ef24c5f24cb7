//! What a mutating admin call changes, or in a dry run would change: the call validates and
//! computes exactly as for real, then commits, or returns this and commits nothing (no store
//! write, no event, no push). Counted from memory; no store read.

use std::collections::HashMap;

use semver::Version;

use super::{Fleet, view::SettingsView};
use crate::{
    domain::{Health, directive::Directive},
    rollout::{AgentDecision, AgentSnapshot, GroupPlan, RolloutSpec},
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effect {
    /// Nothing was changed: the call was checked like the real one and stopped before its commit.
    pub dry_run: bool,
    /// The event the change writes (or would write).
    pub summary: String,
    /// Known agents whose directive changes: target, critical flag or window.
    pub agents_affected: u64,
    /// Rollout verbs: the same count per group, in the rollout's order.
    pub groups: Vec<u64>,
    /// A dry-run `rollout create`: when each group would start and finish.
    pub plan: Vec<GroupPlan>,
}

impl Effect {
    pub(super) fn new(dry_run: bool, summary: impl Into<String>, agents_affected: u64) -> Self {
        Self {
            dry_run,
            summary: summary.into(),
            agents_affected,
            ..Self::default()
        }
    }
}

/// What an agent sees of a directive: a change here is a change for the agent.
fn seen(
    d: &Directive,
) -> (
    Option<&Version>,
    bool,
    Option<&drover_rules::MaintenanceSchedule>,
) {
    (d.target_version.as_ref(), d.critical, d.schedule.as_ref())
}

impl Fleet {
    /// Known agents for which `matches(channel, group)` whose directive differs between the
    /// current settings and `next`.
    pub(super) fn settings_effect(
        &self,
        next: &SettingsView,
        matches: impl Fn(&str, &str) -> bool,
    ) -> u64 {
        let current = self.view();
        let mut affected = 0;
        for (agent_id, channel, entry) in self.inventory.all() {
            if !matches(&channel, &entry.group) {
                continue;
            }
            let before = self.directive_in(&current, &agent_id, &channel, &entry.group);
            let after = self.directive_in(next, &agent_id, &channel, &entry.group);
            affected += u64::from(seen(&before) != seen(&after));
        }
        affected
    }
}

/// Agents per group whose target or urgency moves from `before` to `after`. A target equal
/// to the agent's own version is a hold, like no target at all.
pub(super) fn rollout_effect(
    spec: &RolloutSpec,
    snapshot: &[AgentSnapshot],
    before: impl Fn(&AgentSnapshot) -> (Option<Version>, bool),
    after: &HashMap<String, AgentDecision>,
) -> Vec<u64> {
    let mut groups = vec![0; spec.groups.len()];
    for agent in snapshot {
        let moving = |(target, urgent): (Option<Version>, bool)| {
            (target.filter(|v| Some(v) != agent.version.as_ref()), urgent)
        };
        let next = after
            .get(&agent.agent_id)
            .map(|d| moving((d.target.clone(), d.urgent)));
        if next.is_some_and(|next| next != moving(before(agent))) {
            groups[spec.group_of(&agent.group)] += 1;
        }
    }
    groups
}

/// How many of a group's agents are where (counted from the inventory after each pass).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupCounts {
    pub present: u64,
    pub on_target: u64,
    pub healthy: u64,
    pub failed: u64,
    /// Sent the target, not on it yet, not failed (for `/metrics`; not in the API).
    #[serde(skip)]
    pub in_flight: u64,
}

pub(super) fn group_counts(spec: &RolloutSpec, snapshot: &[AgentSnapshot]) -> Vec<GroupCounts> {
    let mut counts = vec![GroupCounts::default(); spec.groups.len()];
    for agent in snapshot.iter().filter(|a| !a.pinned) {
        let c = &mut counts[spec.group_of(&agent.group)];
        c.present += 1;
        if agent.version.as_ref() == Some(&spec.target_version) {
            c.on_target += 1;
            if agent.health != Health::Unhealthy {
                c.healthy += 1;
            }
        }
        if agent.failed_at_ms.is_some() {
            c.failed += 1;
        }
    }
    counts
}
