//! The rollout engine: pure. Given the clock, a rollout's spec and state, and a snapshot of
//! the fleet, it decides the state transitions and, for every agent, what version it should
//! run now and why. No I/O, no async, no proto types; the reconcile loop in `fleet` runs it.

mod engine;
mod plan;
mod steer;
pub mod strata;
pub mod verdict;

use drover_rules::{MaintenanceSchedule, RolloutStatus, Weekdays};
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::domain::Health;

pub use engine::{decisions, reconcile};
pub use plan::{GroupPlan, plan};
pub use steer::{RolloutVerb, Steered, group_index, steer};

pub const HOUR_MS: i64 = 3_600_000;
const MAX_SEED_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// A group starts only when the previous one is done (and its wait passed); canaries first.
    HaltOnError,
    /// Each group starts in its own window, after the previous group started and its wait passed.
    TimeBased,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    pub name: String,
    pub days: Weekdays,
    /// UTC hour the group's window opens.
    pub start_hour: u32,
    pub window_hours: u32,
    /// Hours to wait after the previous group (done, or started for time-based) before this one.
    pub wait_hours: u32,
    pub canary_count: u32,
}

impl GroupSpec {
    pub fn window(&self) -> MaintenanceSchedule {
        MaintenanceSchedule {
            days: self.days,
            start_minute_utc: self.start_hour * 60,
            duration_minutes: self.window_hours * 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSpec {
    pub rollout_id: String,
    pub channel: String,
    pub start_version: Version,
    pub target_version: Version,
    pub strategy: Strategy,
    /// In order; agents of groups not listed belong to the last one.
    pub groups: Vec<GroupSpec>,
    /// A group is done when this share of it runs the target and is healthy.
    pub done_threshold_pct: u32,
    /// Failed agents in a group that halt it.
    pub failure_threshold: u32,
    /// Agents of a group updating at once; 0 means no cap.
    pub max_in_flight: u32,
    /// Ignore windows: groups start as soon as their turn comes.
    pub immediate: bool,
    /// The health verdict and bake time. Rollouts stored before verdicts existed have none.
    #[serde(default = "verdict::VerdictSpec::off")]
    pub verdict: verdict::VerdictSpec,
    /// The kinds of host canaries must cover, and what a failure stops. Rollouts stored
    /// before strata existed have none.
    #[serde(default = "strata::StrataSpec::off")]
    pub strata: strata::StrataSpec,
    /// Orders agents for canaries and install slots. Made from the spec, not the rollout id,
    /// so a dry run picks the canaries the real create picks; older rollouts have none and
    /// use their id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canary_seed: String,
}

impl RolloutSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.groups.is_empty() {
            return Err("a rollout needs at least one group".into());
        }
        let mut names = std::collections::HashSet::new();
        for g in &self.groups {
            if !names.insert(&g.name) {
                return Err(format!("group '{}' is listed twice", g.name));
            }
            if g.start_hour > 23 {
                return Err(format!(
                    "group '{}': start hour {} is not 0–23",
                    g.name, g.start_hour
                ));
            }
            if g.window_hours == 0 || g.window_hours > 24 {
                return Err(format!(
                    "group '{}': a window of {} hours is not 1–24",
                    g.name, g.window_hours
                ));
            }
            if g.days.is_empty() {
                return Err(format!("group '{}' has no weekdays", g.name));
            }
        }
        if self.done_threshold_pct == 0 || self.done_threshold_pct > 100 {
            return Err("the done threshold must be 1–100 %".into());
        }
        if self.failure_threshold == 0 {
            return Err("the failure threshold must be at least 1".into());
        }
        if self.start_version == self.target_version {
            return Err("the start and target versions are the same".into());
        }
        // Hashed once per agent per pass: bounded, and printable in a status.
        if self.canary_seed.len() > MAX_SEED_LEN || self.canary_seed.chars().any(char::is_control) {
            return Err(format!(
                "the canary seed must be at most {MAX_SEED_LEN} bytes of printable text"
            ));
        }
        self.strata.validate()?;
        self.verdict.validate()
    }

    /// What agents are ranked by (canaries, install slots): the seed, or the id of a rollout
    /// stored before seeds existed.
    pub fn rank_seed(&self) -> &str {
        if self.canary_seed.is_empty() {
            &self.rollout_id
        } else {
            &self.canary_seed
        }
    }

    /// The seed a new rollout gets unless the admin names one: the same spec ranks the same
    /// agents first, whenever it is planned or created.
    pub fn default_seed(&self) -> String {
        format!(
            "{}/{}/{}",
            self.channel, self.start_version, self.target_version
        )
    }

    /// The index of the group an agent belongs to (unlisted groups go to the last).
    pub fn group_of(&self, agent_group: &str) -> usize {
        self.groups
            .iter()
            .position(|g| g.name == agent_group)
            .unwrap_or(self.groups.len() - 1)
    }
}

/// A group's phase: one of the codes defined once in the rules crate.
pub use drover_rules::GroupPhase as Phase;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    pub phase: Phase,
    pub started_ms: Option<i64>,
    pub done_ms: Option<i64>,
    pub canaries: Vec<String>,
    /// Set by `start-group`: start now, whatever the order and window say.
    pub force_start: bool,
    pub skip_canaries: bool,
    pub note: String,
    /// Agents in the group when it started.
    pub initial_count: u64,
    /// Rolled back urgently: its agents go back at once, like a critical update, instead
    /// of waiting for their maintenance windows. (Older states have none: not urgent.)
    #[serde(default)]
    pub rollback_urgent: bool,
    /// Started by hand (`start-group`, `mark-done --now`): it updates at once, outside its
    /// window too.
    #[serde(default)]
    pub ignore_window: bool,
    /// The agents holding one of the group's `max_in_flight` install slots: granted by the
    /// reconciler and committed with this state before anyone is sent the target, so every
    /// replica serves the same few and the cap holds across replicas and restarts. A slot is
    /// given back once its agent is on the target, failed, pinned or gone. Empty without a
    /// cap, and outside the active phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<String>,
    /// When the group first reached its done threshold: its bake time runs from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_ms: Option<i64>,
    /// The health verdict as it stood at the group's last transition (halt, done, pause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<verdict::GroupVerdict>,
    /// When the group entered its phase (our clock); a trace's phase span starts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_ms: Option<i64>,
}

impl Default for GroupState {
    fn default() -> Self {
        Self {
            phase: Phase::Unstarted,
            started_ms: None,
            done_ms: None,
            canaries: Vec::new(),
            force_start: false,
            skip_canaries: false,
            note: String::new(),
            initial_count: 0,
            rollback_urgent: false,
            ignore_window: false,
            in_flight: Vec::new(),
            threshold_ms: None,
            verdict: None,
            phase_ms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub paused: bool,
    pub groups: Vec<GroupState>,
    /// Strata held after a failure confined to them (halt scope `stratum`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_strata: Vec<strata::HeldStratum>,
    /// Strata an admin released, and when: their failures before that no longer count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released_strata: Vec<strata::HeldStratum>,
    /// Raised by every stop (a halt, a pause, a rollback, a held stratum) and carried by
    /// every directive of the rollout: an updater acknowledges it, and never starts an
    /// install under an epoch older than one it has seen. 0: nothing stopped yet.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stop_epoch: u64,
    /// When the last stop was decided (our clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_ms: Option<i64>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl RolloutState {
    pub fn new(spec: &RolloutSpec) -> Self {
        Self {
            paused: false,
            groups: vec![GroupState::default(); spec.groups.len()],
            held_strata: Vec::new(),
            released_strata: Vec::new(),
            stop_epoch: 0,
            stop_ms: None,
        }
    }

    /// Whether going from `before` to this state stops an agent that could install: a
    /// pause, a group halted or rolled back, a stratum held.
    pub fn stops_since(&self, before: &RolloutState) -> bool {
        let newly = |phase: Phase| {
            before
                .groups
                .iter()
                .zip(&self.groups)
                .any(|(b, a)| b.phase != phase && a.phase == phase)
        };
        (self.paused && !before.paused)
            || newly(Phase::Halted)
            || newly(Phase::Rolledback)
            || self.held_strata.len() > before.held_strata.len()
    }

    /// Raises the stop epoch if this state stops something `before` allowed, and notes
    /// when each group that changed phase entered its new one.
    pub fn stamp_changes(&mut self, before: &RolloutState, now_ms: i64) {
        if self.stops_since(before) {
            self.stop_epoch = before.stop_epoch + 1;
            self.stop_ms = Some(now_ms);
        }
        for (group, old) in self.groups.iter_mut().zip(&before.groups) {
            if group.phase != old.phase {
                group.phase_ms = Some(now_ms);
            }
        }
    }

    pub fn finished(&self) -> bool {
        self.groups
            .iter()
            .all(|g| matches!(g.phase, Phase::Done | Phase::Rolledback))
    }
}

/// What the engine needs to know about one agent of the rollout's channel.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSnapshot {
    pub agent_id: String,
    pub group: String,
    pub version: Option<Version>,
    pub health: Health,
    pub connected: bool,
    pub pinned: bool,
    /// When (our clock) the agent's report of a failed, reverted or refused update to the
    /// rollout's target arrived. It counts against a group only if it arrived after the
    /// group started: a report that predates the group names a target never sent.
    pub failed_at_ms: Option<i64>,
    /// When the agent was first seen (our clock; 0: unknown, as old as any group). A group's
    /// gates count only the agents that were there when it started: agents enrolled later
    /// (with a leaked join token, say) follow once it is done and cannot complete it.
    pub joined_ms: i64,
    /// When (our clock) it was seen on its current version, if known: the install.
    pub updated_at_ms: Option<i64>,
    /// Its health samples around its install (or its group's start), if it sends any.
    pub track: Option<verdict::Track>,
    /// Its stratum key under the rollout's strata labels (`strata::stratum_key`); empty
    /// without strata.
    pub stratum: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDecision {
    /// `None`: hold what you have (install nothing, revert nothing). A hold never names a
    /// version, so a decision made from stale facts can never send an agent back.
    pub target: Option<Version>,
    pub reason: drover_rules::ReasonCode,
    pub detail: String,
    /// Install now, whatever the agent's maintenance window says (an urgent rollback).
    pub urgent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutEvent {
    pub group: Option<String>,
    pub text: String,
}

/// A stable order of agents per rollout (FNV-1a of rollout id and agent id): canaries and
/// in-flight slots are picked in this order, so the same inputs always pick the same agents.
pub fn agent_rank(rollout_id: &str, agent_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in rollout_id.bytes().chain([0]).chain(agent_id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The rollout's status once its state is `state`: done when every group is, rolled back
/// when every group is and nobody it touched still runs the target; else active.
pub fn status_after(
    spec: &RolloutSpec,
    state: &RolloutState,
    snapshot: &[AgentSnapshot],
) -> RolloutStatus {
    let finished = state.finished();
    // A held stratum keeps the rollout governing: done, the channel would hand its agents
    // the target. So does a released one until its agents have installed (or failed, and
    // held it again): released, they are still watched.
    let released_catching_up = snapshot.iter().any(|a| {
        !a.pinned
            && a.version.as_ref() != Some(&spec.target_version)
            && a.failed_at_ms.is_none()
            && state.released_strata.iter().any(|r| r.stratum == a.stratum)
    });
    if finished
        && state.held_strata.is_empty()
        && !released_catching_up
        && state.groups.iter().all(|g| g.phase == Phase::Done)
    {
        return RolloutStatus::Done;
    }
    // A rollback ends when nobody it touched still runs the target: until then the rollout
    // keeps governing, so its (urgent) directives stay in force.
    if finished
        && state.groups.iter().all(|g| g.phase == Phase::Rolledback)
        && !snapshot
            .iter()
            .any(|a| !a.pinned && a.version.as_ref() == Some(&spec.target_version))
    {
        return RolloutStatus::Rolledback;
    }
    RolloutStatus::Active
}
