//! Who may call `AdminService`: an interceptor authenticates every call by its bearer token
//! (`authorization: Bearer TOKEN`) and leaves the [`Identity`] in the request; each change
//! then names the role it needs ([`AdminApi::authorize`]), and a refusal is audited with the
//! caller's name and role. Also the admin-credential RPCs.

use std::sync::Arc;

use drover_proto::v1 as pb;
use drover_rules::AdminRole;
use tonic::{Request, Status};

use super::{AdminApi, convert};
use crate::{
    error::DroverError,
    fleet::{Caller, Effect, Fleet, Identity},
    store::CredentialRow,
};

/// Authenticates every admin call before it is decoded further; the updater service does
/// not pass through here.
pub fn interceptor(
    fleet: Arc<Fleet>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        let header = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        let identity = fleet.admins().authenticate(header)?;
        if let Some(conn) = super::peer::conn(&request) {
            conn.trusted();
        }
        request.extensions_mut().insert(identity);
        Ok(request)
    }
}

impl AdminApi {
    /// The caller of a change that needs `needed`: refused (and audited as refused) when
    /// its role is lower.
    pub(super) async fn authorize<T>(
        &self,
        request: &Request<T>,
        needed: AdminRole,
        action: &'static str,
        target: &str,
    ) -> Result<Caller, Status> {
        let Some(identity) = request.extensions().get::<Arc<Identity>>() else {
            // Only reachable if the service were mounted without its interceptor.
            return Err(DroverError::Unauthenticated(
                "no admin identity; send `authorization: Bearer TOKEN`".into(),
            )
            .into());
        };
        let caller = Caller::new(identity, action, target);
        if identity.role.allows(needed) {
            return Ok(caller);
        }
        let refused = DroverError::PermissionDenied(format!(
            "{action} needs the {needed} role; '{}' has the {} role; ask an admin for a \
             credential with the {needed} role (`droverctl admins create --role {needed}`)",
            identity.name, identity.role
        ));
        Err(self
            .audited::<()>(&caller, false, Err(refused))
            .await
            .err()
            .map_or_else(|| Status::permission_denied(action), Status::from))
    }

    pub(super) async fn create_credential(
        &self,
        caller: Caller,
        request: pb::CreateAdminCredentialRequest,
    ) -> Result<pb::AdminCredentialCreated, DroverError> {
        let outcome = match AdminRole::parse(&request.role) {
            Some(role) => {
                self.fleet
                    .create_credential(&request.name, role, &caller, request.dry_run)
                    .await
            }
            None => Err(DroverError::invalid(format!(
                "role '{}' is not one of viewer, operator, admin",
                request.role
            ))),
        };
        let (row, token, effect) = self.audited(&caller, request.dry_run, outcome).await?;
        if !effect.dry_run {
            tracing::info!(name = %row.name, role = %row.role, "admin credential created");
        }
        Ok(pb::AdminCredentialCreated {
            credential: Some(credential_to_proto(&row, Some(&effect))),
            token: token.unwrap_or_default(),
        })
    }

    pub(super) async fn list_credentials(
        &self,
    ) -> Result<pb::ListAdminCredentialsResponse, DroverError> {
        let rows = self.fleet.credentials().await?;
        Ok(pb::ListAdminCredentialsResponse {
            credentials: rows
                .iter()
                .map(|row| credential_to_proto(row, None))
                .collect(),
        })
    }

    pub(super) async fn revoke_credential(
        &self,
        caller: Caller,
        request: pb::RevokeAdminCredentialRequest,
    ) -> Result<pb::AdminCredential, DroverError> {
        let outcome = self
            .fleet
            .revoke_credential(&request.name, &caller, request.dry_run)
            .await;
        let (row, effect) = self.audited(&caller, request.dry_run, outcome).await?;
        if !effect.dry_run {
            tracing::info!(name = %row.name, "admin credential revoked");
        }
        Ok(credential_to_proto(&row, Some(&effect)))
    }
}

fn credential_to_proto(row: &CredentialRow, effect: Option<&Effect>) -> pb::AdminCredential {
    pb::AdminCredential {
        name: row.name.clone(),
        role: row.role.as_str().into(),
        created_at: convert::timestamp(row.created_at_ms),
        revoked_at: row.revoked_at_ms.and_then(convert::timestamp),
        effect: effect.map(|e| pb::Effect {
            dry_run: e.dry_run,
            summary: e.summary.clone(),
            agents_affected: e.agents_affected,
        }),
    }
}
