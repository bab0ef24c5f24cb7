//! Strata: the kinds of host in a fleet (distribution and its version, architecture,
//! installer, any label), so a group's canaries cover each kind that is big enough to
//! matter, and a failure can name, and hold, the kind it happened on. Pure.

use std::collections::{BTreeMap, BTreeSet};

use drover_rules::HaltScope;
use serde::{Deserialize, Serialize};

pub mod simulation;

use super::{AgentSnapshot, RolloutState};

pub use crate::domain::INSTALLER_LABEL;
/// What a stratum key shows for a label the agent does not report.
pub const MISSING: &str = "-";
/// The labels new rollouts stratify by unless told otherwise.
pub const DEFAULT_LABELS: [&str; 4] = ["os", "os_version", "arch", INSTALLER_LABEL];
pub const DEFAULT_MIN_AGENTS: u32 = 20;
/// At most this many labels, each at most this long: a spec is bounded like everything else.
pub const MAX_LABELS: usize = 8;
const MAX_LABEL_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrataSpec {
    /// The labels whose values make a stratum; empty: no strata (one kind of host).
    pub labels: Vec<String>,
    /// A stratum with at least this many agents in a group gets a canary of its own there.
    pub min_agents: u32,
    pub halt_scope: HaltScope,
}

impl StrataSpec {
    /// No strata: canaries in the rollout's order. Rollouts stored before strata existed
    /// read as this; like every rollout, a halt of theirs now stops the whole rollout.
    pub fn off() -> Self {
        Self {
            labels: Vec::new(),
            min_agents: DEFAULT_MIN_AGENTS,
            halt_scope: HaltScope::Rollout,
        }
    }

    pub fn default_on() -> Self {
        Self {
            labels: DEFAULT_LABELS.iter().map(|l| l.to_string()).collect(),
            ..Self::off()
        }
    }

    pub fn enabled(&self) -> bool {
        !self.labels.is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.labels.len() > MAX_LABELS {
            return Err(format!(
                "{} strata labels given; at most {MAX_LABELS}",
                self.labels.len()
            ));
        }
        let mut seen = BTreeSet::new();
        for label in &self.labels {
            let valid = !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
            if !valid {
                return Err(format!(
                    "strata label '{}' is not a label name (letters, digits, . _ - :; at most \
                     {MAX_LABEL_LEN})",
                    label.escape_debug()
                ));
            }
            if !seen.insert(label) {
                return Err(format!("strata label '{label}' is listed twice"));
            }
        }
        if self.halt_scope == HaltScope::Stratum && !self.enabled() {
            return Err("halt scope stratum needs strata: name the labels with --strata".into());
        }
        if self.min_agents == 0 {
            return Err("a stratum's minimum agents for a canary must be at least 1".into());
        }
        Ok(())
    }
}

/// The stratum an agent with these labels (its installer under `installer`) belongs to:
/// `os=debian,arch=x86_64`, in the spec's label order; empty when there are no strata.
pub fn stratum_key(labels: &[String], traits: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|label| {
            let value = traits
                .get(label)
                .map_or(MISSING.to_string(), |v| key_value(v));
            format!("{label}={value}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A label value as a key shows it: letters, digits and `.-_:/`, anything else `_`, at most
/// 63 characters. Labels may hold `,`, `=` or line breaks, which would make keys collide or
/// break the notes and events that name a stratum.
fn key_value(value: &str) -> String {
    value
        .chars()
        .take(MAX_LABEL_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_:/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A stratum an admin or a failure has held: its agents install nothing new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldStratum {
    pub stratum: String,
    pub since_ms: i64,
    pub note: String,
}

impl RolloutState {
    pub fn holds(&self, stratum: &str) -> bool {
        is_held(&self.held_strata, stratum)
    }
}

pub fn is_held(held: &[HeldStratum], stratum: &str) -> bool {
    !stratum.is_empty() && held.iter().any(|h| h.stratum == stratum)
}

/// From when an agent of `stratum` has its failures count against its group: the group's
/// start, or the stratum's release if later (a release forgives what made it held).
pub fn failures_count_from(
    released: &[HeldStratum],
    stratum: &str,
    started_ms: Option<i64>,
) -> Option<i64> {
    let release = released
        .iter()
        .find(|r| r.stratum == stratum)
        .map(|r| r.since_ms);
    match (started_ms, release) {
        (Some(start), Some(release)) => Some(start.max(release)),
        (start, _) => start,
    }
}

/// One stratum of a group: how many agents it has, and whether it earns a canary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StratumCoverage {
    pub stratum: String,
    /// Its agents still to update.
    pub agents: u64,
    /// At least `min_agents`: one of the group's canaries must come from it.
    pub needs_canary: bool,
    pub held: bool,
}

/// The strata of `members` (a group's agents still to update), largest first (then by
/// key): the plan's coverage matrix.
pub fn coverage(
    strata: &StrataSpec,
    held: &[HeldStratum],
    members: &[&AgentSnapshot],
) -> Vec<StratumCoverage> {
    let mut sizes: BTreeMap<&str, u64> = BTreeMap::new();
    for agent in members.iter().filter(|a| !a.pinned) {
        *sizes.entry(agent.stratum.as_str()).or_default() += 1;
    }
    let mut rows: Vec<StratumCoverage> = sizes
        .into_iter()
        .map(|(stratum, agents)| StratumCoverage {
            stratum: stratum.to_string(),
            agents,
            needs_canary: strata.enabled() && agents >= u64::from(strata.min_agents),
            held: is_held(held, stratum),
        })
        .collect();
    rows.sort_by(|a, b| b.agents.cmp(&a.agents).then(a.stratum.cmp(&b.stratum)));
    rows
}

/// Picks a starting group's canaries from `candidates` (the group's agents that can prove
/// the target now, in the rollout's stable order): first the first candidate of each
/// stratum that needs one, then more in order up to `count`. `Err` names a stratum that
/// needs a canary and has no candidate: the group waits rather than start without it.
pub fn pick_canaries(
    strata: &StrataSpec,
    held: &[HeldStratum],
    members: &[&AgentSnapshot],
    candidates: &[&AgentSnapshot],
    count: usize,
) -> Result<Vec<String>, String> {
    let mut picked: Vec<String> = Vec::new();
    for row in coverage(strata, held, members) {
        if !row.needs_canary || row.held {
            continue;
        }
        match candidates.iter().find(|a| a.stratum == row.stratum) {
            Some(agent) => picked.push(agent.agent_id.clone()),
            None => {
                return Err(format!(
                    "waits for a connected healthy agent of stratum {} ({} agents) to use as \
                     a canary",
                    row.stratum, row.agents
                ));
            }
        }
    }
    for agent in candidates {
        if picked.len() >= count {
            break;
        }
        if !is_held(held, &agent.stratum) && !picked.contains(&agent.agent_id) {
            picked.push(agent.agent_id.clone());
        }
    }
    if picked.len() < count {
        return Err(format!(
            "waits for {count} connected healthy agent(s) to use as canaries"
        ));
    }
    Ok(picked)
}

/// How a failure names where it happened: ` (stratum os=debian,arch=arm64)`, or nothing
/// when the rollout has no strata.
pub fn named(stratum: &str) -> String {
    if stratum.is_empty() {
        String::new()
    } else {
        format!(" (stratum {stratum})")
    }
}

/// Failures by stratum, most first: `os=debian: 3, os=rocky: 1`.
pub fn failures_by_stratum<'a>(failed: impl Iterator<Item = &'a AgentSnapshot>) -> String {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for agent in failed {
        *counts.entry(agent.stratum.as_str()).or_default() += 1;
    }
    let mut rows: Vec<(&str, u64)> = counts.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    rows.iter()
        .map(|(stratum, n)| format!("{stratum}: {n}"))
        .collect::<Vec<_>>()
        .join("; ")
}
