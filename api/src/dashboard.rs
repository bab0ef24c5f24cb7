//! Shapes only the dashboard's routes answer: who the caller is, and the version timeline.

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
