//! An agent that enrols into a group a rollout is updating is not one of the members the
//! group's gates count (it is held, `joined_after_start`, until the group is done). Such an
//! enrolment is made visible — in its event, a metric and a webhook alert — because a burst
//! of them is what a leaked join token looks like mid-rollout.

use std::sync::Arc;

use drover_rules::{GroupPhase as Phase, ReasonCode};

use super::{ActiveRollout, Fleet};
use crate::webhook::{AlertKind, RolloutAlert};

impl Fleet {
    /// The active rollouts whose turn for `group` has come and not finished.
    pub(super) fn rollouts_updating(&self, group: &str) -> Vec<Arc<ActiveRollout>> {
        self.rollouts
            .read()
            .values()
            .filter(|rollout| {
                let index = rollout.spec.group_of(group);
                rollout.state.groups.get(index).is_some_and(|state| {
                    state.started_ms.is_some()
                        && matches!(state.phase, Phase::Active | Phase::Halted)
                })
            })
            .cloned()
            .collect()
    }

    /// After the enrolment committed: counted, and one alert per rollout.
    pub(super) fn announce_late_enrolment(
        &self,
        updating: &[Arc<ActiveRollout>],
        text: &str,
        at_ms: i64,
    ) {
        for rollout in updating {
            self.metrics().enrolment_during_rollout();
            self.alerts.push(RolloutAlert {
                kind: AlertKind::EnrolledDuringRollout,
                rollout_id: rollout.spec.rollout_id.clone(),
                channel: rollout.spec.channel.clone(),
                from: rollout.spec.start_version.to_string(),
                to: rollout.spec.target_version.to_string(),
                at: drover_rules::time::rfc3339(at_ms),
                reason: Some(ReasonCode::JoinedAfterStart.as_str().to_string()),
                detail: Some(text.to_string()),
            });
        }
    }
}

/// What the enrolment's event adds when rollouts are updating its group.
pub(super) fn late_note(updating: &[Arc<ActiveRollout>], group: &str) -> Option<String> {
    let ids: Vec<&str> = updating
        .iter()
        .map(|rollout| rollout.spec.rollout_id.as_str())
        .collect();
    (!ids.is_empty()).then(|| {
        format!(
            "; rollout {} was updating group {group}, so the agent is not counted by its gates \
             and waits until the group is done ({})",
            ids.join(", "),
            ReasonCode::JoinedAfterStart.as_str()
        )
    })
}
