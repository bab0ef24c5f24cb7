//! Enrolment: join tokens, the certificates they buy, and which agent a certificate may
//! speak for.
//!
//! An admin makes a join token (its secret shown once, stored hashed) for one or more
//! groups, a lifetime and a number of uses. An updater spends one use to get a client
//! certificate for its own key, bound to a new agent id and one of the token's groups;
//! from then on every updater call must carry that certificate, and a hello may claim only
//! the certificate's agent id and the group it enrolled in. Revoking an agent refuses its
//! certificate at once (live sessions are cut) and its id is never given out again.
//! With `--insecure` there is no TLS, so no certificates: updaters are trusted as they say.

use std::sync::{Arc, OnceLock};

use drover_rules::{AuditResult, EventKind};
use sha2::{Digest, Sha256};

use super::{
    Caller, Fleet, caller::updater_audit, effects::Effect, known_tokens::KnownTokens,
    known_tokens::MAX_KNOWN_TOKENS, late_enrolment::late_note,
};
use crate::{
    domain::{now_ms, validate},
    error::{DroverError, Result},
    pki::{AgentAuthority, IssuedCertificate},
    store::{EnrolRefusal, IdentityRow, JoinTokenRow, NewEvent},
};

const SECRET_PREFIX: &str = "drover_join_";
/// Longer secrets are not ours; refused before hashing.
const MAX_SECRET_LEN: usize = 128;
pub const MAX_TOKEN_GROUPS: usize = 32;
pub const MAX_TOKEN_USES: u32 = 100_000;
pub const MAX_TOKEN_TTL_MS: i64 = 30 * 24 * 3600 * 1000;
/// A signing request is a few hundred bytes; anything far larger is not one.
pub const MAX_CSR_BYTES: usize = 8 * 1024;

/// Set when TLS is on: who signs agent certificates, and the CA updaters trust.
pub(super) struct Authority {
    pub(super) agents: Arc<AgentAuthority>,
    ca_pem: String,
}

#[derive(Default)]
pub struct Enrolment {
    authority: OnceLock<Authority>,
    /// Agents revoked by this process: a session that registered while its agent was being
    /// revoked finds itself here and ends (the store refuses every later hello).
    pub(super) revoked_here: parking_lot::RwLock<std::collections::HashSet<String>>,
    known_tokens: KnownTokens,
}

/// What an updater asks for when it enrols.
#[derive(Debug, Clone, Default)]
pub struct EnrolRequest {
    pub secret: String,
    pub csr_der: Vec<u8>,
    pub agent_id: String,
    pub group: String,
    pub hostname: String,
}

#[derive(Debug, Clone)]
pub struct Enrolled {
    pub agent_id: String,
    pub group: String,
    pub certificate: IssuedCertificate,
    pub ca_pem: String,
}

/// The hex SHA-256 a join token's secret is stored and looked up by.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn refused(problem: impl std::fmt::Display) -> DroverError {
    DroverError::PermissionDenied(format!(
        "{problem}; ask an admin for a new join token (`droverctl tokens create --group G`)"
    ))
}

/// An agent id made from the host's name (kept to id characters) and a random suffix.
fn agent_id_from_hostname(hostname: &str) -> String {
    let base: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(48)
        .collect();
    let suffix = hex::encode(rand::random::<[u8; 3]>());
    if base.is_empty() {
        format!("agent-{suffix}")
    } else {
        format!("{base}-{suffix}")
    }
}

impl Fleet {
    /// Turns enrolment on (TLS is on): `agents` signs certificates, `ca_pem` is the CA
    /// updaters trust for the server.
    pub fn enable_enrolment(&self, agents: Arc<AgentAuthority>, ca_pem: String) {
        let _ = self.enrolment.authority.set(Authority { agents, ca_pem });
    }

    /// Learns the live join tokens, so calls with them are told from guesses (see
    /// `known_tokens`) from the first call after a start.
    pub async fn remember_live_join_tokens(&self) -> Result<()> {
        let now = now_ms();
        for row in self
            .store()
            .list_join_tokens(MAX_KNOWN_TOKENS as i64)
            .await?
        {
            self.enrolment.known_tokens.learn(&row, now);
        }
        Ok(())
    }

    /// Whether the secret hashing to `secret_hash` ([`secret_hash`]) is a join token this
    /// process knows to be live (a hint for rate limits only).
    pub fn join_token_known(&self, secret_hash: &str) -> bool {
        self.enrolment.known_tokens.contains(secret_hash)
    }

    /// Whether updaters must present an enrolled certificate (false only with `--insecure`).
    pub fn requires_agent_certificates(&self) -> bool {
        self.enrolment.authority.get().is_some()
    }

    pub(super) fn authority(&self) -> Result<&Authority> {
        self.enrolment.authority.get().ok_or_else(|| {
            DroverError::FailedPrecondition(
                "this coordinator runs with --insecure (no TLS), so there are no certificates \
                 to enrol for; updaters connect over http:// without enrolling"
                    .into(),
            )
        })
    }

    /// A new join token and its secret (shown once; `None` for a dry run).
    pub async fn create_join_token(
        &self,
        groups: &[String],
        ttl_ms: i64,
        max_uses: u32,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<(JoinTokenRow, Option<String>, Effect)> {
        if groups.is_empty() || groups.len() > MAX_TOKEN_GROUPS {
            return Err(DroverError::invalid(format!(
                "give 1 to {MAX_TOKEN_GROUPS} groups (--group G, repeatable) the token may enrol into"
            )));
        }
        for group in groups {
            validate::name("group", group)?;
        }
        if !(1000..=MAX_TOKEN_TTL_MS).contains(&ttl_ms) {
            return Err(DroverError::invalid(
                "a join token's --ttl must be between 1 second and 30 days",
            ));
        }
        let max_uses = max_uses.max(1);
        if max_uses > MAX_TOKEN_USES {
            return Err(DroverError::invalid(format!(
                "a join token allows at most {MAX_TOKEN_USES} uses; make several tokens"
            )));
        }
        let mut unique = groups.to_vec();
        unique.dedup();
        let secret = format!("{SECRET_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
        let now = now_ms();
        let row = JoinTokenRow {
            token_id: hex::encode(rand::random::<[u8; 6]>()),
            secret_hash: secret_hash(&secret),
            groups: unique,
            max_uses: i64::from(max_uses),
            uses: 0,
            created_at_ms: now,
            expires_at_ms: now + ttl_ms,
            revoked_at_ms: None,
            created_by: caller.actor.clone(),
        };
        let lifetime = if ttl_ms < 120_000 {
            format!("{} s", ttl_ms / 1000)
        } else {
            format!("{} min", ttl_ms / 60_000)
        };
        let text = format!(
            "join token {} created for groups {} ({max_uses} uses, expires in {lifetime})",
            row.token_id,
            row.groups.join(", "),
        );
        let effect = Effect::new(dry_run, text.clone(), 0);
        if dry_run {
            return Ok((row, None, effect));
        }
        let event = self.admin_event(caller, text);
        self.store().create_join_token(&row, &[event]).await?;
        self.enrolment.known_tokens.learn(&row, now);
        Ok((row, Some(secret), effect))
    }

    /// The newest join tokens (never a secret).
    pub async fn join_tokens(&self) -> Result<Vec<JoinTokenRow>> {
        self.store().list_join_tokens(1000).await
    }

    pub async fn revoke_join_token(
        &self,
        token_id: &str,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<(JoinTokenRow, Effect)> {
        validate::identifier("token id", token_id)?;
        let not_live = || {
            DroverError::NotFound(format!(
                "no live join token has id '{token_id}'; `droverctl tokens list` shows them"
            ))
        };
        let mut row = self
            .store()
            .join_token(token_id)
            .await?
            .filter(|row| row.revoked_at_ms.is_none())
            .ok_or_else(not_live)?;
        let text = format!("join token {token_id} revoked");
        let effect = Effect::new(dry_run, text.clone(), 0);
        let at_ms = now_ms();
        row.revoked_at_ms = Some(at_ms);
        if dry_run {
            return Ok((row, effect));
        }
        let event = self.admin_event(caller, text);
        if !self
            .store()
            .revoke_join_token(token_id, at_ms, &[event])
            .await?
        {
            return Err(not_live());
        }
        self.enrolment.known_tokens.forget(&row.secret_hash);
        Ok((row, effect))
    }

    /// Checks the token and the request, signs the certificate, and commits the identity
    /// with the token's use and an audited event; or refuses and changes nothing.
    /// Returns the token id it used (for the audit of a refusal) with the outcome.
    pub async fn enrol(&self, request: &EnrolRequest) -> (Option<String>, Result<Enrolled>) {
        let mut token_id = None;
        let outcome = self.try_enrol(request, &mut token_id).await;
        (token_id, outcome)
    }

    async fn try_enrol(
        &self,
        request: &EnrolRequest,
        token_id: &mut Option<String>,
    ) -> Result<Enrolled> {
        let authority = self.authority()?;
        if request.secret.is_empty() || request.secret.len() > MAX_SECRET_LEN {
            return Err(DroverError::Unauthenticated(
                "the join token is missing or not one of ours; pass the secret \
                 `droverctl tokens create` printed (drover_join_…)"
                    .into(),
            ));
        }
        if request.csr_der.is_empty() || request.csr_der.len() > MAX_CSR_BYTES {
            return Err(DroverError::invalid(format!(
                "the certificate signing request must be 1 to {MAX_CSR_BYTES} bytes of DER"
            )));
        }
        validate::bounded_text("hostname", &request.hostname, validate::MAX_HOSTNAME_LEN)?;
        let token = self
            .store()
            .join_token_by_hash(&secret_hash(&request.secret))
            .await?
            .ok_or_else(|| {
                DroverError::Unauthenticated(
                    "the join token is unknown; check you copied the whole secret, or ask \
                     an admin for a new one (`droverctl tokens create --group G`)"
                        .into(),
                )
            })?;
        *token_id = Some(token.token_id.clone());
        let now = now_ms();
        self.enrolment.known_tokens.learn(&token, now);
        if token.revoked_at_ms.is_some() {
            return Err(refused(format!(
                "join token {} was revoked",
                token.token_id
            )));
        }
        if token.expires_at_ms <= now {
            return Err(refused(format!(
                "join token {} has expired",
                token.token_id
            )));
        }
        if token.uses >= token.max_uses {
            return Err(refused(format!(
                "join token {} has been used {} of {} times",
                token.token_id, token.uses, token.max_uses
            )));
        }
        let group = if request.group.is_empty() {
            token.groups[0].clone()
        } else if token.groups.contains(&request.group) {
            request.group.clone()
        } else {
            return Err(DroverError::PermissionDenied(format!(
                "join token {} enrols only into {}; ask for one of those groups or for a \
                 token for '{}'",
                token.token_id,
                token.groups.join(", "),
                validate::truncate_for_message(&request.group)
            )));
        };
        let agent_id = if request.agent_id.is_empty() {
            agent_id_from_hostname(&request.hostname)
        } else {
            validate::identifier("agent_id", &request.agent_id)?;
            request.agent_id.clone()
        };
        let certificate = authority.agents.issue(&request.csr_der, &agent_id, now)?;
        let identity = IdentityRow {
            agent_id: agent_id.clone(),
            group: group.clone(),
            token_id: token.token_id.clone(),
            enrolled_at_ms: now,
            certificate_serial: certificate.serial.clone(),
            not_after_ms: certificate.not_after_ms,
            revoked_at_ms: None,
            previous_serial: None,
        };
        let updating = self.rollouts_updating(&group);
        let text = format!(
            "agent {agent_id} enrolled into group {group} with join token {}{}",
            token.token_id,
            late_note(&updating, &group).unwrap_or_default()
        );
        let event = NewEvent {
            at_ms: now,
            kind: EventKind::Enrolment,
            group: group.clone(),
            agent_id: agent_id.clone(),
            actor: format!("join token {}", token.token_id),
            audit: Some(Box::new(updater_audit(
                &format!("join token {}", token.token_id),
                "Enroll",
                &agent_id,
                AuditResult::Ok,
                &text,
            ))),
            text: text.clone(),
            ..NewEvent::default()
        };
        match self.store().enrol(&identity, now, &[event]).await? {
            Ok(()) => {
                self.announce_late_enrolment(&updating, &text, now);
                Ok(Enrolled {
                    agent_id,
                    group,
                    certificate,
                    ca_pem: authority.ca_pem.clone(),
                })
            }
            Err(EnrolRefusal::TokenSpent) => Err(refused(format!(
                "join token {} was used up, revoked or expired just now",
                token.token_id
            ))),
            Err(EnrolRefusal::AgentIdTaken) => Err(DroverError::Conflict(format!(
                "agent id '{agent_id}' is enrolled already (ids are never reused, even after \
                 a revoke); enrol with another --agent-id, or none to get a new one"
            ))),
        }
    }

    pub async fn agent_identities(&self, after: &str, limit: u32) -> Result<Vec<IdentityRow>> {
        let limit = i64::from(limit.clamp(1, 1000));
        self.store().list_agent_identities(after, limit).await
    }

    /// Revokes the agent's identity: its certificate is refused from now on and its live
    /// session here is cut (other replicas refuse it at its next call).
    pub async fn revoke_agent(
        &self,
        agent_id: &str,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<(IdentityRow, Effect)> {
        validate::identifier("agent_id", agent_id)?;
        let mut identity = self
            .live_identity(agent_id)
            .await
            .map_err(|err| match err {
                DroverError::PermissionDenied(message) => DroverError::NotFound(message),
                other => other,
            })?;
        let text = format!("agent {agent_id} revoked: its certificate is refused");
        let effect = Effect::new(dry_run, text.clone(), 1);
        let at_ms = now_ms();
        identity.revoked_at_ms = Some(at_ms);
        if dry_run {
            return Ok((identity, effect));
        }
        let mut event = self.admin_event(caller, text);
        event.agent_id = agent_id.to_string();
        if !self
            .store()
            .revoke_identity(agent_id, at_ms, &[event])
            .await?
        {
            return Err(DroverError::NotFound(format!(
                "agent '{agent_id}' was revoked meanwhile"
            )));
        }
        self.enrolment_revoked(agent_id);
        self.announce(super::change_feed::Change::Revoked(agent_id.to_string()))
            .await;
        Ok((identity, effect))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_agent_ids_are_valid_and_distinct() {
        for host in ["web-01.example", "", "héllo wörld", &"x".repeat(300)] {
            let id = agent_id_from_hostname(host);
            validate::identifier("agent_id", &id).unwrap();
            assert_ne!(id, agent_id_from_hostname(host));
        }
        assert!(agent_id_from_hostname("web-01").starts_with("web-01-"));
    }
}
