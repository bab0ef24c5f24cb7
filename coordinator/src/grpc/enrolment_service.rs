//! `drover.v1.EnrolmentService`: updaters get their client certificate with a join token
//! (`Enroll`, no certificate yet) and renew it with the current one (`Renew`).
//!
//! Bounded: a request is small (`MAX_ENROLMENT_MESSAGE_BYTES`), and calls are rate-limited
//! before they cost a store lookup. A call with a join token this process knows to be live
//! spends from its token's budget and the overall one; any other call is a possible guess
//! and spends from its source address's budget and a separate, smaller one for guesses,
//! so guessing cannot starve honest enrolments. Refused attempts are audited within their
//! own budget, so a flood of bad tokens costs the database a bounded number of writes.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc};

use drover_proto::v1::{self as pb, enrolment_service_server::EnrolmentService};
use drover_rules::AuditResult;
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter, clock::DefaultClock, state::InMemoryState,
    state::NotKeyed,
};
use tonic::{Request, Response, Status};

use super::{convert, updater_service::peer_certificate};
use crate::{
    error::{DroverError, ErrorCode},
    fleet::{EnrolRequest, Fleet, secret_hash, updater_audit},
};

/// A signing request and a token fit in a few KiB.
pub const MAX_ENROLMENT_MESSAGE_BYTES: usize = 16 * 1024;
/// Enrolments with known tokens and renewals, overall (README: 200/s).
const CALLS_PER_SECOND: u32 = 200;
/// Enrolments per known token (README: 100/s).
const PER_TOKEN_PER_SECOND: u32 = 100;
/// Calls with a token this process does not know: overall, and per source address.
const GUESSES_PER_SECOND: u32 = 20;
const GUESSES_PER_SOURCE_PER_SECOND: u32 = 2;
const GUESSES_PER_SOURCE_BURST: u32 = 5;
const REFUSAL_RECORDS_PER_SECOND: u32 = 20;
const REFUSAL_RECORDS_BURST: u32 = 200;

pub struct EnrolmentApi {
    fleet: Arc<Fleet>,
    calls: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
    per_token: DefaultKeyedRateLimiter<String>,
    guesses: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
    guesses_per_source: DefaultKeyedRateLimiter<Option<IpAddr>>,
    /// Every so many calls the keyed buckets that have refilled are dropped, so a stream
    /// of made-up tokens or addresses cannot grow those maps without bound.
    calls_seen: std::sync::atomic::AtomicU64,
    refusals: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
}

const FORGET_EVERY: u64 = 4096;

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

fn too_many() -> Status {
    Status::resource_exhausted(
        "too many enrolment calls just now; retry with backoff in a few seconds",
    )
}

fn too_many_guesses() -> Status {
    Status::resource_exhausted(
        "too many enrolment calls with join tokens this coordinator does not know, from this \
         address or overall; check the token (`droverctl tokens list`) and retry with backoff",
    )
}

impl EnrolmentApi {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Self {
            fleet,
            calls: RateLimiter::direct(quota(CALLS_PER_SECOND, CALLS_PER_SECOND)),
            per_token: RateLimiter::keyed(quota(PER_TOKEN_PER_SECOND, PER_TOKEN_PER_SECOND)),
            guesses: RateLimiter::direct(quota(GUESSES_PER_SECOND, GUESSES_PER_SECOND)),
            guesses_per_source: RateLimiter::keyed(quota(
                GUESSES_PER_SOURCE_PER_SECOND,
                GUESSES_PER_SOURCE_BURST,
            )),
            calls_seen: std::sync::atomic::AtomicU64::new(0),
            refusals: RateLimiter::direct(quota(REFUSAL_RECORDS_PER_SECOND, REFUSAL_RECORDS_BURST)),
        }
    }

    /// Spends one call from the budgets that apply to it (see the module's comment).
    fn spend_enrolment_budget(&self, secret: &str, source: Option<IpAddr>) -> Result<(), Status> {
        let seen = self
            .calls_seen
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if seen % FORGET_EVERY == FORGET_EVERY - 1 {
            self.per_token.retain_recent();
            self.per_token.shrink_to_fit();
            self.guesses_per_source.retain_recent();
            self.guesses_per_source.shrink_to_fit();
        }
        // Hashed once, in memory only, never logged: the token's key in both checks.
        let hash = secret_hash(secret);
        if !self.fleet.join_token_known(&hash) {
            if self.guesses_per_source.check_key(&source).is_err() || self.guesses.check().is_err()
            {
                return Err(too_many_guesses());
            }
            return Ok(());
        }
        if self.per_token.check_key(&hash).is_err() || self.calls.check().is_err() {
            return Err(too_many());
        }
        Ok(())
    }

    /// Audits a refusal (within its budget; a store failure is logged, not audited).
    async fn audit_refusal(&self, actor: &str, action: &str, target: &str, err: &DroverError) {
        if matches!(err.code(), ErrorCode::Unavailable | ErrorCode::Internal) {
            return;
        }
        if self.refusals.check().is_err() {
            tracing::warn!(
                action,
                "audit record dropped: over the budget for refused enrolments"
            );
            return;
        }
        let record = updater_audit(
            actor,
            action,
            target,
            AuditResult::Refused,
            &err.client_message(),
        );
        if let Err(err) = self.fleet.store().record_audit(&record).await {
            tracing::warn!(action, error = %err, "could not write the audit record");
        }
    }
}

#[tonic::async_trait]
impl EnrolmentService for EnrolmentApi {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let source = super::peer::remote_addr(&request).map(|a| a.ip());
        let request = request.into_inner();
        self.spend_enrolment_budget(&request.token, source)?;
        let peer = source.map(|ip| ip.to_string()).unwrap_or_default();
        let ask = EnrolRequest {
            secret: request.token,
            csr_der: request.csr_der,
            agent_id: request.agent_id,
            group: request.group,
            hostname: request.hostname,
        };
        let (token_id, outcome) = self.fleet.enrol(&ask).await;
        match outcome {
            Ok(enrolled) => {
                tracing::info!(agent_id = %enrolled.agent_id, group = %enrolled.group, "agent enrolled");
                Ok(Response::new(pb::EnrollResponse {
                    agent_id: enrolled.agent_id,
                    group: enrolled.group,
                    certificate_pem: enrolled.certificate.pem,
                    ca_pem: enrolled.ca_pem,
                    not_after: convert::timestamp(enrolled.certificate.not_after_ms),
                }))
            }
            Err(err) => {
                let actor = match &token_id {
                    Some(id) => format!("join token {id}"),
                    None => format!("unknown join token from {peer}"),
                };
                let target = if ask.agent_id.is_empty() {
                    &ask.hostname
                } else {
                    &ask.agent_id
                };
                self.audit_refusal(&actor, "Enroll", target, &err).await;
                Err(err.into())
            }
        }
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        if self.calls.check().is_err() {
            return Err(too_many());
        }
        let peer = peer_certificate(&request);
        let certified = peer.as_ref().and_then(|p| p.agent_id.clone());
        let expired_ms = peer
            .as_ref()
            .and_then(|p| p.expired_at(crate::domain::now_ms()));
        let serial = peer.map(|p| p.serial);
        let conn = super::peer::conn(&request);
        let request = request.into_inner();
        let Some(agent_id) = certified else {
            return Err(DroverError::Unauthenticated(
                "Renew needs the agent's current client certificate; an updater without one \
                 enrols with `drover-updater enroll`"
                    .into(),
            )
            .into());
        };
        match self
            .fleet
            .renew(&agent_id, serial.as_deref(), &request.csr_der, expired_ms)
            .await
        {
            Ok(certificate) => {
                if let Some(conn) = conn {
                    conn.trusted();
                }
                tracing::info!(%agent_id, serial = %certificate.serial, "agent certificate renewed");
                if let Some(expired_ms) = expired_ms {
                    tracing::warn!(%agent_id, expired = %drover_rules::time::rfc3339(expired_ms), "renewed an expired agent certificate (within the grace period)");
                }
                Ok(Response::new(pb::RenewResponse {
                    certificate_pem: certificate.pem,
                    not_after: convert::timestamp(certificate.not_after_ms),
                }))
            }
            Err(err) => {
                self.audit_refusal(&format!("agent {agent_id}"), "Renew", &agent_id, &err)
                    .await;
                Err(err.into())
            }
        }
    }
}
