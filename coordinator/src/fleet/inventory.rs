//! What the rollout engine needs to know of every agent, in memory: group, version, health
//! and last report, by channel. Kept current by the same calls that write these facts to the
//! store (after the write commits), so a reconcile pass never reads the store and costs time
//! linear in the channel's agents. Loaded once at start-up; with several replicas, what the
//! others wrote is merged in before each pass (`replicas.rs`).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use parking_lot::RwLock;

use crate::{
    domain::{AgentIdentity, AgentRecord, Health, UpdateReport, agent_traits},
    store::ChangedAgent,
};

#[derive(Debug, Clone, PartialEq)]
pub struct InventoryEntry {
    pub group: String,
    pub version: Option<String>,
    pub health: Health,
    pub last_report: Option<UpdateReport>,
    /// When the last report arrived here (our clock); for a report loaded from the store or
    /// another replica, its finish time (the store keeps no arrival time with it).
    pub report_received_ms: i64,
    /// When the agent was first seen (a group's gates count only agents there at its start).
    pub first_seen_ms: i64,
    /// The replica holding the agent's session, as another replica wrote it (several
    /// replicas); `None` here for agents whose session this replica holds or none holds.
    pub connected_on: Option<String>,
    /// Its labels and installer kind (`domain::agent_traits`), shared: they change only
    /// when a session opens, and every pass reads them for the strata.
    pub traits: Arc<BTreeMap<String, String>>,
    /// The stop epoch its updater acknowledged last: (rollout id, epoch).
    pub ack: Option<(String, u64)>,
}

fn finished(report: Option<&UpdateReport>) -> i64 {
    report.map_or(0, |r| r.finished_ms)
}

#[derive(Default)]
pub struct Inventory {
    maps: RwLock<Maps>,
}

#[derive(Default)]
struct Maps {
    /// channel → agent id → entry; an agent is on exactly one channel.
    by_channel: HashMap<String, HashMap<String, InventoryEntry>>,
    channel_of: HashMap<String, String>,
}

impl Inventory {
    pub fn load(records: Vec<AgentRecord>, acks: Vec<(String, String, i64)>) -> Self {
        let mut maps = Maps::default();
        let mut acks: HashMap<String, (String, u64)> = acks
            .into_iter()
            .map(|(agent, rollout, epoch)| (agent, (rollout, u64::try_from(epoch).unwrap_or(0))))
            .collect();
        for record in records {
            let ack = acks.remove(&record.agent_id);
            maps.put(
                &record.agent_id,
                &record.channel,
                InventoryEntry {
                    group: record.group,
                    version: record.agent_version,
                    health: record.health,
                    report_received_ms: finished(record.last_report.as_ref()),
                    first_seen_ms: record.first_seen_ms,
                    last_report: record.last_report,
                    connected_on: None,
                    traits: Arc::new(agent_traits(record.labels, record.installer.as_str())),
                    ack,
                },
            );
        }
        Self {
            maps: RwLock::new(maps),
        }
    }

    /// An agent said who it is (a new session): its group or channel may have changed.
    /// `now_ms` (the fleet's clock) is its first-seen time if it is new.
    pub fn identify(&self, identity: &AgentIdentity, now_ms: i64) {
        let agent_id = identity.agent_id.as_str();
        let traits = agent_traits(identity.labels.clone(), identity.installer.as_str());
        // One write lock: a pass never sees the agent on neither or both channels.
        let mut maps = self.maps.write();
        let (last_report, report_received_ms, first_seen_ms, ack) = maps
            .take(agent_id)
            .map(|e| (e.last_report, e.report_received_ms, e.first_seen_ms, e.ack))
            .unwrap_or((None, 0, now_ms, None));
        maps.put(
            agent_id,
            &identity.channel,
            InventoryEntry {
                group: identity.group.clone(),
                version: identity.agent_version.as_ref().map(ToString::to_string),
                health: identity.health,
                last_report,
                report_received_ms,
                first_seen_ms,
                connected_on: None,
                traits: Arc::new(traits),
                ack,
            },
        );
    }

    /// Applies agent facts other replicas wrote (several replicas), except for the agents
    /// whose session this replica holds: its own memory is newer for those.
    pub fn merge_remote(&self, rows: Vec<ChangedAgent>, is_local: impl Fn(&str) -> bool) {
        let mut maps = self.maps.write();
        for row in rows {
            if is_local(&row.agent_id) {
                continue;
            }
            maps.take(&row.agent_id);
            maps.put(
                &row.agent_id,
                &row.channel,
                InventoryEntry {
                    group: row.group,
                    version: row.version,
                    health: row.health,
                    report_received_ms: finished(row.last_report.as_ref()),
                    first_seen_ms: row.first_seen_ms,
                    last_report: row.last_report,
                    connected_on: row.connected_on,
                    traits: Arc::new(row.traits),
                    ack: row.ack,
                },
            );
        }
    }

    /// The agent's updater acknowledged `epoch` of `rollout_id` (after the store has it).
    pub fn record_ack(&self, agent_id: &str, rollout_id: &str, epoch: u64) {
        self.update(agent_id, |entry| {
            let newer = match &entry.ack {
                Some((rollout, acked)) => rollout != rollout_id || *acked < epoch,
                None => true,
            };
            if newer {
                entry.ack = Some((rollout_id.to_string(), epoch));
            }
        });
    }

    pub fn set_status(&self, agent_id: &str, health: Health, version: Option<&str>) {
        self.update(agent_id, |entry| {
            entry.health = health;
            entry.version = version.map(str::to_string);
        });
    }

    /// Mirrors `Store::record_report`: the last report only moves forward in time, and a
    /// success moves the version only when the store moved it. `received_ms` is the fleet's
    /// clock (the engine's, which a test build may drive by hand).
    pub fn record_report(
        &self,
        agent_id: &str,
        report: &UpdateReport,
        version_moved: bool,
        received_ms: i64,
    ) {
        self.update(agent_id, |entry| {
            let newer = entry
                .last_report
                .as_ref()
                .is_none_or(|last| last.finished_ms <= report.finished_ms);
            if newer {
                entry.last_report = Some(report.clone());
                entry.report_received_ms = received_ms;
            }
            if version_moved {
                entry.version = Some(report.to_version.clone());
            }
        });
    }

    /// A copy of one channel's agents: (agent id, entry).
    pub fn channel(&self, channel: &str) -> Vec<(String, InventoryEntry)> {
        self.maps
            .read()
            .by_channel
            .get(channel)
            .map(|agents| {
                agents
                    .iter()
                    .map(|(id, entry)| (id.clone(), entry.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One channel's agents with whether each acknowledged `epoch` of `rollout_id`, and the
    /// replica another wrote it is connected to: the stop tally's inputs, without copying
    /// the entries (it runs on every status read and scrape).
    pub fn stop_acks_in(
        &self,
        channel: &str,
        rollout_id: &str,
        epoch: u64,
    ) -> Vec<(String, bool, Option<String>)> {
        let maps = self.maps.read();
        let Some(agents) = maps.by_channel.get(channel) else {
            return Vec::new();
        };
        agents
            .iter()
            .map(|(id, entry)| {
                let heard = entry
                    .ack
                    .as_ref()
                    .is_some_and(|(rollout, acked)| rollout == rollout_id && *acked >= epoch);
                (id.clone(), heard, entry.connected_on.clone())
            })
            .collect()
    }

    /// One agent's channel and group, without copying its entry (the heartbeat path).
    pub fn placement(&self, agent_id: &str) -> Option<(String, String)> {
        let maps = self.maps.read();
        let channel = maps.channel_of.get(agent_id)?;
        let group = &maps.by_channel.get(channel)?.get(agent_id)?.group;
        Some((channel.clone(), group.clone()))
    }

    /// One agent's channel and entry.
    pub fn get(&self, agent_id: &str) -> Option<(String, InventoryEntry)> {
        let maps = self.maps.read();
        let channel = maps.channel_of.get(agent_id)?;
        let entry = maps.by_channel.get(channel)?.get(agent_id)?;
        Some((channel.clone(), entry.clone()))
    }

    /// A copy of every agent: (agent id, channel, entry).
    pub fn all(&self) -> Vec<(String, String, InventoryEntry)> {
        let maps = self.maps.read();
        maps.by_channel
            .iter()
            .flat_map(|(channel, agents)| {
                agents
                    .iter()
                    .map(move |(id, entry)| (id.clone(), channel.clone(), entry.clone()))
            })
            .collect()
    }

    /// Calls `visit` with each channel and its agents under one read lock, copying nothing.
    /// `visit` must not touch the inventory (it holds the lock) and should take no other
    /// lock: it runs with every report's inventory update waiting.
    pub fn visit_channels(&self, mut visit: impl FnMut(&str, &HashMap<String, InventoryEntry>)) {
        let maps = self.maps.read();
        for (channel, agents) in &maps.by_channel {
            visit(channel, agents);
        }
    }

    /// Agents counted by (version, group, channel, health), under one read lock and without
    /// copying entries: what `/metrics` shows of the fleet at each scrape.
    pub fn tally(&self) -> HashMap<(String, String, String, Health), u64> {
        let maps = self.maps.read();
        let mut counts: HashMap<(&str, &str, &str, Health), u64> = HashMap::new();
        for (channel, agents) in &maps.by_channel {
            for entry in agents.values() {
                let version = entry.version.as_deref().unwrap_or("unknown");
                *counts
                    .entry((version, &entry.group, channel, entry.health))
                    .or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|((v, g, c, h), n)| ((v.to_string(), g.to_string(), c.to_string(), h), n))
            .collect()
    }

    /// How many known agents follow `channel`.
    pub fn count_on(&self, channel: &str) -> u64 {
        self.maps
            .read()
            .by_channel
            .get(channel)
            .map_or(0, |agents| agents.len() as u64)
    }

    /// The groups that agents on `channel` belong to.
    pub fn groups_on(&self, channel: &str) -> std::collections::BTreeSet<String> {
        self.maps
            .read()
            .by_channel
            .get(channel)
            .map(|agents| agents.values().map(|e| e.group.clone()).collect())
            .unwrap_or_default()
    }

    /// Up to three known agent ids that look like `agent_id` (for a typo's error message).
    pub fn agents_like(&self, agent_id: &str) -> Vec<String> {
        let maps = self.maps.read();
        crate::domain::validate::close_matches(agent_id, maps.channel_of.keys().map(String::as_str))
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    fn update(&self, agent_id: &str, change: impl FnOnce(&mut InventoryEntry)) {
        let mut maps = self.maps.write();
        let Maps {
            by_channel,
            channel_of,
        } = &mut *maps;
        if let Some(entry) = channel_of
            .get(agent_id)
            .and_then(|channel| by_channel.get_mut(channel))
            .and_then(|agents| agents.get_mut(agent_id))
        {
            change(entry);
        }
    }
}

impl Maps {
    fn put(&mut self, agent_id: &str, channel: &str, entry: InventoryEntry) {
        self.by_channel
            .entry(channel.to_string())
            .or_default()
            .insert(agent_id.to_string(), entry);
        self.channel_of
            .insert(agent_id.to_string(), channel.to_string());
    }

    fn take(&mut self, agent_id: &str) -> Option<InventoryEntry> {
        let channel = self.channel_of.remove(agent_id)?;
        self.by_channel.get_mut(&channel)?.remove(agent_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UpdateOutcome;

    fn report(to: &str, finished_ms: i64) -> UpdateReport {
        UpdateReport {
            attempt_id: format!("a-{finished_ms}"),
            from_version: "1.0.0".into(),
            to_version: to.into(),
            outcome: UpdateOutcome::Reverted,
            error: String::new(),
            started_ms: finished_ms - 1,
            finished_ms,
            directive_id: String::new(),
            rollout_id: String::new(),
        }
    }

    fn identity(channel: &str, group: &str, health: Health) -> AgentIdentity {
        AgentIdentity {
            agent_id: "a".into(),
            hostname: "a".into(),
            group: group.into(),
            channel: channel.into(),
            installer: crate::domain::InstallerKind::Tarball,
            agent_version: Some(semver::Version::new(1, 0, 0)),
            updater_version: "0.1.0".into(),
            labels: BTreeMap::from([("os".to_string(), "debian".to_string())]),
            health,
        }
    }

    #[test]
    fn agents_move_between_channels_and_reports_only_go_forward() {
        let inventory = Inventory::default();
        inventory.identify(&identity("edge", "dev", Health::Healthy), 5);
        inventory.record_report("a", &report("1.1.0", 20), false, 30);
        inventory.record_report("a", &report("1.2.0", 10), false, 40);
        let edge = inventory.channel("edge");
        assert_eq!(edge.len(), 1);
        let last = edge[0].1.last_report.as_ref().expect("a report");
        assert_eq!(
            last.to_version, "1.1.0",
            "an older report must not replace a newer one"
        );

        inventory.identify(&identity("stable", "prod", Health::Unknown), 6);
        assert!(inventory.channel("edge").is_empty());
        let stable = inventory.channel("stable");
        assert_eq!(stable[0].1.group, "prod");
        assert_eq!(
            stable[0].1.traits.get("installer").map(String::as_str),
            Some("tarball"),
            "the installer kind is a trait strata can use"
        );
        assert!(
            stable[0].1.last_report.is_some(),
            "the last report follows the agent"
        );
        assert_eq!(inventory.maps.read().channel_of.len(), 1);
    }
}
