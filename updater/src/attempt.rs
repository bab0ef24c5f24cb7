//! One update attempt, as a small journaled state machine kept in `state.in_flight`:
//!
//! prepare (fetch + verify, nothing touched) → Activating (switch, restart) → Verifying
//! (health gate within the grace period) → done; or → Reverting (switch back, restart,
//! mark the version broken) → done. Every phase is saved before it starts, so after a crash
//! `resume` repeats the interrupted phase: activation and revert are idempotent.

use std::time::Duration;

use tracing::{Instrument, Span};

use drover_rules::ReasonCode;

use crate::{
    health::Health,
    installers::{InstallContext, Installer},
    shared::{Activity, Shared},
    state::{
        BrokenVersion, FailureKind, InFlight, InstallFailure, Outcome, PersistedState, Phase,
        ReportRecord,
    },
    trace::{self, step_span, traced},
};

/// Transient failures are retried after 30 s, doubling up to an hour.
fn retry_delay_ms(attempts: u32) -> i64 {
    (30_000i64 << attempts.saturating_sub(1).min(7)).min(3_600_000)
}

pub async fn install(shared: &Shared, target: &str) {
    let (directive, from, agent_id) = {
        let state = shared.state.lock().await;
        let agent_id = state.agent_id.clone();
        (
            state.directive.clone(),
            state.agent_version.clone(),
            agent_id,
        )
    };
    let (directive_id, directive_attempt_id, rollout_id, reason, trace_context) = directive
        .map(|d| {
            (
                d.directive_id,
                d.attempt_id,
                d.rollout_id,
                d.reason,
                d.trace_context,
            )
        })
        .unwrap_or_default();
    let in_flight = InFlight {
        attempt_id: uuid::Uuid::new_v4().to_string(),
        directive_id,
        rollout_id,
        directive_attempt_id,
        from,
        to: target.to_string(),
        phase: Phase::Activating,
        started_ms: shared.now_ms(),
        failure: String::new(),
        reason,
        trace_context,
    };
    let span = trace::attempt_span(&agent_id, &in_flight, false);
    attempt(shared, in_flight).instrument(span).await;
}

/// Prepares (nothing touched yet), then activates and verifies.
async fn attempt(shared: &Shared, in_flight: InFlight) {
    let target = in_flight.to.as_str();
    shared.set_activity(Activity::Downloading);
    if let Err(err) = shared.config.installer.prepare(target).await {
        tracing::warn!(version = %target, error = %err.message(), reason = err.reason().as_str(), "install refused or failed before touching the agent");
        // A refusal is final for this directive; anything else is retried later.
        let (kind, outcome) = if err.is_refusal() {
            (FailureKind::Refused, Outcome::Refused)
        } else {
            (FailureKind::Transient, Outcome::Failed)
        };
        // Waiting for a retry says why (a missing version, a busy lock), not just "failed".
        let reason = match err.reason() {
            ReasonCode::UpdateFailed => ReasonCode::RetryPending,
            specific => specific,
        };
        let mut state = shared.state.lock().await;
        let attempts = match &state.install_failure {
            Some(f) if f.directive_id == in_flight.directive_id && f.target == target => {
                f.attempts + 1
            }
            _ => 1,
        };
        state.install_failure = Some(InstallFailure {
            directive_id: in_flight.directive_id.clone(),
            target: target.to_string(),
            kind,
            attempts,
            retry_at_ms: shared.now_ms() + retry_delay_ms(attempts),
            reason: Some(reason),
        });
        let report = report_for(shared, &in_flight, outcome, err.message().to_string());
        push_report(shared, &mut state, report).await;
        shared.set_activity(Activity::Idle);
        return;
    }
    set_in_flight(shared, Some(&in_flight)).await;
    finish(shared, in_flight).await;
}

/// Goes on with an attempt a crash interrupted.
pub async fn resume(shared: &Shared, in_flight: InFlight) {
    let agent_id = shared.state.lock().await.agent_id.clone();
    // A new span in the same trace: the one before the crash never ended.
    let span = trace::attempt_span(&agent_id, &in_flight, true);
    async {
        tracing::warn!(phase = ?in_flight.phase, to = %in_flight.to, "resuming an interrupted update");
        match in_flight.phase {
            Phase::Activating | Phase::Verifying => finish(shared, in_flight).await,
            Phase::Reverting => revert(shared, in_flight).await,
        }
    }
    .instrument(span)
    .await
}

async fn finish(shared: &Shared, mut in_flight: InFlight) {
    shared.set_activity(Activity::Installing);
    let agent_id = shared.state.lock().await.agent_id.clone();
    let ctx = InstallContext {
        agent_id: &agent_id,
        current: in_flight.from.as_deref(),
    };
    if let Err(err) = shared.config.installer.install(&ctx, &in_flight.to).await {
        in_flight.failure = err.to_string();
        return revert(shared, in_flight).await;
    }
    in_flight.phase = Phase::Verifying;
    set_in_flight(shared, Some(&in_flight)).await;
    shared.set_activity(Activity::Verifying);
    let gate = step_span!("health_gate", drover.version = %in_flight.to);
    match traced(gate, health_gate(shared, &in_flight.to)).await {
        Ok(()) => {
            let mut state = shared.state.lock().await;
            if in_flight.from.as_deref() != Some(in_flight.to.as_str()) {
                state.previous_version = in_flight.from.clone();
            }
            state.agent_version = Some(in_flight.to.clone());
            state.install_failure = None;
            state.in_flight = None;
            let report = report_for(shared, &in_flight, Outcome::Succeeded, String::new());
            push_report(shared, &mut state, report).await;
            tracing::info!(version = %in_flight.to, "installed and healthy");
            shared.set_activity(Activity::Idle);
        }
        Err(err) => {
            in_flight.failure = err;
            revert(shared, in_flight).await;
        }
    }
}

/// Puts the previous version back, marks the failed one broken and reports it.
async fn revert(shared: &Shared, mut in_flight: InFlight) {
    in_flight.phase = Phase::Reverting;
    set_in_flight(shared, Some(&in_flight)).await;
    shared.set_activity(Activity::Reverting);
    tracing::warn!(version = %in_flight.to, reason = %in_flight.failure, "reverting");
    let agent_id = shared.state.lock().await.agent_id.clone();
    let ctx = InstallContext {
        agent_id: &agent_id,
        current: Some(&in_flight.to),
    };
    let going_back = async {
        match &in_flight.from {
            Some(from) => shared
                .config
                .installer
                .revert(&ctx, from)
                .await
                .map_err(|err| err.to_string()),
            None => Err("there is no previous version to go back to".to_string()),
        }
    };
    let step = step_span!(
        "revert",
        drover.from = %in_flight.to,
        drover.to = in_flight.from.as_deref().unwrap_or("")
    );
    let back = traced(step, going_back).await;
    let mut state = shared.state.lock().await;
    state.broken_versions.insert(
        in_flight.to.clone(),
        BrokenVersion {
            reason: in_flight.failure.clone(),
            attempt_id: in_flight.attempt_id.clone(),
            directive_attempt_id: in_flight.directive_attempt_id.clone(),
            at_ms: shared.now_ms(),
        },
    );
    state.in_flight = None;
    let (outcome, error) = match back {
        Ok(()) => {
            state.agent_version = in_flight.from.clone();
            (
                Outcome::Reverted,
                format!(
                    "{}; reverted to {}",
                    in_flight.failure,
                    in_flight.from.as_deref().unwrap_or("-")
                ),
            )
        }
        Err(err) => {
            // The new version stays active but is marked broken; the policy keeps trying to
            // go back (Decision::Revert) while a previous version is known.
            state.agent_version = Some(in_flight.to.clone());
            state.previous_version = in_flight.from.clone();
            (
                Outcome::Failed,
                format!("{}; the revert failed too: {err}", in_flight.failure),
            )
        }
    };
    let report = report_for(shared, &in_flight, outcome, error);
    push_report(shared, &mut state, report).await;
    shared.set_activity(Activity::Idle);
}

/// A revert decided by the policy (an earlier revert did not complete).
pub async fn revert_to(shared: &Shared, to: &str, why: &str) {
    let (from, directive, agent_id) = {
        let state = shared.state.lock().await;
        let agent_id = state.agent_id.clone();
        (
            state.agent_version.clone(),
            state.directive.clone(),
            agent_id,
        )
    };
    let Some(from) = from else { return };
    let (directive_id, rollout_id, reason, trace_context) = directive
        .map(|d| (d.directive_id, d.rollout_id, d.reason, d.trace_context))
        .unwrap_or_default();
    let in_flight = InFlight {
        attempt_id: uuid::Uuid::new_v4().to_string(),
        directive_id,
        rollout_id,
        directive_attempt_id: String::new(),
        from: Some(to.to_string()),
        to: from,
        phase: Phase::Reverting,
        started_ms: shared.now_ms(),
        failure: why.to_string(),
        reason,
        trace_context,
    };
    let span = trace::attempt_span(&agent_id, &in_flight, false);
    revert(shared, in_flight).instrument(span).await;
}

/// Waits for `version` to prove healthy within the grace period. Without a probe there is
/// nothing to wait for; a simulated agent says its health itself.
async fn health_gate(shared: &Shared, version: &str) -> Result<(), String> {
    if let Some(healthy) = shared.config.installer.own_health(version) {
        return if healthy {
            Ok(())
        } else {
            Err(format!("simulated agent on {version} is unhealthy"))
        };
    }
    let Some(config) = &shared.config.health else {
        return Ok(());
    };
    let grace = shared.config.health_grace;
    let deadline = tokio::time::Instant::now() + grace;
    let mut successes = 0;
    let mut last_error = String::from("no probe result yet");
    loop {
        match config.probe.check(config.timeout).await {
            Ok(()) => {
                successes += 1;
                if successes >= config.success_threshold.max(1) {
                    shared.health.send_replace(Health::Healthy);
                    return Ok(());
                }
            }
            Err(err) => {
                successes = 0;
                last_error = err;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            shared.health.send_replace(Health::Unhealthy);
            return Err(format!(
                "{version} did not become healthy within {} s ({last_error})",
                grace.as_secs()
            ));
        }
        tokio::time::sleep(config.interval.min(Duration::from_secs(1))).await;
    }
}

fn report_for(
    shared: &Shared,
    in_flight: &InFlight,
    outcome: Outcome,
    error: String,
) -> ReportRecord {
    ReportRecord {
        attempt_id: in_flight.attempt_id.clone(),
        from_version: in_flight.from.clone(),
        to_version: in_flight.to.clone(),
        outcome,
        error,
        started_ms: in_flight.started_ms,
        finished_ms: shared.now_ms(),
        directive_id: in_flight.directive_id.clone(),
        rollout_id: in_flight.rollout_id.clone(),
    }
}

async fn set_in_flight(shared: &Shared, in_flight: Option<&InFlight>) {
    let mut state = shared.state.lock().await;
    state.in_flight = in_flight.cloned();
    shared.save_state(&state).await;
}

/// Keeps the report until acknowledged, saves, and tells the connection to send it. Runs
/// in the attempt's span (never in a step's), which it closes with the outcome.
async fn push_report(shared: &Shared, state: &mut PersistedState, report: ReportRecord) {
    trace::conclude(&Span::current(), &report);
    state.pending_reports.push(report.clone());
    state.last_report = Some(report);
    shared.save_state(state).await;
    shared.wake_connection.notify_one();
}

#[cfg(test)]
mod tests;
