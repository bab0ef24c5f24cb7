//! The updater's policy: a pure function of (clock, local state, agent health) that says
//! whether to wait, install or revert, and why. Rules 3, 4, 6 and 8 of DESIGN.md:
//!
//! - install only inside the maintenance window, or at once when the agent is unhealthy,
//!   the target is critical, or no usable schedule is saved (never received or expired);
//! - never a version above the control plane or more than one major below it;
//! - a version that failed here is not retried unless the coordinator asks again explicitly.

use drover_rules::ReasonCode;
use drover_rules::{check_constraints, parse_version};

use crate::{
    health::Health,
    state::{FailureKind, PersistedState},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Wait {
        reason: ReasonCode,
        detail: String,
        /// When the decision may change by the clock alone (a window opens, a schedule
        /// expires, a retry is due); `None` when only new input can change it.
        recheck_at_ms: Option<i64>,
    },
    Install {
        target: String,
        reason: ReasonCode,
        detail: String,
    },
    Revert {
        /// The broken version being left.
        from: String,
        to: String,
        reason: ReasonCode,
        detail: String,
    },
}

impl Decision {
    pub fn reason(&self) -> ReasonCode {
        match self {
            Self::Wait { reason, .. }
            | Self::Install { reason, .. }
            | Self::Revert { reason, .. } => *reason,
        }
    }
}

fn wait(reason: ReasonCode, detail: impl Into<String>, recheck_at_ms: Option<i64>) -> Decision {
    Decision::Wait {
        reason,
        detail: detail.into(),
        recheck_at_ms,
    }
}

pub fn decide(now_ms: i64, state: &PersistedState, health: Health) -> Decision {
    let decision = decide_install(now_ms, state, health);
    let Some(held) = &state.release else {
        return decision;
    };
    // A revert never waits for release metadata: it goes back to what ran here.
    if matches!(decision, Decision::Revert { .. }) {
        return decision;
    }
    if now_ms >= held.expires_ms {
        // The freeze alarm (#28): whoever serves updates stopped bringing fresh metadata.
        let (reason, detail) = if held.version == 0 {
            (
                ReasonCode::ReleaseMetadataMissing,
                "no signed release metadata has verified since this updater started with \
                 --release-root: the coordinator serves none, or only metadata this updater \
                 refuses (its log says why); nothing installs until some verifies"
                    .to_string(),
            )
        } else {
            (
                ReasonCode::ReleaseMetadataExpired,
                format!(
                    "the signed release metadata (version {}) expired {} s ago and nothing \
                     newer verified: updates may be withheld from this agent (a frozen \
                     coordinator); nothing installs until the release team signs and \
                     publishes fresh metadata",
                    held.version,
                    (now_ms - held.expires_ms) / 1000
                ),
            )
        };
        return wait(reason, detail, None);
    }
    match decision {
        // Decide again the moment the metadata expires, so the alarm is never late.
        Decision::Wait {
            reason,
            detail,
            recheck_at_ms,
        } => Decision::Wait {
            reason,
            detail,
            recheck_at_ms: Some(
                recheck_at_ms.map_or(held.expires_ms, |at| at.min(held.expires_ms)),
            ),
        },
        other => other,
    }
}

fn decide_install(now_ms: i64, state: &PersistedState, health: Health) -> Decision {
    // A revert that failed is tried again once its backoff is over, never in a loop.
    if let Some(failure) = &state.revert_failure
        && let Some(back_to) = &failure.back_to
    {
        if failure.retry_at_ms > now_ms {
            return wait(
                ReasonCode::RevertFailed,
                format!(
                    "going back from {} to {back_to} failed {} time(s) ({}); it tries again \
                     later, or at once when the updater restarts",
                    failure.version, failure.attempts, failure.why
                ),
                Some(failure.retry_at_ms),
            );
        }
        return Decision::Revert {
            from: failure.version.clone(),
            to: back_to.clone(),
            reason: ReasonCode::RevertFailed,
            detail: format!(
                "trying again to go back from {} to {back_to}",
                failure.version
            ),
        };
    }
    // A current version marked broken (a revert was interrupted) goes back to the previous one.
    if let (Some(current), Some(previous)) = (&state.agent_version, &state.previous_version)
        && let Some(broken) = state.broken_versions.get(current)
        && !state.broken_versions.contains_key(previous)
    {
        return Decision::Revert {
            from: current.clone(),
            to: previous.clone(),
            reason: ReasonCode::CurrentVersionBroken,
            detail: format!(
                "{current} failed here ({}); going back to {previous}",
                broken.reason
            ),
        };
    }
    let Some(directive) = &state.directive else {
        return wait(
            ReasonCode::NoDirective,
            "no target received from the coordinator yet",
            None,
        );
    };
    let Some(target_text) = &directive.target_version else {
        return wait(
            served_reason(&directive.reason),
            format!("no target: {}", directive.reason_detail),
            None,
        );
    };
    let Ok(target) = parse_version(target_text) else {
        return wait(
            ReasonCode::InvalidTarget,
            format!("the target '{target_text}' is not a semantic version"),
            None,
        );
    };
    if state
        .agent_version
        .as_deref()
        .and_then(|v| parse_version(v).ok())
        .as_ref()
        == Some(&target)
    {
        // Running a broken target with nothing to go back to is not "up to date".
        if let Some(broken) = state.broken_versions.get(target_text) {
            return wait(
                ReasonCode::RevertFailed,
                format!(
                    "running {target}, which failed here ({}), with no working version to go \
                     back to; an operator must repair the host or serve another version",
                    broken.reason
                ),
                None,
            );
        }
        return wait(
            ReasonCode::UpToDate,
            format!("running the target {target}"),
            None,
        );
    }
    let Some(control_plane) = directive
        .control_plane_version
        .as_deref()
        .and_then(|v| parse_version(v).ok())
    else {
        return wait(
            ReasonCode::NoControlPlaneVersion,
            "the directive names no control-plane version, so the constraints cannot be checked",
            None,
        );
    };
    if let Err(violation) = check_constraints(&target, &control_plane) {
        return wait(violation.reason_code(), violation.to_string(), None);
    }
    if let Some(broken) = state.broken_versions.get(target_text) {
        let asked_again =
            !directive.attempt_id.is_empty() && directive.attempt_id != broken.directive_attempt_id;
        if !asked_again {
            return wait(
                ReasonCode::VersionBroken,
                format!(
                    "{target} failed here before ({}); waiting for the coordinator to ask for it again",
                    broken.reason
                ),
                None,
            );
        }
    }
    if let Some(failure) = &state.install_failure
        && failure.directive_id == directive.directive_id
        && failure.target == *target_text
    {
        match failure.kind {
            FailureKind::Refused => {
                return wait(
                    failure.reason.unwrap_or(ReasonCode::InstallRefused),
                    format!("the install of {target} was refused; waiting for a new directive"),
                    None,
                );
            }
            FailureKind::Transient if now_ms < failure.retry_at_ms => {
                return wait(
                    failure.reason.unwrap_or(ReasonCode::RetryPending),
                    format!(
                        "the install of {target} failed {} time(s); retrying later",
                        failure.attempts
                    ),
                    Some(failure.retry_at_ms),
                );
            }
            FailureKind::Transient => {}
        }
    }
    let install = |reason: ReasonCode, detail: String| Decision::Install {
        target: target_text.clone(),
        reason,
        detail,
    };
    if directive.critical {
        return install(
            ReasonCode::Critical,
            format!("{target} is marked critical: installing outside the window"),
        );
    }
    if health == Health::Unhealthy {
        return install(
            ReasonCode::AgentUnhealthy,
            format!("the agent is unhealthy: installing {target} at once to recover"),
        );
    }
    let Some(schedule) = &directive.schedule else {
        return install(
            ReasonCode::NoSchedule,
            format!("no maintenance schedule is known: installing {target} as soon as possible"),
        );
    };
    if now_ms >= schedule.valid_until_ms {
        return install(
            ReasonCode::ScheduleExpired,
            format!("the saved schedule expired: installing {target} as soon as possible"),
        );
    }
    match schedule.window.window_containing(now_ms) {
        Some(_) => install(
            ReasonCode::InWindow,
            format!("inside the maintenance window ({})", schedule.window),
        ),
        None => {
            let next = schedule.window.next_window(now_ms).map(|(start, _)| start);
            let recheck = next.map_or(schedule.valid_until_ms, |n| n.min(schedule.valid_until_ms));
            wait(
                ReasonCode::OutsideWindow,
                format!("waiting for the maintenance window ({})", schedule.window),
                Some(recheck),
            )
        }
    }
}

/// The coordinator's reason arrives as text: keep the codes that say why nothing is served,
/// and a generic one for the rest.
fn served_reason(code: &str) -> ReasonCode {
    const KNOWN: [ReasonCode; 6] = [
        ReasonCode::UnknownChannel,
        ReasonCode::ChannelHasNoVersion,
        ReasonCode::NoControlPlaneVersion,
        ReasonCode::ConstraintAboveControlPlane,
        ReasonCode::ConstraintBelowControlPlane,
        ReasonCode::RolloutPaused,
    ];
    ReasonCode::parse(code)
        .filter(|reason| KNOWN.contains(reason))
        .unwrap_or(ReasonCode::NoTarget)
}

#[cfg(test)]
mod release_tests;
#[cfg(test)]
mod tests;
