//! The admin API's contract: one set of JSON shapes for the HTTP API (`/api/v1/...`),
//! `droverctl -o json|yaml` and the dashboard.
//!
//! Why a crate of its own rather than the canonical protobuf JSON mapping: that mapping
//! prints camelCase keys, 64-bit integers as strings and enums as `HEALTH_HEALTHY`, which is
//! what admins and scripts stumbled over. Here keys are snake_case, times RFC 3339 (UTC,
//! second precision), enums lower-case strings, weekdays names, and every code comes with its
//! one-line explanation. Each type is built from its drover.v1 message with `From`, so the
//! coordinator's HTTP handlers and droverctl (which talks gRPC) convert through the same
//! code and cannot disagree. The OpenAPI schemas come from the same types (utoipa).
#![forbid(unsafe_code)]

mod admins;
mod agents;
mod audit;
mod dashboard;
mod enrolment;
mod fleet;
mod history;
mod rollouts;
mod strata;
mod verdicts;

pub use admins::{AdminCredential, AdminCredentialCreated};
pub use agents::{Agent, AgentExplanation, AgentPage, Directive, Event, Health, Report};
pub use agents::{UpdateOutcome, UpdaterState};
pub use audit::AuditEntry;
pub use dashboard::{Codes, VersionSample, VersionTimeline, WhoAmI};
pub use enrolment::{AgentIdentity, JoinToken, JoinTokenCreated};
pub use fleet::{Channel, ControlPlane, FleetSummary, FleetSummaryRow, GroupSchedule, Window};
pub use history::{AgentHistory, RolloutDetail, RolloutPage, Timeline};
pub use rollouts::{GroupPlan, Rollout, RolloutGroup, RolloutPlan};
pub use strata::{HeldStratum, StopAcks, Straggler, StrataSettings, StratumCoverage};
pub use verdicts::{GroupVerdict, SignalVerdict};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a changing call did, or for a dry run would do. Absent on reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Effect {
    /// True when nothing was changed: the call only said what it would do.
    pub dry_run: bool,
    /// The change in words (the text of the event it writes).
    pub summary: String,
    /// Known agents whose directive changes (target, critical flag or window).
    pub agents_affected: u64,
}

impl From<&drover_proto::v1::Effect> for Effect {
    fn from(e: &drover_proto::v1::Effect) -> Self {
        Self {
            dry_run: e.dry_run,
            summary: e.summary.clone(),
            agents_affected: e.agents_affected,
        }
    }
}

/// What every error answers, with the HTTP status saying which kind it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong and what to do; never store or driver text.
    pub error: String,
}

/// RFC 3339 in UTC, second precision.
pub fn time_text(ts: &prost_types::Timestamp) -> String {
    drover_rules::time::rfc3339(ts.seconds.saturating_mul(1000))
}

fn time(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    ts.map(time_text)
}

/// A reason code's explanation; empty for an empty or unknown code.
fn explain_reason(code: &str) -> String {
    drover_rules::ReasonCode::parse(code)
        .map(|code| code.explain().to_string())
        .unwrap_or_default()
}
