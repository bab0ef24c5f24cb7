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

    /// The record of this request. Target and detail may echo what the caller sent (up to
    /// a whole message), so they are cut to a bounded length.
    pub fn audit(&self, at_ms: i64, result: AuditResult, detail: impl Into<String>) -> AuditRecord {
        AuditRecord {
            at_ms,
            actor: bounded(&self.actor, MAX_TARGET_CHARS),
            role: self.role,
            action: self.action.into(),
            target: bounded(&self.target, MAX_TARGET_CHARS),
            result,
            detail: bounded(&detail.into(), MAX_DETAIL_CHARS),
        }
    }
}

const MAX_TARGET_CHARS: usize = 128;
const MAX_DETAIL_CHARS: usize = 512;

/// At most `max` characters of `text`, with `…` when cut.
fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_caller_sent_is_cut_to_a_bounded_length() {
        let caller = Caller::bootstrap_admin("SetChannelVersion", "é".repeat(100_000));
        let record = caller.audit(0, AuditResult::Refused, "x".repeat(1 << 20));
        assert_eq!(record.target.chars().count(), MAX_TARGET_CHARS + 1);
        assert_eq!(record.detail.chars().count(), MAX_DETAIL_CHARS + 1);
        assert_eq!(bounded("short", 10), "short");
    }
}
