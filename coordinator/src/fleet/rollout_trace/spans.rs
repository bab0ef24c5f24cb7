//! The spans of a rollout's trace, each built and ended at once (see the module above).
//!
//! Semantic conventions 1.34: `deployment.id`, `deployment.name`, `deployment.status`
//! (`succeeded`/`failed`), span kinds, `exception` events (`exception.type`,
//! `exception.message`). What is being deployed is under `drover.release.*`: the
//! resource's `service.version` is the coordinator's own version.

use std::time::{Duration, SystemTime};

use opentelemetry::{
    Context, KeyValue, global,
    trace::{
        Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceState,
        Tracer,
    },
};

use super::RolloutTrace;
use crate::{
    domain::{UpdateOutcome, UpdateReport},
    rollout::{GroupState, Phase, RolloutSpec, RolloutState},
};
use drover_rules::RolloutStatus;

const TRACER: &str = "drover-coordinator";

fn at(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// One span to build and end at once.
struct Emit {
    id: SpanId,
    /// The root when `None`.
    parent: Option<SpanId>,
    name: &'static str,
    kind: SpanKind,
    start_ms: i64,
    end_ms: i64,
    attributes: Vec<KeyValue>,
    /// Name, time and attributes of each event.
    events: Vec<(&'static str, i64, Vec<KeyValue>)>,
    error: Option<String>,
}

impl Emit {
    fn new(
        id: SpanId,
        parent: Option<SpanId>,
        name: &'static str,
        (start_ms, end_ms): (i64, i64),
    ) -> Self {
        Self {
            id,
            parent,
            name,
            kind: SpanKind::Internal,
            start_ms,
            end_ms: end_ms.max(start_ms),
            attributes: Vec::new(),
            events: Vec::new(),
            error: None,
        }
    }

    /// Exported only when the rollout is sampled: the decision made at creation holds.
    fn send(self, trace: &RolloutTrace) -> Option<SpanId> {
        if !trace.sampled {
            return None;
        }
        let tracer = global::tracer(TRACER);
        let parent_cx = self.parent.map_or_else(Context::new, |parent| {
            Context::new().with_remote_span_context(SpanContext::new(
                trace.trace_id,
                parent,
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            ))
        });
        let builder = tracer
            .span_builder(self.name)
            .with_kind(self.kind)
            .with_start_time(at(self.start_ms))
            .with_attributes(self.attributes);
        let mut span = drover_telemetry::ids::with_span_ids(trace.trace_id, self.id, || {
            tracer.build_with_context(builder, &parent_cx)
        });
        for (name, ms, attributes) in self.events {
            span.add_event_with_timestamp(name, at(ms), attributes);
        }
        match self.error {
            Some(message) => span.set_status(Status::error(message)),
            None => span.set_status(Status::Ok),
        }
        span.end_with_timestamp(at(self.end_ms));
        Some(self.id)
    }
}

fn rollout_attributes(spec: &RolloutSpec) -> Vec<KeyValue> {
    vec![
        KeyValue::new("deployment.id", spec.rollout_id.clone()),
        KeyValue::new("deployment.name", spec.channel.clone()),
        KeyValue::new("drover.channel", spec.channel.clone()),
        KeyValue::new("drover.release.from", spec.start_version.to_string()),
        KeyValue::new("drover.release.to", spec.target_version.to_string()),
    ]
}

/// The root, when the rollout is created: it exists before anything hangs under it.
pub fn record_created(
    trace: &RolloutTrace,
    spec: &RolloutSpec,
    agents: u64,
    (created_ms, now_ms): (i64, i64),
) {
    let mut root = Emit::new(trace.span_id, None, "rollout", (created_ms, now_ms));
    root.attributes = rollout_attributes(spec);
    root.attributes.extend([
        KeyValue::new("drover.agents", agents as i64),
        KeyValue::new("drover.groups", spec.groups.len() as i64),
        KeyValue::new("drover.trace.agent_share_ppm", i64::from(trace.agent_ppm)),
    ]);
    root.send(trace);
}

fn phase_event(
    group: &str,
    old: &GroupState,
    new: &GroupState,
    now_ms: i64,
) -> (&'static str, i64, Vec<KeyValue>) {
    let mut attributes = vec![
        KeyValue::new("drover.group", group.to_string()),
        KeyValue::new("drover.phase.from", old.phase.as_str()),
        KeyValue::new("drover.phase.to", new.phase.as_str()),
    ];
    if !new.note.is_empty() {
        attributes.push(KeyValue::new("drover.note", new.note.clone()));
    }
    ("drover.phase.changed", now_ms, attributes)
}

fn group_reason(group: &str, state: &GroupState) -> String {
    if state.note.is_empty() {
        format!("group {group} {}", state.phase)
    } else {
        format!("group {group} {}: {}", state.phase, state.note)
    }
}

/// The spans a committed change of a rollout makes (see the module above); `events` are
/// the change's own texts, for a change that moves no group. Returns the span that carries
/// the change, for the log lines that tell it.
pub fn record_change(
    trace: &RolloutTrace,
    spec: &RolloutSpec,
    (before, after): (&RolloutState, &RolloutState),
    status: RolloutStatus,
    now_ms: i64,
    events: &[String],
) -> Option<SpanId> {
    let mut carrier = None;
    for (index, (old, new)) in before.groups.iter().zip(&after.groups).enumerate() {
        let Some(group) = spec.groups.get(index) else {
            continue;
        };
        if old.phase == new.phase {
            continue;
        }
        let started = new.started_ms.or(old.started_ms).unwrap_or(now_ms);
        let group_span = trace.group_span(&group.name, started);
        let mut attributes = rollout_attributes(spec);
        attributes.push(KeyValue::new("drover.group", group.name.clone()));
        let event = phase_event(&group.name, old, new, now_ms);
        let sent = if old.phase == Phase::Unstarted {
            let mut span = Emit::new(
                group_span,
                Some(trace.span_id),
                "rollout.group",
                (started, now_ms),
            );
            attributes.extend([
                KeyValue::new("drover.canaries", new.canaries.len() as i64),
                KeyValue::new("drover.initial", new.initial_count as i64),
            ]);
            span.attributes = attributes;
            span.events.push(event);
            span.send(trace)
        } else {
            let since = old.phase_ms.or(old.started_ms).unwrap_or(now_ms);
            let id = trace.derived(&["phase", &group.name, old.phase.as_str(), &since.to_string()]);
            let mut span = Emit::new(id, Some(group_span), "rollout.group.phase", (since, now_ms));
            attributes.push(KeyValue::new("drover.phase", old.phase.as_str()));
            span.attributes = attributes;
            span.events.push(event);
            if matches!(new.phase, Phase::Halted | Phase::Rolledback) {
                span.error = Some(group_reason(&group.name, new));
            }
            span.send(trace)
        };
        carrier = carrier.or(sent);
    }
    if matches!(status, RolloutStatus::Done | RolloutStatus::Rolledback) {
        let id = trace.derived(&["end"]);
        let mut end = Emit::new(id, Some(trace.span_id), "rollout.end", (now_ms, now_ms));
        end.attributes = rollout_attributes(spec);
        let succeeded = status == RolloutStatus::Done;
        end.attributes.extend([
            KeyValue::new(
                "deployment.status",
                if succeeded { "succeeded" } else { "failed" },
            ),
            KeyValue::new("drover.status", status.as_str()),
        ]);
        if !succeeded {
            end.error = Some("the rollout was rolled back".to_string());
        }
        return end.send(trace).or(carrier);
    }
    if carrier.is_none() && !events.is_empty() {
        let key = format!("{now_ms}/{}", after.stop_epoch);
        let id = trace.derived(&["change", &key, &events.join("\n")]);
        let mut change = Emit::new(id, Some(trace.span_id), "rollout.change", (now_ms, now_ms));
        change.attributes = rollout_attributes(spec);
        change
            .attributes
            .push(KeyValue::new("drover.paused", after.paused));
        change.events = events
            .iter()
            .map(|text| {
                (
                    "drover.change",
                    now_ms,
                    vec![KeyValue::new("drover.text", text.clone())],
                )
            })
            .collect();
        carrier = change.send(trace);
    }
    carrier
}

/// One agent's update attempt, from its committed report: a CLIENT child of the agent's
/// group's span, under the id its directive's `traceparent` named. Kept when the directive
/// traced the agent (a canary, or in the share) and whenever the attempt failed.
pub fn record_attempt(
    trace: &RolloutTrace,
    spec: &RolloutSpec,
    group: Option<(&str, i64)>,
    (agent_id, canary): (&str, bool),
    report: &UpdateReport,
) {
    let failed = report.outcome != UpdateOutcome::Succeeded;
    if !(failed || trace.traces_agent(agent_id, canary)) {
        return;
    }
    let parent = group.map_or(trace.span_id, |(name, started)| {
        trace.group_span(name, started)
    });
    let id = trace.attempt_span(agent_id, &report.directive_id);
    let mut span = Emit::new(
        id,
        Some(parent),
        "agent_update",
        (report.started_ms, report.finished_ms),
    );
    span.kind = SpanKind::Client;
    span.attributes = rollout_attributes(spec);
    span.attributes.extend([
        KeyValue::new("drover.agent_id", agent_id.to_string()),
        KeyValue::new(
            "drover.group",
            group.map(|(g, _)| g).unwrap_or("").to_string(),
        ),
        KeyValue::new("drover.canary", canary),
        KeyValue::new("drover.from", report.from_version.clone()),
        KeyValue::new("drover.to", report.to_version.clone()),
        KeyValue::new("drover.outcome", report.outcome.as_str()),
        KeyValue::new("drover.attempt_id", report.attempt_id.clone()),
    ]);
    if failed {
        let message = if report.error.is_empty() {
            format!("update {}", report.outcome.as_str())
        } else {
            report.error.clone()
        };
        span.events.push((
            "exception",
            report.finished_ms,
            drover_telemetry::exception(report.outcome.as_str(), &message),
        ));
        span.error = Some(message);
    }
    span.send(trace);
}
