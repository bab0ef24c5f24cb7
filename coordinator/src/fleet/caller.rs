//! Who asks the admin API for a change, and what: the actor and role an admin event records,
//! and the audit record written with it.

use drover_rules::{AdminRole, AuditResult};

use super::Identity;
use crate::store::AuditRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub actor: String,
    pub role: AdminRole,
    /// The API method, e.g. `SetChannelVersion`.
    pub action: &'static str,
    /// What it acts on: a channel, group, agent, or the channel of a rollout.
    pub target: String,
}

impl Caller {
    /// `identity` asking for `action` on `target`.
    pub fn new(identity: &Identity, action: &'static str, target: impl Into<String>) -> Self {
        Self {
            actor: identity.name.clone(),
            role: identity.role,
            action,
            target: target.into(),
        }
    }

    /// The coordinator's own operator, e.g. a start-up flag: an admin.
    pub fn operator(actor: &str, action: &'static str, target: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            role: AdminRole::Admin,
            action,
            target: target.into(),
        }
    }

    pub fn audit(&self, at_ms: i64, result: AuditResult, detail: impl Into<String>) -> AuditRecord {
        AuditRecord {
            at_ms,
            actor: self.actor.clone(),
            role: self.role,
            action: self.action.into(),
            target: self.target.clone(),
            result,
            detail: detail.into(),
        }
    }
}
