//! The updater's local state: who it is, what it was last told, and the reports the
//! coordinator has not acknowledged yet. Written atomically (temp file, fsync, rename), so
//! a crash at any instant leaves either the old or the new state, never a torn one.

use std::collections::BTreeMap;

use drover_rules::{ReasonCode, time::rfc3339};
use serde::{Deserialize, Serialize};

mod files;

pub use files::{StateStore, read_dir_state, saved_agent_id, set_agent_id};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectiveSource {
    /// Pushed on the stream as soon as it changed.
    Push,
    /// Found by the periodic re-check.
    Poll,
    /// Restored at start from the mirror outside the state dir (`mirror`), not yet re-sent.
    Restored,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectiveRecord {
    pub directive_id: String,
    pub target_version: Option<String>,
    pub critical: bool,
    pub reason: String,
    pub reason_detail: String,
    pub control_plane_version: Option<String>,
    pub received_ms: i64,
    pub source: DirectiveSource,
    /// The group's maintenance window; `None` means none is known (install as soon as possible).
    #[serde(default)]
    pub schedule: Option<SavedSchedule>,
    /// Set by the coordinator to ask for an attempt explicitly (e.g. to retry a broken version).
    #[serde(default)]
    pub attempt_id: String,
    /// The rollout that chose this target; empty when none governs the agent.
    #[serde(default)]
    pub rollout_id: String,
    /// The rollout's stop epoch (raised by every halt, pause, rollback): a directive of the
    /// same rollout with an older one is stale and ignored.
    #[serde(default)]
    pub rollout_epoch: u64,
    /// The coordinator's W3C trace context (`traceparent`, `tracestate`): the parent of
    /// the update attempt this directive causes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trace_context: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSchedule {
    pub window: drover_rules::MaintenanceSchedule,
    /// After this the schedule counts as missing (rule 4); re-checks push it forward.
    pub valid_until_ms: i64,
}

/// A version that failed its health gate here and was reverted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenVersion {
    pub reason: String,
    pub attempt_id: String,
    /// The coordinator's attempt id when it failed; only a different one retries it.
    pub directive_attempt_id: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Worth retrying later (network, a server error).
    Transient,
    /// Never retried for the same directive (authenticity, constraint, refused artifact).
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallFailure {
    pub directive_id: String,
    pub target: String,
    pub kind: FailureKind,
    pub attempts: u32,
    pub retry_at_ms: i64,
    /// Why it failed, shown while waiting (e.g. `version_not_found`); absent in older state.
    #[serde(default)]
    pub reason: Option<ReasonCode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub action: String,
    pub reason: String,
    pub detail: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Reverted,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRecord {
    pub attempt_id: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub outcome: Outcome,
    pub error: String,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub directive_id: String,
    /// So the coordinator counts the outcome against the rollout that caused it.
    #[serde(default)]
    pub rollout_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    pub agent_id: String,
    pub agent_version: Option<String>,
    pub directive: Option<DirectiveRecord>,
    /// Sent on every (re)connect until acknowledged; the coordinator dedups by attempt id.
    pub pending_reports: Vec<ReportRecord>,
    pub last_report: Option<ReportRecord>,
    /// The last decision with its reason code, for `drover-updater status`.
    pub last_decision: Option<DecisionRecord>,
    /// The version that ran before the current one, kept installed for a revert.
    #[serde(default)]
    pub previous_version: Option<String>,
    #[serde(default)]
    pub broken_versions: BTreeMap<String, BrokenVersion>,
    #[serde(default)]
    pub install_failure: Option<InstallFailure>,
    /// The install or revert under way; a restart after a crash finishes or undoes it.
    #[serde(default)]
    pub in_flight: Option<InFlight>,
    /// The last report the coordinator refused for good (and so was dropped), for
    /// `drover-updater status`.
    #[serde(default)]
    pub refused_report: Option<RefusedReport>,
    /// Going back from a broken version failed: retried with backoff, not in a loop.
    #[serde(default)]
    pub revert_failure: Option<RevertFailure>,
    /// The newest stop epoch heard, and of which rollout: kept across restarts, so no
    /// directive older than a stop this updater acknowledged is ever acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_epoch: Option<(String, u64)>,
    /// The newest signed release metadata verified here (#28): its expiry is the freeze alarm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<HeldRelease>,
}

/// What the updater holds of the release metadata it last verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRelease {
    /// The timestamp role's version; 0 until any verifies (then `expires_ms` is the end of
    /// the grace a fresh updater gets before it says `release_metadata_missing`).
    pub version: u64,
    /// The earliest expiry among its roles, ms since the epoch.
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertFailure {
    /// The broken version that stayed.
    pub version: String,
    /// The version a revert goes back to; `None` when there is none (a fresh host).
    pub back_to: Option<String>,
    pub attempts: u32,
    pub retry_at_ms: i64,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedReport {
    pub attempt_id: String,
    pub why: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Switching to the new version and restarting the agent.
    Activating,
    /// Waiting for the new version to prove healthy.
    Verifying,
    /// Going back to the previous version.
    Reverting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub attempt_id: String,
    pub directive_id: String,
    #[serde(default)]
    pub rollout_id: String,
    pub directive_attempt_id: String,
    pub from: Option<String>,
    pub to: String,
    pub phase: Phase,
    pub started_ms: i64,
    /// Why the revert happens, once `phase` is `Reverting`.
    #[serde(default)]
    pub failure: String,
    /// Set when the failure is the host's (a full disk), not the version's: the revert does
    /// not mark the version broken, and the install is retried later.
    #[serde(default)]
    pub host_failure: Option<ReasonCode>,
    /// The directive's reason code, for the attempt's trace.
    #[serde(default)]
    pub reason: String,
    /// The directive's trace context, so an attempt resumed after a crash continues the
    /// same trace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trace_context: BTreeMap<String, String>,
}

/// The human view of the state, for `drover-updater status`.
pub fn describe(state: &PersistedState, now_ms: i64) -> String {
    let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    let mut out = vec![
        format!("agent:            {}", state.agent_id),
        format!("current version:  {}", dash(state.agent_version.as_deref())),
        format!(
            "previous version: {}",
            dash(state.previous_version.as_deref())
        ),
    ];
    match &state.directive {
        Some(d) => {
            let critical = if d.critical { " (critical)" } else { "" };
            out.push(format!(
                "target version:   {}{critical}",
                dash(d.target_version.as_deref())
            ));
            out.push(format!(
                "why that target:  {} — {}",
                d.reason, d.reason_detail
            ));
            let rollout = if d.rollout_id.is_empty() {
                String::new()
            } else {
                format!(", rollout {}", d.rollout_id)
            };
            out.push(format!(
                "directive:        {} (by {}{rollout})",
                d.directive_id,
                format!("{:?}", d.source).to_lowercase()
            ));
            out.push(format!(
                "next window:      {}",
                next_window_text(d.schedule.as_ref(), now_ms)
            ));
        }
        None => out.push("target version:   - (no directive received yet)".into()),
    }
    if let Some(d) = &state.last_decision {
        out.push(format!(
            "last decision:    {} ({}): {}",
            d.action, d.reason, d.detail
        ));
    }
    if let Some(f) = &state.in_flight {
        out.push(
            format!(
                "in flight:        {:?} {} → {}",
                f.phase,
                dash(f.from.as_deref()),
                f.to
            )
            .to_lowercase(),
        );
    }
    for (version, broken) in &state.broken_versions {
        out.push(format!("broken version:   {version}: {}", broken.reason));
    }
    if let Some(r) = &state.last_report {
        let error = if r.error.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.error)
        };
        let outcome = format!("{:?}", r.outcome).to_lowercase();
        out.push(format!(
            "last report:      {} → {}: {outcome}{error}",
            dash(r.from_version.as_deref()),
            r.to_version
        ));
    }
    out.push(format!("unacked reports:  {}", state.pending_reports.len()));
    if let Some(r) = &state.refused_report {
        out.push(format!(
            "refused report:   {} (dropped; the coordinator said: {})",
            r.attempt_id, r.why
        ));
    }
    out.join("\n") + "\n"
}

fn next_window_text(schedule: Option<&SavedSchedule>, now_ms: i64) -> String {
    let Some(schedule) = schedule else {
        return "none known: updates install as soon as they arrive".into();
    };
    if now_ms >= schedule.valid_until_ms {
        return format!(
            "the saved schedule ({}) expired: updates install as soon as they arrive",
            schedule.window
        );
    }
    match schedule.window.window_containing(now_ms) {
        Some((_, end)) => format!("open now until {} ({})", rfc3339(end), schedule.window),
        None => match schedule.window.next_window(now_ms) {
            Some((start, end)) => format!(
                "{} – {} ({})",
                rfc3339(start),
                rfc3339(end),
                schedule.window
            ),
            None => format!("none ({})", schedule.window),
        },
    }
}
