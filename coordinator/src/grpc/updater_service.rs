//! `drover.v1.UpdaterService`: one stream per updater, plus unary re-checks.

use std::{sync::Arc, time::Duration};

use drover_proto::v1::{
    self as pb, updater_message::Kind as Up, updater_service_server::UpdaterService,
};
use tonic::{Request, Response, Status, Streaming};

use super::{
    convert,
    hello_gate::HelloGate,
    identity_refusals::IdentityRefusals,
    inbound_budget::AgentBudgets,
    session_stream::{self, Outbound},
};
use crate::{fleet::Fleet, pki::PeerCertificate};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct UpdaterApi {
    fleet: Arc<Fleet>,
    budgets: Arc<AgentBudgets>,
    refusals: IdentityRefusals,
    hellos: HelloGate,
}

impl UpdaterApi {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        let budgets = Arc::new(AgentBudgets::new(fleet.config.heartbeat_interval));
        Self {
            refusals: IdentityRefusals::new(fleet.clone()),
            fleet,
            budgets,
            hellos: HelloGate::default(),
        }
    }
}

#[tonic::async_trait]
impl UpdaterService for UpdaterApi {
    type SessionStream = Outbound;

    async fn session(
        &self,
        request: Request<Streaming<pb::UpdaterMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let (certified, serial) = caller(&request)?;
        let conn = super::peer::conn(&request);
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded("no Hello within 10 s; send Hello first on every session")
            })??
            .ok_or_else(|| Status::invalid_argument("the stream closed before Hello"))?;
        let Some(Up::Hello(hello)) = first.kind else {
            return Err(Status::failed_precondition(
                "the first message of a session must be Hello",
            ));
        };
        // The connection has made its request; it is trusted once the Hello is accepted.
        if let Some(conn) = &conn {
            conn.request_arrived();
        }
        let held = hello.last_directive_id.clone();
        let identity = convert::identity_from_hello(hello)?;
        let turn = self.hellos.turn().await?;
        let checked = self
            .fleet
            .check_agent(
                certified.as_deref(),
                serial.as_deref(),
                &identity.agent_id,
                &identity.group,
            )
            .await;
        self.refusals
            .audit(certified.as_deref(), "Hello", &identity.agent_id, checked)
            .await?;
        self.budgets.spend_hello(&identity.agent_id)?;
        let (session, outbox) = self.fleet.open_session(identity, &held).await?;
        drop(turn);
        if let Some(conn) = &conn {
            conn.trusted();
        }
        if self.fleet.revoked_here(&session.agent_id) {
            // Revoked between the check and the registration: the revoke's cut may have
            // missed this session.
            self.fleet.sessions.revoke(&session.agent_id);
        }
        tracing::debug!(agent_id = %session.agent_id, session_id = %session.session_id, "session opened");

        Ok(Response::new(session_stream::outbound(
            self.fleet.clone(),
            self.budgets.clone(),
            session,
            inbound,
            outbox.directives,
            outbox.send_current_directive,
        )))
    }

    async fn get_target(
        &self,
        request: Request<pb::GetTargetRequest>,
    ) -> Result<Response<pb::GetTargetResponse>, Status> {
        let (certified, serial) = caller(&request)?;
        let conn = super::peer::conn(&request);
        let request = request.into_inner();
        let checked = self
            .fleet
            .check_agent(
                certified.as_deref(),
                serial.as_deref(),
                &request.agent_id,
                &request.group,
            )
            .await;
        self.refusals
            .audit(
                certified.as_deref(),
                "GetTarget",
                &request.agent_id,
                checked,
            )
            .await?;
        if let Some(conn) = conn {
            conn.trusted();
        }
        let or_default = |text: &str| {
            if text.is_empty() {
                "default".to_string()
            } else {
                text.to_string()
            }
        };
        let directive = self.fleet.target_for(
            &request.agent_id,
            &or_default(&request.channel),
            &or_default(&request.group),
        )?;
        let valid_until = self.fleet.schedule_valid_until();
        let mut answer = convert::directive_to_proto(&directive, valid_until);
        answer.trace_context = self.fleet.directive_trace_context(
            &request.agent_id,
            &or_default(&request.channel),
            &directive.rollout_id,
            &directive.directive_id,
        );
        Ok(Response::new(pb::GetTargetResponse {
            directive: Some(answer),
        }))
    }

    /// The signed release metadata, as published; empty when the updater already has this
    /// version. Only an enrolled updater may ask (the bundle is public in substance, but
    /// an anonymous caller gets nothing from a coordinator).
    async fn get_release_metadata(
        &self,
        request: Request<pb::GetReleaseMetadataRequest>,
    ) -> Result<Response<pb::ReleaseMetadata>, Status> {
        let (certified, serial) = caller(&request)?;
        let agent_id = certified.clone().unwrap_or_default();
        let checked = self
            .fleet
            .check_agent(certified.as_deref(), serial.as_deref(), &agent_id, "")
            .await;
        self.refusals
            .audit(
                certified.as_deref(),
                "GetReleaseMetadata",
                &agent_id,
                checked,
            )
            .await?;
        let have = request.into_inner().have_version;
        let answer = match self.fleet.release_metadata() {
            Some(release) if release.version > have => pb::ReleaseMetadata {
                version: release.version,
                files: release
                    .files
                    .iter()
                    .map(|(name, content)| pb::ReleaseFile {
                        name: name.clone(),
                        content: content.clone(),
                    })
                    .collect(),
            },
            Some(release) => pb::ReleaseMetadata {
                version: release.version,
                files: Vec::new(),
            },
            None => pb::ReleaseMetadata::default(),
        };
        Ok(Response::new(answer))
    }
}

/// The caller's verified client certificate, if it sent one.
pub(super) fn peer_certificate<T>(request: &Request<T>) -> Option<PeerCertificate> {
    PeerCertificate::parse(super::peer::peer_certs(request)?.first()?)
}

/// The agent id and serial of the caller's current certificate (none under --insecure, or
/// for a caller without one: `check_agent` decides); an expired one is refused here.
fn caller<T>(request: &Request<T>) -> Result<(Option<String>, Option<String>), Status> {
    let peer = peer_certificate(request);
    refuse_expired(peer.as_ref())?;
    let certified = peer.as_ref().and_then(|p| p.agent_id.clone());
    Ok((certified, peer.map(|p| p.serial)))
}

/// Refuses a certificate the handshake let through only so that it can renew (expired
/// within the grace period): every call but `Renew` needs a current one.
fn refuse_expired(peer: Option<&PeerCertificate>) -> Result<(), Status> {
    let Some(expired_ms) = peer.and_then(|p| p.expired_at(crate::domain::now_ms())) else {
        return Ok(());
    };
    Err(Status::unauthenticated(format!(
        "this client certificate expired at {}; the updater renews it by itself (Renew \
         accepts it for a grace period), or enrol again with `drover-updater enroll --force`",
        drover_rules::time::rfc3339(expired_ms)
    )))
}
