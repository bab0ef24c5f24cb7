//! Every agent's health samples, folded into its [`Track`] in memory as heartbeats bring them:
//! no store write per sample. The engine reads them in its snapshot. Samples of an agent
//! whose session is on another replica stay there (see ARCHITECTURE.md, "Health verdicts").

use std::collections::HashMap;

use parking_lot::Mutex;

use super::Fleet;
use crate::rollout::verdict::{HealthSample, Track, VerdictSpec};

#[derive(Default)]
pub struct HealthTracks {
    pub(super) tracks: Mutex<HashMap<String, Track>>,
}

impl HealthTracks {
    pub fn get(&self, agent_id: &str) -> Option<Track> {
        self.tracks.lock().get(agent_id).cloned()
    }
}

impl Fleet {
    /// Folds a heartbeat's sample into the agent's track. An agent in a started group of an
    /// active rollout and not on its target is marked at the group's start (the comparison
    /// cohort); its install marks it again when its version changes.
    pub fn record_health_sample(
        &self,
        agent_id: &str,
        version: Option<&str>,
        sample: &HealthSample,
    ) {
        let Some(version) = version else {
            return;
        };
        let Some((channel, group)) = self.inventory.placement(agent_id) else {
            return;
        };
        let rollout = self.rollouts.read().get(&channel).cloned();
        let (reference, samples_per_agent) = rollout
            .map(|rollout| {
                let index = rollout.spec.group_of(&group);
                let started = rollout.state.groups[index].started_ms;
                let on_target = rollout.spec.target_version.to_string() == version;
                let reference = started.filter(|_| !on_target);
                (reference, rollout.spec.verdict.samples_per_agent)
            })
            .unwrap_or((None, VerdictSpec::default().samples_per_agent));
        let now = self.clock.now_ms();
        self.health_tracks
            .tracks
            .lock()
            .entry(agent_id.to_string())
            .or_default()
            .record(now, version, sample, reference, samples_per_agent);
    }
}
