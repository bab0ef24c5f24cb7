//! Shapes only the dashboard's routes answer: who the caller is, the codes it shows in
//! words, and the version timeline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The caller's credential: what the dashboard asks to decide which actions to show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhoAmI {
    pub name: String,
    /// viewer, operator or admin.
    pub role: String,
}

/// Every code the API sends, with its one-line explanation (the rules crate's own), so the
/// dashboard says in words what a code means and lists every reason to filter by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Codes {
    pub reasons: BTreeMap<String, String>,
    pub conditions: BTreeMap<String, String>,
    pub group_phases: BTreeMap<String, String>,
    pub rollout_statuses: BTreeMap<String, String>,
    pub verdict_outcomes: BTreeMap<String, String>,
    pub health_signals: BTreeMap<String, String>,
    pub halt_scopes: BTreeMap<String, String>,
    pub ack_states: BTreeMap<String, String>,
}

/// Agents by version over time, one sample a minute, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionTimeline {
    pub hours: u32,
    pub samples: Vec<VersionSample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionSample {
    /// RFC 3339, UTC.
    pub at: String,
    /// Version ("unknown" when not reported) → agents.
    pub versions: BTreeMap<String, u64>,
}
