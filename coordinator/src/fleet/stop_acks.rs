//! Verifiable halts: every stop (halt, pause, rollback, held stratum) raises its rollout's
//! epoch, every directive carries it, and updaters acknowledge it. Acknowledgements are
//! stored (group commit, only when they move forward) and merged by every replica, so any
//! replica can say who has heard the latest stop, who not yet, and who cannot hear it now.

use drover_rules::AckState;

use super::{Fleet, rollouts::ActiveRollout};
use crate::{error::Result, store::AgentWrite};

/// Stragglers listed by name at most: the counts cover the rest.
pub const MAX_STRAGGLERS: usize = 20;

/// Who has heard a rollout's latest stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopAcks {
    pub epoch: u64,
    pub stop_ms: Option<i64>,
    pub acknowledged: u64,
    pub not_yet: u64,
    pub unreachable: u64,
    /// Agents that have not acknowledged, connected ones first, by id.
    pub stragglers: Vec<(String, AckState)>,
}

impl Fleet {
    /// Records that the agent's updater heard stop `epoch` of `rollout_id`, if that is the
    /// agent's rollout and an epoch it was issued; anything else (epoch 0: no stop yet, an
    /// old or unknown rollout, an epoch from the future) is ignored. The session checks the
    /// acknowledgement names the directive it holds; an agent can only speak for itself.
    pub async fn acknowledge_stop(
        &self,
        agent_id: &str,
        channel: &str,
        rollout_id: &str,
        epoch: u64,
    ) -> Result<()> {
        let Some(rollout) = self.rollout_for(channel) else {
            return Ok(());
        };
        if epoch == 0 || rollout.spec.rollout_id != rollout_id || epoch > rollout.state.stop_epoch {
            return Ok(());
        }
        let known = self
            .inventory
            .get(agent_id)
            .and_then(|(_, entry)| entry.ack)
            .is_some_and(|(rollout, acked)| rollout == rollout_id && acked >= epoch);
        if known {
            return Ok(());
        }
        self.writer
            .write(AgentWrite::Ack {
                agent_id: agent_id.to_string(),
                rollout_id: rollout.spec.rollout_id.clone(),
                epoch,
            })
            .await?;
        self.inventory
            .record_ack(agent_id, &rollout.spec.rollout_id, epoch);
        self.counters
            .stop_acks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Who has heard `rollout`'s latest stop; `None` before its first stop, and once the
    /// rollout finished (its channel serves its agents then, and a finished rollback proves
    /// itself: nobody runs the target any more). Pinned agents are left out: a pin holds
    /// them outside the rollout.
    pub fn stop_acks(&self, rollout: &ActiveRollout) -> Option<StopAcks> {
        let epoch = rollout.state.stop_epoch;
        if epoch == 0 || rollout.status != drover_rules::RolloutStatus::Active {
            return None;
        }
        let pins = self.pins.read();
        let rollout_id = rollout.spec.rollout_id.as_str();
        let mut acks = StopAcks {
            epoch,
            stop_ms: rollout.state.stop_ms,
            acknowledged: 0,
            not_yet: 0,
            unreachable: 0,
            stragglers: Vec::new(),
        };
        let agents = self
            .inventory
            .stop_acks_in(&rollout.spec.channel, rollout_id, epoch);
        for (agent_id, heard, connected_on) in agents {
            if pins.contains(&agent_id) {
                continue;
            }
            let connected = self.sessions.get(&agent_id).is_some()
                || self.connected_elsewhere(connected_on.as_deref());
            let state = match (heard, connected) {
                (true, _) => AckState::Acknowledged,
                (false, true) => AckState::NotYet,
                (false, false) => AckState::Unreachable,
            };
            match state {
                AckState::Acknowledged => acks.acknowledged += 1,
                AckState::NotYet => acks.not_yet += 1,
                AckState::Unreachable => acks.unreachable += 1,
            }
            if state != AckState::Acknowledged {
                acks.stragglers.push((agent_id, state));
            }
        }
        acks.stragglers
            .sort_by(|a, b| (a.1 != AckState::NotYet, &a.0).cmp(&(b.1 != AckState::NotYet, &b.0)));
        acks.stragglers.truncate(MAX_STRAGGLERS);
        Some(acks)
    }
}
