//! `drover.v1.UpdaterService`: one stream per updater, plus unary re-checks.

use std::{
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use drover_proto::v1::{
    self as pb, coordinator_message::Kind as Down, updater_message::Kind as Up,
    updater_service_server::UpdaterService,
};
use drover_rules::text::{MAX_REPORT_TEXT, clean_text};
use futures::{Stream, StreamExt};
use tokio::sync::oneshot;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tonic::{Request, Response, Status, Streaming};

use super::{
    convert, hello_gate::HelloGate, identity_refusals::IdentityRefusals,
    inbound_budget::AgentBudgets,
};
use crate::{
    domain::{AgentStatus, validate},
    error::DroverError,
    fleet::Fleet,
    fleet::registry::{Ack, Session},
    pki::PeerCertificate,
};

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

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

fn down(kind: Down) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage { kind: Some(kind) }
}

#[tonic::async_trait]
impl UpdaterService for UpdaterApi {
    type SessionStream = Outbound;

    async fn session(
        &self,
        request: Request<Streaming<pb::UpdaterMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let peer = peer_certificate(&request);
        refuse_expired(peer.as_ref())?;
        let certified = peer.as_ref().and_then(|p| p.agent_id.clone());
        let serial = peer.map(|p| p.serial);
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

        let config = &self.fleet.config;
        let welcome = down(Down::Welcome(pb::Welcome {
            session_id: session.session_id.clone(),
            heartbeat_interval: prost_types::Duration::try_from(config.heartbeat_interval).ok(),
            recheck_interval: prost_types::Duration::try_from(config.recheck_interval).ok(),
            coordinator_version: env!("CARGO_PKG_VERSION").to_string(),
        }));

        let (end_tx, end_rx) = oneshot::channel::<Status>();
        let idle_timeout = config.heartbeat_interval * 3 + Duration::from_secs(5);
        tokio::spawn(read_inbound(
            self.fleet.clone(),
            self.budgets.clone(),
            session.clone(),
            inbound,
            idle_timeout,
            end_tx,
        ));

        let directives = if outbox.send_current_directive {
            WatchStream::new(outbox.directives)
        } else {
            WatchStream::from_changes(outbox.directives)
        }
        .map({
            let fleet = self.fleet.clone();
            let (agent_id, channel) = (session.agent_id.clone(), session.channel.clone());
            move |d| {
                let mut directive = convert::directive_to_proto(&d, fleet.schedule_valid_until());
                directive.trace_context = fleet.directive_trace_context(
                    &agent_id,
                    &channel,
                    &d.rollout_id,
                    &d.directive_id,
                );
                Ok(down(Down::Directive(directive)))
            }
        });
        let acks = ReceiverStream::new(outbox.acks).map(|ack| {
            Ok(down(match *ack {
                Ack::Report(attempt_id) => Down::ReportAck(pb::ReportAck {
                    attempt_id,
                    refused: String::new(),
                }),
                Ack::ReportRefused { attempt_id, why } => Down::ReportAck(pb::ReportAck {
                    attempt_id,
                    refused: why,
                }),
                Ack::Heartbeat(sequence) => Down::HeartbeatAck(pb::HeartbeatAck { sequence }),
            }))
        });
        let closed = session.closed.clone();
        let revoked_session = session.clone();
        let shutdown = self.fleet.shutdown.clone();
        let end = futures::stream::once(async move {
            // Biased: when replaced, the inbound side also ends, and "replaced" is the truth.
            let status = tokio::select! {
                biased;
                _ = closed.cancelled() => {
                    if revoked_session.revoked.load(Ordering::SeqCst) {
                        Status::permission_denied(
                            "this agent was revoked by an admin; its certificate is refused \
                             from now on. To bring the host back, enrol it again with a new \
                             token",
                        )
                    } else {
                        Status::aborted(
                            "a newer session for this agent id replaced this one; if two \
                             updaters share an agent id, give each its own",
                        )
                    }
                }
                _ = shutdown.cancelled() => Status::unavailable(
                    "the coordinator is shutting down; reconnect (with backoff) shortly",
                ),
                status = end_rx => status.unwrap_or_else(|_| Status::cancelled("session ended")),
            };
            Err(status)
        });
        let stream = futures::stream::once(async { Ok(welcome) })
            .chain(futures::stream::select(directives, acks).take_until_end(end));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_target(
        &self,
        request: Request<pb::GetTargetRequest>,
    ) -> Result<Response<pb::GetTargetResponse>, Status> {
        let peer = peer_certificate(&request);
        refuse_expired(peer.as_ref())?;
        let certified = peer.as_ref().and_then(|p| p.agent_id.clone());
        let serial = peer.map(|p| p.serial);
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
}

/// The caller's verified client certificate, if it sent one.
pub(super) fn peer_certificate<T>(request: &Request<T>) -> Option<PeerCertificate> {
    PeerCertificate::parse(super::peer::peer_certs(request)?.first()?)
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

/// Merges a stream with a one-item terminal stream whose item ends everything.
trait TakeUntilEnd: Stream + Sized {
    fn take_until_end<E>(self, end: E) -> impl Stream<Item = Self::Item>
    where
        E: Stream<Item = Self::Item>;
}

impl<S: Stream + Sized> TakeUntilEnd for S {
    fn take_until_end<E>(self, end: E) -> impl Stream<Item = Self::Item>
    where
        E: Stream<Item = Self::Item>,
    {
        // Tagging lets us stop right after the terminal item, which tonic sends as the status.
        let tagged = futures::stream::select(self.map(|i| (false, i)), end.map(|i| (true, i)));
        tagged.scan(false, |done, (terminal, item)| {
            if *done {
                return futures::future::ready(None);
            }
            *done = terminal;
            futures::future::ready(Some(item))
        })
    }
}

async fn read_inbound(
    fleet: Arc<Fleet>,
    budget: Arc<AgentBudgets>,
    session: Arc<Session>,
    mut inbound: Streaming<pb::UpdaterMessage>,
    idle_timeout: Duration,
    mut end: oneshot::Sender<Status>,
) {
    let outcome = loop {
        let next = tokio::select! {
            _ = session.closed.cancelled() => break Ok(()),
            _ = fleet.shutdown.cancelled() => break Ok(()),
            // The updater is gone (its response stream dropped): what it sent and we have not
            // read yet is not ours to commit; it resends what was never acknowledged.
            _ = end.closed() => break Ok(()),
            next = tokio::time::timeout(idle_timeout, inbound.message()) => next,
        };
        let message = match next {
            Err(_) => {
                break Err(Status::deadline_exceeded(format!(
                    "no message for {} s; send heartbeats at the interval given in Welcome",
                    idle_timeout.as_secs()
                )));
            }
            Ok(Err(status)) => break Err(status),
            Ok(Ok(None)) => break Ok(()),
            Ok(Ok(Some(message))) => message,
        };
        if matches!(message.kind, Some(Up::Heartbeat(_)))
            && let Err(status) = budget.spend_heartbeat(&session.agent_id)
        {
            break Err(status);
        }
        if matches!(message.kind, Some(Up::Report(_))) {
            // Past its budget a report waits: the stream is read no faster (HTTP/2 flow
            // control holds the sender back).
            while let Some(wait) = budget.report_wait(&session.agent_id) {
                tokio::select! {
                    _ = session.closed.cancelled() => break,
                    _ = fleet.shutdown.cancelled() => break,
                    _ = end.closed() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            if session.closed.is_cancelled() || fleet.shutdown.is_cancelled() || end.is_closed() {
                break Ok(());
            }
        }
        if let Err(status) = handle(&fleet, &session, message).await {
            break Err(status);
        }
    };
    fleet.close_session(&session).await;
    match outcome {
        Ok(()) => tracing::debug!(agent_id = %session.agent_id, "session closed"),
        Err(status) => {
            tracing::info!(agent_id = %session.agent_id, code = ?status.code(), message = status.message(), "session ended with an error");
            let _ = end.send(status);
        }
    }
}

async fn handle(
    fleet: &Fleet,
    session: &Session,
    message: pb::UpdaterMessage,
) -> Result<(), Status> {
    match message.kind {
        Some(Up::Heartbeat(heartbeat)) => {
            // A heartbeat the coordinator cannot read still proves the session alive; its
            // status is not believed, and the session goes on (the updater hears nothing back
            // for a heartbeat, so the log says it).
            let (health, updater_state, version) = match convert::status_from_heartbeat(&heartbeat)
            {
                Ok(status) => status,
                Err(DroverError::InvalidArgument(why)) => {
                    let why = clean_text(&why, MAX_REPORT_TEXT);
                    tracing::warn!(agent_id = %session.agent_id, %why, "heartbeat status ignored");
                    return Ok(());
                }
                Err(other) => return Err(other.into()),
            };
            let status = AgentStatus {
                health,
                updater_state,
                agent_version: version.as_deref(),
            };
            // The decision is the updater's own words: cleaned here, never a reason to refuse.
            let reason = if validate::name("decision_reason", &heartbeat.decision_reason).is_ok() {
                heartbeat.decision_reason.as_str()
            } else {
                ""
            };
            let detail = clean_text(&heartbeat.decision_detail, MAX_REPORT_TEXT);
            fleet.heartbeat(session, status, (reason, &detail)).await?;
            if heartbeat.want_ack {
                session.ack(Ack::Heartbeat(heartbeat.sequence)).await;
            }
        }
        Some(Up::Report(report)) => {
            let attempt_id = report.attempt_id.clone();
            // Boxed: recording a report is a large future (16 KB), and inline it would sit
            // in every session's reader task for the session's whole life, reports or not.
            match convert::report_from_proto(report) {
                Ok(report) => Box::pin(fleet.report(session, report)).await?,
                // One bad report never costs the session: the updater is told, and drops it.
                Err(DroverError::InvalidArgument(why)) => {
                    Box::pin(fleet.refuse_report(session, attempt_id, why)).await;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Some(Up::Hello(_)) => {
            return Err(Status::failed_precondition(
                "Hello was sent twice; open a new session to change identity",
            ));
        }
        None => {
            return Err(Status::invalid_argument(
                "empty message; set heartbeat or report",
            ));
        }
    }
    Ok(())
}
