//! The admin RPCs of enrolment (role admin): join tokens and revoking an agent's identity.

use drover_proto::v1 as pb;
use drover_rules::AdminRole;
use tonic::{Request, Status};

use super::{AdminApi, admin_steps::effect_to_proto, convert};
use crate::{
    fleet::Effect,
    store::{IdentityRow, JoinTokenRow},
};

/// A token's lifetime when the request gives none.
const DEFAULT_TOKEN_TTL_MS: i64 = 3600 * 1000;

impl AdminApi {
    pub(super) async fn create_join_token_rpc(
        &self,
        request: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<pb::JoinTokenCreated, Status> {
        let target = request.get_ref().groups.join(",");
        let caller = self
            .authorize(&request, AdminRole::Admin, "CreateJoinToken", &target)
            .await?;
        let request = request.into_inner();
        let ttl_ms = request.ttl.map_or(DEFAULT_TOKEN_TTL_MS, |ttl| {
            ttl.seconds.saturating_mul(1000) + i64::from(ttl.nanos / 1_000_000)
        });
        let outcome = self
            .fleet
            .create_join_token(
                &request.groups,
                ttl_ms,
                request.max_uses,
                &caller,
                request.dry_run,
            )
            .await;
        let (row, secret, effect) = self.audited(&caller, request.dry_run, outcome).await?;
        if !effect.dry_run {
            tracing::info!(token_id = %row.token_id, groups = ?row.groups, "join token created");
        }
        Ok(pb::JoinTokenCreated {
            token: Some(token_to_proto(&row, Some(&effect))),
            secret: secret.unwrap_or_default(),
        })
    }

    pub(super) async fn list_join_tokens_rpc(
        &self,
        request: Request<pb::ListJoinTokensRequest>,
    ) -> Result<pb::ListJoinTokensResponse, Status> {
        self.authorize(&request, AdminRole::Admin, "ListJoinTokens", "")
            .await?;
        let rows = self.fleet.join_tokens().await?;
        Ok(pb::ListJoinTokensResponse {
            tokens: rows.iter().map(|row| token_to_proto(row, None)).collect(),
        })
    }

    pub(super) async fn revoke_join_token_rpc(
        &self,
        request: Request<pb::RevokeJoinTokenRequest>,
    ) -> Result<pb::JoinToken, Status> {
        let target = request.get_ref().token_id.clone();
        let caller = self
            .authorize(&request, AdminRole::Admin, "RevokeJoinToken", &target)
            .await?;
        let dry_run = request.get_ref().dry_run;
        let outcome = self
            .fleet
            .revoke_join_token(&target, &caller, dry_run)
            .await;
        let (row, effect) = self.audited(&caller, dry_run, outcome).await?;
        Ok(token_to_proto(&row, Some(&effect)))
    }

    pub(super) async fn list_agent_identities_rpc(
        &self,
        request: Request<pb::ListAgentIdentitiesRequest>,
    ) -> Result<pb::ListAgentIdentitiesResponse, Status> {
        self.authorize(&request, AdminRole::Viewer, "ListAgentIdentities", "")
            .await?;
        let request = request.into_inner();
        let limit = if request.limit == 0 {
            1000
        } else {
            request.limit
        };
        let rows = self.fleet.agent_identities(&request.after, limit).await?;
        Ok(pb::ListAgentIdentitiesResponse {
            identities: rows
                .iter()
                .map(|row| identity_to_proto(row, None))
                .collect(),
        })
    }

    pub(super) async fn revoke_agent_rpc(
        &self,
        request: Request<pb::RevokeAgentRequest>,
    ) -> Result<pb::AgentIdentity, Status> {
        let target = request.get_ref().agent_id.clone();
        let caller = self
            .authorize(&request, AdminRole::Admin, "RevokeAgent", &target)
            .await?;
        let dry_run = request.get_ref().dry_run;
        let outcome = self.fleet.revoke_agent(&target, &caller, dry_run).await;
        let (row, effect) = self.audited(&caller, dry_run, outcome).await?;
        if !effect.dry_run {
            tracing::info!(agent_id = %row.agent_id, "agent revoked");
        }
        Ok(identity_to_proto(&row, Some(&effect)))
    }
}

fn token_to_proto(row: &JoinTokenRow, effect: Option<&Effect>) -> pb::JoinToken {
    pb::JoinToken {
        token_id: row.token_id.clone(),
        groups: row.groups.clone(),
        max_uses: u32::try_from(row.max_uses).unwrap_or(u32::MAX),
        uses: u32::try_from(row.uses).unwrap_or(u32::MAX),
        created_at: convert::timestamp(row.created_at_ms),
        expires_at: convert::timestamp(row.expires_at_ms),
        revoked_at: row.revoked_at_ms.and_then(convert::timestamp),
        created_by: row.created_by.clone(),
        effect: effect.map(effect_to_proto),
    }
}

fn identity_to_proto(row: &IdentityRow, effect: Option<&Effect>) -> pb::AgentIdentity {
    pb::AgentIdentity {
        agent_id: row.agent_id.clone(),
        group: row.group.clone(),
        token_id: row.token_id.clone(),
        enrolled_at: convert::timestamp(row.enrolled_at_ms),
        certificate_serial: row.certificate_serial.clone(),
        not_after: convert::timestamp(row.not_after_ms),
        revoked_at: row.revoked_at_ms.and_then(convert::timestamp),
        effect: effect.map(effect_to_proto),
    }
}
