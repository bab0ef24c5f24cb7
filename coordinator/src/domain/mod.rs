//! Domain types of the coordinator: plain data, no I/O, no proto types.

pub mod directive;
pub mod validate;
pub mod version;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Channels whose version is always the control plane's (rule 7).
pub const FOLLOWING_CHANNELS: [&str; 2] = ["default", "stable/rolling"];

pub fn follows_control_plane(channel: &str) -> bool {
    FOLLOWING_CHANNELS.contains(&channel)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Unhealthy,
    #[default]
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpdaterState {
    #[default]
    Idle,
    Waiting,
    Downloading,
    Installing,
    Verifying,
    Reverting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InstallerKind {
    #[default]
    Unspecified,
    Command,
    Tarball,
    Apt,
    Dnf,
    Zypper,
    Kubernetes,
    Simulated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOutcome {
    Succeeded,
    Failed,
    Reverted,
    Refused,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(Health { Healthy => "healthy", Unhealthy => "unhealthy", Unknown => "unknown" });
text_enum!(UpdaterState {
    Idle => "idle", Waiting => "waiting", Downloading => "downloading",
    Installing => "installing", Verifying => "verifying", Reverting => "reverting",
});
text_enum!(InstallerKind {
    Unspecified => "unspecified", Command => "command", Tarball => "tarball", Apt => "apt",
    Dnf => "dnf", Zypper => "zypper", Kubernetes => "kubernetes", Simulated => "simulated",
});
text_enum!(UpdateOutcome {
    Succeeded => "succeeded", Failed => "failed", Reverted => "reverted", Refused => "refused",
});

/// The trait that names an agent's installer kind (reported by its updater's Hello).
pub const INSTALLER_LABEL: &str = "installer";

/// An agent's labels with its installer kind added under `installer` (unless a label of
/// that name was reported): what a rollout's strata are made of.
pub fn agent_traits(
    mut labels: BTreeMap<String, String>,
    installer: &str,
) -> BTreeMap<String, String> {
    labels
        .entry(INSTALLER_LABEL.to_string())
        .or_insert_with(|| installer.to_string());
    labels
}

/// What an updater says about itself when its session opens.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentIdentity {
    pub agent_id: String,
    pub hostname: String,
    pub group: String,
    pub channel: String,
    pub installer: InstallerKind,
    /// `None` when the updater does not know (e.g. the agent was never installed).
    pub agent_version: Option<semver::Version>,
    pub updater_version: String,
    pub labels: BTreeMap<String, String>,
    pub health: Health,
}

/// An agent as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRecord {
    pub agent_id: String,
    pub hostname: String,
    pub group: String,
    pub channel: String,
    pub installer: InstallerKind,
    pub agent_version: Option<String>,
    pub updater_version: String,
    pub labels: BTreeMap<String, String>,
    pub health: Health,
    pub updater_state: UpdaterState,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub last_report: Option<UpdateReport>,
}

/// The live, in-memory part of an agent's status carried by heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentStatus<'a> {
    pub health: Health,
    pub updater_state: UpdaterState,
    pub agent_version: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateReport {
    pub attempt_id: String,
    pub from_version: String,
    pub to_version: String,
    pub outcome: UpdateOutcome,
    pub error: String,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub directive_id: String,
    pub rollout_id: String,
}

impl UpdateReport {
    /// `1.0.0 → 1.1.0: succeeded` (`-` for an unknown start), as events and `why` say it.
    pub fn transition(&self) -> String {
        let from = if self.from_version.is_empty() {
            "-"
        } else {
            &self.from_version
        };
        format!("{from} → {}: {}", self.to_version, self.outcome)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Channel {
    pub name: String,
    /// For following channels this is the control plane's version, resolved on read.
    pub version: Option<semver::Version>,
    pub critical: bool,
    pub follows_control_plane: bool,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentFilter {
    pub group: Option<String>,
    pub agent_version: Option<String>,
    pub health: Option<Health>,
    pub channel: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    pub agent_version: String,
    pub group: String,
    pub health: Health,
    pub count: u64,
}

pub fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
