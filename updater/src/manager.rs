//! Acts on directives: persists them, decides, installs, and records the outcome.
//!
//! Works without the coordinator: at start it acts on the cached directive, so an agent whose
//! coordinator is unreachable still reaches its last known target (rule 1).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    Activity, Shared,
    convert::now_ms,
    state::{DirectiveRecord, Outcome, PersistedState, ReportRecord},
};

/// What to do about the held directive, and why. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Wait { reason: String },
    Install { target: String },
}

pub fn decide(state: &PersistedState) -> Decision {
    let Some(directive) = &state.directive else {
        return Decision::Wait {
            reason: "no directive received yet".into(),
        };
    };
    let Some(target) = &directive.target_version else {
        return Decision::Wait {
            reason: format!(
                "no target: {} ({})",
                directive.reason, directive.reason_detail
            ),
        };
    };
    if state.agent_version.as_deref() == Some(target.as_str()) {
        return Decision::Wait {
            reason: format!("up to date at {target}"),
        };
    }
    if state.failed_directive_id.as_deref() == Some(directive.directive_id.as_str()) {
        return Decision::Wait {
            reason: format!(
                "the install of {target} failed; waiting for a new directive before retrying"
            ),
        };
    }
    // No maintenance schedule exists yet, which by rule 4 means: update as soon as possible.
    Decision::Install {
        target: target.clone(),
    }
}

pub async fn run(
    shared: Arc<Shared>,
    mut directives: mpsc::Receiver<DirectiveRecord>,
    shutdown: CancellationToken,
) {
    act(&shared).await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = directives.recv() => {
                let Some(directive) = received else { return };
                if accept(&shared, directive).await {
                    act(&shared).await;
                }
            }
        }
    }
}

/// Saves a directive if it differs from the held one. Returns whether it did.
async fn accept(shared: &Shared, directive: DirectiveRecord) -> bool {
    let mut state = shared.state.lock().await;
    if state
        .directive
        .as_ref()
        .is_some_and(|held| held.directive_id == directive.directive_id)
    {
        return false;
    }
    tracing::info!(
        target_version = ?directive.target_version, reason = %directive.reason,
        source = ?directive.source, "new directive"
    );
    state.directive = Some(directive);
    if let Err(err) = shared.store.save(&state).await {
        tracing::error!(
            error = format!("{err:#}"),
            "cannot save the directive; acting on it from memory"
        );
    }
    true
}

async fn act(shared: &Shared) {
    let (decision, agent_id, current, directive_id) = {
        let state = shared.state.lock().await;
        let directive_id = state
            .directive
            .as_ref()
            .map(|d| d.directive_id.clone())
            .unwrap_or_default();
        (
            decide(&state),
            state.agent_id.clone(),
            state.agent_version.clone(),
            directive_id,
        )
    };
    let target = match decision {
        Decision::Wait { reason } => {
            record_decision(shared, format!("wait: {reason}")).await;
            return;
        }
        Decision::Install { target } => target,
    };
    record_decision(shared, format!("install {target}")).await;
    *shared.activity.lock() = Activity::Installing;
    shared.wake_connection.notify_one();
    let started_ms = now_ms();
    let result = shared
        .config
        .installer
        .install(&agent_id, current.as_deref(), &target)
        .await;
    *shared.activity.lock() = Activity::Idle;
    let report = ReportRecord {
        attempt_id: uuid::Uuid::new_v4().to_string(),
        from_version: current,
        to_version: target.clone(),
        outcome: if result.is_ok() {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        },
        error: result.as_ref().err().cloned().unwrap_or_default(),
        started_ms,
        finished_ms: now_ms(),
        directive_id: directive_id.clone(),
    };
    match &result {
        Ok(()) => tracing::info!(version = %target, "installed"),
        Err(err) => tracing::warn!(version = %target, error = %err, "install failed"),
    }
    {
        let mut state = shared.state.lock().await;
        if result.is_ok() {
            state.agent_version = Some(target.clone());
            state.failed_directive_id = None;
            state.last_decision = Some(format!("installed {target}"));
        } else {
            state.failed_directive_id = Some(directive_id);
            state.last_decision = Some(format!("install of {target} failed: {}", report.error));
        }
        state.pending_reports.push(report.clone());
        state.last_report = Some(report);
        if let Err(err) = shared.store.save(&state).await {
            tracing::error!(
                error = format!("{err:#}"),
                "cannot save the install outcome"
            );
        }
    }
    shared.wake_connection.notify_one();
}

async fn record_decision(shared: &Shared, decision: String) {
    let mut state = shared.state.lock().await;
    if state.last_decision.as_deref() != Some(decision.as_str()) {
        state.last_decision = Some(decision);
        if let Err(err) = shared.store.save(&state).await {
            tracing::error!(error = format!("{err:#}"), "cannot save the decision");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DirectiveSource;

    fn with_directive(current: Option<&str>, target: Option<&str>) -> PersistedState {
        PersistedState {
            agent_id: "a".into(),
            agent_version: current.map(Into::into),
            directive: Some(DirectiveRecord {
                directive_id: "d-1".into(),
                target_version: target.map(Into::into),
                critical: false,
                reason: "channel_target".into(),
                reason_detail: String::new(),
                control_plane_version: None,
                received_ms: 0,
                source: DirectiveSource::Push,
            }),
            ..PersistedState::default()
        }
    }

    #[test]
    fn installs_a_different_target_and_waits_when_up_to_date_or_without_target() {
        assert_eq!(
            decide(&with_directive(Some("1.0.0"), Some("1.1.0"))),
            Decision::Install {
                target: "1.1.0".into()
            }
        );
        assert!(matches!(
            decide(&with_directive(Some("1.1.0"), Some("1.1.0"))),
            Decision::Wait { .. }
        ));
        assert!(matches!(
            decide(&with_directive(Some("1.1.0"), None)),
            Decision::Wait { .. }
        ));
        assert!(matches!(
            decide(&PersistedState::default()),
            Decision::Wait { .. }
        ));
    }

    #[test]
    fn a_failed_directive_is_not_retried() {
        let mut state = with_directive(Some("1.0.0"), Some("1.1.0"));
        state.failed_directive_id = Some("d-1".into());
        assert!(matches!(decide(&state), Decision::Wait { .. }));
    }
}
