//! Pins: a pinned agent stays on its version; rollouts and its channel pass it by.

use semver::Version;

use super::{Caller, Fleet, effects::Effect};
use crate::{
    domain::{now_ms, validate},
    error::{DroverError, Result},
    rollout::decisions,
    store::NewEvent,
};

impl Fleet {
    /// Pins or unpins an agent; a dry run checks the same and commits nothing.
    pub async fn pin(
        &self,
        agent_id: &str,
        note: &str,
        caller: &Caller,
        pinned: bool,
        dry_run: bool,
    ) -> Result<Effect> {
        validate::identifier("agent_id", agent_id)?;
        validate::bounded_text("note", note, 256)?;
        self.agent(agent_id).await?;
        let text = if pinned {
            format!(
                "agent pinned{}",
                if note.is_empty() {
                    String::new()
                } else {
                    format!(": {note}")
                }
            )
        } else {
            "agent unpinned".to_string()
        };
        let is_pinned = self.pins.read().contains(agent_id);
        if dry_run && !pinned && !is_pinned {
            return Err(not_pinned(agent_id));
        }
        let affected = if is_pinned == pinned {
            0
        } else {
            u64::from(self.pin_moves_target(agent_id, pinned))
        };
        let effect = Effect::new(dry_run, text.clone(), affected);
        if dry_run {
            return Ok(effect);
        }
        let event = NewEvent {
            agent_id: agent_id.into(),
            ..self.admin_event(caller, text)
        };
        if pinned {
            self.store()
                .pin_agent(agent_id, note, now_ms(), &event)
                .await?;
            self.pins.write().insert(agent_id.to_string());
        } else {
            if !self.store().unpin_agent(agent_id, &event).await? {
                return Err(not_pinned(agent_id));
            }
            self.pins.write().remove(agent_id);
        }
        self.announce(super::change_feed::Change::Pins).await;
        self.reconcile_after_commit().await;
        self.push_all();
        Ok(effect)
    }

    /// Whether pinning (or unpinning) the agent changes the target it is sent now.
    fn pin_moves_target(&self, agent_id: &str, pinned: bool) -> bool {
        let Some((channel, entry)) = self.inventory.get(agent_id) else {
            return false;
        };
        let before = self
            .directive_for(agent_id, &channel, &entry.group)
            .target_version;
        // A pinned agent holds what it has: no target.
        let after: Option<Version> = if pinned {
            None
        } else if let Some(rollout) = self.rollout_for(&channel) {
            let mut snapshot = self.snapshot(&rollout.spec, rollout.created_ms);
            for agent in snapshot.iter_mut().filter(|a| a.agent_id == agent_id) {
                agent.pinned = false;
            }
            let cp = self.view().control_plane.clone();
            let now = self.clock.now_ms();
            decisions(now, &rollout.spec, &rollout.state, &snapshot, cp.as_ref())
                .remove(agent_id)
                .and_then(|d| d.target)
        } else {
            self.view()
                .directive_for(&channel, &entry.group)
                .target_version
        };
        // A target equal to the agent's own version is a hold, like no target at all.
        let own = entry
            .version
            .as_deref()
            .and_then(|v| Version::parse(v).ok());
        let moving = |target: Option<Version>| target.filter(|v| Some(v) != own.as_ref());
        moving(before) != moving(after)
    }
}

fn not_pinned(agent_id: &str) -> DroverError {
    DroverError::FailedPrecondition(format!("agent {agent_id} is not pinned"))
}
