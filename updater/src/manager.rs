//! Acts on directives: persists them, asks the pure policy, and carries out its decision.
//!
//! Works without the coordinator: it acts on the cached directive and schedule, so an
//! unhealthy agent is still updated and a healthy one still waits for its window (rule 1).
//! It re-decides whenever a directive arrives, health changes, or the clock reaches the
//! moment the last decision named (a window opening, a schedule expiring, a retry).

use drover_rules::ReasonCode;
use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    attempt,
    policy::{Decision, decide},
    shared::{Activity, Shared},
    state::{DecisionRecord, DirectiveRecord, DirectiveSource},
};

/// Even with nothing scheduled, decide again this often (cheap, and a safety net).
const IDLE_RECHECK: Duration = Duration::from_secs(60);

pub async fn run(
    shared: Arc<Shared>,
    mut directives: mpsc::Receiver<DirectiveRecord>,
    shutdown: CancellationToken,
) {
    let mut health = shared.health.subscribe();
    loop {
        let recheck_at = act(&shared).await;
        let sleep = recheck_at
            .map(|at| {
                Duration::from_millis(
                    (at - shared.now_ms()).clamp(0, IDLE_RECHECK.as_millis() as i64) as u64,
                )
            })
            .unwrap_or(IDLE_RECHECK);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(sleep) => {}
            changed = health.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            received = directives.recv() => {
                let Some(directive) = received else { return };
                accept(&shared, directive).await;
            }
        }
    }
}

/// Saves a new directive, or refreshes the validity of the held one's schedule; then
/// mirrors what changed (outside the state lock: the mirror is a network call).
async fn accept(shared: &Shared, directive: DirectiveRecord) {
    let changed = keep(shared, directive).await;
    if let (Some(mirror), Some(changed)) = (&shared.config.directive_mirror, changed) {
        mirror.save(&changed).await;
    }
}

/// The held directive after `directive` arrived, when that changed it. A directive older
/// than a stop already heard (a re-check answered before a halt, arriving after it) is
/// ignored; a new one is acknowledged once it is held, so the acknowledgement means "no
/// install starts here under an older epoch".
async fn keep(shared: &Shared, directive: DirectiveRecord) -> Option<DirectiveRecord> {
    let mut state = shared.state.lock().await;
    if let Some((rollout, heard)) = &state.stop_epoch
        && *rollout == directive.rollout_id
        && directive.rollout_epoch < *heard
    {
        tracing::info!(
            rollout_id = %directive.rollout_id, epoch = directive.rollout_epoch, heard,
            "ignored a directive older than a stop already heard"
        );
        return None;
    }
    let held = state.directive.as_mut();
    if let Some(held) = held
        && held.directive_id == directive.directive_id
    {
        let fresher = match (&mut held.schedule, &directive.schedule) {
            (Some(mine), Some(theirs)) if theirs.valid_until_ms > mine.valid_until_ms + 60_000 => {
                mine.valid_until_ms = theirs.valid_until_ms;
                true
            }
            _ => false,
        };
        // The coordinator confirmed a restored directive: say where it came from now.
        let confirmed = held.source == DirectiveSource::Restored;
        if confirmed {
            held.source = directive.source;
        }
        let held = held.clone();
        if fresher || confirmed {
            shared.save_state(&state).await;
        }
        drop(state);
        // Sent again (by a replica that caught up, say): acknowledged again, since the
        // first acknowledgement may have died with the replica it went to.
        queue_ack(shared, &held);
        return fresher.then_some(held);
    }
    tracing::info!(
        target_version = ?directive.target_version, reason = %directive.reason,
        source = ?directive.source, "new directive"
    );
    state.directive = Some(directive.clone());
    if !directive.rollout_id.is_empty() {
        state.stop_epoch = Some((directive.rollout_id.clone(), directive.rollout_epoch));
    }
    shared.save_state(&state).await;
    drop(state);
    queue_ack(shared, &directive);
    Some(directive)
}

/// Queues the acknowledgement of a held directive of a rollout for the stream to send.
fn queue_ack(shared: &Shared, directive: &DirectiveRecord) {
    if directive.rollout_id.is_empty() {
        return;
    }
    shared
        .pending_acks
        .lock()
        .push(drover_proto::v1::DirectiveAck {
            directive_id: directive.directive_id.clone(),
            rollout_id: directive.rollout_id.clone(),
            rollout_epoch: directive.rollout_epoch,
        });
    shared.acks_ready.notify_one();
}

/// Decides and acts once; returns when the decision may next change by the clock alone.
async fn act(shared: &Shared) -> Option<i64> {
    // Bound first: a guard in an `if let` scrutinee would live through the body and deadlock.
    let interrupted = shared.state.lock().await.in_flight.clone();
    if let Some(in_flight) = interrupted {
        // A crash interrupted an install or revert: finish or undo it before anything else.
        attempt::resume(shared, in_flight).await;
    }
    let decision = {
        let state = shared.state.lock().await;
        decide(shared.now_ms(), &state, shared.current_health())
    };
    record(shared, &decision).await;
    match decision {
        Decision::Wait {
            reason,
            recheck_at_ms,
            ..
        } => {
            shared.set_activity(if reason == ReasonCode::OutsideWindow {
                Activity::Waiting
            } else {
                Activity::Idle
            });
            recheck_at_ms
        }
        Decision::Install { target, .. } => {
            attempt::install(shared, &target).await;
            Some(shared.now_ms())
        }
        Decision::Revert {
            from,
            to,
            reason,
            detail,
        } => {
            attempt::revert_to(shared, &from, &to, &format!("{reason}: {detail}")).await;
            Some(shared.now_ms())
        }
    }
}

async fn record(shared: &Shared, decision: &Decision) {
    let (action, detail) = match decision {
        Decision::Wait { detail, .. } => ("wait", detail),
        Decision::Install { detail, .. } => ("install", detail),
        Decision::Revert { detail, .. } => ("revert", detail),
    };
    let mut state = shared.state.lock().await;
    let same = state.last_decision.as_ref().is_some_and(|d| {
        d.action == action && d.reason == decision.reason().as_str() && d.detail == *detail
    });
    if same {
        return;
    }
    if decision.reason() == ReasonCode::ReleaseMetadataExpired {
        tracing::error!(action, reason = decision.reason().as_str(), %detail, "decision: release metadata expired");
    } else {
        tracing::info!(action, reason = decision.reason().as_str(), %detail, "decision");
    }
    state.last_decision = Some(DecisionRecord {
        action: action.into(),
        reason: decision.reason().as_str().into(),
        detail: detail.clone(),
        at_ms: shared.now_ms(),
    });
    shared.save_state(&state).await;
}

#[cfg(test)]
mod tests;
