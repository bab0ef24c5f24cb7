//! Admin credentials: who may call the admin API, with which role. Never a secret, except
//! the token in [`AdminCredentialCreated`], printed once.

use drover_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time;

/// One admin credential, live or revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminCredential {
    pub name: String,
    #[schema(value_type = drover_rules::AdminRole)]
    pub role: String,
    pub created_at: Option<String>,
    /// When it was revoked; absent while it is live.
    pub revoked_at: Option<String>,
    /// Set on the answer of a changing call (or its dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<crate::Effect>,
}

impl From<&pb::AdminCredential> for AdminCredential {
    fn from(c: &pb::AdminCredential) -> Self {
        Self {
            name: c.name.clone(),
            role: c.role.clone(),
            created_at: time(c.created_at.as_ref()),
            revoked_at: time(c.revoked_at.as_ref()),
            effect: c.effect.as_ref().map(crate::Effect::from),
        }
    }
}

/// A new credential and its bearer token, which is shown only this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminCredentialCreated {
    pub credential: Option<AdminCredential>,
    /// `authorization: Bearer TOKEN`; empty for a dry run.
    pub token: String,
}

impl From<&pb::AdminCredentialCreated> for AdminCredentialCreated {
    fn from(c: &pb::AdminCredentialCreated) -> Self {
        Self {
            credential: c.credential.as_ref().map(AdminCredential::from),
            token: c.token.clone(),
        }
    }
}
