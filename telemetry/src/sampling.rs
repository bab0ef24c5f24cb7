//! Sampling decided once per trace, where the trace starts, and followed everywhere after.
//!
//! `OTEL_TRACES_SAMPLER` (and `_ARG`) choose how a *new* trace is sampled: `always_on`,
//! `always_off`, `traceidratio`, or their `parentbased_` forms, as the specification names
//! them. A span with a parent always follows the parent's sampled flag, whatever the
//! variable says: an updater set to `always_on` still exports nothing of a rollout its
//! coordinator did not sample, so no collector receives children of a trace it never gets.
//!
//! One exception, for failures: a parent not sampled whose `tracestate` says
//! `drover=err-SPANID` (see [`keep_on_error`]) has its children recorded but held in the
//! process (`crate::held`): exported, as sampled, if the span whose parent is SPANID ends
//! with an error; forgotten otherwise. So a rollout keeps every failed agent's steps while
//! tracing only a share of the agents that succeed.

use std::sync::OnceLock;

use opentelemetry::{
    Context, KeyValue,
    trace::{Link, SpanId, SpanKind, TraceContextExt as _, TraceId, TraceState},
};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

/// The `tracestate` key Drover's own entries use.
pub const TRACESTATE_KEY: &str = "drover";
const KEEP_ON_ERROR: &str = "err-";

/// The `tracestate` entry asking the receiving process to keep the work under `span`
/// only if it fails (`drover=err-SPANID`).
pub fn keep_on_error(span: SpanId) -> String {
    format!("{TRACESTATE_KEY}={KEEP_ON_ERROR}{span}")
}

/// The span under which work is kept only if it fails, if `state` asks for that.
pub(crate) fn kept_on_error_under(state: &TraceState) -> Option<SpanId> {
    let value = state.get(TRACESTATE_KEY)?.strip_prefix(KEEP_ON_ERROR)?;
    SpanId::from_hex(value)
        .ok()
        .filter(|id| *id != SpanId::INVALID)
}

/// The root sampler of this process, once [`crate::init`] has run; `None` when spans are
/// not exported at all.
static ROOT: OnceLock<Option<Sampler>> = OnceLock::new();

/// How a new trace is sampled, from the standard variables (`env` reads one). An unknown
/// name or an unreadable ratio samples everything, with the reason.
pub(crate) fn root_sampler(env: impl Fn(&str) -> Option<String>) -> (Sampler, Option<String>) {
    let name = env("OTEL_TRACES_SAMPLER").map(|v| v.trim().to_ascii_lowercase());
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return (Sampler::AlwaysOn, None);
    };
    let ratio = || {
        let arg = env("OTEL_TRACES_SAMPLER_ARG").unwrap_or_default();
        match arg.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => (Sampler::TraceIdRatioBased(r), None),
            _ => (
                Sampler::AlwaysOn,
                Some(format!(
                    "OTEL_TRACES_SAMPLER_ARG='{arg}' is not a ratio between 0 and 1; sampling every trace"
                )),
            ),
        }
    };
    match name.strip_prefix("parentbased_").unwrap_or(&name) {
        "always_on" => (Sampler::AlwaysOn, None),
        "always_off" => (Sampler::AlwaysOff, None),
        "traceidratio" => ratio(),
        other => (
            Sampler::AlwaysOn,
            Some(format!(
                "OTEL_TRACES_SAMPLER={other} is not supported here (use always_on, always_off or traceidratio); sampling every trace"
            )),
        ),
    }
}

/// The provider's sampler: a parent's decision (recorded but held when the parent asks to
/// keep only failures), else `root`'s.
pub(crate) fn provider_sampler(root: Sampler) -> FollowParent {
    FollowParent { root }
}

#[derive(Debug, Clone)]
pub(crate) struct FollowParent {
    root: Sampler,
}

impl ShouldSample for FollowParent {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let Some(parent) = parent.filter(|cx| cx.has_active_span()) else {
            return self
                .root
                .should_sample(parent, trace_id, name, kind, attributes, links);
        };
        let span = parent.span();
        let context = span.span_context();
        let decision = if context.is_sampled() {
            SamplingDecision::RecordAndSample
        } else if kept_on_error_under(context.trace_state()).is_some() {
            SamplingDecision::RecordOnly
        } else {
            SamplingDecision::Drop
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: context.trace_state().clone(),
        }
    }
}

pub(crate) fn install(root: Option<Sampler>) {
    let _ = ROOT.set(root);
}

/// Whether a new trace with `trace_id` is sampled in this process: never when spans are
/// not exported (its children elsewhere would have no parent), else as
/// `OTEL_TRACES_SAMPLER` says. Decide once, where the trace starts, and carry the answer
/// in the `traceparent` flags.
pub fn sample_new_trace(trace_id: TraceId) -> bool {
    let Some(Some(sampler)) = ROOT.get() else {
        return false;
    };
    decide(sampler, trace_id)
}

fn decide(sampler: &Sampler, trace_id: TraceId) -> bool {
    let result = sampler.should_sample(None, trace_id, "root", &SpanKind::Internal, &[], &[]);
    result.decision == SamplingDecision::RecordAndSample
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler_of(vars: &[(&str, &str)]) -> (Sampler, Option<String>) {
        root_sampler(crate::env_of(vars))
    }

    #[test]
    fn the_standard_names_choose_the_root_decision() {
        let ids: Vec<TraceId> = (1..=200u128)
            .map(|i| TraceId::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)))
            .collect();
        let share = |sampler: &Sampler| ids.iter().filter(|id| decide(sampler, **id)).count();
        assert_eq!(share(&sampler_of(&[]).0), 200);
        let off = sampler_of(&[("OTEL_TRACES_SAMPLER", "always_off")]);
        assert_eq!((share(&off.0), off.1), (0, None));
        let parent_off = sampler_of(&[("OTEL_TRACES_SAMPLER", "parentbased_always_off")]);
        assert_eq!(share(&parent_off.0), 0);
        let half = sampler_of(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ]);
        let sampled = share(&half.0);
        assert!((1..200).contains(&sampled), "{sampled}");
        let (bad, why) = sampler_of(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ]);
        assert_eq!(share(&bad), 200);
        assert!(why.unwrap().contains("between 0 and 1"));
        let (_, why) = sampler_of(&[("OTEL_TRACES_SAMPLER", "xray")]);
        assert!(why.unwrap().contains("not supported"));
    }

    #[test]
    fn a_parent_decision_is_followed_whatever_the_root_sampler() {
        use opentelemetry::trace::{SpanContext, TraceFlags};
        let sampler = provider_sampler(Sampler::AlwaysOn);
        let trace_id = TraceId::from(5u128);
        let parent = |flags, state: TraceState| {
            Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                SpanId::from(9u64),
                flags,
                true,
                state,
            ))
        };
        let decide_under = |cx: &Context| {
            sampler
                .should_sample(Some(cx), trace_id, "x", &SpanKind::Server, &[], &[])
                .decision
        };
        let plain = TraceState::default();
        assert_eq!(
            decide_under(&parent(TraceFlags::NOT_SAMPLED, plain.clone())),
            SamplingDecision::Drop
        );
        assert_eq!(
            decide_under(&parent(TraceFlags::SAMPLED, plain)),
            SamplingDecision::RecordAndSample
        );
        let entry = keep_on_error(SpanId::from(9u64));
        let (key, value) = entry.split_once('=').unwrap();
        let held = TraceState::from_key_value([(key, value)]).unwrap();
        assert_eq!(kept_on_error_under(&held), Some(SpanId::from(9u64)));
        assert_eq!(
            decide_under(&parent(TraceFlags::NOT_SAMPLED, held)),
            SamplingDecision::RecordOnly
        );
    }
}
