//! Span ids chosen by the caller. A rollout lives for days and its coordinator may restart
//! in between, so its spans cannot be held open in memory: each is built and ended at once
//! when its end is known, under the trace and span ids stored with the rollout (or derived
//! from them). The SDK takes ids only from the provider's id generator, so the provider gets
//! this one: it answers the ids preset on the current thread by [`with_span_ids`], and random
//! ones otherwise.

use std::cell::Cell;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

thread_local! {
    static PRESET: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Random ids, except inside [`with_span_ids`].
#[derive(Debug, Default)]
pub struct PresetIdGenerator {
    random: RandomIdGenerator,
}

impl IdGenerator for PresetIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        PRESET
            .get()
            .map_or_else(|| self.random.new_trace_id(), |(trace, _)| trace)
    }

    fn new_span_id(&self) -> SpanId {
        PRESET
            .get()
            .map_or_else(|| self.random.new_span_id(), |(_, span)| span)
    }
}

/// Runs `build` (which must build its span synchronously, on this thread) so that the span
/// gets `span_id` and, when it has no parent, `trace_id`.
pub fn with_span_ids<R>(trace_id: TraceId, span_id: SpanId, build: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            PRESET.set(None);
        }
    }
    PRESET.set(Some((trace_id, span_id)));
    let _reset = Reset;
    build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_ids_apply_only_inside_the_closure() {
        let ids = PresetIdGenerator::default();
        let (trace, span) = (TraceId::from(7u128), SpanId::from(9u64));
        let inside = with_span_ids(trace, span, || (ids.new_trace_id(), ids.new_span_id()));
        assert_eq!(inside, (trace, span));
        assert_ne!(ids.new_span_id(), span, "random again outside");
        assert_ne!(ids.new_trace_id(), trace);
    }
}
