//! History for admins (issue #10): every rollout ever started, one rollout by id with its
//! per-group timelines, and one agent's attempts and decisions over time. All read from the
//! store, so they survive restarts; every list is bounded.

use std::sync::Arc;

use super::{ActiveRollout, AgentView, Fleet};
use crate::{
    domain::validate,
    error::{DroverError, Result},
    store::{Event, StoredReport},
};

/// Default and largest page of `rollout list --all`.
pub const ROLLOUT_PAGE_DEFAULT: u32 = 50;
/// Default and largest number of timeline entries of `rollout show`.
pub const TIMELINE_DEFAULT: u32 = 200;
/// Default number of reports and of events in `agents history`.
pub const AGENT_HISTORY_DEFAULT: u32 = 50;
/// The bound on every history list.
pub const HISTORY_MAX: u32 = 1000;

/// 0 means `default`; anything else is held to 1..=HISTORY_MAX.
pub fn bounded(limit: u32, default: u32) -> u32 {
    if limit == 0 {
        default
    } else {
        limit.min(HISTORY_MAX)
    }
}

/// One page of rollouts, newest first, and the token for the next page (none at the end).
#[derive(Debug, Clone)]
pub struct RolloutPage {
    pub rollouts: Vec<Arc<ActiveRollout>>,
    pub next_page_token: Option<String>,
}

/// One group's timeline (the rollout-wide one has the empty group), oldest first.
#[derive(Debug, Clone)]
pub struct GroupTimeline {
    pub group: String,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone)]
pub struct RolloutDetail {
    pub rollout: Arc<ActiveRollout>,
    /// The rollout-wide timeline first, then each group's in rollout order.
    pub timelines: Vec<GroupTimeline>,
    /// Older entries were left out (the limit).
    pub truncated: bool,
}

#[derive(Debug, Clone)]
pub struct AgentHistory {
    pub agent: AgentView,
    /// Newest first.
    pub reports: Vec<StoredReport>,
    /// Newest first.
    pub events: Vec<Event>,
}

impl Fleet {
    /// Every rollout ever started, newest first; `page_token` is the last rollout id of the
    /// previous page. Active rollouts come from memory (with live counts).
    pub async fn rollout_history(&self, page_token: &str, limit: u32) -> Result<RolloutPage> {
        let limit = bounded(limit, ROLLOUT_PAGE_DEFAULT);
        let after = if page_token.is_empty() {
            None
        } else {
            validate::identifier("page_token", page_token)?;
            let row = self.store().rollout(page_token).await?.ok_or_else(|| {
                DroverError::invalid(format!(
                    "page token '{page_token}' names no rollout; start again without it"
                ))
            })?;
            Some((row.created_ms, row.rollout_id))
        };
        let rows = self
            .store()
            .rollouts_page(after.as_ref().map(|(ms, id)| (*ms, id.as_str())), limit)
            .await?;
        let next_page_token = (rows.len() as u32 == limit)
            .then(|| rows.last().map(|r| r.rollout_id.clone()))
            .flatten();
        let rollouts = rows
            .iter()
            .map(
                |row| match self.live_rollout(&row.channel, &row.rollout_id) {
                    Some(live) => Ok(live),
                    None => ActiveRollout::from_row(row).map(Arc::new),
                },
            )
            .collect::<Result<_>>()?;
        Ok(RolloutPage {
            rollouts,
            next_page_token,
        })
    }

    /// One rollout by id, active or finished, with its timelines (the newest `limit` events).
    pub async fn rollout_detail(&self, rollout_id: &str, limit: u32) -> Result<RolloutDetail> {
        validate::identifier("rollout_id", rollout_id)?;
        let limit = bounded(limit, TIMELINE_DEFAULT);
        let row = self.store().rollout(rollout_id).await?.ok_or_else(|| {
            DroverError::NotFound(format!(
                "no rollout '{rollout_id}' is known; `droverctl rollout list --all` shows every rollout"
            ))
        })?;
        let rollout = match self.live_rollout(&row.channel, rollout_id) {
            Some(live) => live,
            None => Arc::new(ActiveRollout::from_row(&row)?),
        };
        // One more than asked, to know whether older entries were left out.
        let mut events = self.store().rollout_events(rollout_id, limit + 1).await?;
        let truncated = events.len() as u32 > limit;
        if truncated {
            events.remove(0);
        }
        Ok(RolloutDetail {
            timelines: timelines(&rollout, events),
            rollout,
            truncated,
        })
    }

    /// An agent's update attempts and the events about it, newest first. An unknown agent is
    /// NOT_FOUND with the close matches.
    pub async fn agent_history(&self, agent_id: &str, limit: u32) -> Result<AgentHistory> {
        let agent = self.agent(agent_id).await?;
        let limit = bounded(limit, AGENT_HISTORY_DEFAULT);
        let reports = self.store().agent_reports(agent_id, limit).await?;
        let mut events = self.store().recent_events(agent_id, limit).await?;
        events.reverse();
        Ok(AgentHistory {
            agent,
            reports,
            events,
        })
    }

    /// The in-memory rollout with this id, if it is the channel's active or last finished one.
    fn live_rollout(&self, channel: &str, rollout_id: &str) -> Option<Arc<ActiveRollout>> {
        // The channel's active rollout, or the last to finish (which keeps its final
        // counts in memory; one read from the store has none).
        self.rollout_status(channel)
            .ok()
            .filter(|live| live.spec.rollout_id == rollout_id)
    }
}

/// Splits a rollout's events by group: the rollout-wide timeline, then the spec's groups in
/// order, then any group the spec no longer names. Empty group timelines are kept, so every
/// group shows.
fn timelines(rollout: &ActiveRollout, events: Vec<Event>) -> Vec<GroupTimeline> {
    let mut out = vec![GroupTimeline {
        group: String::new(),
        events: Vec::new(),
    }];
    out.extend(rollout.spec.groups.iter().map(|g| GroupTimeline {
        group: g.name.clone(),
        events: Vec::new(),
    }));
    for event in events {
        match out.iter_mut().find(|t| t.group == event.group) {
            Some(timeline) => timeline.events.push(event),
            None => out.push(GroupTimeline {
                group: event.group.clone(),
                events: vec![event],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn limits_default_and_cap() {
        assert_eq!(bounded(0, 50), 50);
        assert_eq!(bounded(7, 50), 7);
        assert_eq!(bounded(5000, 50), 1000);
    }
}
