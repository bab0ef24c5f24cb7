//! A rollout's visible status, and the webhook alert for each change of it. Alerts are
//! enqueued only after the change committed, and enqueueing never waits for delivery.

use drover_rules::{ReasonCode, RolloutStatus};

use super::{Fleet, rollouts::ActiveRollout};
use crate::{
    rollout::Phase,
    webhook::{AlertKind, RolloutAlert},
};

impl ActiveRollout {
    /// The status an admin sees. The store keeps `active` until the rollout ends; shown are
    /// `rolling_back` (every group was rolled back, agents still returning to the start
    /// version) and `halted` (a group halted; nobody new moves until an admin acts).
    pub fn shown_status(&self) -> RolloutStatus {
        let groups = &self.state.groups;
        if self.status != RolloutStatus::Active {
            self.status
        } else if groups.iter().all(|g| g.phase == Phase::Rolledback) {
            RolloutStatus::RollingBack
        } else if groups.iter().any(|g| g.phase == Phase::Halted) {
            RolloutStatus::Halted
        } else {
            self.status
        }
    }
}

impl Fleet {
    /// Enqueues the alert for `after` if its shown status differs from `before`'s (`None`:
    /// the rollout was just created). `detail` says who or what moved it, where known.
    pub(super) fn alert_transition(
        &self,
        before: Option<&ActiveRollout>,
        after: &ActiveRollout,
        detail: Option<String>,
    ) {
        let (was, now) = (
            before.map(ActiveRollout::shown_status),
            after.shown_status(),
        );
        let rolled_back = |s: Option<RolloutStatus>| {
            matches!(
                s,
                Some(RolloutStatus::RollingBack | RolloutStatus::Rolledback)
            )
        };
        let (kind, reason) = match now {
            _ if before.is_none() => (AlertKind::RolloutStarted, None),
            RolloutStatus::Halted if was != Some(now) => (
                AlertKind::RolloutHalted,
                Some(ReasonCode::GroupHalted.as_str().to_string()),
            ),
            RolloutStatus::Done if was != Some(now) => (AlertKind::RolloutDone, None),
            RolloutStatus::RollingBack | RolloutStatus::Rolledback if !rolled_back(was) => (
                AlertKind::RolloutRolledBack,
                Some(ReasonCode::Rolledback.as_str().to_string()),
            ),
            _ => return,
        };
        let detail = match kind {
            AlertKind::RolloutHalted => halted_groups(after).or(detail),
            _ => detail,
        };
        self.alerts.push(RolloutAlert {
            kind,
            rollout_id: after.spec.rollout_id.clone(),
            channel: after.spec.channel.clone(),
            from: after.spec.start_version.to_string(),
            to: after.spec.target_version.to_string(),
            at: drover_rules::time::rfc3339(self.clock.now_ms()),
            reason,
            detail,
        });
    }
}

/// "group canary halted: 2 agents failed …" for each halted group.
fn halted_groups(rollout: &ActiveRollout) -> Option<String> {
    let halted: Vec<String> = rollout
        .spec
        .groups
        .iter()
        .zip(&rollout.state.groups)
        .filter(|(_, g)| g.phase == Phase::Halted)
        .map(|(spec, g)| match g.note.is_empty() {
            true => format!("group {} halted", spec.name),
            false => format!("group {} halted: {}", spec.name, g.note),
        })
        .collect();
    (!halted.is_empty()).then(|| halted.join("; "))
}
