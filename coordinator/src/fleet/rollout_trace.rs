//! Each rollout is one OpenTelemetry trace, whose ids are made when the rollout is created
//! and stored with it (`rollouts.trace_parent`), so the trace survives restarts.
//!
//! A rollout lasts days, longer than a coordinator process may, so no span is held open:
//! each is built and ended at once when its end is known, under ids stored or derived from
//! the stored ones (`drover_telemetry::ids`):
//!
//! - `rollout` (the root, the stored span id): ended when the rollout is done or rolled
//!   back, or with an error status when a group halts;
//! - `rollout.group` (id from the rollout span, the group and when it started): ended when
//!   the group is done, halted or rolled back; `rollout.group.transition` children mark each
//!   phase change;
//! - `agent_update` (id from the rollout span, the agent and the directive id): one agent's
//!   attempt, from its report; the directive carries it as W3C `traceparent`, so the
//!   updater's own spans (download, verify, install, health gate) are its children.
//!
//! Attributes follow the semantic conventions where they exist (`deployment.id`,
//! `deployment.name`, `deployment.status`, `service.version`) and `drover.*` otherwise.
//! Without an OTLP exporter configured the global tracer is a no-op: this costs nothing.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use opentelemetry::{
    Context, KeyValue, global,
    trace::{
        SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
        Tracer,
    },
};
use sha2::{Digest, Sha256};

use crate::{
    domain::{UpdateOutcome, UpdateReport},
    rollout::{GroupState, Phase, RolloutSpec, RolloutState},
};
use drover_rules::RolloutStatus;

const TRACER: &str = "drover-coordinator";

/// A rollout's trace id and the id of its root span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutTrace {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

impl RolloutTrace {
    /// New random ids (never the invalid all-zero ones).
    pub fn generate() -> Self {
        Self {
            trace_id: TraceId::from(rand::random::<u128>().max(1)),
            span_id: SpanId::from(rand::random::<u64>().max(1)),
        }
    }

    /// As stored: `TRACEID-SPANID` in lower-case hex.
    pub fn to_text(&self) -> String {
        format!("{}-{}", self.trace_id, self.span_id)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (trace, span) = text.split_once('-')?;
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        (trace_id != TraceId::INVALID && span_id != SpanId::INVALID)
            .then_some(Self { trace_id, span_id })
    }

    /// A child span's id, derived from this rollout's and `parts`: the same on every
    /// replica and after every restart.
    fn derived(&self, parts: &[&str]) -> SpanId {
        let mut hash = Sha256::new();
        hash.update(self.span_id.to_bytes());
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        let bytes: [u8; 8] = hash.finalize()[..8].try_into().expect("8 of 32 bytes");
        SpanId::from(u64::from_be_bytes(bytes).max(1))
    }

    fn group_span(&self, group: &str, started_ms: i64) -> SpanId {
        self.derived(&["group", group, &started_ms.to_string()])
    }

    fn attempt_span(&self, agent_id: &str, directive_id: &str) -> SpanId {
        self.derived(&["agent", agent_id, directive_id])
    }

    /// The W3C trace context a directive carries to the agent: its attempt's span.
    pub fn directive_context(&self, agent_id: &str, directive_id: &str) -> HashMap<String, String> {
        let span = self.attempt_span(agent_id, directive_id);
        HashMap::from([(
            "traceparent".to_string(),
            format!("00-{}-{}-01", self.trace_id, span),
        )])
    }

    fn context(&self, parent: SpanId) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            self.trace_id,
            parent,
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ))
    }
}

fn at(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// Builds and ends one span at once: `id` under `parent` (the root when `None`).
fn emit(
    trace: &RolloutTrace,
    id: SpanId,
    parent: Option<SpanId>,
    name: &'static str,
    (start_ms, end_ms): (i64, i64),
    attributes: Vec<KeyValue>,
    error: Option<String>,
) {
    use opentelemetry::trace::Span as _;
    let tracer = global::tracer(TRACER);
    let parent_cx = parent.map_or_else(Context::new, |p| trace.context(p));
    let builder = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .with_start_time(at(start_ms))
        .with_attributes(attributes);
    let mut span = drover_telemetry::ids::with_span_ids(trace.trace_id, id, || {
        tracer.build_with_context(builder, &parent_cx)
    });
    if let Some(message) = error {
        span.set_status(Status::error(message));
    } else {
        span.set_status(Status::Ok);
    }
    span.end_with_timestamp(at(end_ms.max(start_ms)));
}

fn rollout_attributes(spec: &RolloutSpec) -> Vec<KeyValue> {
    vec![
        KeyValue::new("deployment.id", spec.rollout_id.clone()),
        KeyValue::new("deployment.name", spec.channel.clone()),
        KeyValue::new("service.version", spec.target_version.to_string()),
        KeyValue::new("drover.channel", spec.channel.clone()),
        KeyValue::new("drover.from", spec.start_version.to_string()),
        KeyValue::new("drover.to", spec.target_version.to_string()),
    ]
}

fn ended(phase: Phase) -> bool {
    matches!(phase, Phase::Done | Phase::Halted | Phase::Rolledback)
}

/// The spans a committed change of a rollout ends: phase transitions, groups that ended,
/// and the rollout itself when it ended (done, rolled back) or a group halted.
pub fn record_change(
    trace: &RolloutTrace,
    spec: &RolloutSpec,
    (before, after): (&RolloutState, &RolloutState),
    status: RolloutStatus,
    (created_ms, now_ms): (i64, i64),
) {
    let mut halted = None;
    for (index, (old, new)) in before.groups.iter().zip(&after.groups).enumerate() {
        let Some(group) = spec.groups.get(index) else {
            continue;
        };
        if old.phase == new.phase {
            continue;
        }
        let started = new.started_ms.or(old.started_ms).unwrap_or(now_ms);
        let group_span = trace.group_span(&group.name, started);
        let transition = trace.derived(&["transition", &group.name, &now_ms.to_string()]);
        let mut attributes = rollout_attributes(spec);
        attributes.push(KeyValue::new("drover.group", group.name.clone()));
        attributes.push(KeyValue::new("drover.phase.from", old.phase.as_str()));
        attributes.push(KeyValue::new("drover.phase.to", new.phase.as_str()));
        emit(
            trace,
            transition,
            Some(group_span),
            "rollout.group.transition",
            (now_ms, now_ms),
            attributes,
            None,
        );
        if ended(new.phase) {
            let error = (new.phase != Phase::Done).then(|| group_reason(&group.name, new));
            if new.phase == Phase::Halted {
                halted = error.clone();
            }
            let mut attributes = rollout_attributes(spec);
            attributes.push(KeyValue::new("drover.group", group.name.clone()));
            attributes.push(KeyValue::new("drover.phase", new.phase.as_str()));
            attributes.push(KeyValue::new("drover.canaries", new.canaries.len() as i64));
            attributes.push(KeyValue::new("drover.initial", new.initial_count as i64));
            emit(
                trace,
                group_span,
                Some(trace.span_id),
                "rollout.group",
                (started, new.done_ms.unwrap_or(now_ms)),
                attributes,
                error,
            );
        }
    }
    let finished = matches!(status, RolloutStatus::Done | RolloutStatus::Rolledback);
    if finished || halted.is_some() {
        let shown = if finished {
            status
        } else {
            RolloutStatus::Halted
        };
        let mut attributes = rollout_attributes(spec);
        attributes.push(KeyValue::new("deployment.status", shown.as_str()));
        let error = match status {
            RolloutStatus::Done => None,
            RolloutStatus::Rolledback => Some("the rollout was rolled back".to_string()),
            _ => halted,
        };
        emit(
            trace,
            trace.span_id,
            None,
            "rollout",
            (created_ms, now_ms),
            attributes,
            error,
        );
    }
}

fn group_reason(group: &str, state: &GroupState) -> String {
    if state.note.is_empty() {
        format!("group {group} {}", state.phase)
    } else {
        format!("group {group} {}: {}", state.phase, state.note)
    }
}

/// One agent's update attempt, from its committed report: a child of the agent's group's
/// span, under the id its directive's `traceparent` named.
pub fn record_attempt(
    trace: &RolloutTrace,
    spec: &RolloutSpec,
    group: Option<(&str, i64)>,
    agent_id: &str,
    report: &UpdateReport,
) {
    let parent = group.map_or(trace.span_id, |(name, started)| {
        trace.group_span(name, started)
    });
    let mut attributes = rollout_attributes(spec);
    attributes.extend([
        KeyValue::new("drover.agent_id", agent_id.to_string()),
        KeyValue::new(
            "drover.group",
            group.map(|(g, _)| g).unwrap_or("").to_string(),
        ),
        KeyValue::new("drover.from", report.from_version.clone()),
        KeyValue::new("drover.to", report.to_version.clone()),
        KeyValue::new("drover.outcome", report.outcome.as_str()),
        KeyValue::new("drover.attempt_id", report.attempt_id.clone()),
    ]);
    let error = (report.outcome != UpdateOutcome::Succeeded).then(|| {
        attributes.push(KeyValue::new("drover.reason", report.outcome.as_str()));
        if report.error.is_empty() {
            format!("update {}", report.outcome.as_str())
        } else {
            report.error.clone()
        }
    });
    emit(
        trace,
        trace.attempt_span(agent_id, &report.directive_id),
        Some(parent),
        "agent_update",
        (report.started_ms, report.finished_ms),
        attributes,
        error,
    );
}

impl super::Fleet {
    /// The span of a newly recorded report that names a traced rollout of its channel.
    pub(super) fn trace_report(&self, session: &super::registry::Session, report: &UpdateReport) {
        let Some(rollout) = self
            .rollout_status(&session.channel)
            .ok()
            .filter(|r| r.spec.rollout_id == report.rollout_id)
        else {
            return;
        };
        let Some(trace) = &rollout.trace else {
            return;
        };
        let group = rollout
            .spec
            .groups
            .iter()
            .position(|g| g.name == session.group)
            .or_else(|| rollout.spec.groups.len().checked_sub(1));
        let group = group.and_then(|i| {
            let started = rollout.state.groups.get(i)?.started_ms?;
            Some((rollout.spec.groups[i].name.as_str(), started))
        });
        record_attempt(trace, &rollout.spec, group, &session.agent_id, report);
    }

    /// The W3C trace context for `agent_id`'s directive, if it comes from a traced rollout.
    pub fn directive_trace_context(
        &self,
        agent_id: &str,
        channel: &str,
        rollout_id: &str,
        directive_id: &str,
    ) -> HashMap<String, String> {
        if rollout_id.is_empty() {
            return HashMap::new();
        }
        self.rollout_status(channel)
            .ok()
            .filter(|r| r.spec.rollout_id == rollout_id)
            .and_then(|r| r.trace)
            .map(|trace| trace.directive_context(agent_id, directive_id))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_derive_stably() {
        let trace = RolloutTrace::generate();
        assert_eq!(RolloutTrace::parse(&trace.to_text()), Some(trace));
        assert_eq!(RolloutTrace::parse("junk"), None);
        assert_eq!(
            RolloutTrace::parse(&format!("{}-{}", TraceId::INVALID, SpanId::from(1u64))),
            None
        );
        assert_eq!(trace.group_span("dev", 1), trace.group_span("dev", 1));
        assert_ne!(trace.group_span("dev", 1), trace.group_span("dev", 2));
        assert_ne!(trace.group_span("dev", 1), trace.group_span("prod", 1));
        // "ab"+"c" and "a"+"bc" must not collide.
        assert_ne!(trace.derived(&["ab", "c"]), trace.derived(&["a", "bc"]));
        let context = trace.directive_context("web-1", "d-1");
        let parent = &context["traceparent"];
        assert!(parent.starts_with(&format!("00-{}-", trace.trace_id)));
        assert!(parent.ends_with(&format!("{}-01", trace.attempt_span("web-1", "d-1"))));
    }
}
