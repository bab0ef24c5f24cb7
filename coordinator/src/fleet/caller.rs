//! Who asks the admin API for a change, and what: the actor and role an admin event records,
//! and the audit record written with it.

use drover_rules::{AdminRole, AuditResult};

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
    /// Until admin credentials exist, every admin request is the bootstrap `admin`.
    pub fn bootstrap_admin(action: &'static str, target: impl Into<String>) -> Self {
        Self {
            actor: "admin".into(),
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
