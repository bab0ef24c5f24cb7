//! Who asks the admin API for a change, and what: the actor and role an admin event records,
//! and the audit record written with it.

use drover_rules::{AdminRole, AuditResult, AuditRole};

use super::Identity;
use crate::store::AuditRecord;

/// How much of a request's target an audit record keeps.
pub const MAX_TARGET_CHARS: usize = 256;

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
    /// `identity` asking for `action` on `target`. The target comes from the request before
    /// it is validated, so the audit keeps at most its first [`MAX_TARGET_CHARS`].
    pub fn new(identity: &Identity, action: &'static str, target: impl Into<String>) -> Self {
        let mut target: String = target.into();
        if let Some((cut, _)) = target.char_indices().nth(MAX_TARGET_CHARS) {
            target.truncate(cut);
            target.push('…');
        }
        Self {
            actor: identity.name.clone(),
            role: identity.role,
            action,
            target,
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

    /// The record of this request. Target and detail may echo what the caller sent (up to
    /// a whole message), so they are cut to a bounded length.
    pub fn audit(&self, at_ms: i64, result: AuditResult, detail: impl Into<String>) -> AuditRecord {
        AuditRecord {
            at_ms,
            actor: bounded(&self.actor, MAX_TARGET_CHARS),
            role: self.role.into(),
            action: self.action.into(),
            target: bounded(&self.target, MAX_TARGET_CHARS),
            result,
            detail: bounded(&detail.into(), MAX_DETAIL_CHARS),
        }
    }
}

const MAX_DETAIL_CHARS: usize = 512;

/// The record of an updater's enrolment or renewal, refused or made: its actor is the join
/// token or the agent, its role `updater`.
pub fn updater_audit(
    actor: &str,
    action: &str,
    target: &str,
    result: AuditResult,
    detail: &str,
) -> AuditRecord {
    AuditRecord {
        at_ms: crate::domain::now_ms(),
        actor: bounded(actor, MAX_TARGET_CHARS),
        role: AuditRole::Updater,
        action: action.into(),
        target: bounded(target, MAX_TARGET_CHARS),
        result,
        detail: bounded(detail, MAX_DETAIL_CHARS),
    }
}

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
    fn a_long_target_is_cut() {
        let who = Identity {
            name: "v".into(),
            role: AdminRole::Viewer,
        };
        let caller = Caller::new(&who, "SetChannelVersion", "é".repeat(10_000));
        assert_eq!(caller.target.chars().count(), MAX_TARGET_CHARS + 1);
        assert_eq!(Caller::new(&who, "X", "edge").target, "edge");
    }

    #[test]
    fn what_a_caller_sent_is_cut_to_a_bounded_length() {
        let caller = Caller::operator("admin", "SetChannelVersion", "é".repeat(100_000));
        let record = caller.audit(0, AuditResult::Refused, "x".repeat(1 << 20));
        assert_eq!(record.target.chars().count(), MAX_TARGET_CHARS + 1);
        assert_eq!(record.detail.chars().count(), MAX_DETAIL_CHARS + 1);
        assert_eq!(bounded("short", 10), "short");
    }
}
