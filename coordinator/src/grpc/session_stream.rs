//! One updater session after its Hello: the response stream that reads the updater's
//! messages, handles them, and sends the Welcome, directives, acks and the final status.
//!
//! Reading happens inside the response stream, on the task that sends it, rather than in
//! a task of its own feeding a channel: at 10k sessions a second task, its channel and the
//! signal between them cost more memory than everything else Drover keeps per session. A
//! message is read only when the stream is polled, which hyper does while the updater's
//! receive window is open; an updater that stops reading its acks is held back by HTTP/2
//! flow control, as before. While a message is handled (a report waits for its commit)
//! the session sends nothing else: a directive pushed meanwhile, or the news that the
//! session was replaced, goes out once that commit is done. A message that may write runs
//! to completion even if the stream is dropped meanwhile (`receive`).

use std::{collections::VecDeque, pin::Pin, sync::Arc, time::Duration};

use drover_proto::v1::{
    self as pb, coordinator_message::Kind as Down, updater_message::Kind as Up,
};
use drover_rules::text::{MAX_REPORT_TEXT, clean_text};
use futures::Stream;
use tokio::sync::watch;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::{Status, Streaming};

use super::{convert, inbound_budget::AgentBudgets};

/// More dropped spans than one updater could make between two heartbeats: clamped.
const MAX_SPANS_DROPPED_PER_HEARTBEAT: u64 = 1_000_000;
use crate::{
    domain::{AgentStatus, Health, UpdaterState, directive::Directive, validate},
    error::DroverError,
    fleet::Fleet,
    fleet::registry::{Ack, Session},
};

pub type Outbound =
    std::pin::Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

fn down(kind: Down) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage { kind: Some(kind) }
}

/// The session as the fleet has it. The stream closes it before its final status, so the
/// updater hears the end only once the session is gone (a reconnect cannot be taken for
/// the old session); if the stream is dropped first (the connection went away), closing
/// happens here.
struct Registered {
    fleet: Arc<Fleet>,
    session: Arc<Session>,
    closed: bool,
}

impl Registered {
    async fn close(&mut self) {
        if !std::mem::replace(&mut self.closed, true) {
            Box::pin(self.fleet.close_session(&self.session)).await;
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let (fleet, session) = (self.fleet.clone(), self.session.clone());
        // Closing may write (a shared store records the disconnect); dropping cannot wait.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { fleet.close_session(&session).await });
        }
    }
}

/// A session's state between two items of its stream.
struct Serving {
    registered: Registered,
    /// Waits that live as long as the session, made once: made anew for every item, each
    /// would register with its token again (the shutdown token is shared by every session).
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Fires when the updater has sent nothing for `idle_timeout`; reset by every message.
    idle: Pin<Box<tokio::time::Sleep>>,
    budget: Arc<AgentBudgets>,
    inbound: Streaming<pb::UpdaterMessage>,
    directives: watch::Receiver<Directive>,
    idle_timeout: Duration,
    welcomed: bool,
    /// Acks decided while handling the last message, sent before the next is read.
    acks: VecDeque<Ack>,
    ended: bool,
}

/// The response stream of a session that `fleet` has just opened.
pub fn outbound(
    fleet: Arc<Fleet>,
    budget: Arc<AgentBudgets>,
    session: Arc<Session>,
    inbound: Streaming<pb::UpdaterMessage>,
    mut directives: watch::Receiver<Directive>,
    send_current_directive: bool,
) -> Outbound {
    if send_current_directive {
        directives.mark_changed();
    } else {
        directives.mark_unchanged();
    }
    let idle_timeout = fleet.config.heartbeat_interval * 3 + Duration::from_secs(5);
    let serving = Serving {
        closed: Box::pin(session.closed.clone().cancelled_owned()),
        shutdown: Box::pin(fleet.shutdown.clone().cancelled_owned()),
        idle: Box::pin(tokio::time::sleep(idle_timeout)),
        registered: Registered {
            fleet,
            session,
            closed: false,
        },
        budget,
        inbound,
        directives,
        idle_timeout,
        welcomed: false,
        acks: VecDeque::new(),
        ended: false,
    };
    Box::pin(futures::stream::unfold(serving, |mut serving| async move {
        let item = serving.next().await?;
        Some((item, serving))
    }))
}

/// What woke the session up. Only ever a local, moved out at once: the size of a message
/// in one variant costs nothing kept.
#[allow(clippy::large_enum_variant)]
enum Event {
    Closed,
    ShuttingDown,
    Directive,
    Idle,
    Inbound(Result<Option<pb::UpdaterMessage>, Status>),
}

impl Serving {
    async fn next(&mut self) -> Option<Result<pb::CoordinatorMessage, Status>> {
        if self.ended {
            return None;
        }
        if !self.welcomed {
            self.welcomed = true;
            return Some(Ok(self.welcome()));
        }
        loop {
            if let Some(ack) = self.acks.pop_front() {
                return Some(Ok(down(ack_message(ack))));
            }
            let event = tokio::select! {
                // Biased: when replaced, the inbound side also ends, and "replaced" is the
                // truth.
                biased;
                _ = &mut self.closed => Event::Closed,
                _ = &mut self.shutdown => Event::ShuttingDown,
                changed = self.directives.changed() => match changed {
                    Ok(()) => Event::Directive,
                    // The session holds the sender; it cannot be gone while we run.
                    Err(_) => Event::Closed,
                },
                // Before the idle timer: a message that arrived is never timed out.
                next = self.inbound.message() => Event::Inbound(next),
                _ = &mut self.idle => Event::Idle,
            };
            let outcome = match event {
                Event::Closed => Err(self.closed_status()),
                Event::ShuttingDown => Err(shutting_down()),
                Event::Directive => return Some(Ok(self.directive())),
                Event::Idle => Err(Status::deadline_exceeded(format!(
                    "no message for {} s; send heartbeats at the interval given in Welcome",
                    self.idle_timeout.as_secs()
                ))),
                Event::Inbound(Err(status)) => Err(status),
                Event::Inbound(Ok(None)) => Ok(()),
                // Boxed: handling a message is a 2.2 KB future (the budget wait, the
                // write), which would otherwise be kept in the stream for the session's life.
                Event::Inbound(Ok(Some(message))) => match Box::pin(self.receive(message)).await {
                    Ok(()) => {
                        // From when the message is handled: a report may wait for its budget.
                        let deadline = tokio::time::Instant::now() + self.idle_timeout;
                        self.idle.as_mut().reset(deadline);
                        continue;
                    }
                    Err(status) => Err(status),
                },
            };
            self.ended = true;
            self.registered.close().await;
            let agent_id = &self.registered.session.agent_id;
            return Some(Err(match outcome {
                Ok(()) => {
                    tracing::debug!(%agent_id, "session closed");
                    Status::cancelled("session ended")
                }
                Err(status) => {
                    tracing::info!(%agent_id, code = ?status.code(), message = status.message(), "session ended with an error");
                    status
                }
            }));
        }
    }

    /// Handles one message; an error ends the session with it.
    async fn receive(&mut self, message: pb::UpdaterMessage) -> Result<(), Status> {
        let Registered { fleet, session, .. } = &self.registered;
        match message.kind {
            Some(Up::Heartbeat(heartbeat)) => {
                self.budget.spend_heartbeat(&session.agent_id)?;
                let status = readable_status(session, &heartbeat)?;
                // Only a status that changed is written.
                let writes = status
                    .as_ref()
                    .is_some_and(|(health, updater_state, version)| {
                        session.live.lock().differs(&AgentStatus {
                            health: *health,
                            updater_state: *updater_state,
                            agent_version: version.as_deref(),
                        })
                    });
                let (fleet, session) = (fleet.clone(), session.clone());
                let work = async move { beat(&fleet, &session, heartbeat, status).await };
                run(writes, work).await?;
            }
            Some(Up::Report(report)) => {
                // Past its budget a report waits: the stream is read no faster (HTTP/2 flow
                // control holds the sender back).
                while let Some(wait) = self.budget.report_wait(&session.agent_id) {
                    tokio::select! {
                        _ = session.closed.cancelled() => break,
                        _ = fleet.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                if session.closed.is_cancelled() || fleet.shutdown.is_cancelled() {
                    return Err(self.ending_status());
                }
                let (fleet, session) = (fleet.clone(), session.clone());
                run(true, async move { record(&fleet, &session, report).await }).await?;
            }
            Some(Up::DirectiveAck(ack)) => {
                // Counted only for the directive this session holds now; over the heartbeat
                // budget it is dropped, not the session (how many directives an updater is
                // sent is the coordinator's doing, not its own).
                let current = self.directives.borrow().directive_id == ack.directive_id;
                let within = self.budget.spend_heartbeat(&session.agent_id).is_ok();
                if current && within && !ack.rollout_id.is_empty() {
                    let (fleet, session) = (fleet.clone(), session.clone());
                    let work = async move {
                        fleet
                            .acknowledge_stop(
                                &session.agent_id,
                                &session.channel,
                                &ack.rollout_id,
                                ack.rollout_epoch,
                            )
                            .await
                            .map_err(Status::from)
                    };
                    run(true, work).await?;
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
        self.acks.extend(self.registered.session.take_acks());
        Ok(())
    }

    fn welcome(&self) -> pb::CoordinatorMessage {
        let config = &self.registered.fleet.config;
        down(Down::Welcome(pb::Welcome {
            session_id: self.registered.session.session_id.clone(),
            heartbeat_interval: prost_types::Duration::try_from(config.heartbeat_interval).ok(),
            recheck_interval: prost_types::Duration::try_from(config.recheck_interval).ok(),
            coordinator_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    fn directive(&mut self) -> pb::CoordinatorMessage {
        let Registered { fleet, session, .. } = &self.registered;
        let d = self.directives.borrow_and_update().clone();
        let mut directive = convert::directive_to_proto(&d, fleet.schedule_valid_until());
        directive.trace_context = fleet.directive_trace_context(
            &session.agent_id,
            &session.channel,
            &d.rollout_id,
            &d.directive_id,
        );
        down(Down::Directive(directive))
    }

    /// The status for a session that ended because it was closed or the coordinator is
    /// shutting down.
    fn ending_status(&self) -> Status {
        if self.registered.session.closed.is_cancelled() {
            self.closed_status()
        } else {
            shutting_down()
        }
    }

    fn closed_status(&self) -> Status {
        if self
            .registered
            .session
            .revoked
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            Status::permission_denied(
                "this agent was revoked by an admin; its certificate is refused from now on. \
                 To bring the host back, enrol it again with a new token",
            )
        } else {
            Status::aborted(
                "a newer session for this agent id replaced this one; if two updaters share \
                 an agent id, give each its own",
            )
        }
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the coordinator is shutting down; reconnect (with backoff) shortly")
}

fn ack_message(ack: Ack) -> Down {
    match ack {
        Ack::Report(attempt_id) => Down::ReportAck(pb::ReportAck {
            attempt_id,
            refused: String::new(),
        }),
        Ack::ReportRefused { attempt_id, why } => Down::ReportAck(pb::ReportAck {
            attempt_id,
            refused: why,
        }),
        Ack::Heartbeat(sequence) => Down::HeartbeatAck(pb::HeartbeatAck { sequence }),
    }
}

/// Handles a message: one that writes in a task of its own, awaited, so that if the stream
/// is dropped (the updater went away) mid-write, the write and what follows it in memory
/// still finish, as they did when every session had a reader task of its own. The rest is
/// boxed: inline, its future (2 KB) would sit in every session's stream for its whole life.
async fn run(
    writes: bool,
    work: impl Future<Output = Result<(), Status>> + Send + 'static,
) -> Result<(), Status> {
    if !writes {
        return Box::pin(work).await;
    }
    tokio::spawn(work).await.map_err(|_| {
        Status::from(DroverError::Internal(
            "handling an updater's message panicked".into(),
        ))
    })?
}

/// A heartbeat's status, or `None` when it cannot be read. Such a heartbeat still proves the
/// session alive; its status is not believed, and the session goes on (the updater hears
/// nothing back for a heartbeat, so the log says it).
fn readable_status(
    session: &Session,
    heartbeat: &pb::Heartbeat,
) -> Result<Option<(Health, UpdaterState, Option<String>)>, Status> {
    match convert::status_from_heartbeat(heartbeat) {
        Ok(status) => Ok(Some(status)),
        Err(DroverError::InvalidArgument(why)) => {
            let why = clean_text(&why, MAX_REPORT_TEXT);
            tracing::warn!(agent_id = %session.agent_id, %why, "heartbeat status ignored");
            Ok(None)
        }
        Err(other) => Err(other.into()),
    }
}

async fn beat(
    fleet: &Fleet,
    session: &Session,
    heartbeat: pb::Heartbeat,
    status: Option<(Health, UpdaterState, Option<String>)>,
) -> Result<(), Status> {
    let Some((health, updater_state, version)) = status else {
        return Ok(());
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
    if let Some(sample) = convert::sample_from_heartbeat(&heartbeat) {
        fleet.record_health_sample(&session.agent_id, version.as_deref(), &sample);
    }
    // Bounded: one heartbeat cannot make the counter meaningless.
    let dropped = heartbeat.spans_dropped.min(MAX_SPANS_DROPPED_PER_HEARTBEAT);
    if dropped > 0 {
        fleet
            .counters
            .updater_spans_dropped
            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
    }
    if heartbeat.want_ack {
        session.ack(Ack::Heartbeat(heartbeat.sequence));
    }
    Ok(())
}

async fn record(fleet: &Fleet, session: &Session, report: pb::UpdateReport) -> Result<(), Status> {
    let attempt_id = report.attempt_id.clone();
    match convert::report_from_proto(report) {
        // Boxed: recording a report is a large future (16 KB).
        Ok(report) => Box::pin(fleet.report(session, report)).await?,
        // One bad report never costs the session: the updater is told, and drops it.
        Err(DroverError::InvalidArgument(why)) => fleet.refuse_report(session, attempt_id, why),
        Err(other) => return Err(other.into()),
    }
    Ok(())
}
