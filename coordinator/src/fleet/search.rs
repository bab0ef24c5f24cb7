//! The dashboard's agent table and version counts. A search without a reason or condition
//! is one store query per page; those are decided in memory (`directive_for` reads no
//! store), so with one the matching rows are read once and paged here.

use std::collections::BTreeMap;

use drover_rules::{AgentCondition, ReasonCode};

use super::{AgentView, Fleet};
use crate::{error::Result, store::AgentSearch};

/// What a search keeps that only memory knows: the current decision's reason, and the
/// agent's condition.
#[derive(Debug, Default, Clone, Copy)]
pub struct DecidedFilter {
    pub reason: Option<ReasonCode>,
    pub condition: Option<AgentCondition>,
}

/// Agents one reason-filtered search reads at most (a fleet larger than this pages by
/// other filters first).
const MAX_SCAN: u32 = 100_000;

impl Fleet {
    /// One page (`offset`, `limit`) of agents matching `search` and `decided`; with the
    /// total matching.
    pub async fn search_agents(
        &self,
        search: &AgentSearch,
        decided: DecidedFilter,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<AgentView>, u64)> {
        if decided.reason.is_none() && decided.condition.is_none() {
            let records = self.store().search_agents(search, offset, limit).await?;
            let views = records.into_iter().map(|r| self.agent_view(r)).collect();
            return Ok((views, self.store().count_search(search).await?));
        }
        let records = self.store().search_agents(search, 0, MAX_SCAN).await?;
        let matching: Vec<_> = records
            .into_iter()
            .filter(|r| {
                let directive = self.directive_for(&r.agent_id, &r.channel, &r.group);
                decided
                    .reason
                    .is_none_or(|reason| directive.reason == reason)
                    && decided.condition.is_none_or(|condition| {
                        self.in_condition(&r.agent_id, &directive, condition)
                    })
            })
            .collect();
        let total = matching.len() as u64;
        let page = matching
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit as usize)
            .map(|r| self.agent_view(r))
            .collect();
        Ok((page, total))
    }

    /// Agents by version from memory ("unknown" for none), for the timeline's samples.
    pub fn version_counts(&self) -> Vec<(String, u64)> {
        let mut counts = BTreeMap::<String, u64>::new();
        for (_, _, entry) in self.inventory.all() {
            let version = entry.version.unwrap_or_else(|| "unknown".into());
            *counts.entry(version).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    /// Agents of `channel` by group and by the reason of their current decision, from
    /// memory (the rollouts view's counts; no store read).
    pub fn reason_counts(&self, channel: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut counts = BTreeMap::<String, BTreeMap<String, u64>>::new();
        for (agent_id, entry) in self.inventory.channel(channel) {
            let directive = self.directive_for(&agent_id, channel, &entry.group);
            *counts
                .entry(entry.group)
                .or_default()
                .entry(directive.reason.as_str().to_string())
                .or_default() += 1;
        }
        counts
    }
}
