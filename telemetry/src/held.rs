//! Spans recorded but not sampled, held until it is known whether their work failed (see
//! `sampling`): an update attempt outside a rollout's traced share is exported whole if it
//! fails, and forgotten if it succeeds. Bounded: a few attempts at a time, a few dozen
//! spans each; beyond that the oldest are forgotten (they were never promised to anyone).

use std::collections::VecDeque;

use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId};
use opentelemetry_sdk::trace::SpanData;

use crate::sampling::kept_on_error_under;

const MAX_ATTEMPTS: usize = 64;
const MAX_SPANS_EACH: usize = 64;

/// One attempt's spans so far: its trace, the remote span it works under, its spans.
type Attempt = (TraceId, SpanId, Vec<SpanData>);

#[derive(Debug, Default)]
pub(crate) struct Held {
    attempts: VecDeque<Attempt>,
}

impl Held {
    /// Takes an unsampled span; returns what to export now: nothing while its attempt runs
    /// or when it asks for nothing; the whole attempt, marked sampled, when its top span
    /// (the child of the remote span) ends with an error.
    pub(crate) fn offer(&mut self, span: SpanData) -> Vec<SpanData> {
        let Some(under) = kept_on_error_under(span.span_context.trace_state()) else {
            return Vec::new();
        };
        let trace = span.span_context.trace_id();
        let index = self
            .attempts
            .iter()
            .position(|(t, u, _)| *t == trace && *u == under);
        if span.parent_span_id == under {
            let held = index
                .and_then(|i| self.attempts.remove(i))
                .map(|(_, _, spans)| spans)
                .unwrap_or_default();
            if !matches!(span.status, Status::Error { .. }) {
                return Vec::new();
            }
            return held.into_iter().chain([span]).map(sampled).collect();
        }
        match index {
            Some(i) => {
                let spans = &mut self.attempts[i].2;
                if spans.len() < MAX_SPANS_EACH {
                    spans.push(span);
                }
            }
            None => {
                if self.attempts.len() >= MAX_ATTEMPTS {
                    self.attempts.pop_front();
                }
                self.attempts.push_back((trace, under, vec![span]));
            }
        }
        Vec::new()
    }
}

fn sampled(mut span: SpanData) -> SpanData {
    let context = &span.span_context;
    span.span_context = SpanContext::new(
        context.trace_id(),
        context.span_id(),
        TraceFlags::SAMPLED,
        context.is_remote(),
        context.trace_state().clone(),
    );
    span
}

#[cfg(test)]
mod tests;
