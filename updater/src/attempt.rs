//! One update attempt, as a small journaled state machine kept in `state.in_flight`:
//!
//! prepare (fetch + verify, nothing touched) → Activating (switch, restart) → Verifying
//! (health gate within the grace period) → done; or → Reverting (switch back, restart,
//! mark the version broken) → done. Every phase is saved before it starts, so after a crash
//! `resume` repeats the interrupted phase: activation and revert are idempotent.

use std::time::Duration;

use tracing::{Instrument, Span};

use drover_rules::{
    ReasonCode,
    text::{MAX_REPORT_TEXT, clean_text},
};

use crate::{
    health::Health,
    installers::{InstallContext, Installer},
    shared::{Activity, Shared},
    state::{
        BrokenVersion, FailureKind, InFlight, InstallFailure, Outcome, PersistedState, Phase,
        ReportRecord, RevertFailure,
    },
    trace::{self, step_span, traced},
    unit_watch,
};

/// Unacknowledged reports kept for resending.
const MAX_PENDING_REPORTS: usize = 100;

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
        host_failure: None,
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
    let prepared = match crate::release::gate(shared, target).await {
        Ok(signed) => shared.config.installer.prepare(target, &signed).await,
        Err(refused) => Err(refused),
    };
    if let Err(err) = prepared {
        tracing::warn!(version = %target, error = %err.message(), reason = err.reason().as_str(), "install refused or failed before touching the agent");
        // A final failure waits for a new directive; anything else is retried later.
        let kind = if err.is_final() {
            FailureKind::Refused
        } else {
            FailureKind::Transient
        };
        let outcome = if err.is_refusal() {
            Outcome::Refused
        } else {
            Outcome::Failed
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
        if err.reason() == ReasonCode::DiskFull {
            in_flight.host_failure = Some(ReasonCode::DiskFull);
        }
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
            // Asked again and good now: no longer broken here.
            state.broken_versions.remove(&in_flight.to);
            state.revert_failure = None;
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

/// Puts the previous version back, marks the failed one broken and reports it. A revert
/// that fails is retried with backoff (`revert_failure`), never in a loop.
async fn revert(shared: &Shared, mut in_flight: InFlight) {
    // Whether the failed version was switched to; unknown after a crash mid-revert.
    let switched = in_flight.phase != Phase::Activating;
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
    // What runs now is read from the installed files where the backend can tell.
    let installed = shared
        .config
        .installer
        .installed_version()
        .await
        .ok()
        .flatten();
    let mut state = shared.state.lock().await;
    // A revert the policy retries keeps the first failure's reason (its own text quotes that
    // reason: nesting it again on every retry grew the state file without bound).
    let retried = in_flight.directive_attempt_id.is_empty()
        && state.broken_versions.contains_key(&in_flight.to);
    if let Some(reason) = in_flight.host_failure {
        // Not the version's fault: try it again later rather than marking it broken.
        let attempts = match &state.install_failure {
            Some(f) if f.directive_id == in_flight.directive_id && f.target == in_flight.to => {
                f.attempts + 1
            }
            _ => 1,
        };
        state.install_failure = Some(InstallFailure {
            directive_id: in_flight.directive_id.clone(),
            target: in_flight.to.clone(),
            kind: FailureKind::Transient,
            attempts,
            retry_at_ms: shared.now_ms() + retry_delay_ms(attempts),
            reason: Some(reason),
        });
    } else if !retried {
        state.broken_versions.insert(
            in_flight.to.clone(),
            BrokenVersion {
                reason: clean_text(&in_flight.failure, MAX_REPORT_TEXT).into_owned(),
                attempt_id: in_flight.attempt_id.clone(),
                directive_attempt_id: in_flight.directive_attempt_id.clone(),
                at_ms: shared.now_ms(),
            },
        );
    }
    state.in_flight = None;
    let (outcome, error) = match back {
        Ok(()) => {
            state.agent_version = installed.or_else(|| in_flight.from.clone());
            state.revert_failure = None;
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
            // The failed version may stay active, marked broken; the policy goes back again
            // (Decision::Revert) once the backoff is over, while a previous version is known.
            let assumed = if switched {
                Some(in_flight.to.clone())
            } else {
                in_flight.from.clone()
            };
            state.agent_version = installed.or(assumed);
            state.previous_version = in_flight.from.clone();
            let attempts = match &state.revert_failure {
                Some(f) if f.version == in_flight.to => f.attempts + 1,
                _ => 1,
            };
            state.revert_failure = Some(RevertFailure {
                version: in_flight.to.clone(),
                back_to: in_flight.from.clone(),
                attempts,
                retry_at_ms: shared.now_ms() + retry_delay_ms(attempts),
                why: clean_text(&err, MAX_REPORT_TEXT).into_owned(),
            });
            tracing::error!(version = %in_flight.to, attempts, error = %err, "the revert failed; it is retried with backoff");
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

/// A revert decided by the policy (an earlier revert did not complete or failed): from the
/// broken version `from` back to `to`.
pub async fn revert_to(shared: &Shared, from: &str, to: &str, why: &str) {
    let (directive, agent_id) = {
        let state = shared.state.lock().await;
        (state.directive.clone(), state.agent_id.clone())
    };
    let (directive_id, rollout_id, reason, trace_context) = directive
        .map(|d| (d.directive_id, d.rollout_id, d.reason, d.trace_context))
        .unwrap_or_default();
    let in_flight = InFlight {
        attempt_id: uuid::Uuid::new_v4().to_string(),
        directive_id,
        rollout_id,
        directive_attempt_id: String::new(),
        from: Some(to.to_string()),
        to: from.to_string(),
        phase: Phase::Reverting,
        started_ms: shared.now_ms(),
        failure: why.to_string(),
        host_failure: None,
        reason,
        trace_context,
    };
    let span = trace::attempt_span(&agent_id, &in_flight, false);
    revert(shared, in_flight).instrument(span).await;
}

/// Waits for `version` to prove healthy within the grace period, then to stay healthy and
/// unrestarted for the stability period. Without a probe there is nothing to wait for; a
/// simulated agent says its health itself.
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
    let started = tokio::time::Instant::now();
    let first_run = match &config.agent_unit {
        Some(unit) => Some((unit.as_str(), unit_watch::read(unit).await?)),
        None => None,
    };
    let restarted = async || -> Result<(), String> {
        let Some((unit, first)) = &first_run else {
            return Ok(());
        };
        match first.restarted_in(&unit_watch::read(unit).await?) {
            Some(what) => Err(format!(
                "{version} is not stable: {what} ({unit}) within {} s of the install",
                started.elapsed().as_secs()
            )),
            None => Ok(()),
        }
    };
    let every = config.interval.min(Duration::from_secs(1));
    let grace_ends = started + shared.config.health_grace;
    let mut successes = 0;
    let mut last_error = String::from("no probe result yet");
    loop {
        restarted().await?;
        match config.probe.check(config.timeout).await {
            Ok(()) => {
                successes += 1;
                if successes >= config.success_threshold.max(1) {
                    break;
                }
            }
            Err(err) => {
                successes = 0;
                last_error = err;
            }
        }
        if tokio::time::Instant::now() >= grace_ends {
            shared.health.send_replace(Health::Unhealthy);
            return Err(format!(
                "{version} did not become healthy within {} s ({last_error})",
                shared.config.health_grace.as_secs()
            ));
        }
        tokio::time::sleep(every).await;
    }
    shared.health.send_replace(Health::Healthy);
    // Healthy once is not enough: a crash-looping release is often "up" when probed.
    let stable_until = tokio::time::Instant::now() + config.stable_for;
    let mut failures = 0;
    while tokio::time::Instant::now() < stable_until {
        tokio::time::sleep(every).await;
        restarted().await?;
        match config.probe.check(config.timeout).await {
            Ok(()) => failures = 0,
            Err(err) => {
                failures += 1;
                if failures >= config.failure_threshold.max(1) {
                    shared.health.send_replace(Health::Unhealthy);
                    return Err(format!(
                        "{version} became unhealthy {} s after the install ({err})",
                        started.elapsed().as_secs()
                    ));
                }
            }
        }
    }
    Ok(())
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
        // Installers and probes quote the outside world (progress bars, colours): cleaned
        // here, where their text enters the report.
        error: clean_text(&error, MAX_REPORT_TEXT).into_owned(),
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
    // Bounded: an updater cut off for long keeps its newest reports, not a growing file.
    if state.pending_reports.len() > MAX_PENDING_REPORTS {
        let dropped = state.pending_reports.len() - MAX_PENDING_REPORTS;
        state.pending_reports.drain(..dropped);
        tracing::warn!(
            dropped,
            "too many unacknowledged reports; the oldest are dropped"
        );
    }
    state.last_report = Some(report);
    shared.save_state(state).await;
    shared.wake_connection.notify_one();
}

#[cfg(test)]
mod tests;
