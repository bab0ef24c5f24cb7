//! The stream to the coordinator: hello, heartbeats and reports up; directives and acks
//! down. Reconnects forever: to the next coordinator address at once (`address.rs`), with
//! capped, jittered exponential backoff after a whole round of them failed.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use drover_proto::v1::{
    self as pb, coordinator_message::Kind as Down, updater_message::Kind as Up,
    updater_service_client::UpdaterServiceClient,
};
use drover_rules::text::{MAX_REPORT_TEXT, clean_text};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::{
    address::{Coordinators, Rounds, Target, next_address},
    backoff::{self, jittered},
    convert,
    identity::ClientIdentity,
    installers::Installer as _,
    shared::{Shared, UpdaterConfig},
    state::{DirectiveRecord, DirectiveSource, RefusedReport},
};

/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(30);
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

pub async fn run(
    shared: Arc<Shared>,
    directives: mpsc::Sender<DirectiveRecord>,
    shutdown: CancellationToken,
) {
    let mut rounds = Rounds::default();
    let mut last: Option<Target> = None;
    while !shutdown.is_cancelled() {
        // Resolved at each (re)connect: a name's addresses may have changed.
        let targets = shared.config.coordinator.resolve().await;
        let started = Instant::now();
        let (tried, outcome) = if targets.is_empty() {
            let err = anyhow::anyhow!("no coordinator address resolves");
            (shared.config.coordinator.to_string(), Err(err))
        } else {
            let target =
                targets[next_address(&targets, last.as_ref(), rand::rng().random())].clone();
            let outcome = session(&shared, &target, &directives, &shutdown).await;
            *shared.connected.lock() = None;
            let tried = target.to_string();
            last = Some(target);
            (tried, outcome)
        };
        let pushback = match outcome {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(
                    coordinator = %tried,
                    error = format!("{err:#}"),
                    "coordinator session ended; will reconnect (to another coordinator if there is one)"
                );
                backoff::pushback(&err)
            }
        };
        let Some(attempt) = rounds.ended(targets.len(), started.elapsed() > STABLE_SESSION) else {
            continue; // the next endpoint at once
        };
        let delay = backoff::honouring(
            shared.config.backoff.delay(attempt, rand::rng().random()),
            pushback,
            rand::rng().random(),
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The CA to trust for `coordinator` (every replica shares it): `--ca-file` is required
/// for `https://` and refused for `http://` (plaintext reaches only an `--insecure`
/// coordinator).
pub fn coordinator_ca(
    coordinator: &Coordinators,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<Option<Certificate>> {
    match (coordinator.https(), ca_file) {
        (true, Some(path)) => {
            let pem = std::fs::read(path).with_context(|| {
                format!(
                    "cannot read --ca-file {}; give the coordinator's CA certificate (PEM, \
                     tls/ca.pem in its data directory)",
                    path.display()
                )
            })?;
            Ok(Some(Certificate::from_pem(pem)))
        }
        (true, None) => bail!(
            "{coordinator} is served over TLS: give --ca-pin sha256:HEX (printed by the \
             coordinator) or --ca-file PATH with its CA certificate (tls/ca.pem in its data \
             directory)"
        ),
        (false, Some(_)) => bail!(
            "--ca-file is for https:// coordinators; use https://{}",
            coordinator.first().trim_start_matches("http://")
        ),
        (false, None) => Ok(None),
    }
}

/// A channel for a unary call (re-check, renewal): to the coordinator the stream is
/// connected to, else to the first of the others (from a random start) that answers.
pub async fn connect_any(shared: &Shared) -> anyhow::Result<Channel> {
    let connected = shared.connected.lock().clone();
    let mut candidates: Vec<Target> = connected.iter().cloned().collect();
    let mut others = shared.config.coordinator.resolve().await;
    if !others.is_empty() {
        let start = next_address(&others, None, rand::rng().random());
        others.rotate_left(start);
    }
    candidates.extend(others.into_iter().filter(|t| Some(t) != connected.as_ref()));
    let mut failure = anyhow::anyhow!(
        "no coordinator address resolves ({})",
        shared.config.coordinator
    );
    for target in &candidates {
        match connect_updater(&shared.config, target).await {
            Ok(channel) => return Ok(channel),
            Err(err) => failure = err,
        }
    }
    Err(failure)
}

/// Connects to `target` as this updater: with its client certificate when it has one
/// (re-read each time, so a renewed certificate is used from the next connection on).
pub async fn connect_updater(config: &UpdaterConfig, target: &Target) -> anyhow::Result<Channel> {
    connect_target(target, config.coordinator_ca.as_ref(), &config.identity).await
}

/// Makes ring rustls's process-wide provider, once. tough (signed release metadata) puts
/// aws-lc-rs in the build too, and with two providers compiled in rustls picks neither.
pub fn use_ring_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connects to one address as given (enrolment).
pub async fn connect(
    coordinator: &str,
    ca: Option<&Certificate>,
    identity: &ClientIdentity,
) -> anyhow::Result<Channel> {
    let target = Target {
        address: coordinator.to_string(),
        url: coordinator.to_string(),
        tls_name: None,
    };
    connect_target(&target, ca, identity).await
}

/// Connects to `target.url`; for a resolved name, TLS verifies the certificate for the
/// name and HTTP/2 names it as the authority, exactly as if the name had been dialled.
pub async fn connect_target(
    target: &Target,
    ca: Option<&Certificate>,
    identity: &ClientIdentity,
) -> anyhow::Result<Channel> {
    let coordinator = target.to_string();
    let mut endpoint = Endpoint::from_shared(target.url.clone())
        .with_context(|| {
            format!(
                "'{coordinator}' is not a valid coordinator address; use e.g. https://127.0.0.1:7400"
            )
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    if target.url != target.address {
        endpoint =
            endpoint.origin(target.address.parse().with_context(|| {
                format!("'{}' is not a valid coordinator address", target.address)
            })?);
    }
    if let Some(ca) = ca {
        use_ring_crypto();
        let mut tls = ClientTlsConfig::new().ca_certificate(ca.clone());
        if let Some(name) = &target.tls_name {
            tls = tls.domain_name(name.clone());
        }
        if let Some(identity) = identity.load().await? {
            tls = tls.identity(identity);
        }
        endpoint = endpoint
            .tls_config(tls)
            .context("cannot use the coordinator's CA or this agent's certificate")?;
    }
    endpoint.connect().await.with_context(|| {
        if ca.is_some() {
            format!(
                "cannot reach the coordinator at {coordinator} over TLS (if the cause names a \
                 certificate, check the CA (--ca-file or identity/ca.pem) is the coordinator's, \
                 and that this agent's certificate has not expired: enrol again with --force)"
            )
        } else {
            format!(
                "cannot reach the coordinator at {coordinator} (plaintext reaches only an \
                 --insecure coordinator; otherwise use https:// and enrol first)"
            )
        }
    })
}

fn up(kind: Up) -> pb::UpdaterMessage {
    pb::UpdaterMessage { kind: Some(kind) }
}

async fn hello(shared: &Shared) -> pb::UpdaterMessage {
    let state = shared.state.lock().await;
    let config = &shared.config;
    up(Up::Hello(pb::Hello {
        agent_id: state.agent_id.clone(),
        hostname: config.hostname.clone(),
        group: config.group.clone(),
        channel: config.channel.clone(),
        installer: convert::installer_kind_to_proto(config.installer.kind()) as i32,
        agent_version: state.agent_version.clone().unwrap_or_default(),
        updater_version: env!("CARGO_PKG_VERSION").to_string(),
        labels: config.labels.iter().cloned().collect(),
        health: convert::health_to_proto(shared.current_health()) as i32,
        last_directive_id: state
            .directive
            .as_ref()
            .map(|d| d.directive_id.clone())
            .unwrap_or_default(),
    }))
}

async fn heartbeat(shared: &Shared, sequence: u64) -> pb::UpdaterMessage {
    let (version, decision) = {
        let state = shared.state.lock().await;
        (
            state.agent_version.clone().unwrap_or_default(),
            state.last_decision.clone(),
        )
    };
    let (decision_reason, decision_detail) =
        decision.map(|d| (d.reason, d.detail)).unwrap_or_default();
    up(Up::Heartbeat(pb::Heartbeat {
        health: convert::health_to_proto(shared.current_health()) as i32,
        state: convert::activity_to_proto(*shared.activity.lock()) as i32,
        agent_version: version,
        progress: None,
        sequence,
        decision_reason,
        decision_detail: clean_text(&decision_detail, MAX_REPORT_TEXT).into_owned(),
        want_ack: false,
        sample: shared.pending_sample.lock().take(),
        spans_dropped: drover_telemetry::dropped_spans_to_report(),
    }))
}

async fn session(
    shared: &Shared,
    target: &Target,
    directives: &mpsc::Sender<DirectiveRecord>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut client = UpdaterServiceClient::new(connect_updater(&shared.config, target).await?);
    let (outbound, outbound_rx) = mpsc::channel(32);
    outbound.send(hello(shared).await).await?;
    let mut inbound = client
        .session(ReceiverStream::new(outbound_rx))
        .await
        .with_context(|| {
            if shared.config.coordinator_ca.is_none() {
                "the coordinator refused the session (in plaintext: a coordinator serves TLS \
                 unless started with --insecure; use https:// and enrol first)"
            } else {
                "the coordinator refused the session"
            }
        })?
        .into_inner();
    let welcome = match inbound.message().await?.and_then(|m| m.kind) {
        Some(Down::Welcome(welcome)) => welcome,
        other => bail!("expected Welcome from the coordinator, got {other:?}"),
    };
    let heartbeat_every = welcome
        .heartbeat_interval
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(DEFAULT_HEARTBEAT);
    *shared.recheck_from_coordinator.lock() = welcome
        .recheck_interval
        .and_then(|d| Duration::try_from(d).ok());
    tracing::info!(
        coordinator = %target,
        session_id = %welcome.session_id,
        "connected to the coordinator"
    );
    *shared.connected.lock() = Some(target.clone());

    let mut sent_reports = HashSet::new();
    send_pending_reports(shared, &outbound, &mut sent_reports).await?;
    send_acks(shared, &outbound).await?;
    let mut sequence = 0u64;
    // One timer for the session, reset only when a heartbeat goes out: pushes and acks must
    // not postpone it, or frequent admin changes silence the updater until it is dropped.
    let next_heartbeat = || Instant::now() + jittered(heartbeat_every, 0.1, rand::rng().random());
    let heartbeat_timer = tokio::time::sleep_until(next_heartbeat().into());
    tokio::pin!(heartbeat_timer);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            message = inbound.message() => {
                let Some(message) = message.context("the coordinator ended the session")? else {
                    bail!("the coordinator closed the stream");
                };
                match message.kind {
                    Some(Down::Directive(directive)) => {
                        directives.send(convert::directive_record(directive, DirectiveSource::Push)).await?;
                    }
                    Some(Down::ReportAck(ack)) => acknowledge(shared, ack).await?,
                    Some(Down::Welcome(_)) | Some(Down::HeartbeatAck(_)) | None => {}
                }
            }
            () = &mut heartbeat_timer => {
                sequence += 1;
                outbound.send(heartbeat(shared, sequence).await).await?;
                heartbeat_timer.as_mut().reset(next_heartbeat().into());
            }
            _ = shared.acks_ready.notified() => send_acks(shared, &outbound).await?,
            _ = shared.wake_connection.notified() => {
                sequence += 1;
                outbound.send(heartbeat(shared, sequence).await).await?;
                heartbeat_timer.as_mut().reset(next_heartbeat().into());
                send_pending_reports(shared, &outbound, &mut sent_reports).await?;
            }
        }
    }
}

/// Acknowledges the stops the manager has heard and kept (at most the newest per rollout
/// matters: older ones are dropped unsent).
async fn send_acks(
    shared: &Shared,
    outbound: &mpsc::Sender<pb::UpdaterMessage>,
) -> anyhow::Result<()> {
    let acks = std::mem::take(&mut *shared.pending_acks.lock());
    if let Some(newest) = acks.into_iter().last() {
        outbound.send(up(Up::DirectiveAck(newest))).await?;
    }
    Ok(())
}

/// Sends each unacknowledged report once per session.
async fn send_pending_reports(
    shared: &Shared,
    outbound: &mpsc::Sender<pb::UpdaterMessage>,
    sent: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let pending = shared.state.lock().await.pending_reports.clone();
    for report in pending {
        if sent.insert(report.attempt_id.clone()) {
            outbound
                .send(up(Up::Report(convert::report_to_proto(&report))))
                .await?;
        }
    }
    Ok(())
}

/// Drops an acknowledged report: stored, or refused for good (resending it could only be
/// refused again), in which case the refusal is kept for `status` and logged.
async fn acknowledge(shared: &Shared, ack: pb::ReportAck) -> anyhow::Result<()> {
    let mut state = shared.state.lock().await;
    let before = state.pending_reports.len();
    state
        .pending_reports
        .retain(|r| r.attempt_id != ack.attempt_id);
    if state.pending_reports.len() == before {
        return Ok(());
    }
    if !ack.refused.is_empty() {
        let why = clean_text(&ack.refused, MAX_REPORT_TEXT).into_owned();
        tracing::warn!(attempt_id = %ack.attempt_id, %why, "the coordinator refused a report; it is dropped");
        state.refused_report = Some(RefusedReport {
            attempt_id: ack.attempt_id,
            why,
            at_ms: shared.now_ms(),
        });
    }
    shared.store.save(&state).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
