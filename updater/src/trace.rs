//! The update attempt as a trace: an `update_attempt` span whose parent is the directive's
//! W3C trace context (so the coordinator's decision and the updater's work are one trace),
//! with a child span per step. Spans end into a bounded queue; nothing here waits on export.
//!
//! Attributes: `drover.agent_id`, `drover.attempt_id`, `drover.from`, `drover.to`,
//! `drover.reason` (the directive's reason code), `drover.outcome` (the report's outcome),
//! `drover.resumed`; a failed step or an attempt that did not succeed has status ERROR
//! with the failure as its message and an `exception` event. Whether any of it is exported
//! is the coordinator's decision, carried in the `traceparent`'s sampled flag.

use std::{collections::HashMap, fmt::Display, future::Future};

use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::state::{InFlight, Outcome, ReportRecord};

/// A child span of the current attempt; `$name` is one of `download`, `verify`, `install`,
/// `restart`, `health_gate`, `revert`.
macro_rules! step_span {
    ($name:literal $(, $($field:tt)+)?) => {
        tracing::info_span!(
            $name,
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty
            $(, $($field)+)?
        )
    };
}
pub(crate) use step_span;

/// Runs `step` in `span`; an error marks the span failed.
pub(crate) async fn traced<T, E: Display>(
    span: Span,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let result = step.instrument(span.clone()).await;
    if let Err(err) = &result {
        drover_telemetry::mark_error(&span, std::any::type_name::<E>(), &err.to_string());
    }
    result
}

/// The span of `attempt` (its versions as its report will name them), a child of the
/// directive's trace context kept in the attempt.
pub(crate) fn attempt_span(agent_id: &str, attempt: &InFlight, resumed: bool) -> Span {
    let parent: HashMap<String, String> = attempt
        .trace_context
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // SERVER: the coordinator's `agent_update` (CLIENT) asked for this work, so a service
    // graph draws drover-coordinator → drover-updater.
    let span = tracing::info_span!(
        "update_attempt",
        otel.kind = "server",
        drover.agent_id = %agent_id,
        drover.attempt_id = %attempt.attempt_id,
        drover.from = attempt.from.as_deref().unwrap_or(""),
        drover.to = %attempt.to,
        drover.reason = %attempt.reason,
        drover.resumed = resumed,
        drover.outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_message = tracing::field::Empty,
    );
    // Always set (it fails only once the span has started, which it has not): without a
    // remote parent the attempt is a trace of its own, never a child of a long-lived span
    // around it (a simulated updater's, which ends only at shutdown).
    let _ = span.set_parent(drover_telemetry::context_from_w3c(&parent));
    span
}

pub(crate) fn outcome_str(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Reverted => "reverted",
        Outcome::Refused => "refused",
    }
}

/// Records the attempt's end from its report.
pub(crate) fn conclude(span: &Span, report: &ReportRecord) {
    span.record("drover.outcome", outcome_str(report.outcome));
    if report.outcome != Outcome::Succeeded {
        drover_telemetry::mark_error(span, outcome_str(report.outcome), &report.error);
    }
}

#[cfg(test)]
mod tests;
