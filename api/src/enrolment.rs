//! Enrolment: join tokens (never a secret, except in [`JoinTokenCreated`], printed once)
//! and the identities enrolled agents hold.

use drover_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time;

/// One join token, live, used up, expired or revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinToken {
    pub token_id: String,
    /// The groups an updater may enrol into; the first is the default.
    pub groups: Vec<String>,
    pub max_uses: u32,
    pub uses: u32,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    /// When it was revoked; absent while it is live.
    pub revoked_at: Option<String>,
    pub created_by: String,
    /// Set on the answer of a changing call (or its dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<crate::Effect>,
}

impl From<&pb::JoinToken> for JoinToken {
    fn from(t: &pb::JoinToken) -> Self {
        Self {
            token_id: t.token_id.clone(),
            groups: t.groups.clone(),
            max_uses: t.max_uses,
            uses: t.uses,
            created_at: time(t.created_at.as_ref()),
            expires_at: time(t.expires_at.as_ref()),
            revoked_at: time(t.revoked_at.as_ref()),
            created_by: t.created_by.clone(),
            effect: t.effect.as_ref().map(crate::Effect::from),
        }
    }
}

/// A new join token and its secret, which is shown only this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenCreated {
    pub token: Option<JoinToken>,
    /// For `drover-updater enroll --token`; empty for a dry run.
    pub secret: String,
}

impl From<&pb::JoinTokenCreated> for JoinTokenCreated {
    fn from(c: &pb::JoinTokenCreated) -> Self {
        Self {
            token: c.token.as_ref().map(JoinToken::from),
            secret: c.secret.clone(),
        }
    }
}

/// An enrolled agent's identity: the certificate the coordinator issued for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentIdentity {
    pub agent_id: String,
    pub group: String,
    pub token_id: String,
    pub enrolled_at: Option<String>,
    pub certificate_serial: String,
    pub not_after: Option<String>,
    /// When it was revoked; absent while it is live.
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<crate::Effect>,
}

impl From<&pb::AgentIdentity> for AgentIdentity {
    fn from(i: &pb::AgentIdentity) -> Self {
        Self {
            agent_id: i.agent_id.clone(),
            group: i.group.clone(),
            token_id: i.token_id.clone(),
            enrolled_at: time(i.enrolled_at.as_ref()),
            certificate_serial: i.certificate_serial.clone(),
            not_after: time(i.not_after.as_ref()),
            revoked_at: time(i.revoked_at.as_ref()),
            effect: i.effect.as_ref().map(crate::Effect::from),
        }
    }
}
