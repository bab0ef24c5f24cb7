//! Which agent a certificate may speak for: the checks every updater call makes (a live,
//! unrevoked identity; its current certificate, or the one a renewal replaced until the new
//! one is used), renewal, and revocation's effect on live sessions.

use drover_rules::AuditResult;

use super::{Fleet, enrolment::MAX_CSR_BYTES};
use crate::{
    domain::{now_ms, validate},
    error::{DroverError, Result},
    pki::IssuedCertificate,
    store::IdentityRow,
};

impl Fleet {
    /// A new certificate for the live agent `agent_id`, asked for with its current
    /// certificate (`serial`; a retired one is refused). One that had expired (within the
    /// grace period the handshake allows) is renewed with an audit record saying so.
    pub async fn renew(
        &self,
        agent_id: &str,
        serial: Option<&str>,
        csr_der: &[u8],
        expired_ms: Option<i64>,
    ) -> Result<IssuedCertificate> {
        let authority = self.authority()?;
        if csr_der.is_empty() || csr_der.len() > MAX_CSR_BYTES {
            return Err(DroverError::invalid(format!(
                "the certificate signing request must be 1 to {MAX_CSR_BYTES} bytes of DER"
            )));
        }
        let identity = self.live_identity(agent_id).await?;
        self.current_certificate(&identity, serial).await?;
        let certificate = authority.agents.issue(csr_der, agent_id, now_ms())?;
        let audit = expired_ms.map(|expired_ms| {
            super::updater_audit(
                &format!("agent {agent_id}"),
                "Renew",
                agent_id,
                AuditResult::Ok,
                &format!(
                    "renewed a certificate that had expired at {}",
                    drover_rules::time::rfc3339(expired_ms)
                ),
            )
        });
        if !self
            .store()
            .renew_identity(
                agent_id,
                &certificate.serial,
                certificate.not_after_ms,
                audit.as_ref(),
            )
            .await?
        {
            return Err(revoked_agent(agent_id));
        }
        Ok(certificate)
    }

    /// Checks that a caller holding a certificate for `certified` (None: no certificate)
    /// may speak for `agent_id` in `group` (empty: not said). With `--insecure` anyone may.
    pub async fn check_agent(
        &self,
        certified: Option<&str>,
        serial: Option<&str>,
        agent_id: &str,
        group: &str,
    ) -> Result<()> {
        if !self.requires_agent_certificates() {
            return Ok(());
        }
        let Some(certified) = certified else {
            return Err(DroverError::Unauthenticated(
                "updaters must present the client certificate they got by enrolling; run \
                 `drover-updater enroll --coordinator URL --token T --ca-pin sha256:HEX` \
                 first (an admin makes T with `droverctl tokens create`)"
                    .into(),
            ));
        };
        if certified != agent_id {
            return Err(DroverError::PermissionDenied(format!(
                "this certificate speaks for agent '{certified}', not '{}'; an updater may \
                 speak only for itself",
                validate::truncate_for_message(agent_id)
            )));
        }
        let identity = self.live_identity(agent_id).await?;
        self.current_certificate(&identity, serial).await?;
        if !group.is_empty() && group != identity.group {
            return Err(DroverError::PermissionDenied(format!(
                "agent '{agent_id}' enrolled into group '{}', not '{}'; to move it, enrol \
                 it again with a token for that group",
                identity.group,
                validate::truncate_for_message(group)
            )));
        }
        Ok(())
    }

    /// A revoked agent's live session here is cut, and one registering meanwhile ends.
    pub(super) fn enrolment_revoked(&self, agent_id: &str) {
        self.enrolment
            .revoked_here
            .write()
            .insert(agent_id.to_string());
        self.sessions.revoke(agent_id);
    }

    /// Whether this process revoked `agent_id` (checked after a session registers).
    pub fn revoked_here(&self, agent_id: &str) -> bool {
        self.enrolment.revoked_here.read().contains(agent_id)
    }

    /// Only the identity's current certificate speaks for it, and the one a renewal replaced
    /// until the new one is first used (then it is retired for good).
    async fn current_certificate(
        &self,
        identity: &IdentityRow,
        serial: Option<&str>,
    ) -> Result<()> {
        let Some(serial) = serial else {
            return Ok(());
        };
        if crate::pki::same_serial(serial, &identity.certificate_serial) {
            if identity.previous_serial.is_some() {
                self.store()
                    .retire_previous_serial(&identity.agent_id, &identity.certificate_serial)
                    .await?;
            }
            return Ok(());
        }
        if identity
            .previous_serial
            .as_deref()
            .is_some_and(|previous| crate::pki::same_serial(serial, previous))
        {
            return Ok(());
        }
        Err(DroverError::PermissionDenied(format!(
            "this certificate of agent '{}' was replaced by a renewal; the updater uses its \
             newest one (identity/ in its state directory), or enrol it again",
            identity.agent_id
        )))
    }

    pub(super) async fn live_identity(&self, agent_id: &str) -> Result<IdentityRow> {
        match self.store().agent_identity(agent_id).await? {
            Some(identity) if identity.revoked_at_ms.is_none() => Ok(identity),
            Some(_) => Err(revoked_agent(agent_id)),
            // Signed by our CA but unknown to the store: a restored or foreign database.
            None => Err(DroverError::PermissionDenied(format!(
                "agent '{agent_id}' has no enrolment on record here; enrol it again"
            ))),
        }
    }
}

fn revoked_agent(agent_id: &str) -> DroverError {
    DroverError::PermissionDenied(format!(
        "agent '{agent_id}' was revoked; its certificate is refused. To bring the host back, \
         enrol it again with a new token (it gets a new agent id)"
    ))
}
