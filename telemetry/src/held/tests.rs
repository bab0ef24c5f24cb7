use std::{collections::HashMap, sync::Arc};

use opentelemetry::trace::{SpanId, TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;

use super::*;
use crate::sampling::{keep_on_error, provider_sampler};

/// Feeds every ended span through `Held`, keeping what it releases (names, sampled).
#[derive(Debug, Clone, Default)]
struct Through(Arc<parking_lot::Mutex<(Held, Released)>>);

/// Each released span's name, and whether it went out sampled.
type Released = Vec<(String, bool)>;

impl opentelemetry_sdk::trace::SpanProcessor for Through {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let mut inner = self.0.lock();
        let released = if span.span_context.is_sampled() {
            vec![span]
        } else {
            inner.0.offer(span)
        };
        for span in released {
            let sampled = span.span_context.is_sampled();
            inner.1.push((span.name.into_owned(), sampled));
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(
        &self,
        _timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// An attempt under a remote parent that asks to be kept only on failure, with one step,
/// through the real subscriber and sampler; what was released.
fn attempt(fails: bool) -> Vec<(String, bool)> {
    let through = Through::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(provider_sampler(
            opentelemetry_sdk::trace::Sampler::AlwaysOn,
        ))
        .with_span_processor(through.clone())
        .build();
    let subscriber = crate::subscriber(
        crate::LogFormat::Text,
        EnvFilter::new("off"),
        false,
        Some(provider.tracer("test")),
        std::io::sink,
    );
    let parent = SpanId::from(0x42u64);
    let map = HashMap::from([
        (
            "traceparent".to_string(),
            format!("00-{:032x}-{parent}-00", 7u128),
        ),
        ("tracestate".to_string(), keep_on_error(parent)),
    ]);
    tracing::subscriber::with_default(subscriber, || {
        let top = tracing::info_span!(
            "update_attempt",
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty
        );
        let _ = top.set_parent(crate::context_from_w3c(&map));
        top.in_scope(|| {
            let step = tracing::info_span!(
                "install",
                otel.status_code = tracing::field::Empty,
                otel.status_message = tracing::field::Empty
            );
            assert!(step.context().span().span_context().is_valid());
            if fails {
                crate::mark_error(&step, "io", "disk full");
            }
        });
        if fails {
            crate::mark_error(&top, "failed", "disk full");
        }
    });
    let _ = provider.force_flush();
    through.0.lock().1.clone()
}

#[test]
fn a_failed_attempt_outside_the_traced_share_is_kept_whole() {
    let released = attempt(true);
    assert_eq!(
        released,
        [
            ("install".to_string(), true),
            ("update_attempt".to_string(), true)
        ]
    );
}

#[test]
fn a_successful_one_is_forgotten() {
    assert_eq!(attempt(false), []);
}

#[test]
fn held_attempts_are_bounded() {
    let mut held = Held::default();
    for i in 0..(MAX_ATTEMPTS as u64 * 3) {
        let parent = SpanId::from(i + 1);
        let entry = keep_on_error(parent);
        let (key, value) = entry.split_once('=').unwrap();
        let state = opentelemetry::trace::TraceState::from_key_value([(key, value)]).unwrap();
        for _ in 0..(MAX_SPANS_EACH * 2) {
            let mut span = sample_span();
            span.span_context = SpanContext::new(
                TraceId::from(1u128),
                SpanId::from(999u64),
                TraceFlags::NOT_SAMPLED,
                false,
                state.clone(),
            );
            span.parent_span_id = SpanId::from(1000u64);
            assert!(held.offer(span).is_empty());
        }
    }
    assert_eq!(held.attempts.len(), MAX_ATTEMPTS);
    assert!(
        held.attempts
            .iter()
            .all(|(_, _, s)| s.len() == MAX_SPANS_EACH)
    );
}

fn sample_span() -> SpanData {
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    SpanData {
        span_context: SpanContext::empty_context(),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: opentelemetry::trace::SpanKind::Internal,
        name: "x".into(),
        start_time: std::time::SystemTime::UNIX_EPOCH,
        end_time: std::time::SystemTime::UNIX_EPOCH,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: Default::default(),
    }
}
