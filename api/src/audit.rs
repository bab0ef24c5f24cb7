//! The audit log: who asked for which change, and how it ended.

use drover_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time;

/// One admin request: a change (recorded with it), a refusal or a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub audit_id: i64,
    pub at: Option<String>,
    pub actor: String,
    #[schema(value_type = drover_rules::AuditRole)]
    pub role: String,
    /// The API method, e.g. `SetChannelVersion`.
    pub action: String,
    /// What it acted on: a channel, group, agent, or the channel of a rollout.
    pub target: String,
    #[schema(value_type = drover_rules::AuditResult)]
    pub result: String,
    /// The change in words, or why it was refused.
    pub detail: String,
}

impl From<&pb::AuditEntry> for AuditEntry {
    fn from(e: &pb::AuditEntry) -> Self {
        Self {
            audit_id: e.audit_id,
            at: time(e.at.as_ref()),
            actor: e.actor.clone(),
            role: e.role.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            result: e.result.clone(),
            detail: e.detail.clone(),
        }
    }
}
